"""Carry a sweep's finished runs to another session or machine: one small export file, no checkpoints.

:func:`export_store` writes, from the store in a sweep folder, every record of its **finished** runs (the
store's config and science config, the run rows, their training-loss points and scores, and the data features
of the tasks) to one gzip-compressed JSON-lines file. :func:`import_store` recreates a store from that file in
an empty folder. Re-running the same sweep command on that folder skips the finished runs and trains the
unfinished ones from scratch (checkpoints are never exported), so a sweep can be split over sessions or
preemptible machines.

File format (``mtlfast-store-export``, version 1), one JSON object per line, gzip-compressed:

* ``{"format": "mtlfast-store-export", "version": 1, "meta": {key: value, ...}}``: the store's ``meta`` table
  (schema version, the effective config and its science part, as JSON text);
* ``{"runs": [row, ...]}``: every registered run in registration order. A finished run keeps its row; an
  unfinished one is exported as ``pending`` at step 0 (it will start again), so the imported store lists the
  runs in the same order as the original;
* ``{"features": [[task, name, value], ...]}``;
* one ``{"run_id": ..., "task": ..., "step": [...], "loss": [...]}`` per finished run and task: every loss point;
* one ``{"run_id": ..., "scores": [[task, split, step, metric, value], ...]}`` per finished run.

Numbers are written with Python's ``repr`` (exact round trip for floats; NaN as ``NaN``). The config holds paths
(``data``, ``embeddings``) and settings, never data text; a resume needs the data at the same paths, since they
are part of the science config.

Reading never goes through :class:`mtlfast.store.Store` (whose opening tidies the checkpoint folder): the export
opens the database read-only, in one read transaction, so it can run while the sweep is training.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

from mtlfast.store import DB_NAME, Store

__all__ = ["FORMAT", "VERSION", "ExportError", "export_store", "import_store", "read_export"]

FORMAT = "mtlfast-store-export"
VERSION = 1
_RUN_COLUMNS = ("run_id", "kind", "tasks", "seed", "steps", "status", "step", "seconds", "started_at", "finished_at",
                "error", "position")


class ExportError(ValueError):
    """The sweep folder or the export file is not what the command expects (message says what was expected)."""


def _connect_ro(db_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30.0, isolation_level=None)


def export_store(sweep_dir, path) -> dict:
    """Write the finished runs' records of the store in ``sweep_dir`` to ``path`` (gzip JSON lines); return a
    summary ``{"runs": n, "finished": n, "loss_points": n, "scores": n, "features": n, "bytes": n}``."""
    db_path = Path(sweep_dir) / DB_NAME
    if not db_path.is_file():
        raise ExportError(f"--out {sweep_dir}: expected a sweep folder holding {DB_NAME}, found none")
    try:
        db = _connect_ro(db_path)
        db.execute("BEGIN")  # one snapshot: a run finishing meanwhile is either wholly in or out
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        cur = db.execute(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs ORDER BY position")
        runs = [dict(zip(_RUN_COLUMNS, r)) for r in cur.fetchall()]
        features = [list(r) for r in db.execute("SELECT task, name, value FROM features ORDER BY task, name")]
        done = [r["run_id"] for r in runs if r["status"] == "done"]
        losses, scores = {}, {}
        for run_id in done:
            for task, step, loss in db.execute("SELECT task, step, loss FROM losses WHERE run_id=? ORDER BY task, step",
                                               (run_id,)):
                d = losses.setdefault((run_id, task), {"step": [], "loss": []})
                d["step"].append(step)
                d["loss"].append(loss)
            scores[run_id] = [list(r) for r in db.execute(
                "SELECT task, split, step, metric, value FROM scores WHERE run_id=? ORDER BY task, split, step, metric",
                (run_id,))]
        db.execute("COMMIT")
        db.close()
    except sqlite3.DatabaseError as exc:
        raise ExportError(f"{db_path}: expected an mtlfast store (SQLite), got: {exc}") from None
    if "science" not in meta:
        raise ExportError(f"{db_path}: the store holds no sweep config (no run was ever started in it)")
    for r in runs:
        if r["status"] != "done":  # it will start again from step 0: nothing of it is carried
            r.update(status="pending", step=0, seconds=0.0, started_at=None, finished_at=None, error=None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) as fh:
        def line(obj):
            fh.write(json.dumps(obj, separators=(",", ":")) + "\n")

        line({"format": FORMAT, "version": VERSION, "meta": meta})
        line({"runs": runs})
        line({"features": features})
        for (run_id, task), d in losses.items():
            line({"run_id": run_id, "task": task, "step": d["step"], "loss": d["loss"]})
        for run_id, rows in scores.items():
            line({"run_id": run_id, "scores": rows})
    tmp.replace(path)
    return {"runs": len(runs), "finished": len(done), "loss_points": sum(len(d["step"]) for d in losses.values()),
            "scores": sum(map(len, scores.values())), "features": len(features), "bytes": path.stat().st_size}


def read_export(path) -> dict:
    """The records of an export file: ``{"meta", "runs", "features", "losses": [(run_id, task, step, loss)],
    "scores": [(run_id, task, split, step, metric, value)]}``."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such export file")
    out = {"meta": None, "runs": None, "features": [], "losses": [], "scores": []}
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for i, text in enumerate(fh, start=1):
                obj = json.loads(text)
                if i == 1:
                    if obj.get("format") != FORMAT:
                        raise ExportError(f"{path}: expected an {FORMAT} file (python -m mtlfast.store export),"
                                          f" got format {obj.get('format')!r}")
                    if obj.get("version") != VERSION:
                        raise ExportError(f"{path}: expected export version {VERSION}, got {obj.get('version')!r}")
                    out["meta"] = obj["meta"]
                elif "runs" in obj:
                    out["runs"] = obj["runs"]
                elif "features" in obj:
                    out["features"] = [tuple(r) for r in obj["features"]]
                elif "loss" in obj:
                    out["losses"] += [(obj["run_id"], obj["task"], s, v) for s, v in zip(obj["step"], obj["loss"])]
                elif "scores" in obj:
                    out["scores"] += [(obj["run_id"], *r) for r in obj["scores"]]
                else:
                    raise ExportError(f"{path}: line {i}: expected runs, features, losses or scores, got keys"
                                      f" {sorted(obj)}")
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path}: expected a gzip JSON-lines {FORMAT} file, got: {exc}") from None
    if out["meta"] is None or out["runs"] is None:
        raise ExportError(f"{path}: incomplete export (no header or no runs line)")
    return out


def import_store(path, sweep_dir) -> dict:
    """Recreate the store of an export file in ``sweep_dir`` (which must not hold a store yet); return
    ``{"runs": n, "finished": n, "loss_points": n, "scores": n, "features": n}``."""
    rec = read_export(path)
    out = Path(sweep_dir)
    if (out / DB_NAME).exists():
        raise ExportError(f"--out {out}: already holds a store ({DB_NAME}); import into a new folder")
    store = Store(out)  # creates the schema; no config check: the exported meta rows are the config
    try:
        with store.tx():
            store.db.executemany("INSERT INTO meta VALUES (?, ?)", list(rec["meta"].items()))
            store.db.executemany(f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES "
                                 f"({', '.join('?' * len(_RUN_COLUMNS))})",
                                 [tuple(r[c] for c in _RUN_COLUMNS) for r in rec["runs"]])
            store.db.executemany("INSERT INTO features VALUES (?, ?, ?)", rec["features"])
            store.db.executemany("INSERT INTO losses VALUES (?, ?, ?, ?)", rec["losses"])
            store.db.executemany("INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?)", rec["scores"])
    except (sqlite3.DatabaseError, KeyError, TypeError) as exc:
        store.close()
        (out / DB_NAME).unlink(missing_ok=True)
        raise ExportError(f"{path}: records do not fit the store's tables: {exc}") from None
    store.close()
    return {"runs": len(rec["runs"]), "finished": sum(r["status"] == "done" for r in rec["runs"]),
            "loss_points": len(rec["losses"]), "scores": len(rec["scores"]), "features": len(rec["features"])}

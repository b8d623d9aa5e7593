"""The results store of a sweep: one SQLite database (WAL) per output folder, plus checkpoint files.

Tables
------
``meta(key, value)``                 schema version, the effective config (JSON) and its science part
``runs(run_id, kind, tasks, seed, steps, status, step, seconds, started_at, finished_at, error)``
                                     status: pending | running | done | failed; ``step`` = last checkpoint
``losses(run_id, task, step, loss)``             training loss points (primary key run_id, task, step)
``scores(run_id, task, split, step, metric, value)``  (primary key all but value)
``features(task, name, value)``                   data features of each task

Checkpoints of unfinished runs live in ``OUT/checkpoints/<run_id>.pt`` and are written atomically
(:func:`save_checkpoint`, :func:`load_checkpoint`).

Records only: gains, their seed tests and task ordering are analysis (:mod:`mtlfast.meta.gains`).

Resume guarantees
-----------------
* Rows are committed *before* the checkpoint file that covers them replaces the previous one, so every loss
  or score row at or before a run's checkpoint step is in the database.
* When a run resumes (:meth:`Store.resume_state`), its rows after the checkpoint step are deleted (they will be
  produced again, identically); with no checkpoint, all its rows are deleted and it restarts from step 0.
* A finished run's scores and its ``done`` status are committed in one transaction; its checkpoint file is
  removed afterwards. Finished runs are never run again.
* Primary keys make every row unique: nothing can be duplicated, whatever the order of crashes.
* A store whose science config differs from the current one is refused (:class:`ConfigMismatch`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sqlite3
import time
from pathlib import Path
from typing import Iterable

from mtlfast.config import SweepConfig, diff_science
from mtlfast.stats import DATA_FEATURES

SCHEMA_VERSION = "1"
DB_NAME = "mtlfast.db"
PRIMARY_METRIC = "f1_micro_no_o"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, tasks TEXT NOT NULL, seed INTEGER NOT NULL,
    steps INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'pending', step INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0, started_at REAL, finished_at REAL, error TEXT,
    position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS losses (
    run_id TEXT NOT NULL, task TEXT NOT NULL, step INTEGER NOT NULL, loss REAL NOT NULL,
    PRIMARY KEY (run_id, task, step));
CREATE TABLE IF NOT EXISTS scores (
    run_id TEXT NOT NULL, task TEXT NOT NULL, split TEXT NOT NULL, step INTEGER NOT NULL,
    metric TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (run_id, task, split, step, metric));
CREATE TABLE IF NOT EXISTS features (
    task TEXT NOT NULL, name TEXT NOT NULL, value REAL, PRIMARY KEY (task, name));
"""


class ConfigMismatch(Exception):
    """The output folder holds a sweep with a different configuration."""


def _safe(run_id: str) -> str:
    return "".join(c if c.isalnum() or c in "+@-_." else "_" for c in run_id)


class Store:
    """Open (or create) the store in ``out_dir`` for ``config``; refuse a store of a different sweep."""

    def __init__(self, out_dir: str | Path, config: SweepConfig | None = None):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir = self.out / "checkpoints"
        self.path = self.out / DB_NAME
        self.db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self._in_tx = False
        if config is not None:
            self._check_config(config)
        # Leftovers of a checkpoint write interrupted by a crash.
        if self.ckpt_dir.exists():
            for tmp in self.ckpt_dir.glob("*.tmp*"):
                tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------------------ config
    def _check_config(self, config: SweepConfig) -> None:
        science = config.science()
        row = self.db.execute("SELECT value FROM meta WHERE key='science'").fetchone()
        if row is None:
            with self.tx():
                self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
                self.db.execute("INSERT INTO meta VALUES ('science', ?)", (json.dumps(science, sort_keys=True),))
                self.db.execute("INSERT INTO meta VALUES ('created', ?)", (str(time.time()),))
        else:
            stored = json.loads(row[0])
            stored.setdefault("single_seeds", stored.get("seeds"))  # stores from before --single-seeds
            if stored != json.loads(json.dumps(science)):
                diffs = "; ".join(diff_science(stored, json.loads(json.dumps(science))))
                raise ConfigMismatch(
                    f"{self.path} holds a sweep with a different configuration ({diffs}). Re-run with the same "
                    f"settings to resume it, or choose another --out folder for a new sweep."
                )
        with self.tx():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('config', ?)", (json.dumps(config.to_dict(), sort_keys=True),))

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------------------------------- transactions
    class _Tx:
        def __init__(self, store):
            self.store = store

        def __enter__(self):
            if not self.store._in_tx:
                self.store.db.execute("BEGIN IMMEDIATE")
                self.store._in_tx = True
                self.outer = True
            else:
                self.outer = False

        def __exit__(self, exc_type, exc, tb):
            if self.outer:
                self.store._in_tx = False
                self.store.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def tx(self):
        return Store._Tx(self)

    def close(self) -> None:
        self.db.close()

    # ---------------------------------------------------------------------------------------------------- runs
    def add_runs(self, specs: Iterable) -> None:
        """Register runs (idempotent: existing runs keep their status)."""
        with self.tx():
            start = self.db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM runs").fetchone()[0]
            for i, s in enumerate(specs):
                row = (s.run_id, s.kind, "+".join(s.tasks), int(s.seed), int(s.steps))
                old = self.db.execute("SELECT run_id, kind, tasks, seed, steps FROM runs WHERE run_id=?",
                                      (s.run_id,)).fetchone()
                if old is not None and tuple(old) != row:  # never drop a run silently
                    raise ValueError(f"{self.path}: run id {s.run_id!r} is already taken by another run ({old[1]} run "
                                     f"of {old[2]!r}, seed {old[3]}); task names must not contain '+' or '@'")
                self.db.execute(
                    "INSERT OR IGNORE INTO runs (run_id, kind, tasks, seed, steps, position) VALUES (?,?,?,?,?,?)",
                    (*row, start + i))

    def status(self, run_id: str) -> str | None:
        row = self.db.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return row[0] if row else None

    def runs(self) -> list[dict]:
        cur = self.db.execute("SELECT * FROM runs ORDER BY position")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def checkpoint_path(self, run_id: str) -> Path:
        return self.ckpt_dir / f"{_safe(run_id)}.pt"

    def resume_state(self, run_id: str) -> dict | None:
        """The checkpoint state to continue ``run_id`` from (None: start fresh), after deleting the run's rows
        that lie beyond it."""
        path = self.checkpoint_path(run_id)
        state = None
        if path.exists():
            try:
                state = load_checkpoint(path)
            except Exception:  # noqa: BLE001 - a damaged checkpoint means: start this run again
                state = None
        step = int(state["step"]) if state is not None else 0
        with self.tx():
            self.db.execute("DELETE FROM losses WHERE run_id=? AND step>?", (run_id, step))
            self.db.execute("DELETE FROM scores WHERE run_id=? AND step>?", (run_id, step))
            self.db.execute("UPDATE runs SET step=?, status=CASE WHEN status='failed' THEN 'pending' ELSE status END "
                            "WHERE run_id=?", (step, run_id))
        return state

    def mark_running(self, run_id: str) -> None:
        with self.tx():
            self.db.execute("UPDATE runs SET status='running', error=NULL, started_at=COALESCE(started_at, ?) "
                            "WHERE run_id=?", (time.time(), run_id))

    def add_losses(self, run_id: str, step: int, points: Iterable[tuple[str, float]]) -> None:
        with self.tx():
            self.db.executemany("INSERT OR REPLACE INTO losses VALUES (?,?,?,?)",
                                [(run_id, t, int(step), float(v)) for t, v in points])

    def add_scores(self, run_id: str, step: int, rows: Iterable[tuple[str, str, str, float]]) -> None:
        with self.tx():
            self.db.executemany("INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?)",
                                [(run_id, t, sp, int(step), m, float(v)) for t, sp, m, v in rows])

    def write_checkpoint(self, run_id: str, step: int, state: dict) -> None:
        """Commit everything so far, then atomically replace the run's checkpoint file."""
        assert not self._in_tx, "write_checkpoint inside a transaction"
        save_checkpoint(self.checkpoint_path(run_id), state)
        with self.tx():
            self.db.execute("UPDATE runs SET step=?, seconds=? WHERE run_id=?",
                            (int(step), float(state.get("seconds", 0.0)), run_id))

    def finish_run(self, run_id: str, step: int, seconds: float) -> None:
        with self.tx():
            self.db.execute("UPDATE runs SET status='done', step=?, seconds=?, finished_at=? WHERE run_id=?",
                            (int(step), float(seconds), time.time(), run_id))
        self.checkpoint_path(run_id).unlink(missing_ok=True)

    def fail_run(self, run_id: str, reason: str) -> None:
        with self.tx():
            self.db.execute("UPDATE runs SET status='failed', error=? WHERE run_id=?", (reason, run_id))

    # ------------------------------------------------------------------------------------------------ features
    def has_features(self, task: str) -> bool:
        return self.db.execute("SELECT 1 FROM features WHERE task=? LIMIT 1", (task,)).fetchone() is not None

    def set_features(self, task: str, values: dict[str, float]) -> None:
        with self.tx():
            self.db.executemany("INSERT OR REPLACE INTO features VALUES (?,?,?)",
                                [(task, k, None if v is None else float(v)) for k, v in values.items()])

    # ------------------------------------------------------------------------------------------------- queries
    def final_f1(self, split: str = "test", metric: str = PRIMARY_METRIC) -> dict[tuple[str, str], float]:
        """{(run_id, task): value} at each finished run's final step."""
        rows = self.db.execute(
            "SELECT s.run_id, s.task, s.value FROM scores s JOIN runs r ON r.run_id = s.run_id "
            "WHERE r.status='done' AND s.step = r.steps AND s.split=? AND s.metric=?", (split, metric)).fetchall()
        return {(r, t): v for r, t, v in rows}

    # -------------------------------------------------------------------------------------------------- export
    def export(self, out_dir: str | Path | None = None) -> list[Path]:
        """Write the records as runs.csv, scores.csv, curves.csv and features.csv (docs/ARCHITECTURE.md).

        gains.csv is analysis, not a record: :func:`mtlfast.meta.gains.write_gains_csv`."""
        out = Path(out_dir) if out_dir else self.out
        written = []
        runs = self.runs()
        info = {r["run_id"]: r for r in runs}

        def write(name, header, rows, nan=""):
            path = out / name
            tmp = path.with_name(name + ".tmp")
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(header)
                for row in rows:
                    w.writerow([nan if (isinstance(v, float) and math.isnan(v)) else v for v in row])
            os.replace(tmp, path)
            written.append(path)

        write("runs.csv", ["run_id", "kind", "tasks", "seed", "steps", "status", "seconds"],
              ([r["run_id"], r["kind"], r["tasks"], r["seed"], r["steps"], r["status"], round(r["seconds"], 3)]
               for r in runs))
        cur = self.db.execute("SELECT run_id, task, split, step, metric, value FROM scores ORDER BY run_id, task, split, step, metric")
        pos = {r["run_id"]: r["position"] for r in runs}
        srows = sorted(cur.fetchall(), key=lambda r: (pos.get(r[0], 0), r[1], r[2], r[3], r[4]))
        write("scores.csv", ["run_id", "kind", "tasks", "seed", "task", "split", "step", "metric", "value"],
              ([r[0], info[r[0]]["kind"], info[r[0]]["tasks"], info[r[0]]["seed"], *r[1:]] for r in srows if r[0] in info))
        cur = self.db.execute("SELECT run_id, task, step, loss FROM losses")
        lrows = sorted(cur.fetchall(), key=lambda r: (pos.get(r[0], 0), r[1], r[2]))
        write("curves.csv", ["run_id", "kind", "tasks", "seed", "task", "step", "loss"],
              ([r[0], info[r[0]]["kind"], info[r[0]]["tasks"], info[r[0]]["seed"], *r[1:]] for r in lrows if r[0] in info))
        # Tasks in the order their first run was registered, then tasks that have features but no run.
        feats = self.db.execute(
            "SELECT f.task, f.name, f.value, (SELECT MIN(r.position) FROM runs r WHERE instr('+' || r.tasks || '+', "
            "'+' || f.task || '+') > 0) AS pos FROM features f ORDER BY pos IS NULL, pos, f.task").fetchall()
        by_task: dict[str, dict] = {}
        for t, n, v, _ in feats:
            by_task.setdefault(t, {})[n] = v
        write("features.csv", ["task", *DATA_FEATURES],
              ([t] + [values.get(n, "") for n in DATA_FEATURES] for t, values in by_task.items()))
        return written


# ------------------------------------------------------------------------------------------------ checkpoint files
def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` so that a reader sees either the old file or the complete new one
    (temporary file, fsync, ``os.replace``)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by :func:`save_checkpoint` (tensors on the CPU; ``weights_only``)."""
    import torch

    return torch.load(Path(path), map_location="cpu", weights_only=True)

"""Carrying a sweep's finished runs to another session: ``python -m mtlfast.store export`` / ``import``. The round
trip keeps every row (read back with plain sqlite3); a sweep stopped mid-way, exported, imported elsewhere and
resumed with the same command gives the numbers of an uninterrupted sweep (the unfinished runs train again from
scratch, in other model arrays: rtol 1e-5 / atol 1e-6, as tests/cli/test_sweep.py); finished runs are not retrained."""

from pathlib import Path

import pytest

from mtlfast.sweep import main
from tinysweep import suite, tiny_args  # noqa: F401 - suite: a pytest fixture


def _rows(out):
    """Every record of a store, read with plain sqlite3 (independent of mtlfast.store)."""
    import sqlite3

    db = sqlite3.connect(str(Path(out) / "mtlfast.db"))
    rec = {
        "runs": db.execute("SELECT run_id, kind, tasks, seed, steps, status, step, seconds, position FROM runs "
                           "ORDER BY position").fetchall(),
        "losses": db.execute("SELECT run_id, task, step, loss FROM losses ORDER BY run_id, task, step").fetchall(),
        "scores": db.execute("SELECT run_id, task, split, step, metric, value FROM scores "
                             "ORDER BY run_id, task, split, step, metric").fetchall(),
        "features": db.execute("SELECT task, name, value FROM features ORDER BY task, name").fetchall(),
        "meta": dict(db.execute("SELECT key, value FROM meta").fetchall()),
    }
    db.close()
    return rec


def _interrupt_after(monkeypatch, n_finished):
    """Stop the sweep (as a preempted machine would) right after its n-th run is stored as finished."""
    from mtlfast.store import Store

    finish, count = Store.finish_run, [0]

    def finish_then_stop(self, *a, **k):
        finish(self, *a, **k)
        count[0] += 1
        if count[0] == n_finished:
            raise KeyboardInterrupt

    monkeypatch.setattr(Store, "finish_run", finish_then_stop)


def test_export_import_round_trip(suite, tmp_path):
    from mtlfast.store.__main__ import main as store_main

    out = tmp_path / "full"
    assert main(tiny_args(suite, out, "--single-seeds", "2")) == 0
    assert store_main(["export", "--out", str(out), str(tmp_path / "rec.jsonl.gz")]) == 0
    assert store_main(["import", str(tmp_path / "rec.jsonl.gz"), "--out", str(tmp_path / "copy")]) == 0
    a, b = _rows(out), _rows(tmp_path / "copy")
    assert a["runs"] and a["losses"] and a["scores"] and a["features"]
    for k in ("runs", "losses", "scores", "features"):
        assert a[k] == b[k], k  # exact: floats round-trip through repr
    for k in ("science", "config", "schema"):
        assert a["meta"][k] == b["meta"][k]


def test_resume_from_an_imported_partial_store_equals_uninterrupted(suite, tmp_path, monkeypatch, capsys):
    import numpy as np

    from mtlfast.store.__main__ import main as store_main

    args = ("--single-seeds", "2", "--array-size", "3", "--checkpoint-every", "10")
    full = tmp_path / "full"
    assert main(tiny_args(suite, full, *args)) == 0
    part = tmp_path / "part"
    with monkeypatch.context() as m:
        _interrupt_after(m, 4)  # the first array of three singles and one run of the second
        assert main(tiny_args(suite, part, *args)) == 130
    partial = _rows(part)
    done = {r[0] for r in partial["runs"] if r[5] == "done"}
    assert len(done) == 4 and (part / "checkpoints").is_dir() and any((part / "checkpoints").iterdir())
    assert any(r[0] not in done for r in partial["losses"])  # unfinished runs have rows: they must not travel
    rec = tmp_path / "rec.jsonl.gz"
    assert store_main(["export", "--out", str(part), str(rec)]) == 0
    assert "Exported 4 finished of 9 runs" in capsys.readouterr().out
    moved = tmp_path / "elsewhere"
    assert store_main(["import", str(rec), "--out", str(moved)]) == 0
    imported = _rows(moved)
    assert {r[0] for r in imported["runs"] if r[5] == "done"} == done
    assert {r[0] for r in imported["losses"]} == done and not (moved / "checkpoints").exists()
    assert [r for r in imported["losses"]] == [r for r in partial["losses"] if r[0] in done]
    # the same command on the imported folder trains only the five unfinished runs, from scratch
    assert main(tiny_args(suite, moved, *args)) == 0
    err = capsys.readouterr().err
    assert "resuming: 4 run(s) already done, 0 continue from a checkpoint, 5 start fresh" in err
    a, b = _rows(full), _rows(moved)
    assert [r[:7] for r in a["runs"]] == [r[:7] for r in b["runs"]]  # same runs, order, status and step
    for k in ("losses", "scores"):
        assert [r[:-1] for r in a[k]] == [r[:-1] for r in b[k]], k
        np.testing.assert_allclose([r[-1] for r in b[k]], [r[-1] for r in a[k]], rtol=1e-5, atol=1e-6)
    assert (full / "gains.csv").read_text().splitlines()[0] == (moved / "gains.csv").read_text().splitlines()[0]
    ga = np.genfromtxt(full / "gains.csv", delimiter=",", skip_header=1, usecols=range(2, 6))
    gb = np.genfromtxt(moved / "gains.csv", delimiter=",", skip_header=1, usecols=range(2, 6))
    np.testing.assert_allclose(gb, ga, rtol=1e-5, atol=1e-6)
    # finished runs were not trained again: their records are the exported ones, bit for bit
    assert [r for r in b["losses"] if r[0] in done] == [r for r in partial["losses"] if r[0] in done]


@pytest.mark.parametrize("argv, message", [
    ([], "expected a command: export or import"),
    (["export", "x.gz"], "expected the sweep folder: --out DIR"),
    (["export", "--out", "{tmp}/nothing", "x.gz"], "expected a sweep folder holding mtlfast.db"),
    (["import", "{tmp}/missing.gz", "--out", "{tmp}/o"], "missing.gz: no such export file"),
    (["import", "{tmp}/plain.txt", "--out", "{tmp}/o"], "expected a gzip JSON-lines mtlfast-store-export file"),
    (["import", "{tmp}/other.gz", "--out", "{tmp}/o"], "expected an mtlfast-store-export file"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_store_cli_errors_exit_2(argv, message, tmp_path, capsys):
    import gzip

    from mtlfast.store.__main__ import main as store_main

    (tmp_path / "plain.txt").write_text("not gzip\n")
    with gzip.open(tmp_path / "other.gz", "wt") as fh:
        fh.write('{"format": "something-else"}\n')
    assert store_main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m mtlfast.store: error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_import_refuses_a_folder_with_a_store(suite, tmp_path, capsys):
    from mtlfast.store.__main__ import main as store_main

    out = tmp_path / "s"
    assert main(tiny_args(suite, out)) == 0
    assert store_main(["export", "--out", str(out), str(tmp_path / "r.gz")]) == 0
    assert store_main(["import", str(tmp_path / "r.gz"), "--out", str(out)]) == 2
    assert "already holds a store" in capsys.readouterr().err

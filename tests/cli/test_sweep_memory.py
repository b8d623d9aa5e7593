"""``python -m mtlfast.sweep``: the array size from the memory (issue 16), the thread count from the load and the
closing line of a budgeted sweep (issue 18).

- A sweep whose memory (monkeypatched) fits only 2 of its 6 runs per array trains 3 arrays and stores the same
  losses and scores as the same sweep in one array. Tolerance rtol 1e-5 / atol 1e-6, as tests/train/test_train.py
  (a run's numbers do not depend on its neighbours but for float reassociation in batched kernels).
- When not even one run fits: one error line naming the bytes needed and available and what to reduce, exit 2,
  and no store written; ``--array-size`` overrides the memory rule (with a warning).
- ``--threads 0`` (the default) is 1 on a busy machine (monkeypatched load average), all cores on an idle one.
- ``--pairs N``: the closing "Trained N run(s)" line counts the budget's pair runs too.
"""

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

import mtlfast.train.memory as memory
from mtlfast.sweep import auto_threads, main, parse_config
from tinysweep import suite  # noqa: F401 - a pytest fixture

RTOL, ATOL = 1e-5, 1e-6
TASKS = ["coarse", "entity", "keep"]


def args(suite, out, *extra):
    return ["--data", str(suite), "--tasks", *TASKS, "--steps-single", "20", "--steps-pair", "30", "--hidden", "8",
            "--batch-size", "8", "--no-progress", "--out", str(out), *extra]


def rows(out):
    db = sqlite3.connect(str(Path(out) / "mtlfast.db"))
    losses = db.execute("SELECT run_id, task, step, loss FROM losses ORDER BY run_id, task, step").fetchall()
    scores = db.execute("SELECT run_id, task, split, step, metric, value FROM scores "
                        "ORDER BY run_id, task, split, step, metric").fetchall()
    status = db.execute("SELECT run_id, status FROM runs ORDER BY run_id").fetchall()
    db.close()
    return losses, scores, status


def estimate(suite, argv):
    """The sweep's own per-run and per-array estimate for ``argv`` (what _memory_plan computes)."""
    from mtlfast.train import TrainSettings, prepare_inputs

    cfg = parse_config(argv)
    inputs = prepare_inputs([suite], None, cfg.emb_dim, TASKS, protocol=cfg.protocol)
    settings = TrainSettings.from_config(cfg)
    return memory.run_bytes_for(inputs, settings), memory.array_overhead(inputs, settings)


def load(monkeypatch, value, cores=1):
    monkeypatch.setattr(os, "getloadavg", lambda: (value, value, value))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))


def test_sweep_split_by_memory_equals_one_array(suite, tmp_path, capsys, monkeypatch):
    one, split = tmp_path / "one", tmp_path / "split"
    load(monkeypatch, 0.0, cores=1)  # idle, one core: 1 thread either way
    threads = torch.get_num_threads()
    assert main(args(suite, one)) == 0
    err = capsys.readouterr().err
    assert "array size 6: all 6 run(s) fit in one array" in err
    assert "threads 1: all 1 available core(s) (load average 0.00)" in err

    per, overhead = estimate(suite, args(suite, split))
    room = int((overhead + 2.5 * per.peak) / memory.SAFE_FRACTION) + 1  # 2 runs fit, not 3
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": (room, "the test's budget"))
    load(monkeypatch, 1.5, cores=2)  # busy: 1.5 >= 2 / 2
    assert main(args(suite, split)) == 0
    err = capsys.readouterr().err
    assert "array size 2: 2 of 6 runs fit in one array" in err and "3 arrays" in err
    assert "the test's budget" in err
    assert "threads 1: 1 because the machine is busy (load average 1.50 on 2 available cores" in err
    assert "Trained 6 run(s) (150 run-steps)" in err
    assert torch.get_num_threads() == threads  # the sweep restores the caller's setting

    (l1, s1, st1), (l2, s2, st2) = rows(one), rows(split)
    assert st1 == st2 and {s for _, s in st1} == {"done"} and len(st1) == 6
    assert [r[:3] for r in l1] == [r[:3] for r in l2] and len(l1) > 0
    np.testing.assert_allclose([r[3] for r in l1], [r[3] for r in l2], rtol=RTOL, atol=ATOL)
    assert [r[:5] for r in s1] == [r[:5] for r in s2] and len(s1) > 0
    np.testing.assert_allclose([r[5] for r in s1], [r[5] for r in s2], rtol=RTOL, atol=ATOL)


def test_not_even_one_run_fits_is_exit_2_and_writes_no_store(suite, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": (3_000_000, "MemAvailable"))
    out = tmp_path / "o"
    assert main(args(suite, out, "--threads", "1")) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and "Traceback" not in err
    line = lines[0]
    assert line.startswith("python -m mtlfast.sweep: error: not enough memory for one run: one run needs about")
    assert "2.1 MB may be used (70% of 3.0 MB MemAvailable)" in line  # what is available
    assert "--hidden" in line and "--emb-dim" in line and "vocabulary" in line  # what to reduce
    assert not (out / "mtlfast.db").exists()
    # --array-size overrides the memory rule (the sweep trains, and says it may not fit)
    assert main(args(suite, out, "--threads", "1", "--array-size", "4")) == 0
    err = capsys.readouterr().err
    assert "array size 4: --array-size 4; estimated" in err and "WARNING: more than is usable" in err
    assert "threads 1: set by --threads" in err


@pytest.mark.parametrize("load_avg, cores, expected", [
    (0.0, 8, 8), (3.9, 8, 8), (4.0, 8, 1), (0.9, 2, 2), (1.0, 2, 1), (1.6, 2, 1), (5.0, 1, 1), (0.0, 1, 1)])
def test_auto_threads(load_avg, cores, expected):
    n, why = auto_threads(load_avg, cores)
    assert n == expected
    assert f"load average {load_avg:.2f}" in why
    assert ("busy" in why) == (expected == 1 and cores > 1)


def test_auto_threads_reads_the_load_and_the_affinity(monkeypatch):
    load(monkeypatch, 3.0, cores=4)
    assert auto_threads()[0] == 1
    load(monkeypatch, 0.5, cores=4)
    assert auto_threads() == (4, "all 4 available core(s) (load average 0.50); --threads N overrides")


def test_budgeted_sweep_counts_every_run_trained(suite, tmp_path, capsys):
    out = tmp_path / "b"
    assert main(args(suite, out, "--threads", "1", "--pairs", "2")) == 0
    err = capsys.readouterr().err
    # 3 single runs x 20 steps + 2 pair runs x 30 steps, the pairs in a budget round
    assert "round 1/" in err
    assert "Trained 5 run(s) (120 run-steps)" in err
    _, _, status = rows(out)
    assert len(status) == 5 and {s for _, s in status} == {"done"}

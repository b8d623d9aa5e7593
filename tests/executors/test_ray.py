"""``python -m mtlfast.sweep --executor ray`` on a local Ray instance (2 CPUs, no dashboard), one per module.

* The Ray executor fills the store exactly as the in-process executor does (runs, loss rows, scores, seeds).
* A Ray worker process killed with SIGKILL mid-run: its model array is retried from the checkpoint the driver
  stored, and the sweep completes with every run present once and no duplicated loss or score rows.
* With ``--max-retries 0`` the killed array's runs are marked failed (with the reason) while the other array
  finishes; re-running the sweep (a driver restart, here with the in-process executor) resumes them from the
  store.
* Ctrl-C: the workers checkpoint their runs, the sweep exits 130, and the same command resumes.

Tolerance for store comparisons (written down): rtol 1e-5 / atol 1e-6 on every loss and score, as in
test_sweep.py (a retried run may resume next to different neighbours in its model array); the keys (run, task,
split, step, metric) and the runs table (ids, kinds, tasks, seeds, steps, status) must be equal exactly.
"""

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs the ray extra: pip install 'mtlfast[ray]'")

from mtlfast.executors.ray import init_local_ray  # noqa: E402
from mtlfast.sweep import main  # noqa: E402
from tinysweep import suite  # noqa: E402,F401 - a pytest fixture (one synthetic suite per module)

pytestmark = pytest.mark.ray
RTOL, ATOL = 1e-5, 1e-6
TASK_TITLE = b"ray::train_group_task"  # a Ray worker's process title while it runs a model array
needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds Ray workers through /proc (Linux)")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    if ray.is_initialized():  # pragma: no cover - another module left one running
        ray.shutdown()
    init_local_ray(num_cpus=2)
    yield
    ray.shutdown()


def tiny_args(suite, out, *extra):
    # 2 tasks -> 2 single-task runs + 1 pair run; --array-size 2 -> two model arrays, one per Ray CPU.
    return ["--data", str(suite), "--tasks", "coarse", "entity", "--steps-single", "40", "--steps-pair", "60",
            "--checkpoint-every", "10", "--eval-every", "20", "--hidden", "16", "--batch-size", "16",
            "--threads", "1", "--array-size", "2", "--no-progress", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def reference(suite, tmp_path_factory):
    """The same sweep with the in-process executor."""
    out = tmp_path_factory.mktemp("inprocess")
    assert main(tiny_args(suite, out)) == 0
    return out


def db_rows(out):
    db = sqlite3.connect(str(Path(out) / "mtlfast.db"))
    runs = db.execute("SELECT run_id, kind, tasks, seed, steps, status, step FROM runs ORDER BY run_id").fetchall()
    losses = db.execute("SELECT run_id, task, step, loss FROM losses ORDER BY run_id, task, step").fetchall()
    scores = db.execute("SELECT run_id, task, split, step, metric, value FROM scores "
                        "ORDER BY run_id, task, split, step, metric").fetchall()
    errors = dict(db.execute("SELECT run_id, error FROM runs").fetchall())
    n_runs = db.execute("SELECT COUNT(*), COUNT(DISTINCT run_id) FROM runs").fetchone()
    db.close()
    assert n_runs[0] == n_runs[1], "a run is in the store twice"
    assert len({r[:3] for r in losses}) == len(losses), "duplicated loss rows"
    assert len({r[:5] for r in scores}) == len(scores), "duplicated score rows"
    return runs, losses, scores, errors


def assert_same_db(a, b):
    runs_a, losses_a, scores_a, _ = db_rows(a)
    runs_b, losses_b, scores_b, _ = db_rows(b)
    assert runs_a == runs_b
    assert [r[:3] for r in losses_a] == [r[:3] for r in losses_b]
    np.testing.assert_allclose([r[3] for r in losses_a], [r[3] for r in losses_b], rtol=RTOL, atol=ATOL)
    assert [r[:5] for r in scores_a] == [r[:5] for r in scores_b]
    np.testing.assert_allclose([r[5] for r in scores_a], [r[5] for r in scores_b], rtol=RTOL, atol=ATOL)


def _raylet_pid():
    try:
        node = ray._private.worker._global_node
        return node.all_processes[ray._private.ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    except Exception:  # noqa: BLE001 - internal API; fall back to the process title alone
        return None


def training_workers():
    """PIDs of this Ray instance's worker processes that are training a model array right now."""
    raylet = _raylet_pid()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                title = fh.read()
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except OSError:
            continue
        if title.startswith(TASK_TITLE) and (raylet is None or ppid == raylet):
            pids.append(int(entry))
    return pids


class Killer(threading.Thread):
    """Once a run of the sweep in ``out`` has a stored checkpoint, SIGKILL one Ray worker that is training."""

    def __init__(self, out, timeout=300.0):
        super().__init__(daemon=True)
        self.db_path = Path(out) / "mtlfast.db"
        self.timeout = timeout
        self.killed = None

    def run(self):
        t0 = time.time()
        while time.time() - t0 < self.timeout and self.killed is None:
            time.sleep(0.02)
            if not self.db_path.exists():
                continue
            try:
                db = sqlite3.connect(str(self.db_path), timeout=1)
                rows = db.execute("SELECT status, step, steps FROM runs").fetchall()
                db.close()
            except sqlite3.Error:
                continue
            # Mid-run: a run has a stored checkpoint, and no running run is near its end (so that the killed
            # worker, whichever it is, still has work to lose).
            running = [(step, steps) for st, step, steps in rows if st == "running"]
            if not any(step >= 10 for step, _ in running) or any(step > steps - 20 for step, steps in running):
                continue
            pids = training_workers()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                self.killed = pids[0]


def test_ray_store_equals_inprocess(suite, reference, tmp_path, capsys):
    out = tmp_path / "ray"
    assert main(tiny_args(suite, out, "--executor", "ray")) == 0
    assert "Ray: " in capsys.readouterr().err
    assert_same_db(reference, out)
    runs, _, _, _ = db_rows(out)
    assert sorted((r[0], r[3]) for r in runs) == [("coarse+entity@0", 0), ("coarse@0", 0), ("entity@0", 0)]
    assert all(r[5] == "done" for r in runs)
    assert len((out / "gains.csv").read_text().splitlines()) == 1 + 2  # coarse<-entity, entity<-coarse


@needs_proc
def test_killed_worker_is_retried_and_nothing_is_lost(suite, reference, tmp_path, capsys):
    out = tmp_path / "killed"
    killer = Killer(out)
    killer.start()
    status = main(tiny_args(suite, out, "--executor", "ray", "--max-retries", "2"))
    killer.join(timeout=5)
    err = capsys.readouterr().err
    assert killer.killed is not None, "no Ray worker was killed (the sweep ended first?)"
    assert status == 0, err[-3000:]
    assert "Ray worker lost" in err and "retry 1/2" in err, err[-3000:]
    runs, _, _, _ = db_rows(out)
    assert len(runs) == 3 and all(r[5] == "done" for r in runs)  # every run present exactly once, finished
    assert_same_db(reference, out)  # resumed from the stored checkpoint: same numbers, no duplicated rows
    assert not list((out / "checkpoints").glob("*"))


@needs_proc
def test_retries_exhausted_marks_runs_failed_and_restart_resumes(suite, reference, tmp_path, capsys):
    out = tmp_path / "failed"
    killer = Killer(out)
    killer.start()
    status = main(tiny_args(suite, out, "--executor", "ray", "--max-retries", "0"))
    killer.join(timeout=5)
    err = capsys.readouterr().err
    assert killer.killed is not None, "no Ray worker was killed (the sweep ended first?)"
    assert status == 1, err[-3000:]
    runs, _, _, errors = db_rows(out)
    failed = [r[0] for r in runs if r[5] == "failed"]
    assert failed and len(failed) < 3, runs  # the killed array failed, the other one finished
    assert all(r[5] in ("done", "failed") for r in runs)
    for rid in failed:
        assert "Ray worker lost" in errors[rid] and "--max-retries 0" in errors[rid], errors[rid]
    # A driver restart resumes the failed runs from their stored checkpoints; the executor may change on a
    # resume (here: back to the in-process one), it is not part of the sweep's science config.
    assert main(tiny_args(suite, out)) == 0
    assert "resuming" in capsys.readouterr().err
    assert_same_db(reference, out)


@needs_proc
def test_ctrl_c_checkpoints_on_the_workers_and_resumes(suite, reference, tmp_path, capsys):
    out = tmp_path / "interrupted"

    def interrupt():
        db_path, t0 = out / "mtlfast.db", time.time()
        while time.time() - t0 < 300:
            time.sleep(0.02)
            try:
                db = sqlite3.connect(str(db_path), timeout=1)
                running = db.execute("SELECT COUNT(*) FROM runs WHERE status='running' AND kind='pair'").fetchone()[0]
                db.close()
            except sqlite3.Error:
                continue
            if running and training_workers():  # the pair run (the longest) has just started
                os.kill(os.getpid(), signal.SIGINT)  # the sweep's handler: stop and checkpoint
                return

    t = threading.Thread(target=interrupt, daemon=True)
    t.start()
    # No periodic checkpoints: those on disk after the interrupt come from the workers' stop path.
    status = main(tiny_args(suite, out, "--executor", "ray", "--checkpoint-every", "1000"))
    t.join(timeout=5)
    err = capsys.readouterr().err
    assert status == 130, err[-3000:]
    assert "Resume with the same command" in err
    runs, _, _, _ = db_rows(out)
    assert any(r[5] != "done" for r in runs)
    assert list((out / "checkpoints").glob("*.pt")), "the workers' checkpoints did not reach the store"
    # Every run that had started and not finished was checkpointed by its worker (groups not yet started are
    # cancelled and stay pending).
    started = [r[0] for r in runs if r[5] == "running"]
    assert started and all((out / "checkpoints" / f"{rid}.pt").exists() for rid in started), runs
    assert main(tiny_args(suite, out, "--executor", "ray")) == 0
    assert_same_db(reference, out)


def test_training_error_is_reported_not_retried(suite):
    from mtlfast.executors import InputsSpec
    from mtlfast.executors.ray import RayExecutor
    from mtlfast.train import RunSpec, TrainSettings

    executor = RayExecutor(InputsSpec((str(suite),), task_names=("coarse",)), max_retries=2, log=lambda msg: None)
    errors, events = [], []
    executor.run([[RunSpec("missing@0", ("missing",), 0, 5)]], TrainSettings(hidden=8, batch_size=4),
                 events.append, lambda: False, lambda group, reason: errors.append(([s.run_id for s in group], reason)))
    executor.close()
    assert executor.retries == 0 and len(errors) == 1, errors
    assert errors[0][0] == ["missing@0"] and "missing" in errors[0][1]
    assert ray.is_initialized()  # an executor leaves a Ray it did not start running

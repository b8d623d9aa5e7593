"""python -m mtlfast.sweep: crash safety (SIGKILL, SIGINT), resume, config refusal, CLI errors.

Tolerance for comparing a killed-and-resumed sweep with an uninterrupted one: rtol 1e-5 / atol 1e-6 on every
loss and score (a resumed run may share its model array with different neighbours; see test_train.py).
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mtlfast.sweep import main

ROOT = Path(__file__).resolve().parents[2]
RTOL, ATOL = 1e-5, 1e-6


def _require_slow_opt_in(request):
    """Slow tests run only when asked for (``-m slow`` or MTLFAST_RUN_SLOW=1): the CI command is plain pytest."""
    expr = request.config.getoption("-m") or ""
    if os.environ.get("MTLFAST_RUN_SLOW") != "1" and not ("slow" in expr and "not slow" not in expr):
        pytest.skip("slow: run with `pytest -m slow` or MTLFAST_RUN_SLOW=1")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    from mtlfast.data.synthetic import generate_suite

    root = tmp_path_factory.mktemp("suite")
    generate_suite(root, seed=0)
    return root


def tiny_args(suite, out, steps_pair=60):
    return ["--data", str(suite), "--tasks", "coarse", "entity", "keep", "--steps-single", "30", "--steps-pair",
            str(steps_pair), "--checkpoint-every", "10", "--eval-every", "20", "--hidden", "16", "--batch-size", "16",
            "--threads", "1", "--no-progress", "--out", str(out)]


def sweep_cmd(args):
    return [sys.executable, "-m", "mtlfast.sweep", *args]


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def db_rows(out):
    db = sqlite3.connect(str(Path(out) / "mtlfast.db"))
    runs = db.execute("SELECT run_id, kind, tasks, seed, steps, status, step FROM runs ORDER BY run_id").fetchall()
    losses = db.execute("SELECT run_id, task, step, loss FROM losses ORDER BY run_id, task, step").fetchall()
    scores = db.execute("SELECT run_id, task, split, step, metric, value FROM scores "
                        "ORDER BY run_id, task, split, step, metric").fetchall()
    dup = db.execute("SELECT COUNT(*) - (SELECT COUNT(*) FROM (SELECT DISTINCT run_id, task, step FROM losses)) "
                     "FROM losses").fetchone()[0]
    db.close()
    assert dup == 0
    return runs, losses, scores


def assert_same_db(a, b):
    runs_a, losses_a, scores_a = db_rows(a)
    runs_b, losses_b, scores_b = db_rows(b)
    assert runs_a == runs_b
    assert [r[:3] for r in losses_a] == [r[:3] for r in losses_b]
    np.testing.assert_allclose([r[3] for r in losses_a], [r[3] for r in losses_b], rtol=RTOL, atol=ATOL)
    assert [r[:5] for r in scores_a] == [r[:5] for r in scores_b]
    np.testing.assert_allclose([r[5] for r in scores_a], [r[5] for r in scores_b], rtol=RTOL, atol=ATOL)


def wait_for(out, proc, predicate, timeout=240):
    db_path = Path(out) / "mtlfast.db"
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, "the sweep finished before it could be interrupted"
        if db_path.exists():
            try:
                db = sqlite3.connect(str(db_path), timeout=1)
                rows = db.execute("SELECT kind, status, step FROM runs").fetchall()
                db.close()
            except sqlite3.Error:
                rows = []
            if rows and predicate(rows):
                return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the sweep")


def test_sigkill_mid_run_then_resume_equals_uninterrupted(suite, tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    assert main(tiny_args(suite, ref, steps_pair=80)) == 0
    proc = subprocess.Popen(sweep_cmd(tiny_args(suite, killed, steps_pair=80)), cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Kill after the singles are done and the pairs have a checkpoint at step >= 30: mid-run, with loss rows
        # beyond the checkpoint already committed.
        wait_for(killed, proc, lambda rows: sum(s == "done" for _, s, _ in rows) >= 3
                 and any(k == "pair" and s != "done" and st >= 30 for k, s, st in rows))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    runs, _, _ = db_rows(killed)
    assert any(r[5] != "done" for r in runs), "nothing left to resume"
    assert list((killed / "checkpoints").glob("*.pt"))
    done = subprocess.run(sweep_cmd(tiny_args(suite, killed, steps_pair=80)), cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in done.stderr
    assert_same_db(ref, killed)
    assert not list((killed / "checkpoints").glob("*"))  # finished runs leave no checkpoint behind
    for name in ("gains.csv", "runs.csv", "scores.csv", "curves.csv", "features.csv", "config.json", "report.md"):
        assert (killed / name).stat().st_size > 0, name
    assert (killed / "features.csv").read_text() == (ref / "features.csv").read_text()
    gains = (killed / "gains.csv").read_text().splitlines()
    assert gains[0] == "main,aux,f1_single,f1_pair,gain,label" and len(gains) == 1 + 6


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_sigint_and_sigterm_checkpoint_and_exit_130(suite, tmp_path, sig):
    out = tmp_path / "int"
    proc = subprocess.Popen(sweep_cmd(tiny_args(suite, out)), cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(out, proc, lambda rows: any(s == "running" for _, s, _ in rows))
        time.sleep(0.3)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Resume with the same command" in err and "Traceback" not in err
    assert list((out / "checkpoints").glob("*.pt"))
    assert main(tiny_args(suite, out)) == 0
    runs, _, _ = db_rows(out)
    assert all(r[5] == "done" for r in runs)


def test_changed_config_is_refused(suite, tmp_path, capsys):
    out = tmp_path / "cfg"
    args = tiny_args(suite, out)
    args[args.index("--steps-pair") + 1] = "10"
    args[args.index("--steps-single") + 1] = "10"
    args[args.index("--eval-every") + 1] = "0"
    assert main(args) == 0
    capsys.readouterr()
    changed = list(args)
    changed[changed.index("--steps-pair") + 1] = "20"
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "steps_pair: 10 (stored) vs 20 (now)" in err
    # Where and how it runs may change; finished runs are skipped.
    same = args + ["--array-size", "2", "--checkpoint-every", "5"]
    assert main(same) == 0
    assert "6 run(s) already done" in capsys.readouterr().err


def test_bad_task_name_does_not_lock_the_folder(suite, tmp_path, capsys):
    """A typo in --tasks exits 2 and stores nothing, so the corrected command runs in the same folder."""
    out = tmp_path / "typo"
    args = tiny_args(suite, out)
    args[args.index("--steps-pair") + 1] = "10"
    args[args.index("--steps-single") + 1] = "10"
    assert main(args + ["--tasks", "nosuch"]) == 2
    assert "no task named nosuch" in capsys.readouterr().err
    assert not (out / "config.json").exists()
    assert main(args) == 0


@pytest.mark.parametrize("argv, message", [
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--paper", "--steps-single", "5"], "--paper sets the step counts"),
    (["--paper", "--paper-logs"], "contradict"),
    (["--seeds", "0"], "--seeds: expected a positive integer, got 0"),
    (["--precision", "fp16"], "invalid choice: 'fp16'"),
    (["--steps-pair", "many"], "invalid int value: 'many'"),
    (["--dropout", "1.5"], "--dropout: expected a probability"),
    (["--data", "/no/such/folder"], "--data /no/such/folder: no such file or folder"),
])
def test_cli_errors_exit_2_without_traceback(argv, message, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.startswith("python -m mtlfast.sweep: error: ")


def test_cli_errors_from_data_and_toml(suite, tmp_path, capsys):
    assert main(["--data", str(suite), "--tasks", "coarse", "nope", "--out", str(tmp_path / "a")]) == 2
    assert "no task named nope" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('steps_single = 10\nstep_pair = 20\n')
    assert main(["--config", str(bad), "--out", str(tmp_path / "b")]) == 2
    assert "unknown key 'step_pair'" in capsys.readouterr().err
    bad.write_text('steps_single = "ten"\n')
    assert main(["--config", str(bad), "--out", str(tmp_path / "c")]) == 2
    assert "key 'steps_single': expected an integer, got 'ten'" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "file not found" in capsys.readouterr().err


@pytest.mark.parametrize("bad_name", ["coarse+entity", "coarse@1"])
def test_task_folder_named_like_a_run_id_is_refused(suite, tmp_path, capsys, bad_name):
    """A task folder "a+b" would take the run id of the pair run of a and b (the store used to drop one run)."""
    import shutil

    data = tmp_path / "data"
    for name in ("coarse", "entity"):
        shutil.copytree(suite / name, data / name)
    shutil.copytree(suite / "keep", data / bad_name)
    out = tmp_path / "o"
    assert main(["--data", str(data), "--steps-single", "2", "--steps-pair", "2", "--no-progress", "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m mtlfast.sweep: error: task names must not contain '+' or '@'"), err
    assert repr(bad_name) in err and "Traceback" not in err
    assert not (out / "mtlfast.db").exists()


def test_backend_from_toml_is_validated(tmp_path, capsys):
    from mtlfast.config import BACKENDS
    from mtlfast.ops import BACKENDS as OPS_BACKENDS

    assert BACKENDS == OPS_BACKENDS  # the config accepts exactly what the kernels accept
    bad = tmp_path / "bad.toml"
    bad.write_text('backend = "cpuu"\n')
    assert main(["--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--backend: expected one of 'auto', 'cpu', 'cuda', 'reference', got 'cpuu'" in err
    assert not (tmp_path / "o").exists()  # refused before any work
    bad.write_text('backend = "cuda"\n')
    assert main(["--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "--backend cuda needs --device cuda" in capsys.readouterr().err


def test_toml_then_flags(tmp_path):
    from mtlfast.sweep import parse_config

    f = tmp_path / "c.toml"
    f.write_text('steps-single = 7\nsteps_pair = 9\ntasks = ["a", "b"]\nembeddings = "x.txt"\n')
    cfg = parse_config(["--config", str(f), "--steps-pair", "11"])
    assert (cfg.steps_single, cfg.steps_pair, cfg.tasks, cfg.embeddings) == (7, 11, ["a", "b"], "x.txt")
    cfg = parse_config(["--paper"])
    assert cfg.resolved_steps() == (25_000, 50_000)
    assert parse_config(["--paper-logs"]).resolved_steps() == (50_000, 100_000)


def test_default_data_is_generated_and_every_file_written(tmp_path, capsys):
    out = tmp_path / "default"
    rc = main(["--tasks", "coarse", "entity", "keep", "--steps-single", "5", "--steps-pair", "5", "--hidden", "16",
               "--no-progress", "--out", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "Generating the synthetic default suite" in err and "REDUCED" in err
    assert (out / "data" / "coarse" / "train.tsv").exists()
    for name in ("mtlfast.db", "config.json", "gains.csv", "runs.csv", "scores.csv", "curves.csv", "features.csv",
                 "heatmap.png", "report.md"):
        assert (out / name).exists(), name
    import json

    cfg = json.loads((out / "config.json").read_text())
    assert cfg["steps_single"] == 5 and cfg["data"] == [] and cfg["tasks"] == ["coarse", "entity", "keep"]
    header = (out / "features.csv").read_text().splitlines()[0]
    assert header == "task,size,n_labels,tokens_per_type,oov_rate,label_entropy,frobenius_norm,jsd_train_test"


@pytest.mark.slow
def test_no_argument_sweep_runs_to_completion(tmp_path, request):
    """The README's main command, exactly (default steps; minutes)."""
    _require_slow_opt_in(request)
    r = subprocess.run(sweep_cmd([]), cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "mtlfast-out"
    assert len((out / "gains.csv").read_text().splitlines()) == 1 + 42
    assert (out / "heatmap.png").stat().st_size > 10_000


def test_protocol_is_stored_and_a_resume_with_another_is_refused(suite, tmp_path, capsys):
    """--data runs default to the original protocol; it is part of the stored config, so the same folder with
    --protocol clean is refused (exit 2) and names the difference."""
    import json

    out = tmp_path / "proto"
    args = tiny_args(suite, out)
    args[args.index("--steps-pair") + 1] = "10"
    args[args.index("--steps-single") + 1] = "10"
    args[args.index("--eval-every") + 1] = "0"
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["protocol"] == "original"
    assert "protocol: original" in capsys.readouterr().err
    assert main(args + ["--protocol", "clean"]) == 2
    err = capsys.readouterr().err
    assert "protocol: 'original' (stored) vs 'clean' (now)" in err
    assert main(args + ["--protocol", "original"]) == 0  # the same protocol, said explicitly, resumes

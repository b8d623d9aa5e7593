"""``python -m mtlfast.sweep --pairs N``: a budgeted sweep end to end, scored against the full sweep.

The fast test runs the generated default suite (7 tasks, 21 pairs) at reduced steps twice, in full and with
``--pairs 7``; the slow one does the same at the default steps (the README's command with ``--pairs 7``).
"""

import csv
import math
import os

import numpy as np
import pytest

from mtlfast.sweep import main

SMALL = ["--steps-single", "40", "--steps-pair", "80", "--hidden", "16", "--batch-size", "16", "--threads", "1",
         "--no-progress"]


def _require_slow_opt_in(request):
    expr = request.config.getoption("-m") or ""
    if os.environ.get("MTLFAST_RUN_SLOW") != "1" and not ("slow" in expr and "not slow" not in expr):
        pytest.skip("slow: run with `pytest -m slow` or MTLFAST_RUN_SLOW=1")


def _rows(path):
    with open(path) as fh:
        return {(r["main"], r["aux"]): r for r in csv.DictReader(fh)}


def _main_majority(budget, hidden):
    by = {}
    for (m, _a), r in budget.items():
        if r["status"] == "measured" and r["gain"] not in ("", "nan"):
            by.setdefault(m, []).append(float(r["gain"]) > 0)
    return {p: int(bool(by.get(p[0])) and np.mean(by[p[0]]) > 0.5) for p in hidden}


def _check(full_dir, budget_dir, n_pairs, capsys_err):
    full, budget = _rows(full_dir / "gains.csv"), _rows(budget_dir / "gains.csv")
    assert set(full) == set(budget) and len(full) == 42
    status = [r["status"] for r in budget.values()]
    assert status.count("measured") == 2 * n_pairs and status.count("predicted") == 42 - 2 * n_pairs
    # measured gains are the full sweep's (same runs: same seed, tasks and steps)
    for p, r in budget.items():
        if r["status"] == "measured":
            a, b = float(r["gain"]), float(full[p]["gain"])
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-3, abs=1e-3), p
            assert float(r["p_gain"]) in (0.0, 1.0) or math.isnan(float(r["p_gain"]))
        else:
            assert r["gain"] == "nan" and 0.0 < float(r["p_gain"]) < 1.0
            assert int(r["label"]) == int(float(r["p_gain"]) > 0.5)
    # every pair run trained by the budgeted sweep; none of the others
    with open(budget_dir / "runs.csv") as fh:
        runs = list(csv.DictReader(fh))
    assert sum(r["kind"] == "pair" for r in runs) == n_pairs and sum(r["kind"] == "single" for r in runs) == 7
    assert all(r["status"] == "done" for r in runs)
    report = (budget_dir / "report.md").read_text()
    assert f"{n_pairs} of 21 pair runs trained" in report and f"{21 - n_pairs} run(s) saved" in report
    assert (budget_dir / "heatmap.png").stat().st_size > 10_000
    assert f"{n_pairs} of 21 pair runs trained" in capsys_err
    # the predicted labels scored against the full sweep's
    hidden = [p for p, r in budget.items() if r["status"] == "predicted" and full[p]["gain"] != "nan"]
    truth = np.array([float(full[p]["gain"]) > 0 for p in hidden])
    pred = np.array([int(budget[p]["label"]) for p in hidden])
    mm = _main_majority(budget, hidden)
    acc = float((pred == truth).mean())
    acc_mm = float((np.array([mm[p] for p in hidden]) == truth).mean())
    return acc, acc_mm, len(hidden)


def test_budgeted_default_suite_small_steps(tmp_path, capsys):
    full, budget = tmp_path / "full", tmp_path / "budget"
    assert main([*SMALL, "--out", str(full)]) == 0
    capsys.readouterr()
    assert main([*SMALL, "--pairs", "7", "--out", str(budget)]) == 0
    err = capsys.readouterr().err
    assert "round 1/" in err
    acc, acc_mm, n = _check(full, budget, 7, err)
    print(f"small steps: predicted-label accuracy {acc:.3f} on {n} directed pairs (main-task majority {acc_mm:.3f})")
    assert 0.0 <= acc <= 1.0
    # resuming the finished budgeted sweep trains nothing and keeps the same gains table
    before = (budget / "gains.csv").read_text()
    assert main([*SMALL, "--pairs", "7", "--out", str(budget)]) == 0
    assert (budget / "gains.csv").read_text() == before


@pytest.mark.parametrize("args,message", [
    (["--pairs", "-1"], "--pairs"),
    (["--pairs", "3", "--pair-budget", "0.5"], "contradict"),
    (["--pair-budget", "2"], "--pair-budget"),
])
def test_budget_flag_errors_exit_2(tmp_path, capsys, args, message):
    assert main([*SMALL, *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_budgeted_default_suite_default_steps_scored_against_the_full_sweep(tmp_path, capsys, request):
    """The README's default sweep, once in full and once with --pairs 7 (a third of the 21 pairs)."""
    _require_slow_opt_in(request)
    full, budget = tmp_path / "full", tmp_path / "budget"
    assert main(["--no-progress", "--threads", "1", "--out", str(full)]) == 0
    capsys.readouterr()
    assert main(["--no-progress", "--threads", "1", "--pairs", "7", "--out", str(budget)]) == 0
    acc, acc_mm, n = _check(full, budget, 7, capsys.readouterr().err)
    print(f"default steps: predicted-label accuracy {acc:.3f} on {n} directed pairs (main-task majority "
          f"{acc_mm:.3f})")
    assert acc >= acc_mm

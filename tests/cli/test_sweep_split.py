"""Splitting a sweep: more seeds for the single-task runs than for the pairs (``--single-seeds``), every single run
planned before the pairs (so that model arrays cut from the front train the singles first), and the single-task
seed-noise columns of gains.csv (checked against Python's statistics module)."""

import csv
import math
import statistics
from pathlib import Path

import pytest

from mtlfast.config import ConfigError, build_config
from mtlfast.sweep import _plan, main
from tinysweep import suite, tiny_args  # noqa: F401 - suite: a pytest fixture


def test_plan_puts_every_single_run_first():
    cfg = build_config(flag_values={"data": ["x"], "seeds": 2, "single_seeds": 3, "seed": 5})
    specs = _plan(["a", "b", "c"], cfg)
    kinds = [s.kind for s in specs]
    assert kinds == ["single"] * 9 + ["pair"] * 6
    assert [(s.tasks, s.seed) for s in specs[:9]] == [((t,), s) for s in (5, 6, 7) for t in "abc"]
    assert [(s.tasks, s.seed) for s in specs[9:]] == [(p, s) for s in (5, 6) for p in (("a", "b"), ("a", "c"),
                                                                                      ("b", "c"))]
    assert len({s.run_id for s in specs}) == len(specs)
    # the default: as many single seeds as pair seeds
    cfg = build_config(flag_values={"data": ["x"], "seeds": 2})
    assert sum(s.kind == "single" for s in _plan(["a", "b", "c"], cfg)) == 6
    assert cfg.science()["single_seeds"] == 2


def test_budget_rounds_use_the_same_plan():
    from mtlfast.train import plan_runs

    specs = plan_runs(["a", "b", "c"], 1, 2, 3, 10, 20, pairs=[("c", "a")], singles=False)
    assert [(s.run_id, s.steps) for s in specs] == [("a+c@1", 20), ("a+c@2", 20)]


def test_single_seeds_below_seeds_is_refused(tmp_path, capsys):
    assert main(["--seeds", "3", "--single-seeds", "2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m mtlfast.sweep: error: --single-seeds: expected an integer >= --seeds (3)")
    with pytest.raises(ConfigError):
        build_config(flag_values={"single_seeds": -1})


def test_sweep_with_more_single_seeds(suite, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(tiny_args(suite, out, "--single-seeds", "3", "--array-size", "4")) == 0
    with open(out / "runs.csv") as fh:
        runs = list(csv.DictReader(fh))
    assert [r["kind"] for r in runs] == ["single"] * 9 + ["pair"] * 3
    assert {r["seed"] for r in runs if r["kind"] == "pair"} == {"0"}
    with open(out / "scores.csv") as fh:
        f1 = {(r["run_id"], r["task"]): float(r["value"]) for r in csv.DictReader(fh)
              if r["split"] == "test" and r["metric"] == "f1_micro_no_o" and int(r["step"]) == int(
                  {"single": 20, "pair": 30}[r["kind"]])}
    with open(out / "gains.csv") as fh:
        gains = list(csv.DictReader(fh))
    assert len(gains) == 6
    for g in gains:
        main_task, aux = g["main"], g["aux"]
        pair_id = "+".join(t for t in ("coarse", "entity", "keep") if t in (main_task, aux)) + "@0"
        singles = [f1[(f"{main_task}@{s}", main_task)] for s in range(3)]
        assert float(g["f1_single"]) == pytest.approx(singles[0])  # seed 0 against seed 0
        assert float(g["f1_pair"]) == pytest.approx(f1[(pair_id, main_task)])
        assert int(g["n_single_seeds"]) == 3
        sd = statistics.stdev(singles)
        assert float(g["f1_single_sd"]) == pytest.approx(sd)
        if math.isfinite(float(g["beyond_single_noise"])):
            assert int(float(g["beyond_single_noise"])) == int(abs(float(g["f1_pair"]) - statistics.fmean(singles))
                                                               > 2 * sd)
    # the number of single seeds is science: a resume with another is refused
    capsys.readouterr()
    assert main(tiny_args(suite, out, "--single-seeds", "2")) == 2
    assert "single_seeds: 3 (stored) vs 2 (now)" in capsys.readouterr().err


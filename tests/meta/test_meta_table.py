"""The 42-column pair table, reading sweep CSVs, division by zero, labels."""

import csv
import math

import numpy as np
import pytest

from fakesweep import write_fake_sweep  # tests/fakesweep.py
from mtlfast.meta.table import (CURVE_FEATURES, DATA_FEATURES, TASK_FEATURES, curve_feature_table, pair_table,
                                read_data_features, read_gains, read_single_curves, safe_ratio)


def test_42_named_columns_and_values(tmp_path):
    truth = write_fake_sweep(tmp_path, n_tasks=4)
    gains = read_gains(tmp_path / "gains.csv")
    feats = read_data_features(tmp_path / "features.csv")
    for t, d in curve_feature_table(read_single_curves(tmp_path / "curves.csv")).items():
        feats[t].update(d)
    tab = pair_table(gains, feats)
    assert len(TASK_FEATURES) == 14
    assert tab.X.shape == (12, 42)
    assert tab.columns[:3] == ["main_size", "aux_size", "ratio_size"]
    assert set(tab.groups) == set(TASK_FEATURES) and all(len(v) == 3 for v in tab.groups.values())
    i = tab.pairs.index(("task1", "task3"))
    j = tab.columns.index("ratio_size")
    s1, s3 = truth["features"]["task1"]["size"], truth["features"]["task3"]["size"]
    assert tab.X[i, j] == pytest.approx(s1 / s3)
    assert tab.X[i, tab.columns.index("aux_oov_rate")] == pytest.approx(truth["features"]["task3"]["oov_rate"])
    g = next(r for r in truth["gains"] if r["main"] == "task1" and r["aux"] == "task3")
    assert tab.gains[i] == pytest.approx(g["gain"])
    assert tab.y[i] == int(g["gain"] > 0)


def test_curve_features_from_curves_csv_recover_known_parameters(tmp_path):
    truth = write_fake_sweep(tmp_path, n_tasks=3, steps_single=20000)
    cf = curve_feature_table(read_single_curves(tmp_path / "curves.csv"))
    for t, p in truth["params"].items():
        # curves.csv holds a ln(c x + 1) + b over entries; every 10th entry is fitted, so c is per 10 entries
        assert cf[t]["curve_a"] == pytest.approx(p["a"], rel=0.05)
        assert cf[t]["curve_c"] == pytest.approx(p["c"] * 10, rel=0.2)


def test_safe_ratio_division_by_zero():
    r = safe_ratio([2.0, 0.0, -3.0, 1.0, np.nan], [4.0, 0.0, 0.0, -0.5, 1.0])
    assert r[0] == 0.5
    assert r[1] == 1.0  # 0 / 0: equal values
    assert r[2] == -2.0  # x / 0: sign of x times the largest finite |ratio| (here |1 / -0.5| = 2)
    assert r[3] == -2.0
    assert math.isnan(r[4])


def test_label_beyond_noise_is_used_when_present(tmp_path):
    p = tmp_path / "gains.csv"
    with open(p, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["main", "aux", "f1_single", "f1_pair", "gain", "label", "gain_sd", "n_seeds", "label_beyond_noise"])
        w.writerow(["a", "b", 0.5, 0.51, 2.0, 1, 3.0, 3, 0])
        w.writerow(["b", "a", 0.5, 0.6, 20.0, 1, 1.0, 3, 1])
    g = read_gains(p)
    assert [r["label"] for r in g] == [0, 1]
    tab = pair_table(g, {"a": {"size": 1.0}, "b": {"size": 2.0}})
    assert tab.label_source == "label_beyond_noise"
    assert list(tab.y) == [0, 1]


def test_seeds_are_averaged_and_pair_curves_ignored(tmp_path):
    p = tmp_path / "curves.csv"
    with open(p, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run_id", "kind", "tasks", "seed", "task", "step", "loss"])
        for seed, base in ((0, 1.0), (1, 3.0)):
            for step in (10, 20, 30):
                w.writerow([f"a@{seed}", "single", "a", seed, "a", step, base + step / 10])
        w.writerow(["a+b@0", "pair", "a+b", 0, "a", 10, 99.0])
    c = read_single_curves(p)
    assert list(c) == ["a"]
    np.testing.assert_allclose(c["a"][1], [3.0, 4.0, 5.0])


def test_nan_columns_are_dropped_with_a_warning():
    feats = {"a": {"size": 1.0, "curve_a": math.nan}, "b": {"size": 2.0, "curve_a": -0.5}}
    tab = pair_table([{"main": "a", "aux": "b", "gain": 1.0, "label": 1},
                      {"main": "b", "aux": "a", "gain": -1.0, "label": 0}], feats)
    with pytest.warns(RuntimeWarning, match="dropped"):
        t2 = tab.dropna_columns()
    assert t2.columns == ["main_size", "aux_size", "ratio_size"]
    assert t2.features == ["size"]


def test_undefined_gains_are_left_out():
    feats = {"a": {"size": 1.0}, "b": {"size": 2.0}, "c": {"size": 3.0}}
    gains = [{"main": "a", "aux": "b", "gain": float("nan"), "label": 0},
             {"main": "b", "aux": "a", "gain": 1.0, "label": 1},
             {"main": "c", "aux": "a", "gain": -1.0, "label": 0}]
    tab = pair_table(gains, feats)
    assert tab.pairs == [("b", "a"), ("c", "a")]
    assert any("undefined gain" in n for n in tab.notes)

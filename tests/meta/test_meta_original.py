"""The original protocol's meta-classifier (mtlfast.meta.original) against scikit-learn written the way
experiments.ipynb writes it: DictVectorizer over pair dicts, MinMaxScaler on all rows, cross_val_score with a
shuffled KFold per repetition and scoring='f1'."""

import math
import warnings

import numpy as np
import pytest
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_val_score
from sklearn.preprocessing import MinMaxScaler

from mtlfast.meta.original import original_cv, original_labels, original_pair_matrix


def _task_feats(seed=0, tasks=("t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9")):
    rng = np.random.default_rng(seed)
    feats = ("grad_10", "grad_30", "curve_a", "curve_c")
    return {t: {f: float(rng.normal(1.0, 0.5)) + (3.0 if f == "curve_c" else 0.0) for f in feats} for t in tasks}


def _gains(tf, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for m in tf:
        for a in tf:
            if m != a:
                # a gain that depends on the features, plus noise: the classifier has something to find
                g = 3 * (tf[m]["grad_10"] - tf[a]["curve_a"]) + rng.normal(0, 1)
                out.append({"main": m, "aux": a, "gain": float(g)})
    return out


def _nb_matrix(tf, gains):
    """The notebook's cells 13 and 19: paired_feats over featuredicts (sorted tasks), DictVectorizer."""
    diffs = {g["main"] + "_" + g["aux"]: g["gain"] for g in gains}
    paired = {}
    for mt in sorted(tf):
        for at in sorted(tf):
            if mt == at:
                continue
            d = {}
            for f in tf[mt]:
                d["main_" + f] = tf[mt][f]
                d["aux_" + f] = tf[at][f]
                d["main/aux_" + f] = tf[mt][f] / tf[at][f]
            paired[mt + "_" + at] = d
    v = DictVectorizer(sparse=False)
    seq = list(paired)
    X = v.fit_transform([paired[p] for p in seq])
    y = np.sign([diffs[p] for p in seq])
    return X, y, list(v.feature_names_)


def _nb_cv(X, y, n_repeats, seed, scoring="f1"):
    Xs = MinMaxScaler().fit_transform(X)
    rng = np.random.RandomState(seed)
    means = []
    for _ in range(n_repeats):
        shuffle = KFold(n_splits=5, shuffle=True, random_state=rng.randint(100))
        means.append(cross_val_score(LogisticRegression(solver="liblinear"), Xs, y, cv=shuffle,
                                     scoring=scoring).mean())
    means = np.array(means)
    return means.mean(), means.std()


def test_pair_matrix_equals_dictvectorizer_of_the_notebook_pairs():
    tf = _task_feats()
    gains = _gains(tf)
    pm = original_pair_matrix(gains, tf, ["grad_10", "grad_30", "curve_a", "curve_c"])
    X, y, names = _nb_matrix(tf, gains)
    assert pm["columns"] == names
    np.testing.assert_allclose(pm["X"], X, rtol=1e-15)
    np.testing.assert_array_equal(pm["y"], y)
    assert pm["pairs"][:3] == [("t0", "t1"), ("t0", "t2"), ("t0", "t3")]


@pytest.mark.parametrize("seed", [0, 7])
def test_original_cv_equals_cross_val_score_the_notebook_way(seed):
    tf = _task_feats(seed)
    gains = _gains(tf, seed + 1)
    pm = original_pair_matrix(gains, tf, ["grad_10", "grad_30", "curve_a", "curve_c"])
    X, y, _ = _nb_matrix(tf, gains)
    res = original_cv(pm["X"], pm["y"], n_repeats=12, seed=seed)
    f1, f1_sd = _nb_cv(X, y, 12, seed, "f1")
    acc, acc_sd = _nb_cv(X, y, 12, seed, "accuracy")
    assert res["f1"] == pytest.approx(f1, abs=1e-12) and res["f1_sd"] == pytest.approx(f1_sd, abs=1e-12)
    assert res["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert res["accuracy_sd"] == pytest.approx(acc_sd, abs=1e-12)
    assert res["n_rows"] == 90 and res["n_columns"] == 12 and res["n_gain"] + res["n_loss"] == 90
    assert len(res["seeds"]) == 12 and all(0 <= s < 100 for s in res["seeds"])


def test_scaler_is_fitted_on_all_rows_not_per_fold():
    # one extreme row outside the training folds changes the min-max scale of every fold: with the scaler fitted
    # on all rows (the notebook) the result equals the oracle; scaled per fold it would differ
    tf = _task_feats(3)
    gains = _gains(tf, 4)
    pm = original_pair_matrix(gains, tf, ["grad_10", "grad_30", "curve_a", "curve_c"])
    X = pm["X"].copy()
    X[0] *= 50.0
    res = original_cv(X, pm["y"], n_repeats=5, seed=1)
    f1, _ = _nb_cv(X, pm["y"], 5, 1)
    assert res["f1"] == pytest.approx(f1, abs=1e-12)
    from sklearn.pipeline import make_pipeline

    rng = np.random.RandomState(1)
    per_fold = np.mean([cross_val_score(make_pipeline(MinMaxScaler(), LogisticRegression(solver="liblinear")), X,
                                        pm["y"], cv=KFold(5, shuffle=True, random_state=rng.randint(100)),
                                        scoring="f1").mean() for _ in range(5)])
    assert abs(per_fold - res["f1"]) > 1e-3  # the test can tell the two apart


def test_labels_ties_and_bad_input():
    y, notes = original_labels([1.5, -2.0, 0.0])
    assert y.tolist() == [1, -1, -1] and "exactly 0" in notes[0]
    tf = _task_feats()
    tf["t3"]["grad_10"] = 0.0
    with pytest.raises(ValueError, match="division by zero"):
        original_pair_matrix(_gains(tf), tf, ["grad_10"])
    tf = _task_feats()
    tf["t2"]["curve_c"] = math.nan
    with pytest.raises(ValueError, match="non-finite"):
        original_pair_matrix(_gains(tf), tf, ["curve_c"])
    with pytest.raises(ValueError, match="labels -1/\\+1"):
        original_cv(np.zeros((10, 2)), np.array([0, 1] * 5))


def test_analyze_protocol_original_adds_the_notebook_cv(tmp_path):
    import json

    from fakesweep import write_fake_sweep  # tests/fakesweep.py
    from mtlfast.analyze import analyze
    from mtlfast.meta.curves import curve_features_original
    from mtlfast.meta.table import read_csv, read_data_features, read_gains, read_single_curves

    write_fake_sweep(tmp_path, n_tasks=6)
    fast = {"n_repeats": 4, "outer_repeats": 1, "inner_repeats": 1, "optimistic_repeats": 2, "search": "none"}
    analyze(tmp_path, quiet=True, settings=fast, protocol="original")
    res = json.loads((tmp_path / "original_cv.json").read_text())
    assert res["protocol"] == "original"
    rows = {r["name"].split(" (")[0]: r for r in res["rows"]}
    # the data-feature row, against the notebook's way on features.csv and gains.csv
    feats = read_data_features(tmp_path / "features.csv")
    diffs = {g["main"] + "_" + g["aux"]: g["gain"] for g in read_gains(tmp_path / "gains.csv")}
    paired = {}
    for m in sorted(feats):
        for a in sorted(feats):
            if m != a:
                paired[m + "_" + a] = {k: v for f in feats[m] for k, v in (
                    ("main_" + f, feats[m][f]), ("aux_" + f, feats[a][f]),
                    ("main/aux_" + f, feats[m][f] / feats[a][f]))}
    seq = list(paired)
    X = DictVectorizer(sparse=False).fit_transform([paired[p] for p in seq])
    f1, sd = _nb_cv(X, np.sign([diffs[p] for p in seq]), 4, 0)
    assert rows["data features"]["f1"] == pytest.approx(f1, abs=1e-12)
    assert rows["data features"]["f1_sd"] == pytest.approx(sd, abs=1e-12)
    # curve_features.csv holds the original definitions of the single-task curves
    curves = read_single_curves(tmp_path / "curves.csv")
    got = {r["task"]: r for r in read_csv(tmp_path / "curve_features.csv")[0]}
    for t, (steps, losses) in curves.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = curve_features_original(steps, losses)
        assert float(got[t]["grad_30"]) == pytest.approx(want["grad_30"], rel=1e-12)
        i = int(len(steps) * 0.3)
        assert want["grad_30"] == pytest.approx((losses[i + 1] - losses[i - 1]) / (steps[i + 1] - steps[i - 1]))
    assert "the notebook's CV" in (tmp_path / "report.md").read_text()

"""GainPredictor (scikit-learn conventions) and ``python -m mtlfast.predict``."""

import csv

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from mtlfast.meta import GainPredictor
from fakesweep import write_fake_sweep  # tests/fakesweep.py
from mtlfast.meta.predictor import pairs_for_new_tasks


def _xy(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 6)) * [1, 10, 100, 1, 1, 1000]
    y = (X[:, 0] + X[:, 1] / 10 + rng.normal(size=60) > 0).astype(int)
    return X, y


def test_sklearn_conventions():
    p = GainPredictor(C=0.5, random_state=3)
    assert p.get_params()["C"] == 0.5
    assert not hasattr(p, "model_")  # nothing learned in __init__
    c = clone(p)
    assert c.get_params() == p.get_params()
    X, y = _xy()
    assert p.fit(X, y) is p
    for attr in ("scaler_", "model_", "classes_", "n_features_in_", "coef_", "columns_"):
        assert hasattr(p, attr)
    assert p.n_features_in_ == 6


def test_passes_sklearn_check_estimator():
    import warnings

    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(GainPredictor(), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert not failed


def test_same_as_sklearn_pipeline():
    X, y = _xy(1)
    ours = GainPredictor().fit(X, y)
    ref = make_pipeline(MinMaxScaler(), LogisticRegression()).fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-10)
    assert np.array_equal(ours.predict(X), ref.predict(X))
    assert ours.score(X, y) == ref.score(X, y)


def test_validation_errors():
    X, y = _xy()
    with pytest.raises(ValueError, match="both classes"):
        GainPredictor().fit(X, np.ones_like(y))
    with pytest.raises(ValueError, match="C must be"):
        GainPredictor(C=-1).fit(X, y)
    with pytest.raises(ValueError, match="column names"):
        GainPredictor(columns=["a"]).fit(X, y)
    p = GainPredictor().fit(X, y)
    with pytest.raises(ValueError):
        p.predict(X[:, :3])


def test_pairs_for_new_tasks():
    pairs = pairs_for_new_tasks(["a", "b"], ["n"])
    assert sorted(pairs) == sorted([("n", "a"), ("n", "b"), ("a", "n"), ("b", "n")])


def test_predict_cli_ranks_auxiliary_tasks(tmp_path, capsys):
    from mtlfast.predict import main

    sweep = tmp_path / "sweep"
    write_fake_sweep(sweep, n_tasks=6)
    other = tmp_path / "other"
    write_fake_sweep(other, n_tasks=8, random_state=4)
    # the new tasks: task6 and task7 of the other fake sweep, renamed
    with open(other / "features.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["task"] in ("task6", "task7")]
    newf = tmp_path / "new_features.csv"
    with open(newf, "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "task": r["task"].replace("task", "new")})
    out = tmp_path / "pred.csv"
    # data features only (no curves given): curve features are left out and said so
    assert main(["--out", str(sweep), "--new-task-features", str(newf), "--csv", str(out), "--top", "2"]) == 0
    text = capsys.readouterr().out
    assert "features used (7)" in text and "left out" in text
    assert "new6 as main task" in text
    assert "leave-one-task-out accuracy of this predictor" in text and "majority baseline" in text
    assert "feature groups chosen by leave-one-task-out" in text
    with open(out) as fh:
        pred = list(csv.DictReader(fh))
    assert len(pred) == 2 * (2 * 6) + 2  # each new task: 6+1 as main, 6 as aux
    assert all(0 <= float(r["p_gain"]) <= 1 for r in pred)


def test_predict_cli_errors_are_messages(tmp_path, capsys):
    from mtlfast.predict import main

    assert main(["--sweep", str(tmp_path), "--new-task-features", str(tmp_path / "nope.csv")]) == 2
    assert "mtlfast.predict:" in capsys.readouterr().err


def test_predict_says_plainly_when_no_better_than_the_majority():
    from mtlfast.predict import format_loto

    rows = [{"task": "a", "n_test": 10}, {"task": "b", "n_test": 10}]
    worse = format_loto({"loto": {"accuracy": 0.55, "majority_accuracy": 0.6, "rows": rows}})
    tie = format_loto({"loto": {"accuracy": 0.6, "majority_accuracy": 0.6, "rows": rows}})
    better = format_loto({"loto": {"accuracy": 0.7, "majority_accuracy": 0.6, "rows": rows}})
    assert "0.550" in worse and "majority baseline 0.600" in worse and "20 held-out pairs" in worse
    assert "NO BETTER THAN THE MAJORITY BASELINE" in worse and "NO BETTER" in tie
    assert "NO BETTER" not in better


def test_predict_new_loto_is_computed_without_the_held_out_task(tmp_path):
    """The printed LOTO is the whole procedure (feature search included) refitted without each task in turn:
    changing a task's own gains changes no prediction about that task's pairs in its fold."""
    import numpy as np

    from mtlfast.meta.budget import loto_new_tasks, synthetic_gains
    from mtlfast.meta.table import pair_table

    rows, feats, _ = synthetic_gains(7, 1)
    tab = pair_table(rows, feats)
    res = loto_new_tasks(tab.X, tab.y, tab.pairs, tab.groups, gain=tab.gains)
    assert 0 <= res["accuracy"] <= 1 and len(res["rows"]) == 7
    # a task whose pairs are all flipped: its own fold's predictions cannot see that
    t = "t03"
    flipped = [dict(r, gain=-r["gain"], label=1 - r["label"]) if t in (r["main"], r["aux"]) else r for r in rows]
    tab2 = pair_table(flipped, feats)
    res2 = loto_new_tasks(tab2.X, tab2.y, tab2.pairs, tab2.groups, gain=tab2.gains)
    r1 = next(r for r in res["rows"] if r["task"] == t)
    r2 = next(r for r in res2["rows"] if r["task"] == t)
    assert r1["accuracy"] + r2["accuracy"] == np.float64(1.0) or abs(r1["accuracy"] + r2["accuracy"] - 1) < 1e-12

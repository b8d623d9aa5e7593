"""``python -m mtlfast.stats --protocol original|clean``: the data features by the original analysis' definitions
or the clean ones, equal to what a sweep of the same protocol writes into features.csv for the same tasks.

Oracles: :func:`mtlfast.stats.original_suite_features` (itself tested against the notebook's definitions in
tests/stats/test_original_features.py) and :func:`mtlfast.stats.task_features`, and the sweep's own features.csv.
Floats are compared to 1e-12 relative (the same code computes them; CSV round trip through repr).
"""

import csv
import io
import math

import pytest

from mtlfast.data import load_suite
from mtlfast.stats import DATA_FEATURES, original_suite_features, task_features
from mtlfast.stats.__main__ import main
from tinysweep import suite  # noqa: F401 - a pytest fixture

TASKS = ["coarse", "entity", "keep"]


def _csv(text):
    return {r["task"]: {k: float(r[k]) for k in DATA_FEATURES} for r in csv.DictReader(io.StringIO(text))}


def _same(a, b):
    assert a.keys() == b.keys()
    for task in a:
        for k in DATA_FEATURES:
            x, y = float(a[task][k]), float(b[task][k])
            assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-12, abs=0), (task, k)


def _stats(capsys, suite, *flags):
    assert main([*(str(suite / t) for t in TASKS), "--csv", *flags]) == 0
    return _csv(capsys.readouterr().out)


def test_original_protocol_is_the_original_definitions(suite, capsys):
    got = _stats(capsys, suite, "--protocol", "original")
    tasks = load_suite([suite / t for t in TASKS])
    _same(got, original_suite_features(tasks))
    clean = _stats(capsys, suite)  # the default stays the clean protocol
    _same(clean, {t.name: task_features(t) for t in tasks})
    _same(_stats(capsys, suite, "--protocol", "clean"), clean)
    # the definitions differ (the original counts on [GO] words [EOS] matrices with CountVectorizer terms)
    for task in TASKS:
        assert got[task]["size"] == clean[task]["size"]
        assert got[task]["tokens_per_type"] != clean[task]["tokens_per_type"]
        assert got[task]["frobenius_norm"] != clean[task]["frobenius_norm"]


@pytest.mark.parametrize("protocol", ["original", "clean"])
def test_equals_the_sweeps_features_csv(suite, tmp_path, capsys, protocol):
    from mtlfast.sweep import main as sweep

    out = tmp_path / protocol
    assert sweep(["--data", str(suite), "--tasks", *TASKS, "--steps-single", "1", "--steps-pair", "1", "--hidden",
                  "4", "--batch-size", "4", "--threads", "1", "--no-progress", "--protocol", protocol,
                  "--out", str(out)]) == 0
    capsys.readouterr()
    with open(out / "features.csv") as fh:
        swept = {r["task"]: {k: float(r[k]) if r[k] != "" else math.nan for k in DATA_FEATURES}
                 for r in csv.DictReader(fh)}
    _same(_stats(capsys, suite, "--protocol", protocol), swept)


def test_table_names_the_protocol(suite, capsys):
    assert main([str(suite / "coarse"), "--protocol", "original"]) == 0
    assert "1 task(s), original protocol" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--protocol", "original", "--base", "2"], "--base applies to --protocol clean only"),
    (["--protocol", "tf"], "argument --protocol: invalid choice: 'tf'"),
])
def test_bad_flags_exit_2_with_one_line(suite, capsys, flags, message):
    assert main([str(suite / "coarse"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m mtlfast.stats: error: ") and message in err and len(err.splitlines()) == 1

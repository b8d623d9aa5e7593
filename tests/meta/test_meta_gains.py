"""Gains and their seed tests (mtlfast.meta.gains): the formula, the mean of per-seed gains, Welch's t-test against
SciPy's ttest_ind computed here, task order, and the gains.csv format (nan for an undefined gain)."""

import math

import numpy as np
import pytest
from scipy import stats

from mtlfast.meta.gains import (GAIN_COLUMNS, NOISE_COLUMNS, SEED_COLUMNS, beyond_noise, directed_gains, gain_row,
                                single_noise, task_order, welch, write_gains_csv)


def test_gain_row_formula():
    r = gain_row("a", "b", 0.8, 0.9)
    assert r["gain"] == pytest.approx((0.9 / 0.8 - 1) * 100) and r["label"] == 1
    r = gain_row("a", "b", 0.8, 0.6)
    assert r["gain"] == pytest.approx(-25.0) and r["label"] == 0
    r = gain_row("a", "b", 0.0, 0.6)
    assert math.isnan(r["gain"]) and r["label"] == 0


def test_task_order_is_first_appearance():
    assert task_order([("c",), ("a", "c"), ("b", "a"), ("d",)]) == ["c", "a", "b", "d"]


@pytest.mark.parametrize("seed", range(5))
def test_welch_against_scipy(seed):
    rng = np.random.default_rng(seed)
    pair, single = rng.normal(0.6, 0.02, 4), rng.normal(0.58, 0.03, 5)
    p, verdict = welch(pair, single)
    expected = stats.ttest_ind(pair, single, equal_var=False).pvalue
    assert p == pytest.approx(expected, rel=1e-12)
    want = ("gain" if pair.mean() > single.mean() else "loss") if expected < 0.05 else "noise"
    assert verdict == want
    assert beyond_noise(pair, single) == (p, int(want == "gain"))


def test_welch_edge_cases():
    assert welch([0.5], [0.4, 0.5])[1] == "noise" and math.isnan(welch([0.5], [0.4, 0.5])[0])
    assert welch([0.5, 0.5], [0.5, 0.5]) == (1.0, "noise")
    assert welch([0.6, 0.6], [0.5, 0.5]) == (0.0, "gain")
    assert welch([0.4, 0.4], [0.5, 0.5]) == (0.0, "loss")
    assert welch([0.4, math.nan], [0.5, 0.5])[1] == "noise"


def test_directed_gains_several_seeds():
    single = {("a", 0): 0.5, ("a", 1): 0.52, ("b", 0): 0.8, ("b", 1): 0.7}
    pair = {("a", "b", 0): 0.6, ("a", "b", 1): 0.55, ("b", "a", 0): 0.7, ("b", "a", 1): 0.75}
    rows = {(r["main"], r["aux"]): r for r in directed_gains(single, pair)}
    ab = rows[("a", "b")]
    per_seed = [(0.6 / 0.5 - 1) * 100, (0.55 / 0.52 - 1) * 100]
    assert ab["gain"] == pytest.approx(np.mean(per_seed)) and ab["gain_sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert ab["f1_single"] == pytest.approx(0.51) and ab["n_seeds"] == 2
    assert ab["p_value"] == pytest.approx(stats.ttest_ind([0.6, 0.55], [0.5, 0.52], equal_var=False).pvalue)
    # a seed with only one of the two runs does not count; a pair seed without its single run does not count
    (row,) = directed_gains({("a", 0): 0.5}, {("a", "b", 0): 0.6, ("a", "b", 1): 0.4})
    assert row["n_seeds"] == 1 and row["f1_single"] == 0.5 and row["gain"] == pytest.approx(20.0)
    assert math.isnan(row["gain_sd"]) and math.isnan(row["p_value"]) and row["label_beyond_noise"] == 0
    # extra single-task seeds alone (one pair seed) give the noise columns, not the per-seed ones
    (row,) = directed_gains({("a", 0): 0.5, ("a", 1): 0.4}, {("a", "b", 0): 0.6})
    assert row["f1_single"] == 0.5 and row["gain"] == pytest.approx(20.0) and "n_seeds" not in row
    assert row["n_single_seeds"] == 2 and row["f1_single_all"] == pytest.approx(0.45)
    # one seed: exactly the six columns
    assert list(directed_gains({("a", 0): 0.5}, {("a", "b", 0): 0.6})[0]) == list(GAIN_COLUMNS)


def test_write_gains_csv_header_and_nan(tmp_path):
    rows = directed_gains({("a", 0): 0.0, ("b", 0): 0.5}, {("a", "b", 0): 0.1, ("b", "a", 0): 0.6})
    path = write_gains_csv(rows, tmp_path / "gains.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(GAIN_COLUMNS)
    assert lines[1].startswith("a,b,0.0,0.1,nan,0")
    rows = directed_gains({("a", 0): 0.5, ("a", 1): 0.5}, {("a", "b", 0): 0.6, ("a", "b", 1): 0.6})
    assert write_gains_csv(rows, tmp_path / "g2.csv").read_text().splitlines()[0] == \
        ",".join(GAIN_COLUMNS + SEED_COLUMNS + NOISE_COLUMNS)


def test_single_noise_rule_against_statistics():
    import statistics

    single = [0.81, 0.79, 0.84]
    sd = statistics.stdev(single)  # sample SD (n - 1), an independent implementation
    mean = statistics.fmean(single)
    for f1_pair, expected in ((mean + 2 * sd + 1e-6, 1), (mean + 2 * sd - 1e-6, 0), (mean - 2 * sd - 1e-6, 1),
                              (mean - 1.5 * sd, 0)):
        r = single_noise([f1_pair], single)
        assert r["beyond_single_noise"] == expected
        assert r["f1_single_all"] == pytest.approx(mean) and r["f1_single_sd"] == pytest.approx(sd)
        assert r["n_single_seeds"] == 3
    assert math.isnan(single_noise([0.9], [0.8])["beyond_single_noise"])  # one single seed: no noise estimate
    assert math.isnan(single_noise([math.nan], single)["beyond_single_noise"])
    # the pair's seeds are averaged before the comparison
    assert single_noise([mean + 3 * sd, mean - 3 * sd], single)["beyond_single_noise"] == 0


def test_more_single_seeds_than_pair_seeds():
    """--single-seeds 3 --seeds 1: the gain pairs seed 0 with seed 0; the noise columns use all three single seeds."""
    single = {("a", 0): 0.80, ("a", 1): 0.70, ("a", 2): 0.75, ("b", 0): 0.50, ("b", 1): 0.51, ("b", 2): 0.49}
    pair = {("a", "b", 0): 0.88, ("b", "a", 0): 0.515}
    rows = {(r["main"], r["aux"]): r for r in directed_gains(single, pair)}
    ab, ba = rows[("a", "b")], rows[("b", "a")]
    assert ab["f1_single"] == 0.80 and ab["gain"] == pytest.approx((0.88 / 0.80 - 1) * 100)
    assert ab["f1_single_all"] == pytest.approx(0.75) and ab["f1_single_sd"] == pytest.approx(0.05)
    assert ab["beyond_single_noise"] == 1  # |0.88 - 0.75| = 0.13 > 2 x 0.05
    assert ba["f1_single_sd"] == pytest.approx(0.01) and ba["beyond_single_noise"] == 0  # |0.515 - 0.50| = 1.5 SD
    # one pair seed: no per-seed columns (meta.table would read label_beyond_noise as the label)
    assert not set(SEED_COLUMNS) & set(ab)

"""Curve features on synthetic curves with known gradients and known a, b, c, d."""

import math
import warnings

import numpy as np
import pytest

from mtlfast.meta.curves import CURVE_FEATURES, CurveFitWarning, curve_features, fit_log_curve, gradient_at


def test_gradient_is_the_central_difference_at_int_n_p():
    # quadratic: the central difference is exact, (L[i+1]-L[i-1])/2 = beta + 2 gamma i
    alpha, beta, gamma = 3.0, -0.01, 1e-6
    n = 1234
    i = np.arange(n)
    L = alpha + beta * i + gamma * i**2
    for p in (0.1, 0.2, 0.3, 0.5, 0.7):
        k = int(n * p)
        assert gradient_at(L, p) == pytest.approx(beta + 2 * gamma * k, rel=1e-9, abs=1e-12)
    f = curve_features(L)
    assert f["grad_50"] == pytest.approx(beta + 2 * gamma * int(n * 0.5), rel=1e-9)
    assert list(f) == list(CURVE_FEATURES)


def test_gradient_edge_cases():
    assert math.isnan(gradient_at([1.0, 0.5], 0.5))
    assert gradient_at([3.0, 2.0, 0.0], 0.0) == pytest.approx(-1.5)  # clipped to the first interior entry


@pytest.mark.parametrize("a,b,c", [(-0.5, 3.0, 0.8), (-1.0, 4.2, 0.05), (-0.2, 1.5, 20.0)])
def test_fit_recovers_known_parameters_with_d_1(a, b, c):
    x = np.arange(500.0)
    y = a * np.log(c * x + 1) + b
    fit = fit_log_curve(y)
    assert fit["ok"]
    assert fit["a"] == pytest.approx(a, rel=1e-4)
    assert fit["b"] == pytest.approx(b, rel=1e-4)
    assert fit["c"] == pytest.approx(c, rel=1e-3)


def test_fit_with_d_not_1_recovers_the_identifiable_combinations():
    # a ln(c x + d) + b = a ln(c/d x + 1) + (b + a ln d): only a, c/d and b + a ln d are determined
    a, b, c, d = -0.7, 2.5, 1.2, 3.0
    x = np.arange(500.0)
    y = a * np.log(c * x + d) + b
    fit = fit_log_curve(y)
    assert fit["a"] == pytest.approx(a, rel=1e-4)
    assert fit["c"] == pytest.approx(c / d, rel=1e-3)
    assert fit["b"] == pytest.approx(b + a * math.log(d), rel=1e-4)
    free = fit_log_curve(y, fix_d=False)  # four parameters, as the original: the curve is reproduced
    assert free["ok"]
    yy = free["a"] * np.log(free["c"] * x + free["d"]) + free["b"]
    np.testing.assert_allclose(yy, y, atol=1e-4)
    assert free["a"] == pytest.approx(a, rel=1e-3)
    assert free["c"] / free["d"] == pytest.approx(c / d, rel=1e-2)


def test_curve_features_use_every_10th_of_the_first_5000_entries():
    a, b, c = -0.6, 3.0, 0.3  # per fitted point (x counts the points fitted)
    rng = np.random.default_rng(0)
    n = 8000
    x_fit = np.arange(n) / 10.0  # entry j is fitted point j/10
    L = a * np.log(c * x_fit + 1) + b
    L[5000:] += 5.0  # entries after the first 5,000 must not influence the fit
    L[1::10] += rng.normal(0, 0.5, size=len(L[1::10]))  # nor entries between every 10th
    f = curve_features(L)
    assert f["curve_a"] == pytest.approx(a, rel=1e-4)
    assert f["curve_c"] == pytest.approx(c, rel=1e-3)


def test_noisy_realistic_curve_converges():
    rng = np.random.default_rng(1)
    x = np.arange(5000)
    L = -0.5 * np.log(0.01 * x + 1) + 2.8 + rng.normal(0, 0.05, size=5000)
    f = curve_features(L)
    assert f["curve_a"] == pytest.approx(-0.5, rel=0.05)
    assert np.isfinite(f["curve_c"])


@pytest.mark.parametrize("losses", [[1.0, 1.0, 1.0, 1.0], [2.0, 1.0], [1.0, np.nan, 0.5, 0.4, 0.3], []])
def test_failed_fit_gives_nan_and_a_warning_never_an_exception(losses):
    with pytest.warns(CurveFitWarning):
        f = curve_features(np.array(losses, dtype=float), name="bad")
    assert math.isnan(f["curve_a"]) and math.isnan(f["curve_c"])


def test_successful_fit_does_not_warn():
    x = np.arange(3000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CurveFitWarning)
        curve_features(-0.3 * np.log(0.05 * x + 1) + 2)


def test_short_curves_are_fitted_on_all_entries():
    # a 200-step demo run logs 20 entries: every 10th would leave 2 points; all 20 are used instead,
    # with x still in units of 10 entries (so c is comparable with long curves)
    a, b, c = -0.4, 2.0, 0.5
    j = np.arange(20)
    L = a * np.log(c * j / 10 + 1) + b
    f = curve_features(L)
    assert f["curve_a"] == pytest.approx(a, rel=1e-4)
    assert f["curve_c"] == pytest.approx(c, rel=1e-3)


# ------------------------------------------------------------------------------------------------------
# the original protocol: experiments.ipynb's definitions. The oracle below is the notebook's way written
# out independently: its own curve function, Python slicing of the raw lists, curve_fit with defaults.
# ------------------------------------------------------------------------------------------------------
def _nb_func(x, a, b, c, d):
    return a + b * np.log(np.multiply(x, c) + d)


def _nb_params(xs, ys):
    from scipy.optimize import curve_fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        popt, _ = curve_fit(_nb_func, xs[:5000:10], ys[:5000:10])
    return popt


def _nb_gradient(xs, ys, p):
    i = int(len(xs) * p)
    return (ys[i + 1] - ys[i - 1]) / (xs[i + 1] - xs[i - 1])


def _synthetic_log(n, seed=0, restart_at=None):
    rng = np.random.default_rng(seed)
    xs = [10 * (k + 1) for k in range(n)]
    if restart_at is not None:  # a restarted run: the iteration counter goes back once
        xs = xs[:restart_at] + [10 * (k + 1) for k in range(n - restart_at)]
    ys = [float(3.0 - 0.4 * math.log(0.01 * x + 1.0) + rng.normal(0, 0.02)) for x in xs]
    return xs, ys


@pytest.mark.parametrize("n,restart", [(5000, None), (6200, None), (5010, 37)])
def test_original_curve_features_equal_the_notebook_way(n, restart):
    from mtlfast.meta.curves import curve_features_original

    xs, ys = _synthetic_log(n, seed=n, restart_at=restart)
    f = curve_features_original(np.array(xs), np.array(ys))
    popt = _nb_params(xs, ys)
    assert f["curve_a"] == pytest.approx(popt[1], rel=1e-6)  # the notebook keeps b ...
    assert f["curve_c"] == pytest.approx(popt[2], rel=1e-6)  # ... and c, raw
    np.testing.assert_allclose([f["nb_a"], f["nb_b"], f["nb_c"], f["nb_d"]], popt, rtol=1e-6)
    for p in (0.1, 0.2, 0.3, 0.5, 0.7):
        assert f[f"grad_{int(p * 100)}"] == pytest.approx(_nb_gradient(xs, ys, p), rel=1e-12)


def test_original_fit_uses_only_the_first_5000_entries_and_gradients_all():
    from mtlfast.meta.curves import curve_features_original

    xs, ys = _synthetic_log(8000, seed=3)
    base = curve_features_original(xs, ys)
    ys2 = ys[:5000] + [y + 1.0 + 0.001 * k for k, y in enumerate(ys[5000:])]
    other = curve_features_original(xs, ys2)
    assert other["curve_a"] == base["curve_a"] and other["curve_c"] == base["curve_c"]
    assert other["grad_70"] != base["grad_70"]  # i = 5600 lies in the changed part
    # x is the iteration number: logging every 20 instead of every 10 iterations halves the gradient
    xs2 = [2 * x for x in xs]
    assert curve_features_original(xs2, ys)["grad_30"] == pytest.approx(base["grad_30"] / 2, rel=1e-12)


def test_original_fit_is_levenberg_marquardt_from_ones_not_the_clean_fit():
    # the clean fit fixes d = 1 and starts from a profile search; the original keeps whatever LM reaches from
    # (1, 1, 1, 1): on the same curve the two c differ, while the original equals the oracle
    from mtlfast.meta.curves import curve_features_original

    xs, ys = _synthetic_log(5000, seed=11)
    orig = curve_features_original(xs, ys)
    clean = curve_features(ys)
    assert orig["curve_c"] == pytest.approx(_nb_params(xs, ys)[2], rel=1e-6)
    assert not orig["curve_c"] == pytest.approx(clean["curve_c"], rel=1e-2)


def test_original_curve_failures_give_nan_and_a_warning():
    from mtlfast.meta.curves import curve_features_original, gradient_at_original

    with pytest.warns(CurveFitWarning, match="needs at least 4 points"):
        f = curve_features_original([10, 20, 30], [1.0, 0.9, 0.8])
    assert math.isnan(f["curve_a"]) and math.isnan(f["curve_c"])
    assert f["grad_50"] == pytest.approx((0.8 - 1.0) / (30 - 10))  # i = 1: both neighbours exist
    assert math.isnan(f["grad_10"])  # i = 0: the notebook would wrap around to y[-1]; NaN here
    assert math.isnan(gradient_at_original([10, 10, 10], [1, 2, 3], 0.5))  # x[i+1] == x[i-1]
    assert math.isnan(gradient_at_original([10, 20], [1, 2], 0.5))
    with pytest.raises(ValueError, match="equal length"):
        curve_features_original([1, 2, 3], [1.0, 2.0])

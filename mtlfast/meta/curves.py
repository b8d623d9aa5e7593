"""Learning-curve features of a single-task training-loss curve (Bingel & Søgaard 2017, section 3).

Seven features per task:

- ``grad_10, grad_20, grad_30, grad_50, grad_70``: the slope of the curve at 10, 20, 30, 50 and 70 % of
  training: with ``n`` entries ``L[0..n-1]`` and ``i = int(n * p)`` (the original's positions), the central
  difference between the neighbours of entry ``i``, ``(L[i+1] - L[i-1]) / 2``, in loss per logged entry
  (entries are every 10 steps, so divide by 10 for loss per step; constant factors do not matter to the
  min-max-scaled meta-classifier). The original divided by the difference of the iteration numbers instead
  (:func:`gradient_at_original`).
- ``curve_a, curve_c``: parameters of ``L(x) = a * ln(c * x + d) + b`` fitted by least squares
  (``scipy.optimize.curve_fit``) to every 10th of the first 5,000 entries, ``x = 0, 1, 2, ...`` counting
  the points fitted (x in units of 10 entries). Curves shorter than 500 entries are thinned less (every
  ``max(1, n // 50)``-th entry, at least 50 points or all of them), with x still in units of 10 entries.

Identifiability of c. ``a ln(c x + d) + b = a ln(c/d x + 1) + (b + a ln d)``: only ``c/d`` and
``b + a ln d`` are determined by a curve, so with ``d`` free (as in the original) the fitted ``c`` depends
on the starting values, not the data. We therefore fix ``d = 1`` (``fix_d=True``, the default): ``curve_c``
is then the curve's own time scale ``c/d`` and ``curve_a`` is unchanged. ``fix_d=False`` fits all four
parameters, from this module's start values and with bounds (``c`` then carries no information beyond the
start value); the original's own fit (SciPy's defaults) is :func:`fit_log_curve_original`.

A fit that fails (too few points, non-finite values, no convergence) gives NaN for ``curve_a`` and
``curve_c`` and a :class:`CurveFitWarning`; it never raises.

Two protocols (README, "Original vs clean")
-------------------------------------------
The definitions above are the **clean** protocol (:func:`curve_features`). The **original** protocol
(:func:`curve_features_original`) is what the authors' ``experiments.ipynb`` computes:

- the curve is every entry of ``loss_tr.log`` in file order, ``x`` = the logged iteration number, ``y`` =
  the loss (nothing dropped: a restarted log is read as it is);
- gradients ``(y[i+1] - y[i-1]) / (x[i+1] - x[i-1])`` at ``i = int(n * p)``, ``n`` = all entries (loss per
  iteration);
- ``scipy.optimize.curve_fit(f, x[:5000:10], y[:5000:10])`` with ``f(x, a, b, c, d) = a + b ln(c x + d)``,
  SciPy's defaults: start values all 1, no bounds, hence Levenberg-Marquardt (MINPACK ``lmdif``). The
  notebook keeps ``b`` (the factor of the logarithm) and ``c``. In mtlfast's naming ``L = a ln(c x + d) + b``
  the notebook's ``b`` is ``curve_a``: the original protocol's ``curve_a`` is the notebook's ``b`` and its
  ``curve_c`` the notebook's ``c``, unchanged (not identifiable from the curve, see above: it depends on the
  start values).
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "CURVE_FEATURES",
    "GRADIENT_POINTS",
    "CurveFitWarning",
    "gradient_at",
    "fit_log_curve",
    "log_curve",
    "curve_features",
    "ORIGINAL_FIT_FIRST",
    "ORIGINAL_FIT_EVERY",
    "original_log_curve",
    "fit_log_curve_original",
    "gradient_at_original",
    "curve_features_original",
]

GRADIENT_POINTS = (0.1, 0.2, 0.3, 0.5, 0.7)
CURVE_FEATURES = ("grad_10", "grad_20", "grad_30", "grad_50", "grad_70", "curve_a", "curve_c")

#: the original fitted every FIT_EVERY-th entry of the first FIT_FIRST entries
FIT_FIRST = 5000
FIT_EVERY = 10
#: short curves are thinned less, so that at least this many points are fitted
MIN_FIT_POINTS = 50
#: bounds of the log-curve parameters (a, b, c[, d]); c and d must keep c x + d > 0
_C_BOUNDS = (1e-8, 1e6)
_D_BOUNDS = (1e-8, 1e6)


class CurveFitWarning(RuntimeWarning):
    """A learning-curve fit failed; its parameters are NaN."""


def log_curve(x, a, b, c, d=1.0):
    """``a * ln(c * x + d) + b``."""
    return a * np.log(c * np.asarray(x, dtype=float) + d) + b


def gradient_at(losses, p):
    """Central difference ``(L[i+1] - L[i-1]) / 2`` at ``i = int(n * p)`` (loss per logged entry).

    ``i`` is clipped to ``[1, n-2]``; fewer than 3 entries give NaN.
    """
    L = np.asarray(losses, dtype=float)
    n = len(L)
    if n < 3:
        return float("nan")
    i = min(max(int(n * p), 1), n - 2)
    return float((L[i + 1] - L[i - 1]) / 2.0)


def _linear_ab(u, y):
    # least squares of y = a u + b for fixed u; returns a, b, sse
    um, ym = u.mean(), y.mean()
    du = u - um
    den = float(du @ du)
    if den <= 0:
        return 0.0, ym, float(((y - ym) ** 2).sum())
    a = float(du @ (y - ym)) / den
    b = ym - a * um
    r = y - (a * u + b)
    return a, b, float(r @ r)


def fit_log_curve(y, x=None, fix_d=True):
    """Least-squares fit of ``y = a ln(c x + d) + b``.

    Start values come from a profile search: for each ``c`` on a log grid (with ``d = 1``) the model is
    linear in ``a, b`` and solved in closed form; the best grid point starts ``curve_fit`` (trust region
    reflective, with bounds ``c, d`` in [1e-8, 1e6]).

    Returns
    -------
    dict with ``a, b, c, d`` (floats; NaN when the fit failed) and ``ok`` (bool), ``message``.
    """
    from scipy.optimize import curve_fit

    y = np.asarray(y, dtype=float)
    x = np.arange(len(y), dtype=float) if x is None else np.asarray(x, dtype=float)
    nan = {"a": np.nan, "b": np.nan, "c": np.nan, "d": np.nan, "ok": False}
    if len(y) < (4 if not fix_d else 3) or not (np.all(np.isfinite(y)) and np.all(np.isfinite(x))):
        return {**nan, "message": f"need >= {4 if not fix_d else 3} finite points, got {len(y)}"}
    if np.ptp(y) == 0:
        return {**nan, "message": "constant curve"}
    xmax = max(float(x.max()), 1.0)
    best = None
    for c in np.logspace(-4, 3, 57) / xmax:
        a, b, sse = _linear_ab(np.log(c * x + 1.0), y)
        if best is None or sse < best[3]:
            best = (a, b, c, sse)
    a0, b0, c0, _ = best
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fix_d:
                popt, _ = curve_fit(
                    lambda xx, a, b, c: log_curve(xx, a, b, c, 1.0),
                    x, y, p0=[a0, b0, c0],
                    bounds=([-np.inf, -np.inf, _C_BOUNDS[0]], [np.inf, np.inf, _C_BOUNDS[1]]),
                    maxfev=20000,
                )
                a, b, c = popt
                d = 1.0
            else:
                popt, _ = curve_fit(
                    log_curve, x, y, p0=[a0, b0, c0, 1.0],
                    bounds=([-np.inf, -np.inf, _C_BOUNDS[0], _D_BOUNDS[0]],
                            [np.inf, np.inf, _C_BOUNDS[1], _D_BOUNDS[1]]),
                    maxfev=20000,
                )
                a, b, c, d = popt
    except Exception as exc:  # scipy raises RuntimeError / ValueError / OptimizeWarning-as-error
        return {**nan, "message": f"{type(exc).__name__}: {exc}"}
    if not np.all(np.isfinite([a, b, c, d])):
        return {**nan, "message": "non-finite parameters"}
    return {"a": float(a), "b": float(b), "c": float(c), "d": float(d), "ok": True, "message": "ok"}


def curve_features(losses, name="curve", fit_first=FIT_FIRST, fit_every=FIT_EVERY, fix_d=True):
    """The seven curve features of one training-loss curve (entries in logging order).

    Parameters
    ----------
    losses : sequence of float
        Training loss, one entry per logging interval (every 10 steps).
    name : str
        Used in the warning when the fit fails.
    fit_first, fit_every : int
        The log curve is fitted to ``losses[:fit_first:fit_every]``.
    fix_d : bool
        See the module docstring.

    Returns
    -------
    dict mapping each name in :data:`CURVE_FEATURES` to a float (NaN where it cannot be computed).
    """
    L = np.asarray(losses, dtype=float)
    out = {f"grad_{int(round(p * 100))}": gradient_at(L, p) for p in GRADIENT_POINTS}
    head = L[:fit_first]
    # short curves (e.g. a 200-step demo sweep logs 20 entries): thin less, so that at least MIN_FIT_POINTS
    # points (or all entries) are fitted; x stays in units of fit_every entries, so c does not depend on this
    stride = max(1, min(fit_every, len(head) // MIN_FIT_POINTS))
    pts = head[::stride]
    x = np.arange(len(pts)) * (stride / fit_every)
    fit = fit_log_curve(pts, x=x, fix_d=fix_d)
    if not fit["ok"]:
        warnings.warn(f"curve fit failed for {name!r}: {fit['message']}; curve_a, curve_c set to NaN",
                      CurveFitWarning, stacklevel=2)
    out["curve_a"] = fit["a"]
    out["curve_c"] = fit["c"]
    return out


# ---------------------------------------------------------------------------------------------------------
# The original protocol: experiments.ipynb's definitions (see the module docstring)
# ---------------------------------------------------------------------------------------------------------

#: the notebook fits ``x[:ORIGINAL_FIT_FIRST:ORIGINAL_FIT_EVERY]`` of the whole log
ORIGINAL_FIT_FIRST = 5000
ORIGINAL_FIT_EVERY = 10


def original_log_curve(x, a, b, c, d):
    """The notebook's curve ``a + b * ln(c * x + d)`` (note: ``a`` is the offset, ``b`` the factor)."""
    return a + b * np.log(c * np.asarray(x, dtype=float) + d)


def fit_log_curve_original(x, y):
    """``scipy.optimize.curve_fit(original_log_curve, x, y)`` with SciPy's defaults, as the notebook.

    Start values all 1, no bounds, so ``curve_fit`` uses Levenberg-Marquardt (``method='lm'``, MINPACK).
    SciPy's runtime warnings during the fit (``log`` of negative numbers at trial points, a covariance
    that cannot be estimated) are silenced: they do not change the result.

    Returns
    -------
    dict with the notebook's ``a, b, c, d`` (floats; NaN when the fit fails), ``ok`` and ``message``.
    """
    from scipy.optimize import curve_fit

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    nan = {"a": np.nan, "b": np.nan, "c": np.nan, "d": np.nan, "ok": False}
    if len(x) != len(y):
        return {**nan, "message": f"x and y differ in length ({len(x)} vs {len(y)})"}
    if len(y) < 4:
        return {**nan, "message": f"curve_fit needs at least 4 points for 4 parameters, got {len(y)}"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                popt, _ = curve_fit(original_log_curve, x, y)
    except Exception as exc:  # RuntimeError (no convergence), ValueError (non-finite input)
        return {**nan, "message": f"{type(exc).__name__}: {exc}"}
    a, b, c, d = (float(v) for v in popt)
    if not np.all(np.isfinite([a, b, c, d])):
        return {**nan, "message": "non-finite parameters"}
    return {"a": a, "b": b, "c": c, "d": d, "ok": True, "message": "ok"}


def gradient_at_original(x, y, p):
    """The notebook's gradient: ``(y[i+1] - y[i-1]) / (x[i+1] - x[i-1])`` at ``i = int(n * p)``.

    NaN where the notebook would fail or wrap around (``i < 1`` or ``i + 1 >= n``) or where
    ``x[i+1] == x[i-1]``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(y)
    i = int(n * p)
    if i < 1 or i + 1 >= n:
        return float("nan")
    dx = x[i + 1] - x[i - 1]
    if dx == 0:
        return float("nan")
    return float((y[i + 1] - y[i - 1]) / dx)


def curve_features_original(iters, losses, name="curve", fit_first=ORIGINAL_FIT_FIRST,
                            fit_every=ORIGINAL_FIT_EVERY):
    """The seven curve features of one training-loss curve, the notebook's way (original protocol).

    Parameters
    ----------
    iters, losses : sequence
        Every logged entry in file order: iteration number and training loss.

    Returns
    -------
    dict: the names of :data:`CURVE_FEATURES` (``curve_a`` = the notebook's ``b``, ``curve_c`` = its ``c``)
    and ``nb_a, nb_b, nb_c, nb_d``, all four fitted parameters of ``a + b ln(c x + d)``. A failed fit gives
    NaN and a :class:`CurveFitWarning`.
    """
    x = np.asarray(iters, dtype=float)
    y = np.asarray(losses, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"curve {name!r}: expected two 1-d sequences of equal length (iterations, losses), "
                         f"got shapes {x.shape} and {y.shape}")
    out = {f"grad_{int(round(p * 100))}": gradient_at_original(x, y, p) for p in GRADIENT_POINTS}
    sel = slice(None, fit_first, fit_every)
    fit = fit_log_curve_original(x[sel], y[sel])
    if not fit["ok"]:
        warnings.warn(f"curve fit failed for {name!r}: {fit['message']}; curve_a, curve_c set to NaN",
                      CurveFitWarning, stacklevel=2)
    out["curve_a"] = fit["b"]
    out["curve_c"] = fit["c"]
    out.update(nb_a=fit["a"], nb_b=fit["b"], nb_c=fit["c"], nb_d=fit["d"])
    return out

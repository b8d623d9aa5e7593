"""Vectorised cross-validation of the meta-classifier: many L2 logistic regressions solved at once.

The paper's protocol is 100 repetitions of 5-fold cross-validation of a min-max-scaled logistic regression on
the 90 x 42 pair table: 500 tiny, independent fits. scikit-learn runs them one after another (about 14 s
here); :func:`fit_logreg_folds` solves all of them together with a batched Newton method in NumPy, in well
under a second, with the same objective as ``LogisticRegression()`` (lbfgs, ``C=1``, intercept not
penalised)::

    minimise_w,b   C * sum_i m_i * log(1 + exp(-s_i (x_i . w + b)))  +  0.5 * ||w||^2

where ``m_i`` is 1 for the fold's training rows and 0 otherwise and ``s_i = +-1`` is the label.

Agreement with scikit-learn
---------------------------
Newton's method here is run to a relative step of ``tol = 1e-10``, i.e. to machine precision; lbfgs in
scikit-learn stops at ``tol=1e-4`` (its default), so its coefficients differ from the exact optimum by about
1e-4 to 1e-3, and its decision values by up to a few 1e-3. Both therefore give the same prediction for every
test point except one whose decision value lies that close to 0 (the decision boundary): in the benchmark
(500 folds, 9,000 test predictions) 4 predictions differed, all with ``|decision| < 4e-3``. The tests compare
per-fold predictions and scores with scikit-learn's loop and allow a differing prediction only where
``|decision| < 1e-2``; with ``LogisticRegression(tol=1e-12)`` the coefficients agree to 1e-4 or better.

Columns are excluded from a fit (feature subsets, recursive feature elimination) by zeroing them: with the
L2 penalty an all-zero column gets a coefficient of exactly 0 and leaves the other coefficients unchanged,
so one batched call fits many different feature subsets.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold

__all__ = [
    "make_folds",
    "fold_scaling",
    "fit_logreg_folds",
    "CVResult",
    "cross_validate",
    "fold_scores",
    "baseline_scores",
    "rfe_ranking",
]

_THREADPOOLS = None


def single_threaded_blas(func):
    """Run ``func`` with one BLAS thread: the batched problems here are many small products, which extra BLAS
    threads only slow down (and on a shared 2-core machine they fight the other processes)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        global _THREADPOOLS
        try:
            if _THREADPOOLS is None:
                from threadpoolctl import ThreadpoolController

                _THREADPOOLS = ThreadpoolController()
            ctx = _THREADPOOLS.limit(limits=1, user_api="blas")
        except Exception:  # pragma: no cover - threadpoolctl missing or failing: run as is
            return func(*args, **kwargs)
        with ctx:
            return func(*args, **kwargs)

    return wrapper


#: Newton iterations stop when the largest parameter step is below this (relative to 1 + |param|).
NEWTON_TOL = 1e-10
NEWTON_MAX_ITER = 100
INTERCEPT_DAMPING = 1e-9


# ----------------------------------------------------------------------------------------------------------
# folds
# ----------------------------------------------------------------------------------------------------------
def make_folds(y, n_splits=5, n_repeats=100, random_state=0, stratified=True):
    """Train/test masks of repeated shuffled k-fold CV.

    Uses scikit-learn's ``RepeatedStratifiedKFold`` (or ``RepeatedKFold`` with ``stratified=False``), so the
    folds are exactly those scikit-learn would use with the same seed.

    Returns
    -------
    train : bool array [n_folds, n_samples]
    test : bool array [n_folds, n_samples]
    """
    y = np.asarray(y)
    n = len(y)
    if stratified:
        counts = np.bincount(y.astype(int), minlength=2)
        # stratification needs every class at least n_splits times; fall back to plain k-fold otherwise
        stratified = counts.min() >= n_splits
    splitter = (RepeatedStratifiedKFold if stratified else RepeatedKFold)(
        n_splits=n_splits, n_repeats=n_repeats, random_state=random_state
    )
    splits = list(splitter.split(np.zeros((n, 1)), y))
    train = np.zeros((len(splits), n), dtype=bool)
    for k, (tr, _te) in enumerate(splits):
        train[k, tr] = True
    return train, ~train


def masks_from_splits(splits, n_samples):
    """Convert a list of ``(train_idx, test_idx)`` into boolean masks ``[n_folds, n_samples]``."""
    train = np.zeros((len(splits), n_samples), dtype=bool)
    test = np.zeros((len(splits), n_samples), dtype=bool)
    for k, (tr, te) in enumerate(splits):
        train[k, tr] = True
        test[k, te] = True
    return train, test


# ----------------------------------------------------------------------------------------------------------
# scaling and fitting
# ----------------------------------------------------------------------------------------------------------
def fold_scaling(X, train):
    """Per-fold min-max parameters of globally pre-scaled data.

    ``X0 = (X - min) / range`` over all rows (an affine map, which per-fold min-max scaling undoes exactly, and
    which keeps values in [0, 1] so that the expanded products in :func:`fit_logreg_folds` lose no precision).
    For fold ``f``: ``lo[f] = min`` and ``d[f] = 1 / range`` of ``X0`` over its training rows (range 0 -> 1,
    as scikit-learn). Scaled features are ``d * (X0 - lo)``.

    Returns ``X0 [n, p]``, ``lo [F, p]``, ``d [F, p]``.
    """
    X = np.asarray(X, dtype=float)
    gmin = X.min(axis=0)
    grng = X.max(axis=0) - gmin
    grng[grng == 0] = 1.0
    X0 = (X - gmin) / grng
    lo = np.where(train[:, :, None], X0[None], np.inf).min(axis=1)
    hi = np.where(train[:, :, None], X0[None], -np.inf).max(axis=1)
    rng = hi - lo
    rng[rng < 10 * np.finfo(float).eps] = 1.0
    return X0, lo, 1.0 / rng


@single_threaded_blas
def fit_logreg_folds(X, y, train, C=1.0, col_mask=None, fold=None, tol=NEWTON_TOL, max_iter=NEWTON_MAX_ITER,
                     scaling=None):
    """Fit min-max scaling + L2 logistic regression for many (fold, column subset) combinations at once.

    Same objective and result as per-fold min-max scaling followed by a plain batched Newton fit (the test
    oracle ``tests/cv_oracle.py``: ``fit_logreg_batch(minmax_scale_folds(X, train), ...)``), solved in
    the coordinates of the globally pre-scaled data ``X0`` instead: with fold scaling ``x' = d (x0 - lo)``,
    ``w' . x' + b' = beta . x0 + beta_0`` for ``beta = d w'`` (the shift ``lo`` is absorbed by the free,
    unpenalised intercept), and the penalty ``0.5 |w'|^2`` becomes ``0.5 sum_j beta_j^2 / d_j^2``. So every
    fit shares the design ``[x0, 1]`` and differs only in its row weights and diagonal penalty: one GEMM
    ``S @ O`` (``S [B, n]`` Newton weights, ``O [n, (p+1)^2]`` outer products computed once) gives all
    Hessians. Excluded columns are fixed at 0 (their Hessian rows replaced by the identity, gradient by 0).

    Parameters
    ----------
    X : array [n, p] (raw features); y : 0/1 array [n]
    train : bool array [F, n]: training rows of every fold
    col_mask : bool array [B, p] or [p], optional
    fold : int array [B], optional: the fold of every fit (default: fit ``b`` uses fold ``b``)
    scaling : tuple, optional: precomputed :func:`fold_scaling` output

    Returns
    -------
    coef : [B, p] (on each fold's min-max-scaled features); intercept : [B]; decision : [B, n]; n_iter : int
    """
    X0, lo_f, d_f = scaling if scaling is not None else fold_scaling(X, train)
    n, p = X0.shape
    F = train.shape[0]
    fold = np.arange(F) if fold is None else np.asarray(fold)
    B = len(fold)
    d = d_f[fold]
    keep = np.ones((B, p + 1), dtype=bool)
    if col_mask is not None:
        keep[:, :p] = np.broadcast_to(np.asarray(col_mask, dtype=bool), (B, p))
    m = train[fold].astype(float)
    yf = np.asarray(y, dtype=float)
    q = p + 1
    A0 = np.concatenate([X0, np.ones((n, 1))], axis=1)
    A0T = np.ascontiguousarray(A0.T)
    O = (A0[:, :, None] * A0[:, None, :]).reshape(n, q * q)
    reg = np.zeros((B, q))
    reg[:, :p] = 1.0 / (C * d * d)
    reg[~keep] = 0.0
    keepf = keep.astype(float)
    kk = (keepf[:, :, None] * keepf[:, None, :]).reshape(B, q * q)
    drop_diag = (~keep).astype(float)  # identity rows for excluded columns
    diag = np.arange(q)
    # solving only the k x k system of the k used columns pays when many columns are excluded
    compact = bool(col_mask is not None and keep.sum(axis=1).mean() < 0.8 * q)
    plan = _compact_plan(keep) if compact else None
    beta = np.zeros((B, q))
    Z = np.zeros((B, n))
    obj = _objective_beta(Z, yf, m, beta, reg)
    active = np.ones(B, dtype=bool)
    it = 0
    for it in range(1, max_iter + 1):
        if active.all():
            idx = slice(None)
            ba, Za, ma, obj_a, ra, kka, dda, kpa = beta, Z, m, obj, reg, kk, drop_diag, keepf
        else:
            idx = np.nonzero(active)[0]
            ba, Za, ma, obj_a, ra, kka, dda, kpa = (beta[idx], Z[idx], m[idx], obj[idx], reg[idx], kk[idx],
                                                    drop_diag[idx], keepf[idx])
        P = 0.5 * (1.0 + np.tanh(0.5 * Za))  # sigmoid, overflow-free
        g = ((ma * (P - yf)) @ A0) * kpa + ba * ra
        H = ((ma * P * (1.0 - P)) @ O) * kka
        H = H.reshape(-1, q, q)
        H[:, diag, diag] += ra + dda
        # a single-class training fold has no finite optimum (the intercept runs off) and an all-but-zero
        # intercept curvature; this tiny damping keeps the solve defined and does not move the optimum (g = 0)
        H[:, p, p] += INTERCEPT_DAMPING
        if compact:
            step = _solve_compact(H, g, plan if isinstance(idx, slice) else (plan[0][idx], plan[1][idx]))
        else:
            step = np.linalg.solve(H, g[..., None])[..., 0]
        lr = np.ones(len(ba))
        for _ in range(30):
            b_new = ba - lr[:, None] * step
            Z_new = b_new @ A0T
            obj_new = _objective_beta(Z_new, yf, ma, b_new, ra)
            bad = obj_new > obj_a + 1e-12 * np.abs(obj_a)
            if not bad.any():
                break
            lr[bad] *= 0.5
        beta[idx], Z[idx], obj[idx] = b_new, Z_new, obj_new
        done = np.max(np.abs(lr[:, None] * step) / (1.0 + np.abs(b_new)), axis=1) < tol
        active[np.arange(B)[idx][done]] = False
        if not active.any():
            break
    lo = lo_f[fold]
    coef = np.where(keep[:, :p], beta[:, :p] / d, 0.0)
    intercept = beta[:, p] + np.sum(beta[:, :p] * lo, axis=1)
    return coef, intercept, Z, it


def _compact_plan(keep):
    """Per fit: the number ``k`` of used parameters and their indices first (``perm``), for :func:`_solve_compact`."""
    k_all = keep.sum(axis=1)
    perm = np.argsort(~keep, axis=1, kind="stable")
    return k_all, perm


def _solve_compact(H, g, plan):
    """Solve ``H x = g`` per fit using only the rows/columns of the used parameters (``x = 0`` elsewhere; those
    rows of ``H`` are identity rows and ``g`` is 0 there, so this is the same solution)."""
    k_all, perm = plan
    B, q = g.shape
    Hf = H.reshape(B, q * q)
    x = np.zeros_like(g)
    for k in np.unique(k_all):
        sel = np.nonzero(k_all == k)[0]
        P = perm[sel, :k]
        flat = (P[:, :, None] * q + P[:, None, :]).reshape(len(sel), k * k)
        Hk = Hf[sel[:, None], flat].reshape(len(sel), k, k)
        gk = g[sel[:, None], P]
        x[sel[:, None], P] = np.linalg.solve(Hk, gk[..., None])[..., 0]
    return x


def _objective_beta(Z, yf, m, beta, reg):
    # objective divided by C: sum of log-losses + 0.5 * sum reg * beta^2 (reg = 1 / (C d^2))
    t = 2.0 * yf - 1.0
    return np.sum(m * np.logaddexp(0.0, -t * Z), axis=1) + 0.5 * np.sum(reg * beta * beta, axis=1)


# ----------------------------------------------------------------------------------------------------------
# scores
# ----------------------------------------------------------------------------------------------------------
def fold_scores(pred, y, test):
    """Accuracy and F1 of the positive (gain) class per fold, as scikit-learn's scorers compute them.

    F1 is 0 where a fold has neither a predicted nor a true positive (scikit-learn's ``zero_division=0``
    behaviour, which also warns).

    Parameters
    ----------
    pred : int array [B, n]; y : array [n]; test : bool array [B, n]
    """
    y = np.asarray(y).astype(int)[None]
    tm = test.astype(int)
    n_test = tm.sum(axis=1)
    correct = ((pred == y) * tm).sum(axis=1)
    tp = ((pred == 1) & (y == 1) & test).sum(axis=1)
    fp = ((pred == 1) & (y == 0) & test).sum(axis=1)
    fn = ((pred == 0) & (y == 1) & test).sum(axis=1)
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return correct / np.maximum(n_test, 1), f1


@dataclass
class CVResult:
    """Scores of one feature set over all folds.

    ``accuracy`` and ``f1`` hold one value per fold (``n_repeats * n_splits``); ``summary()`` gives the mean,
    the sd over folds and the sd of the per-repetition means.
    """

    accuracy: np.ndarray
    f1: np.ndarray
    n_splits: int
    pred: np.ndarray | None = None  # [B, n] predictions (meaningful on the fold's test rows)
    decision: np.ndarray | None = None  # [B, n]
    coef: np.ndarray | None = None  # [B, p] on min-max-scaled features
    intercept: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def summary(self):
        out = {}
        for name, v in (("accuracy", self.accuracy), ("f1", self.f1)):
            reps = v[: len(v) // self.n_splits * self.n_splits].reshape(-1, self.n_splits).mean(axis=1)
            out[name] = float(np.mean(v))
            out[name + "_sd"] = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
            out[name + "_sd_rep"] = float(np.std(reps, ddof=1)) if len(reps) > 1 else 0.0
        return out


@single_threaded_blas
def cross_validate(X, y, train, test, C=1.0, col_mask=None, keep=False, n_splits=None):
    """Min-max scaling + logistic regression, fitted on every fold's training rows at once.

    Parameters
    ----------
    X : array [n, p]; y : 0/1 array [n]; train, test : bool arrays [B, n] (see :func:`make_folds`)
    col_mask : bool array [p] or [B, p], optional: columns to use.
    keep : bool
        Keep predictions, decision values and coefficients in the result.
    """
    y = np.asarray(y).astype(int)
    coef, b, dec, n_iter = fit_logreg_folds(X, y, train, C=C, col_mask=col_mask)
    pred = (dec > 0).astype(int)
    acc, f1 = fold_scores(pred, y, test)
    if n_splits is None:
        n_splits = int(round(train.shape[0] / max(1, _n_repeats(test))))
    res = CVResult(acc, f1, n_splits)
    if keep:
        res.pred, res.decision, res.coef, res.intercept = pred, dec, coef, b
    res.extra["newton_iterations"] = n_iter
    return res


def _n_repeats(test):
    # each repetition covers every sample exactly once
    return int(round(test.sum() / test.shape[1]))


def baseline_scores(y, train, test):
    """Scores of the two trivial predictors, per fold.

    - ``majority``: predicts the majority class of the fold's training rows (ties: gain);
    - ``always_gain``: predicts gain for every pair.
    """
    y = np.asarray(y).astype(int)
    n_splits = int(round(train.shape[0] / max(1, _n_repeats(test))))
    pos = (train * y[None]).sum(axis=1)
    neg = train.sum(axis=1) - pos
    maj = (pos >= neg).astype(int)
    pred_maj = np.broadcast_to(maj[:, None], train.shape)
    pred_all = np.ones(train.shape, dtype=int)
    return {
        "majority": CVResult(*fold_scores(pred_maj, y, test), n_splits),
        "always_gain": CVResult(*fold_scores(pred_all, y, test), n_splits),
    }


# ----------------------------------------------------------------------------------------------------------
# recursive feature elimination
# ----------------------------------------------------------------------------------------------------------
@single_threaded_blas
def rfe_ranking(X, y, train, C=1.0):
    """Recursive feature elimination (one feature per step, smallest |coefficient| first) on every fold.

    Follows scikit-learn's ``RFE(LogisticRegression(), n_features_to_select=1, step=1)`` on min-max-scaled
    training rows: rank 1 is the last surviving feature.

    Returns
    -------
    ranks : int array [B, p]
        The rank of every feature in every fold.
    """
    y = np.asarray(y).astype(int)
    scaling = fold_scaling(X, train)
    B = train.shape[0]
    p = scaling[0].shape[1]
    alive = np.ones((B, p), dtype=bool)
    ranks = np.ones((B, p), dtype=int)
    rows = np.arange(B)
    for k in range(p - 1):
        coef, _b, _dec, _ = fit_logreg_folds(X, y, train, C=C, col_mask=alive, scaling=scaling)
        imp = np.where(alive, np.abs(coef), np.inf)
        # scikit-learn eliminates np.argsort(importance)[:step]: the smallest first
        worst = np.argmin(imp, axis=1)
        ranks[rows, worst] = p - k
        alive[rows, worst] = False
    return ranks

"""Test oracles of the meta-classifier CV, kept apart from the production solver (mtlfast.meta.cv).

:func:`minmax_scale_folds` scales every fold's copy of the features explicitly (as scikit-learn's
``MinMaxScaler`` fitted on the fold's training rows) and :func:`fit_logreg_batch` runs plain damped Newton
steps on those copies. ``mtlfast.meta.cv.fit_logreg_folds`` gets the same optimum without the copies (in the
coordinates of globally pre-scaled data); tests hold the two equal, and both to scikit-learn.
"""

import numpy as np

from mtlfast.meta.cv import INTERCEPT_DAMPING, NEWTON_MAX_ITER, NEWTON_TOL

__all__ = ["minmax_scale_folds", "fit_logreg_batch"]


def minmax_scale_folds(X, train):
    """Min-max scale ``X`` once per fold with the minimum and range of that fold's training rows.

    Same as scikit-learn's ``MinMaxScaler`` fitted on the training rows: a constant column (range 0) is
    only shifted, not divided (scikit-learn's ``_handle_zeros_in_scale``).

    Parameters
    ----------
    X : array [n, p]
    train : bool array [B, n]

    Returns
    -------
    array [B, n, p]
    """
    X = np.asarray(X, dtype=float)
    big = np.where(train[:, :, None], X[None], np.inf)
    lo = big.min(axis=1)
    big = np.where(train[:, :, None], X[None], -np.inf)
    hi = big.max(axis=1)
    rng = hi - lo
    rng[rng < 10 * np.finfo(float).eps] = 1.0
    return (X[None] - lo[:, None, :]) / rng[:, None, :]


def _objective(Z, t, m, w, C):
    # log(1 + exp(-t z)) computed stably
    return C * np.sum(m * np.logaddexp(0.0, -t * Z), axis=1) + 0.5 * np.sum(w[:, :-1] ** 2, axis=1)


def fit_logreg_batch(Xs, y, train, C=1.0, col_mask=None, tol=NEWTON_TOL, max_iter=NEWTON_MAX_ITER):
    """Fit B L2-regularised logistic regressions at once by damped Newton steps.

    Parameters
    ----------
    Xs : array [B, n, p] or [n, p]
        Features (already scaled per fold, see :func:`minmax_scale_folds`).
    y : array [n] of 0/1
    train : bool array [B, n]
        Which rows each fit is trained on.
    C : float
        Inverse regularisation strength, as in scikit-learn.
    col_mask : bool array [B, p] or [p], optional
        Columns each fit may use; the others are zeroed (their coefficients come out exactly 0).

    Returns
    -------
    coef : array [B, p]
    intercept : array [B]
    n_iter : int
        Newton iterations until every fit had converged.
    """
    Xs = np.asarray(Xs, dtype=float)
    train = np.asarray(train, dtype=bool)
    B, n = train.shape
    if Xs.ndim == 2:
        Xs = np.broadcast_to(Xs, (B,) + Xs.shape)
    if col_mask is not None:
        col_mask = np.broadcast_to(np.asarray(col_mask, dtype=bool), (B, Xs.shape[2]))
        Xs = Xs * col_mask[:, None, :]
    p = Xs.shape[2]
    # design with intercept column
    A = np.concatenate([Xs, np.ones((B, n, 1))], axis=2)
    m = train.astype(float)
    yf = np.asarray(y, dtype=float)
    t = 2.0 * yf - 1.0
    reg = np.full(p + 1, 1.0 / C)
    reg[-1] = 0.0  # the intercept is not penalised (scikit-learn's lbfgs)
    w = np.zeros((B, p + 1))
    Z = np.zeros((B, n))
    obj = _objective(Z, t, m, w, C)
    active = np.ones(B, dtype=bool)
    it = 0
    At = A.transpose(0, 2, 1)
    diag = np.arange(p + 1)
    for it in range(1, max_iter + 1):
        if active.all():
            idx = slice(None)
            Aa, Ata, wa, Za, ma, obj_a = A, At, w, Z, m, obj
        else:
            idx = np.nonzero(active)[0]
            Aa, Ata, wa, Za, ma, obj_a = A[idx], At[idx], w[idx], Z[idx], m[idx], obj[idx]
        P = 0.5 * (1.0 + np.tanh(0.5 * Za))  # sigmoid, overflow-free
        g = (Ata @ (ma * (P - yf))[..., None])[..., 0] + wa * reg
        s = ma * P * (1.0 - P)
        H = Ata @ (Aa * s[..., None])
        H[:, diag, diag] += reg
        H[:, p, p] += INTERCEPT_DAMPING
        step = np.linalg.solve(H, g[..., None])[..., 0]
        # backtracking: halve the step where the objective does not decrease (rarely needed)
        lr = np.ones(len(wa))
        for _ in range(30):
            w_new = wa - lr[:, None] * step
            Z_new = (Aa @ w_new[..., None])[..., 0]
            obj_new = _objective(Z_new, t, ma, w_new, C)
            bad = obj_new > obj_a + 1e-12 * np.abs(obj_a)
            if not bad.any():
                break
            lr[bad] *= 0.5
        w[idx], Z[idx], obj[idx] = w_new, Z_new, obj_new
        done = np.max(np.abs(lr[:, None] * step) / (1.0 + np.abs(w_new)), axis=1) < tol
        active[np.arange(len(active))[idx][done]] = False
        if not active.any():
            break
    return w[:, :p], w[:, p], it

"""``GainPredictor``: the meta-classifier as a scikit-learn estimator, and helpers to rank auxiliary tasks.

Fitted on the pair table of one sweep (main / aux / ratio columns of the task features), it predicts, for a
pair involving tasks never trained together, whether the pair model will beat the single-task model on the
main task, and with which probability. The features of a new task come from its data (``features.csv``) and
its single-task training curve only, so a user can rank auxiliary tasks without training any pair.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from mtlfast.meta.table import pair_table

__all__ = ["GainPredictor", "pairs_for_new_tasks", "predict_pairs"]


class GainPredictor(ClassifierMixin, BaseEstimator):
    """Min-max scaling + logistic regression over pair features; predicts gain (1) / no gain (0).

    Parameters
    ----------
    C : float, default=1.0
        Inverse L2 regularisation strength of the logistic regression (scikit-learn's default).
    max_iter : int, default=1000
        Iterations of the lbfgs solver.
    columns : sequence of str, optional
        Names of the columns of ``X`` (pair-table names such as ``main_size``); stored as ``columns_``.
    random_state : int, RandomState instance or None
        Passed (through ``check_random_state``) to the logistic regression; lbfgs itself is deterministic.

    Attributes
    ----------
    scaler_ : MinMaxScaler
    model_ : LogisticRegression
    classes_ : ndarray
    n_features_in_ : int
    columns_ : list of str
    coef_ : ndarray [n_features]  (on min-max-scaled features)
    intercept_ : float
    n_iter_ : ndarray, iterations of the solver
    """

    def __init__(self, C=1.0, max_iter=1000, columns=None, random_state=None):
        self.C = C
        self.max_iter = max_iter
        self.columns = columns
        self.random_state = random_state

    def fit(self, X, y):
        X, y = validate_data(self, X, y, ensure_min_samples=2, dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"GainPredictor.fit: needs pairs of both classes, got only {self.classes_.tolist()}")
        if not (isinstance(self.C, (int, float)) and self.C > 0):
            raise ValueError(f"GainPredictor: C must be a positive number, got {self.C!r}")
        if self.columns is not None and len(self.columns) != X.shape[1]:
            raise ValueError(f"GainPredictor: {len(self.columns)} column names for {X.shape[1]} columns")
        rng = check_random_state(self.random_state)
        self.scaler_ = MinMaxScaler().fit(X)
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter,
                                         random_state=rng.randint(np.iinfo(np.int32).max))
        self.model_.fit(self.scaler_.transform(X), y)
        self.classes_ = self.model_.classes_
        self.coef_ = self.model_.coef_[0]
        self.intercept_ = float(self.model_.intercept_[0])
        self.n_iter_ = self.model_.n_iter_
        self.columns_ = list(self.columns) if self.columns is not None else [f"x{j}" for j in range(X.shape[1])]
        return self

    def _transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.scaler_.transform(X)

    def decision_function(self, X):
        Xs = self._transform(X)  # checks that the estimator is fitted
        return self.model_.decision_function(Xs)

    def predict_proba(self, X):
        Xs = self._transform(X)
        return self.model_.predict_proba(Xs)

    def predict(self, X):
        Xs = self._transform(X)
        return self.model_.predict(Xs)


def pairs_for_new_tasks(known, new):
    """Every directed pair with at least one new task: (new, known), (known, new) and (new, new')."""
    known, new = list(known), list(new)
    out = []
    for a in new:
        for b in known + new:
            if a != b:
                out.append((a, b))
        for b in known:
            out.append((b, a))
    return out


def predict_pairs(predictor, task_features, pairs, features):
    """Gain probability and label for the given ``(main, aux)`` pairs.

    ``task_features``: ``{task: {feature: value}}`` covering every task in ``pairs``; ``features``: the task
    features the predictor was fitted on (in order). Returns a list of dicts sorted by main task and descending
    probability.
    """
    rows = [{"main": m, "aux": a, "gain": 0.0, "label": 0} for m, a in pairs]
    tab = pair_table(rows, task_features, features=features)
    if list(tab.columns) != list(predictor.columns_):
        raise ValueError(f"predict_pairs: table columns {tab.columns} differ from the predictor's {predictor.columns_}")
    bad = ~np.all(np.isfinite(tab.X), axis=1)
    if bad.any():
        raise ValueError("predict_pairs: missing feature values for pairs "
                         + ", ".join(f"{m}/{a}" for (m, a), b in zip(tab.pairs, bad) if b))
    proba = predictor.predict_proba(tab.X)[:, list(predictor.classes_).index(1)]
    out = [{"main": m, "aux": a, "p_gain": float(p), "predicted_gain": int(p > 0.5)}
           for (m, a), p in zip(tab.pairs, proba)]
    out.sort(key=lambda r: (r["main"], -r["p_gain"], r["aux"]))
    return out

"""Budgeted sweeps: a gain model for the untrained directed pairs, and how to choose the pairs to train.

A sweep over ``T`` tasks has ``T (T - 1) / 2`` pair runs, about 90 % of its cost. A *budgeted* sweep trains every
single-task run but only ``N`` pair runs, and predicts the gain label of the other directed pairs with
:class:`GainModel`, which uses everything known at that point:

- a **main-task effect** ``u_m`` and an **auxiliary-task effect** ``v_a`` learnt from the measured gains (a main
  task that gains from most auxiliaries tends to gain from the rest);
- the pair features (the 42 data and curve columns of :func:`mtlfast.meta.table.pair_table`, and the main
  task's single-task F1, which its single run gives anyway);
- an intercept (the base rate).

The model is a Bayesian logistic regression::

    logit P(gain | main m, aux a, x) = b + u_m + v_a + w . x,
    u ~ N(0, tau_main^2), v ~ N(0, tau_aux^2), w ~ N(0, tau_feat^2), b ~ N(0, 10^2)

fitted at its posterior mode by Newton's method, with the Laplace approximation of the posterior (the inverse
Hessian) giving every prediction a logit mean ``mu`` and sd ``s``; the reported probability is the moderated
``sigmoid(mu / sqrt(1 + pi s^2 / 8))`` (MacKay 1992), so a pair about which little is known (a main task with no
measured pair, features outside the training range) gets a probability near the base rate. Features are
min-max scaled on the training pairs; for a pair whose features lie outside that range the feature term is
clipped to the range and divided by ``1 + shrink * excess`` (``excess``: summed distance outside the range, in
scaled units), which moves the prediction towards the base rate.

Hyperparameters (``tau_main``, ``tau_aux``, ``tau_feat`` and whether the targets are the 0/1 labels or "soft" labels
``sigmoid(gain / scale_m)`` that weigh a +8 % gain more than a +0.01 % one, ``scale_m`` the median |gain| of main
task ``m``'s measured pairs) are chosen by K-fold cross-validation over the *measured* pairs only (both
directions of a pair in the same fold; error rate of the held-out labels, ties broken by log-loss), repeated on
three random splits (``cv_repeats``) so that the choice rests less on one split of a few dozen rows. Ties go to
the simpler model: the auxiliary effects, the features and the soft labels are used only when they make fewer
held-out errors than the main-effect model (``simple_rule``). The auxiliary and feature terms of a pair are
weighted by ``kappa / (kappa + n_m)``, ``n_m`` the measured directed pairs of its main task (``row_shrink``,
``kappa = 2``): where many of a main task's pairs are measured its own majority decides, as it should, and the
other terms speak where little is known. A main task whose measured pairs split exactly evenly gets the
majority's call (loss) unless the tie is broken by evidence, the richer terms with fewer than 6 measured pairs
(``tie_rule``); from 6 measured pairs a strict majority is not overturned either (``majority_pairs``). Below
that, a strict majority can be overturned only by the pair's own terms (auxiliary effect, features), not by the
main task's level when the soft labels or the prior move it across 0.5 (``row_majority``). And the chosen
setting, picked by its held-out errors on a few dozen rows, is not trusted outright: for pairs of measured main
tasks its probability is averaged with the main-effect models', each weighted by its held-out likelihood
(pseudo-Bayesian model averaging, ``hedge``), so richer terms overturn a main task's own majority only as far as
their held-out probabilities earned it.

The cross-validation folds hold out whole pairs, so a held-out row's main task may have no measured row left in
the training fold (always so when every main task has one measured pair, as after the balanced first round):
such a row scores the feature-only situation of a *new* task, while a hidden pair of a measured main task has
its main effect. Each situation gets the setting chosen on its own held-out rows (``cv_rows="matched"``): the
rows whose main task keeps a measured row choose the setting for measured main tasks, the main-effect model when
there are none; the others choose the setting for pairs whose main task has no measured pair. Nothing about an
untrained pair is used to fit or to choose anything.

Pair selection (:func:`choose_pairs`):

- ``design``: a balanced design, every task in about the same number of pairs (``ceil`` / ``floor`` of
  ``2 N / T``), randomised among such designs;
- ``active``: a first balanced round of ``ceil(T / 2)`` pairs (every task once), then rounds of
  ``max(2, ceil(T / 4))`` pairs (``round_size``) chosen by the gain model fitted on the pairs trained so far
  (:func:`query_model`: the richest setting the cross-validation picks, at full weight): the pairs whose two gain signs it is least sure of
  (``min(p, 1 - p)`` summed over both directions), a task's later picks in the same round discounted;
- ``random``: uniformly random pairs.

:func:`replay` hides all but ``N`` pairs of a complete gain matrix, chosen as a sweep would choose them, predicts
the rest, and scores label accuracy and F1 on the hidden directed pairs, beside the baselines of
:func:`baseline_predictions`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = [
    "GainModel",
    "query_model",
    "fit_logistic_batch",
    "balanced_design",
    "choose_pairs",
    "next_round",
    "baseline_predictions",
    "GainMatrix",
    "replay",
    "replay_curve",
    "loto_feature_search",
    "nested_loto",
]

#: prior sd of the intercept (logit units): all but flat
TAU_INTERCEPT = 10.0
NEWTON_MAX_ITER = 60
NEWTON_TOL = 1e-8


# ------------------------------------------------------------------------------------------------------------
# the solver: many penalised logistic regressions with soft targets at once
# ------------------------------------------------------------------------------------------------------------
def fit_logistic_batch(A, t, weight, penalty, max_iter=NEWTON_MAX_ITER, tol=NEWTON_TOL):
    """Posterior modes of ``B`` Gaussian-prior logistic regressions by damped Newton steps.

    Minimises, for every fit ``k``::

        sum_i weight[k, i] * (log(1 + exp(z_i)) - t[k, i] z_i) + 0.5 * sum_j penalty[k, j] * w_j^2,  z = A[k] w

    Parameters
    ----------
    A : array [B, n, q] or [n, q]: designs (shared when 2-D)
    t : array [B, n] or [n]: targets in [0, 1] (soft labels allowed)
    weight : array [B, n]: row weights (0 = row not in this fit)
    penalty : array [B, q] or [q]: prior precision of every coefficient (> 0)

    Returns
    -------
    w : [B, q]; H : [B, q, q] the Hessian at the mode (posterior precision); n_iter : int
    """
    weight = np.asarray(weight, dtype=float)
    B, n = weight.shape
    A = np.asarray(A, dtype=float)
    shared = A.ndim == 2
    q = A.shape[-1]
    if shared:  # one design: every product is a plain GEMM
        O = (A[:, :, None] * A[:, None, :]).reshape(n, q * q)

        def lin(w_):
            return w_ @ A.T

        def grad(r):
            return r @ A

        def hess(s_):
            return (s_ @ O).reshape(B, q, q)
    else:
        def lin(w_):
            return np.einsum("bnq,bq->bn", A, w_)

        def grad(r):
            return np.einsum("bnq,bn->bq", A, r)

        def hess(s_):
            return np.einsum("bnq,bn,bnr->bqr", A, s_, A, optimize=True)
    t = np.broadcast_to(np.asarray(t, dtype=float), (B, n))
    P = np.broadcast_to(np.asarray(penalty, dtype=float), (B, q))
    w = np.zeros((B, q))

    def objective(w_):
        z = lin(w_)
        return np.sum(weight * (np.logaddexp(0.0, z) - t * z), axis=1) + 0.5 * np.sum(P * w_ * w_, axis=1), z

    obj, z = objective(w)
    diag = np.arange(q)
    it = 0
    for it in range(1, max_iter + 1):
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        g = grad(weight * (p - t)) + P * w
        H = hess(weight * p * (1.0 - p))
        H[:, diag, diag] += P
        step = np.linalg.solve(H, g[..., None])[..., 0]
        lr = np.ones(B)
        for _ in range(30):
            w_new = w - lr[:, None] * step
            obj_new, z_new = objective(w_new)
            bad = obj_new > obj + 1e-12 * np.abs(obj)
            if not bad.any():
                break
            lr[bad] *= 0.5
        w, obj, z = w_new, obj_new, z_new
        if np.max(np.abs(lr[:, None] * step)) < tol:
            break
    p = 0.5 * (1.0 + np.tanh(0.5 * z))
    H = hess(weight * p * (1.0 - p))
    H[:, diag, diag] += P
    return w, H, it


def _moderated(mu, var):
    return 1.0 / (1.0 + np.exp(-mu / np.sqrt(1.0 + np.pi * var / 8.0)))


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _log_loss(p, y):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


# ------------------------------------------------------------------------------------------------------------
# the estimator
# ------------------------------------------------------------------------------------------------------------
class GainModel(ClassifierMixin, BaseEstimator):
    """Gain model for directed pairs: main-task and auxiliary-task effects + pair features, with uncertainty.

    ``fit(X, y, pairs=None, gain=None)``: ``X`` [n, p] pair features (may have 0 columns), ``y`` 0/1 labels
    (gain), ``pairs`` the ``(main, aux)`` task names of the rows (without them the model is features-only),
    ``gain`` the measured relative gains (for the soft targets; optional). ``predict_proba(X, pairs=None)``.

    Parameters
    ----------
    tau_main : float or sequence of float, default (3, 10)
        Prior sd of a main-task effect (logit units; a sequence is searched). Large: a task's own measured pairs
        decide its row.
    tau_aux : float, sequence of float, or 0
        Prior sd of an auxiliary-task effect; a sequence is a grid searched by cross-validation over the
        measured pairs; 0 leaves the effect out.
    tau_feat : float, sequence of float, or 0
        Prior sd of a feature coefficient (on min-max-scaled features); grid or 0 as ``tau_aux``.
    soft : bool or "auto"
        Fit to soft labels ``sigmoid(gain / scale)`` (``scale`` = median |measured gain|) instead of 0/1 labels;
        ``"auto"`` tries both in the cross-validation. Needs ``gain`` in ``fit``.
    main_effects, aux_effects : bool
        Use the task effects at all (both need ``pairs``).
    cv_folds : int
        Folds of the hyperparameter search (over unordered pairs; fewer when there are fewer pairs; no search
        with fewer than 4 pairs: then the first value of every grid is used).
    criterion : "error" or "log_loss"
        What the search minimises on the held-out measured pairs (error: ties broken by log-loss).
    one_se : bool
        Take the simplest setting within one standard error of the best (fewer effects, labels before soft
        labels) instead of the best.
    feature_se : bool
        Use the features (``tau_feat > 0``) only when the best setting with them beats the best setting without
        them by more than its standard error over the folds (as :func:`loto_feature_search` keeps a group).
    simple_rule : "ties", "se" or "none"
        Ties go to the simpler model: the chosen setting is replaced by the best *main-effect* setting (no
        auxiliary effects, no features, 0/1 labels: each main task's majority sign, the base rate for its ties)
        unless it makes fewer errors on the same held-out measured pairs (``"ties"``), or fewer by more than the
        standard error of the paired per-pair difference (``"se"``); ``"none"``: the best setting as it is.
    cv_rows : "matched" or "all"
        Which held-out rows score a setting. ``"matched"`` (with main effects): the held-out rows in the situation
        of the prediction the setting is used for. A held-out row whose main task keeps at least one measured row
        in the training fold stands for a hidden pair of a measured main task: these rows alone choose the
        setting (``params_``) that predicts such pairs; when there are none (one measured pair per main task, as
        after a balanced first round) that setting is the main-effect model (first ``tau_main``, 0/1 labels: each
        main task's own measured sign), since nothing held out says anything beats it there. The other held-out
        rows (main task unseen in the training fold) stand for a new task's pairs: they choose the setting
        (``new_task_params_``, fitted separately) that predicts pairs whose main task has no measured pair (all
        held-out rows when there are none of them). ``"all"``: every held-out row scores one setting for
        every prediction (the whole-pair folds then score the feature-only situation wherever a main task has a
        single measured pair, which never arises when its hidden pairs are predicted).
    cv_repeats : int
        Repetitions of the K-fold search, each on its own random split of the measured pairs (repetition 0 seeded
        with ``random_state``, repetition ``r`` with ``[random_state, r]``); a setting's held-out error and
        log-loss are pooled over every repetition, and the standard errors that ``feature_se`` (and ``one_se``,
        ``simple_rule="se"``) use are taken over the folds of one repetition (the repetitions reuse the same
        rows). Each repetition is another draw of the same noisy comparison, so the setting chosen depends
        less on which pairs one split happens to put together (``1``: the plain K-fold search).
    row_majority : bool
        A main task whose measured directed pairs have a strict majority of gains (losses) gets its own level,
        ``b + u_m``, moved to that side of 0 where it lies on the other side (to 0 exactly), so that only the pair's
        own terms (its auxiliary effect, its features) can overturn the majority. The level can cross to the
        other side without any evidence about the pair: through the soft labels (a few large gains against more
        small losses) or through the prior, which shrinks a task towards the base rate; neither says why *this*
        pair should differ from the main task's measured pairs. A prediction-time rule: fit and cross-validation
        are unchanged. Rows of a main task with no measured pair, or an even split, are left alone.
    row_shrink : float or None
        ``kappa``: the auxiliary-effect and feature terms of a pair whose main task has ``n_m`` measured directed
        pairs are multiplied by ``kappa / (kappa + n_m)`` (in fitting and in prediction), so that as a main task's
        own measured pairs accumulate, its main effect decides its row, as the main-task majority does; a main
        task with no measured pair keeps them whole. ``None``: no such weighting.
    tie_rule : "majority" or "model"
        What a hidden pair gets whose main task's measured directed pairs split exactly evenly (its own pairs say
        nothing about its sign). ``"majority"``: the main-task majority's call, loss (``P(gain)`` capped at 0.5),
        unless the tie is broken by evidence: the chosen setting has auxiliary effects, features or soft labels
        (the main-effect model has only its prior to break a tie with: it shrinks the task towards the average
        task, a base-rate call) *and* the main task has fewer than ``tie_pairs`` measured directed pairs (with more, the
        even split is itself the evidence that the task is a coin flip; the auxiliary and feature terms are then
        weighted ``kappa / (kappa + n_m)`` <= 1/4 and move it by a hair). ``"model"``: the moderated probability
        as it is. A prediction-time rule: the cross-validation that chooses the setting does not apply it.
    tie_pairs : int
        The number of measured directed pairs from which an even split follows the majority's call whatever
        the setting (``tie_rule="majority"``).
    majority_pairs : int or None
        A main task with at least this many measured directed pairs and a strict majority of gains (losses) gets
        the majority's label whatever the setting: ``P(gain)`` is moved to the majority's side of 0.5 where the
        model would overturn it. The reason is ``tie_pairs``': the auxiliary and feature terms are then weighted
        ``kappa / (kappa + n_m)`` <= 1/4, and what overturns such a majority is mostly the soft labels (a few large
        gains against more small losses), which the replays do not bear out at that count. ``None``: no such
        rule. A prediction-time rule, like ``tie_rule``.
    hedge : bool
        The setting chosen for pairs of measured main tasks is chosen by its held-out *errors* on a few dozen
        rows, and then trusted entirely. With ``hedge`` its probability is averaged with those of the
        main-effect models (the best main-effect setting with 0/1 labels and, where the grid has soft labels,
        the best with soft labels), each weighted by its pseudo-Bayesian-model-averaging weight
        ``exp(-n * held-out log-loss)`` (``n`` the held-out rows of one repetition, so the weight is the
        held-out likelihood of the measured pairs). A richer setting is then trusted in proportion to how much
        better its held-out *probabilities* were: where the main-effect models' were about as good, a pair term
        of a few hundredths no longer overturns a main task's confident measured majority; where the richer
        setting's were clearly better (features that carry the gains), the average is the richer setting.
        Each component keeps ``row_majority``; the tie and majority rules apply to the average. No averaging
        when the chosen setting is the 0/1-label main-effect model, or for pairs of an unmeasured main task.
        ``hedge_weights_`` says what was averaged.
    shrink : float
        Strength of the move towards the base rate for features outside the training range.
    random_state : int or None
        Seed of the cross-validation folds.

    Attributes
    ----------
    classes_, n_features_in_, tasks_, intercept_, main_effect_ (dict), aux_effect_ (dict), coef_ (features),
    cov_ (posterior covariance), params_ (chosen hyperparameters), new_task_params_ (those for pairs whose main task
    has no measured pair), cv_scores_ (grid -> held-out error and log-loss on the rows that chose ``params_``),
    cv_scores_new_ (on those that chose ``new_task_params_``; empty with ``cv_rows="all"``), cv_rows_seen_,
    hedge_weights_ (setting -> weight in the average of ``hedge``; ``{params_: 1.0}`` when nothing is averaged),
    feature_min_, feature_range_, base_rate_
    """

    def __init__(self, tau_main=(3.0, 10.0), tau_aux=(0.0, 0.5), tau_feat=(0.0, 0.3, 1.0, 3.0), soft="auto",
                 main_effects=True, aux_effects=True, cv_folds=5, criterion="error", one_se=False, feature_se=True,
                 simple_rule="ties", cv_rows="matched", cv_repeats=3, row_majority=True,
                 row_shrink=2.0, tie_rule="majority", tie_pairs=6,
                 majority_pairs=6, hedge=True, shrink=1.0, random_state=0):
        self.tau_main = tau_main
        self.tau_aux = tau_aux
        self.tau_feat = tau_feat
        self.soft = soft
        self.main_effects = main_effects
        self.aux_effects = aux_effects
        self.cv_folds = cv_folds
        self.criterion = criterion
        self.one_se = one_se
        self.feature_se = feature_se
        self.simple_rule = simple_rule
        self.cv_rows = cv_rows
        self.cv_repeats = cv_repeats
        self.row_majority = row_majority
        self.row_shrink = row_shrink
        self.tie_rule = tie_rule
        self.tie_pairs = tie_pairs
        self.majority_pairs = majority_pairs
        self.hedge = hedge
        self.shrink = shrink
        self.random_state = random_state

    # -- design ------------------------------------------------------------------------------------------
    def _design(self, Xs, pairs):
        n = Xs.shape[0]
        blocks = [np.ones((n, 1))]
        T = len(self.tasks_)
        for use, side in ((self._use_main, 0), (self._use_aux, 1)):  # main-task, then auxiliary-task one-hots
            if use:
                O = np.zeros((n, T))
                for i, pair in enumerate(pairs):
                    j = self._task_index.get(pair[side])
                    if j is not None:
                        O[i, j] = 1.0
                blocks.append(O)
        blocks.append(Xs)
        A = np.concatenate(blocks, axis=1)
        if self._use_main:  # the auxiliary and feature terms give way to the main task's own measured pairs
            A[:, 1 + T:] *= self._row_weight(pairs)[:, None]
        return A

    def _row_weight(self, pairs):
        """``kappa / (kappa + n_m)`` per row, ``n_m`` the measured directed pairs of its main task (1 without
        ``row_shrink`` or main effects)."""
        if self.row_shrink is None or not self._use_main:
            return np.ones(len(pairs))
        k = float(self.row_shrink)
        return np.array([k / (k + self.main_counts_.get(q[0], 0)) for q in pairs])

    def _penalty(self, tau_main, tau_aux, tau_feat, p):
        T = len(self.tasks_)
        parts = [[1.0 / TAU_INTERCEPT**2]]
        if self._use_main:
            parts.append(np.full(T, 1.0 / tau_main**2))
        if self._use_aux:
            parts.append(np.full(T, 1.0 / max(tau_aux, 1e-6) ** 2))
        parts.append(np.full(p, 1.0 / max(tau_feat, 1e-6) ** 2))
        return np.concatenate(parts)

    def _scale(self, X, clip=True):
        Xs = (X - self.feature_min_) / self.feature_range_
        if not clip:
            return Xs, np.zeros(len(X))
        excess = np.sum(np.maximum(Xs - 1.0, 0.0) + np.maximum(-Xs, 0.0), axis=1)
        return np.clip(Xs, 0.0, 1.0), excess

    @staticmethod
    def _grid(v):
        if np.ndim(v) == 0:
            return [float(v)]
        out = [float(x) for x in v]
        if not out:
            raise ValueError("GainModel: an empty grid of prior sds")
        return out

    # -- fit -----------------------------------------------------------------------------------------------
    def fit(self, X, y, pairs=None, gain=None):
        X, y = validate_data(self, X, y, ensure_min_samples=1, ensure_min_features=0, dtype=np.float64)
        check_classification_targets(y)
        classes = np.unique(y)
        if not set(classes.tolist()) <= {0, 1}:
            raise ValueError(f"GainModel.fit: labels must be 0 (no gain) / 1 (gain), got {classes.tolist()}")
        y = y.astype(int)
        self.classes_ = np.array([0, 1])
        grid_main, grid_aux, grid_feat = self._grid(self.tau_main), self._grid(self.tau_aux), self._grid(self.tau_feat)
        if min(grid_main) <= 0:
            raise ValueError(f"GainModel: tau_main must be positive, got {self.tau_main!r}")
        if self.simple_rule not in ("ties", "se", "none"):
            raise ValueError(f"GainModel: simple_rule must be 'ties', 'se' or 'none', got {self.simple_rule!r}")
        if self.majority_pairs is not None and not (isinstance(self.majority_pairs, (int, np.integer))
                                                    and self.majority_pairs >= 1):
            raise ValueError(f"GainModel: majority_pairs must be a positive integer or None, got "
                             f"{self.majority_pairs!r}")
        if not (isinstance(self.cv_repeats, (int, np.integer)) and self.cv_repeats >= 1):
            raise ValueError(f"GainModel: cv_repeats must be a positive integer, got {self.cv_repeats!r}")
        if self.cv_rows not in ("matched", "all"):
            raise ValueError(f"GainModel: cv_rows must be 'matched' or 'all', got {self.cv_rows!r}")
        if self.row_shrink is not None and not self.row_shrink > 0:
            raise ValueError(f"GainModel: row_shrink must be positive or None, got {self.row_shrink!r}")
        if self.tie_rule not in ("majority", "model"):
            raise ValueError(f"GainModel: tie_rule must be 'majority' or 'model', got {self.tie_rule!r}")
        if not (isinstance(self.tie_pairs, (int, np.integer)) and self.tie_pairs >= 2):
            raise ValueError(f"GainModel: tie_pairs must be an integer >= 2, got {self.tie_pairs!r}")
        if self.criterion not in ("error", "log_loss"):
            raise ValueError(f"GainModel: criterion must be 'error' or 'log_loss', got {self.criterion!r}")
        if min(grid_aux + grid_feat) < 0:
            raise ValueError("GainModel: prior sds must be >= 0")
        n, p = X.shape
        if pairs is not None:
            pairs = [tuple(q) for q in pairs]
            if len(pairs) != n:
                raise ValueError(f"GainModel.fit: {len(pairs)} pairs for {n} rows")
        self._use_main = bool(self.main_effects and pairs is not None)
        self._use_aux = bool(self.aux_effects and pairs is not None)
        self.tasks_ = sorted({t for q in pairs for t in q}) if pairs is not None else []
        self._task_index = {t: i for i, t in enumerate(self.tasks_)}
        self.main_counts_ = {}
        self.main_gains_ = {}
        for q, lab in zip(pairs or [], y):
            self.main_counts_[q[0]] = self.main_counts_.get(q[0], 0) + 1
            self.main_gains_[q[0]] = self.main_gains_.get(q[0], 0) + int(lab)
        if gain is not None:
            gain = np.asarray(gain, dtype=float)
            if gain.shape != (n,):
                raise ValueError(f"GainModel.fit: gain has shape {gain.shape}, expected ({n},)")
        soft_opts = {"auto": [False, True], True: [True], False: [False]}.get(self.soft)
        if soft_opts is None:
            raise ValueError(f"GainModel: soft must be True, False or 'auto', got {self.soft!r}")
        if gain is None or not np.all(np.isfinite(gain)):
            soft_opts = [False]
        self.feature_min_ = X.min(axis=0) if n else np.zeros(p)
        rng_ = (X.max(axis=0) - self.feature_min_) if n else np.ones(p)
        self.feature_range_ = np.where(rng_ > 1e-12 * (1 + np.abs(self.feature_min_)), rng_, 1.0)
        self.base_rate_ = float(y.mean())
        Xs, _ = self._scale(X)
        A = self._design(Xs, pairs if pairs is not None else [("", "")] * n)
        scale = np.ones(n)
        if gain is not None:
            absg = np.abs(gain)
            glob = float(np.median(absg[absg > 0])) if np.any(absg > 0) else 1.0
            scale[:] = glob
            if pairs is not None:  # per main task: rows with small and large gains weigh alike
                mains = np.array([m for m, _a in pairs])
                for m in set(mains.tolist()):
                    sel = (mains == m) & (absg > 0)
                    if sel.any():
                        scale[mains == m] = float(np.median(absg[sel]))
        self.gain_scale_ = scale

        def targets(soft):
            if soft:
                return 1.0 / (1.0 + np.exp(-np.clip(gain / scale, -50, 50)))
            return y.astype(float)

        combos = [(tm, ta, tf, so) for so in soft_opts for tm in (grid_main if self._use_main else [1.0])
                  for ta in (grid_aux if self._use_aux else [0.0]) for tf in (grid_feat if p else [0.0])]
        self.cv_scores_ = {}
        self.cv_scores_new_ = {}
        best = combos[0]
        best_new = None
        reps = self._fold_repeats(pairs, n)
        self.cv_rows_seen_ = 0
        if len(combos) > 1 and reps:
            # every repetition's K folds: fit j = (repetition r, fold k) leaves out fold k of repetition r
            K = reps[0].max() + 1
            fits = [(folds, k) for folds in reps for k in range(K)]
            J = len(fits)
            T_ = np.stack([targets(c[3]) for c in combos for _j in range(J)])
            W = np.stack([(folds != k).astype(float) for _c in combos for folds, k in fits])
            Pn = np.stack([self._penalty(*c[:3], p) for c in combos for _j in range(J)])
            w, H, _ = fit_logistic_batch(A, T_, W, Pn)
            cov = np.linalg.inv(H)
            mu = w @ A.T  # [B, n]
            var = np.einsum("nq,bqr,nr->bn", A, cov, A)
            prob = _moderated(mu, var)
            loss = _log_loss(prob, y[None, :])
            err = ((prob > 0.5) != y[None, :]).astype(float)
            simple = [c for c in range(len(combos)) if combos[c][1] == 0 and combos[c][2] == 0 and not combos[c][3]]
            held = np.stack([folds == k for folds, k in fits])  # [J, n]: the rows fit j holds out
            if self.cv_rows == "matched" and self._use_main:
                # a held-out row whose main task keeps a measured row in the training fold stands for a hidden
                # pair of a measured main task; one whose main task has none left stands for a new task's pair
                mains = [q[0] for q in pairs]
                seen = np.stack([[any(mains[j] == mains[i] and folds[j] != folds[i] for j in range(n))
                                  for i in range(n)] for folds in reps])  # [R, n]
                seen_j = np.repeat(seen, K, axis=0)
                self.cv_rows_seen_ = int(seen[0].sum())
                if seen.any():
                    best, self.cv_scores_ = self._choose(combos, simple, J, err, loss, held & seen_j, len(reps))
                else:  # nothing held out in the situation of a measured main task: the main-effect model
                    best = combos[simple[0]] if simple else combos[0]
                    self.cv_scores_ = {}
                best_new, self.cv_scores_new_ = self._choose(combos, simple, J, err, loss,
                                                             held & ~seen_j if (~seen).any() else held, len(reps))
            else:
                best, self.cv_scores_ = self._choose(combos, simple, J, err, loss, held, len(reps))
        settings = [best] + ([best_new] if best_new is not None and best_new != best else [])
        # held-out rows per repetition behind cv_scores_ (each row is held out once per repetition)
        self._cv_n = self.cv_rows_seen_ if self.cv_rows == "matched" and self._use_main else n
        hedge = self._hedge_components(best, combos) if self.hedge and self._use_main else [best]
        hedge_w = self._hedge_weights(hedge)
        k_new = len(settings) - 1  # the setting for pairs of unmeasured main tasks
        settings += [c for c in hedge if c not in settings]
        W1 = np.ones((len(settings), n))
        T1 = np.stack([targets(c[3]) for c in settings])
        P1 = np.stack([self._penalty(*c[:3], p) for c in settings])
        w, H, n_iter = fit_logistic_batch(A, T1, W1, P1)
        tm, ta, tf, so = best
        self.params_ = {"tau_main": tm, "tau_aux": ta, "tau_feat": tf, "soft": so}
        self.n_iter_ = n_iter
        self._w = w[0]
        self.cov_ = np.linalg.inv(H[0])
        # the setting (and fit) for pairs whose main task has no measured pair (the same as params_ unless
        # cv_rows="matched" chose another for that situation)
        self.new_task_params_ = dict(zip(("tau_main", "tau_aux", "tau_feat", "soft"), settings[k_new]))
        self._w_new = w[k_new]
        self._cov_new = np.linalg.inv(H[k_new])
        self.hedge_weights_ = {c: float(v) for c, v in zip(hedge, hedge_w)}
        idx = [settings.index(c) for c in hedge]
        self._hedge = (w[idx], np.linalg.inv(H[idx])) if len(hedge) > 1 else None
        T = len(self.tasks_)
        off = 1
        self.intercept_ = float(self._w[0])
        self.main_effect_ = {}
        self.aux_effect_ = {}
        if self._use_main:
            self.main_effect_ = {t: float(v) for t, v in zip(self.tasks_, self._w[off:off + T])}
            off += T
        if self._use_aux:
            self.aux_effect_ = {t: float(v) for t, v in zip(self.tasks_, self._w[off:off + T])}
            off += T
        self._feat_off = off
        self.coef_ = self._w[off:].copy()
        return self

    def _choose(self, combos, simple, J, err, loss, held, R=1):
        """The setting the cross-validation picks, scored on the held-out rows ``held[j]`` (mask [J, n]) of every
        fit ``j`` only; returns ``(setting, {setting: {"error", "log_loss"}})``."""
        nh = max(1, int(held.sum()))
        scores, ses, out = [], [], {}
        for c, combo in enumerate(combos):
            e = float(sum(err[c * J + j][held[j]].sum() for j in range(J)) / nh)
            ll = float(sum(loss[c * J + j][held[j]].sum() for j in range(J)) / nh)
            crit = err if self.criterion == "error" else loss
            per = np.array([crit[c * J + j][held[j]].mean() for j in range(J) if held[j].any()])
            out[combo] = {"error": e, "log_loss": ll}
            scores.append(self._cv_score(out[combo]))
            # the folds of the repetitions are not independent samples: the standard error counts the folds of
            # one repetition (``J / cv_repeats``), not every fit
            ses.append(float(per.std(ddof=1) / np.sqrt(max(1.0, len(per) / R))) if len(per) > 1 else 0.0)
        b = int(np.argmin(scores))
        if self.one_se:  # the simplest setting within one standard error of the best (Breiman's rule)
            ok = [c for c in range(len(combos)) if scores[c] <= scores[b] + ses[b]]
            b = min(ok, key=lambda c: (combos[c][1], combos[c][2], combos[c][3], -combos[c][0], scores[c]))
        elif self.feature_se and combos[b][2] > 0:  # features must beat the best setting without them
            nf = [c for c in range(len(combos)) if combos[c][2] == 0]
            b0 = min(nf, key=lambda c: scores[c])
            if scores[b] > scores[b0] - ses[b]:
                b = b0
        if self.simple_rule != "none" and simple and b not in simple:
            # the main-effect model (no auxiliary effects, no features, 0/1 labels: the main task's majority
            # with the base rate for its ties) unless the richer setting makes fewer held-out errors
            # ("ties"), or fewer by more than the standard error of the paired per-row difference ("se")
            b0 = min(simple, key=lambda c: scores[c])
            jj, idx = np.nonzero(held)
            d = err[b * J + jj, idx] - err[b0 * J + jj, idx]
            margin = float(d.std(ddof=1) / np.sqrt(len(d))) if self.simple_rule == "se" and len(d) > 1 else 0.0
            if d.mean() > -margin - 1e-12:
                b = b0
        return combos[b], out

    def _cv_score(self, entry):
        """What the search minimises for a setting's held-out ``{"error", "log_loss"}``: the error with ties broken
        by log-loss, or the log-loss (``criterion``)."""
        return entry["log_loss"] if self.criterion == "log_loss" else entry["error"] + 1e-3 * entry["log_loss"]

    def _hedge_components(self, best, combos):
        """What ``hedge`` averages: the chosen setting and the best main-effect settings (0/1 labels; soft labels
        where the grid has them), by the same cross-validation score; just ``[best]`` when the chosen setting is
        the 0/1-label main-effect model or nothing was cross-validated."""
        sc = self.cv_scores_
        if not sc or best not in sc or (best[1] == 0 and best[2] == 0 and not best[3]):
            return [best]
        out = [best]
        for so in (False, True):
            cand = [c for c in combos if c[1] == 0 and c[2] == 0 and c[3] == so and c in sc]
            if cand:
                out.append(min(cand, key=lambda c: self._cv_score(sc[c])))
        return list(dict.fromkeys(out))

    def _hedge_weights(self, hedge):
        """Pseudo-BMA weights ``exp(-n * held-out log-loss)`` of the settings in ``hedge``, normalised."""
        if len(hedge) == 1:
            return np.ones(1)
        lw = -float(self._cv_n) * np.array([self.cv_scores_[c]["log_loss"] for c in hedge])
        w = np.exp(lw - lw.max())
        return w / w.sum()

    def majority_side(self, pairs):
        """Per pair: +1 / -1 where its main task's measured directed pairs have a strict majority of gains /
        losses, 0 where they split evenly or none is measured."""
        check_is_fitted(self, "cov_")
        out = []
        for m, _a in pairs:
            n, g = self.main_counts_.get(m, 0), self.main_gains_.get(m, 0)
            out.append(0 if n == 0 or 2 * g == n else (1 if 2 * g > n else -1))
        return np.array(out, dtype=int)

    def _fold_repeats(self, pairs, n):
        """The folds of the ``cv_repeats`` repetitions of the cross-validation (each :meth:`_folds` with its own
        seed); ``[]`` when there is no search."""
        out = []
        for r in range(int(self.cv_repeats)):
            f = self._folds(pairs, n, None if self.random_state is None else [int(self.random_state), r] if r else
                            self.random_state)
            if f is None:
                return []
            out.append(f)
        return out

    def _folds(self, pairs, n, seed=None):
        """Fold of every row: unordered pairs (both directions together) spread over the folds."""
        keys = [tuple(sorted(q)) for q in pairs] if pairs is not None else [(i,) for i in range(n)]
        uniq = sorted(set(keys))
        if len(uniq) < 4:
            return None
        K = min(int(self.cv_folds), len(uniq))
        if K < 2:
            return None
        rng = np.random.default_rng(self.random_state if seed is None else seed)
        order = rng.permutation(len(uniq))
        fold_of = {uniq[i]: k % K for k, i in enumerate(order)}
        return np.array([fold_of[k] for k in keys])

    # -- predict -------------------------------------------------------------------------------------------
    def _predict_design(self, X, pairs):
        """Validated prediction inputs: the design (feature terms shrunk outside the training range), the pairs,
        and which rows belong to a main task with no measured pair."""
        check_is_fitted(self, "cov_")
        X = validate_data(self, X, reset=False, ensure_min_features=0, dtype=np.float64)
        n = X.shape[0]
        if pairs is None:
            if self._use_main or self._use_aux:
                raise ValueError("GainModel: fitted with task effects; give pairs=[(main, aux), ...] to predict")
            pairs = [("", "")] * n
        pairs = [tuple(q) for q in pairs]
        if len(pairs) != n:
            raise ValueError(f"GainModel: {len(pairs)} pairs for {n} rows")
        Xs, excess = self._scale(X)
        A = self._design(Xs, pairs)
        A[:, self._feat_off:] *= (1.0 / (1.0 + self.shrink * excess))[:, None]
        new = np.array([m not in self.main_counts_ for m, _a in pairs], dtype=bool) if self._use_main \
            else np.zeros(n, dtype=bool)
        return A, pairs, new

    def _row_level(self, A, w, pairs):
        """``row_majority``: the change to ``A @ w`` that moves each row's main-task level (intercept + main
        effect) to its measured strict majority's side, at most to 0."""
        T = len(self.tasks_)
        row = A[:, :1 + T] @ w[:1 + T]
        side = self.majority_side(pairs)
        row_c = np.where(side > 0, np.maximum(row, 0.0), np.where(side < 0, np.minimum(row, 0.0), row))
        return row_c - row

    def _unseen_var(self, tau_main, tau_aux, pairs):
        """The prior variance a task never seen in fitting adds to a row (its effect is its prior, mean 0):
        ``tau_main^2`` for an unseen main task, ``(tau_aux * kappa / (kappa + n_m))^2`` for an unseen auxiliary."""
        out = np.zeros(len(pairs))
        if self._use_main:
            out = out + tau_main ** 2 * np.array([m not in self._task_index for m, _a in pairs])
        if self._use_aux:
            out = out + (tau_aux * self._row_weight(pairs)) ** 2 * np.array(
                [a not in self._task_index for _m, a in pairs])
        return out

    def predict_logit(self, X, pairs=None):
        """Posterior mean and sd of the logit of a gain under the chosen setting, per row: ``(mu, sd)``."""
        return self._logit(*self._predict_design(X, pairs))

    def _logit(self, A, pairs, new):
        # pairs whose main task has no measured pair use the setting chosen for that situation
        mu = np.where(new, A @ self._w_new, A @ self._w)
        if self.row_majority and self._use_main:
            # a main task's own level (intercept + main effect) takes its measured majority's side (at most to
            # 0): only the pair's own terms (auxiliary effect, features) can overturn a strict majority
            mu = np.where(new, mu, mu + self._row_level(A, self._w, pairs))
        var = np.where(new, np.einsum("nq,qr,nr->n", A, self._cov_new, A), np.einsum("nq,qr,nr->n", A, self.cov_, A))
        tau_m = np.where(new, self.new_task_params_["tau_main"], self.params_["tau_main"])
        tau_a = np.where(new, self.new_task_params_["tau_aux"], self.params_["tau_aux"])
        var += self._unseen_var(tau_m, tau_a, pairs)
        return mu, np.sqrt(np.maximum(var, 0.0))

    def _hedged_logit(self, A, pairs):
        """``hedge``: the logit of the weighted average of the averaged settings' moderated probabilities (each
        with ``row_majority``), per row."""
        W, C = self._hedge
        mu = W @ A.T  # [settings, n]
        if self.row_majority:
            mu = mu + np.stack([self._row_level(A, w, pairs) for w in W])
        var = np.einsum("nq,bqr,nr->bn", A, C, A)
        var += np.stack([self._unseen_var(c[0], c[1], pairs) for c in self.hedge_weights_])
        p = np.array(list(self.hedge_weights_.values())) @ _moderated(mu, var)
        p = np.clip(p, 1e-15, 1.0 - 1e-15)
        return np.log(p) - np.log1p(-p)

    def tie_capped(self, pairs):
        """Per pair: True where ``tie_rule="majority"`` caps ``P(gain)`` at 0.5 (its main task's measured pairs
        split exactly evenly, and the setting is the main-effect model or the main task has at least
        ``tie_pairs`` measured directed pairs)."""
        check_is_fitted(self, "cov_")
        if self.tie_rule != "majority" or not self._use_main:
            return np.zeros(len(pairs), dtype=bool)
        simple = self.params_["tau_aux"] == 0 and self.params_["tau_feat"] == 0 and not self.params_["soft"]
        out = []
        for m, _a in pairs:
            n = self.main_counts_.get(m, 0)
            tie = n > 0 and 2 * self.main_gains_.get(m, 0) == n
            out.append(bool(tie and (simple or n >= self.tie_pairs)))
        return np.array(out, dtype=bool)

    def predict_proba(self, X, pairs=None):
        p1 = _sigmoid(self.decision_function(X, pairs))
        return np.column_stack([1.0 - p1, p1])

    def decision_function(self, X, pairs=None):
        """The moderated logit ``mu / sqrt(1 + pi sd^2 / 8)`` (with ``hedge``: the logit of the averaged
        probability for pairs of measured main tasks), at most 0 where the tie rule applies."""
        A, pairs_, new = self._predict_design(X, pairs)
        mu, sd = self._logit(A, pairs_, new)
        z = mu / np.sqrt(1.0 + np.pi * sd**2 / 8.0)
        if pairs is not None:
            pairs = pairs_
            if self._hedge is not None:  # pairs of a main task with no measured pair are not averaged
                z = np.where(new, z, self._hedged_logit(A, pairs))
            z = np.where(self.tie_capped(pairs), np.minimum(z, 0.0), z)
            if self.majority_pairs is not None and self._use_main:
                side = self.majority_side(pairs)
                n_m = np.array([self.main_counts_.get(m, 0) for m, _a in pairs])
                side = np.where(n_m >= self.majority_pairs, side, 0)
                z = np.where(side > 0, np.maximum(z, 1e-9), np.where(side < 0, np.minimum(z, 0.0), z))
        return z

    def predict(self, X, pairs=None):
        return (self.predict_proba(X, pairs)[:, 1] > 0.5).astype(int)

    def score(self, X, y, pairs=None, sample_weight=None):
        from sklearn.metrics import accuracy_score

        return accuracy_score(y, self.predict(X, pairs), sample_weight=sample_weight)


# ------------------------------------------------------------------------------------------------------------
# pair selection
# ------------------------------------------------------------------------------------------------------------
def query_model():
    """The gain model whose uncertainty chooses an active round's pairs: :class:`GainModel` with the richer
    settings the cross-validation picks kept as they are (``simple_rule="none"``) and the auxiliary and feature
    terms at full weight (``row_shrink=None``), even splits and majorities left to the model (``tie_rule="model"``,
``majority_pairs=None``), and one setting chosen on every held-out row (``cv_rows="all"``): the pairs it picks
are those it picked before the last three rules were added to the labelling model.

    Choosing what to measure and labelling what is not measured are two jobs. The labels come from the default
    :class:`GainModel`, which falls back to the main-task effect unless the richer terms make fewer held-out
    errors, and lets those terms give way to the main task's own measured pairs. The pairs to measure are those
    the richest model is least sure of: in 30-replay screens on the released logs the default model as the
    chooser picked pairs on which every predictor, the main-task majority too, was up to 0.05 less accurate at
    27-32 pairs, and the labels at 15 pairs were 0.765-0.777 instead of 0.785. Neither job sees an untrained
    pair.
    """
    return GainModel(simple_rule="none", cv_rows="all", cv_repeats=1, row_shrink=None, tie_rule="model",
                     majority_pairs=None, row_majority=False, hedge=False)


def all_pairs(tasks):
    return list(itertools.combinations(sorted(tasks), 2))


def balanced_design(tasks, n_pairs, rng=None, start=()):
    """``n_pairs`` unordered pairs (added to ``start``) such that every task is in about the same number.

    Greedy: each pick takes, among the pairs not chosen yet, one of those whose two tasks have the fewest pairs
    so far (smallest maximum, then smallest sum), at random among ties. With ``n_pairs = ceil(T / 2)`` from an
    empty start every task is in exactly one pair (odd T: one task in two).
    """
    rng = np.random.default_rng(rng)
    tasks = sorted(tasks)
    chosen = [tuple(sorted(p)) for p in start]
    deg = {t: 0 for t in tasks}
    for a, b in chosen:
        deg[a] += 1
        deg[b] += 1
    left0 = [p for p in all_pairs(tasks) if p not in set(chosen)]
    if n_pairs > len(left0):
        raise ValueError(f"balanced_design: {n_pairs} pairs asked, only {len(left0)} left")
    best, best_spread = None, None
    for _attempt in range(50):  # the greedy can paint itself into a corner: retry, keep the most even
        d = dict(deg)
        left = list(left0)
        new = []
        for _ in range(n_pairs):
            score = np.array([max(d[a], d[b]) * 1000 + d[a] + d[b] for a, b in left])
            cand = np.nonzero(score == score.min())[0]
            p = left.pop(int(cand[rng.integers(len(cand))]))
            new.append(p)
            d[p[0]] += 1
            d[p[1]] += 1
        spread = max(d.values()) - min(d.values())
        if best is None or spread < best_spread:
            best, best_spread = new, spread
        if spread <= 1:
            break
    return best


def _directed(pairs):
    return [d for a, b in pairs for d in ((a, b), (b, a))]


def next_round(model_factory, tasks, measured, size, features=None, rng=None):
    """One active round: fit a gain model on the measured directed pairs, pick ``size`` untrained pairs.

    ``measured``: ``{(main, aux): (label, gain)}`` for both directions of every trained pair; ``features``:
    callable ``pairs -> X [n, p]`` (or None). Score of an unordered pair: ``min(p, 1-p)`` of its two
    directions, summed; after each pick the scores of pairs sharing a task with it are halved for the rest of
    the round, so one round spreads over tasks (the Gaussian priors keep the fit defined even when every
    measured label is the same).
    """
    rng = np.random.default_rng(rng)
    done = {tuple(sorted(p)) for p in measured}
    left = [p for p in all_pairs(tasks) if p not in done]
    size = min(size, len(left))
    if size <= 0:
        return []
    mpairs = sorted(measured)
    y = np.array([measured[p][0] for p in mpairs], dtype=int)
    g = np.array([measured[p][1] for p in mpairs], dtype=float)
    Xm = features(mpairs) if features is not None else np.zeros((len(mpairs), 0))
    model = model_factory().fit(Xm, y, pairs=mpairs, gain=g)
    hid = _directed(left)
    Xh = features(hid) if features is not None else np.zeros((len(hid), 0))
    p = model.predict_proba(Xh, pairs=hid)[:, 1]
    unc = np.minimum(p, 1.0 - p).reshape(-1, 2).sum(axis=1)
    unc = unc + rng.uniform(0.0, 1e-9, len(unc))  # random among ties
    weight = {t: 1.0 for t in tasks}
    out = []
    avail = list(range(len(left)))
    for _ in range(size):
        sc = [unc[i] * weight[left[i][0]] * weight[left[i][1]] for i in avail]
        k = avail.pop(int(np.argmax(sc)))
        out.append(left[k])
        weight[left[k][0]] *= 0.5
        weight[left[k][1]] *= 0.5
    return out


def round_sizes(n_tasks, n_pairs, select, round_size=None):
    """Sizes of the training rounds of a budgeted sweep (each round one model array)."""
    if n_pairs <= 0:
        return []
    if select in ("design", "random"):
        return [n_pairs]
    first = min(n_pairs, math.ceil(n_tasks / 2))
    size = round_size or max(2, math.ceil(n_tasks / 4))
    out = [first]
    while sum(out) < n_pairs:
        out.append(min(size, n_pairs - sum(out)))
    return out


def choose_pairs(tasks, n_pairs, select="active", oracle=None, model_factory=None, features=None, rng=None,
                 round_size=None):
    """Replay the sweep's choice of ``n_pairs`` pairs. ``oracle(pair) -> {(m, a): (label, gain), (a, m): ...}``
    gives the measurements of a trained pair (a sweep trains it; a replay looks it up). Returns the list of
    rounds (lists of pairs)."""
    rng = np.random.default_rng(rng)
    tasks = sorted(tasks)
    total = len(tasks) * (len(tasks) - 1) // 2
    if not 0 <= n_pairs <= total:
        raise ValueError(f"choose_pairs: n_pairs must be in 0..{total}, got {n_pairs}")
    if select not in ("design", "active", "random"):
        raise ValueError(f"choose_pairs: select must be design, active or random, got {select!r}")
    if select == "random":
        allp = all_pairs(tasks)
        idx = rng.choice(len(allp), size=n_pairs, replace=False)
        return [[allp[i] for i in sorted(idx)]]
    if select == "design":
        return [balanced_design(tasks, n_pairs, rng)]
    sizes = round_sizes(len(tasks), n_pairs, select, round_size)
    rounds = [balanced_design(tasks, sizes[0], rng)]
    measured = {}
    for p in rounds[0]:
        measured.update(oracle(p))
    for s in sizes[1:]:
        r = next_round(model_factory or query_model, tasks, measured, s, features, rng)
        rounds.append(r)
        for p in r:
            measured.update(oracle(p))
    return rounds


# ------------------------------------------------------------------------------------------------------------
# baselines and replay
# ------------------------------------------------------------------------------------------------------------
def main_majority(measured, hidden):
    """Each main task's majority sign among its measured pairs; loss where none is measured or on a tie."""
    by = {}
    for (m, _a), (lab, _g) in measured.items():
        by.setdefault(m, []).append(lab)
    out = []
    for m, _a in hidden:
        labs = by.get(m)
        out.append(int(bool(labs) and np.mean(labs) > 0.5))
    return np.array(out, dtype=int)


class PairFeatures:
    """Pair features from task features: 3 columns (main, aux, main/aux) per task feature, then the main task's
    single-task F1 (``f1``: ``{task: F1}``) when given. ``features``: the task features to use (default: those
    of :data:`mtlfast.meta.table.TASK_FEATURES` finite for every task in ``tasks``)."""

    def __init__(self, task_features, tasks, f1=None, features=None):
        from mtlfast.meta.table import TASK_FEATURES, safe_ratio

        tf = task_features or {}
        if features is None:
            features = [f for f in TASK_FEATURES
                        if all(math.isfinite(tf.get(t, {}).get(f, math.nan)) for t in tasks)]
        for t in tasks:
            for f in features:
                if not math.isfinite(tf.get(t, {}).get(f, math.nan)):
                    raise ValueError(f"task {t} has no finite value of feature {f}")
        self.features = list(features)
        self.task_features = tf
        self.f1 = dict(f1) if f1 and all(math.isfinite(f1.get(t, math.nan)) for t in tasks) else {}
        self.columns = [f"{k}_{f}" for f in self.features for k in ("main", "aux", "ratio")]
        if self.f1:
            self.columns.append("main_f1_single")
        self._ratio = safe_ratio

    def X(self, pairs):
        """Pair features of the given directed pairs: 3 columns per task feature, + the main single-task F1."""
        cols = []
        for f in self.features:
            mv = np.array([self.task_features[m][f] for m, _a in pairs], dtype=float)
            av = np.array([self.task_features[a][f] for _m, a in pairs], dtype=float)
            cols += [mv, av, self._ratio(mv, av)]
        if self.f1:
            cols.append(np.array([self.f1[m] for m, _a in pairs], dtype=float))
        return np.column_stack(cols) if cols else np.zeros((len(pairs), 0))

    __call__ = X


class GainMatrix(PairFeatures):
    """A complete gain matrix: ``gains`` rows (``main, aux, gain, label`` [+ ``f1_single``]) and optional task
    features ``{task: {feature: value}}``."""

    def __init__(self, rows, task_features=None, features=None, use_f1=True):
        self.rows = {(r["main"], r["aux"]): r for r in rows}
        self.tasks = sorted({t for p in self.rows for t in p})
        missing = [(a, b) for a in self.tasks for b in self.tasks if a != b and (a, b) not in self.rows]
        if missing:
            raise ValueError(f"GainMatrix: the gain matrix is not complete; missing directed pairs {missing[:5]}"
                             + (" ..." if len(missing) > 5 else ""))
        f1 = {}
        if use_f1 and all("f1_single" in r and math.isfinite(r["f1_single"]) for r in self.rows.values()):
            f1 = {m: r["f1_single"] for (m, _a), r in self.rows.items()}
        self.dropped = []
        if features is None and task_features:  # those finite for every task; the others are listed
            from mtlfast.meta.table import TASK_FEATURES

            present = set.intersection(*(set(task_features.get(t, {})) for t in self.tasks))
            features = [f for f in TASK_FEATURES if f in present
                        and all(math.isfinite(task_features[t][f]) for t in self.tasks)]
            self.dropped = [f for f in TASK_FEATURES if f in present and f not in features]
        try:
            super().__init__(task_features, self.tasks, f1, features or [])
        except ValueError as exc:
            raise ValueError(f"GainMatrix: {exc}") from None

    def measure(self, pair):
        a, b = pair
        return {(a, b): (int(self.rows[(a, b)]["label"]), float(self.rows[(a, b)]["gain"])),
                (b, a): (int(self.rows[(b, a)]["label"]), float(self.rows[(b, a)]["gain"]))}

    def labels(self, pairs):
        return np.array([int(self.rows[p]["label"]) for p in pairs], dtype=int)


def _scores(pred, y):
    pred = np.asarray(pred, dtype=int)
    y = np.asarray(y, dtype=int)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    acc = float((pred == y).mean()) if len(y) else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
    return acc, f1


def _fit_predict(model_factory, gm, measured, hidden, use_features):
    mp = sorted(measured)
    y = np.array([measured[p][0] for p in mp], dtype=int)
    g = np.array([measured[p][1] for p in mp], dtype=float)
    Xm = gm.X(mp) if use_features else np.zeros((len(mp), 0))
    Xh = gm.X(hidden) if use_features else np.zeros((len(hidden), 0))
    model = model_factory().fit(Xm, y, pairs=mp, gain=g)
    return model.predict_proba(Xh, pairs=hidden)[:, 1], model


def baseline_predictions(gm, measured, hidden, feature_only=None):
    """Predictions of the baselines on ``hidden`` directed pairs: ``main_majority``, ``always_loss`` and
    (when ``feature_only`` is a fitted classifier factory) the paper's feature-only classifier (min-max +
    logistic regression, C = 1, on the 42 features) fitted on the measured pairs."""
    out = {"main_majority": main_majority(measured, hidden), "always_loss": np.zeros(len(hidden), dtype=int)}
    if gm.features:
        from mtlfast.meta.predictor import GainPredictor

        mp = sorted(measured)
        y = np.array([measured[p][0] for p in mp], dtype=int)
        if y.min() == y.max():
            out["feature_only"] = np.full(len(hidden), y[0], dtype=int)
        else:
            nf = 3 * len(gm.features)
            clf = GainPredictor().fit(gm.X(mp)[:, :nf], y)
            out["feature_only"] = clf.predict(gm.X(hidden)[:, :nf]).astype(int)
    return out


def replay(gm, n_pairs, select="active", model_factory=None, rng=None, use_features=True, round_size=None,
           query_factory=None):
    """One replay: choose ``n_pairs`` pairs as the sweep would, predict the other directed pairs, score them.

    Returns a dict ``{method: (accuracy, f1)}`` with ``model`` (the gain model on the chosen pairs), the
    baselines of :func:`baseline_predictions` on the same pairs, and ``random_pairs`` (the same model on
    as many uniformly random pairs).
    """
    rng = np.random.default_rng(rng)
    factory = model_factory or GainModel
    feats = gm.X if use_features else None
    rounds = choose_pairs(gm.tasks, n_pairs, select, gm.measure, query_factory or query_model, feats, rng, round_size)
    out = {}
    for name, rr in (("model", rounds), ("random_pairs", choose_pairs(gm.tasks, n_pairs, "random", rng=rng))):
        chosen = {p for r in rr for p in r}
        measured = {}
        for p in chosen:
            measured.update(gm.measure(p))
        hidden = _directed([p for p in all_pairs(gm.tasks) if p not in chosen])
        if not hidden:
            continue
        y = gm.labels(hidden)
        prob, _ = _fit_predict(factory, gm, measured, hidden, use_features)
        out[name] = _scores(prob > 0.5, y)
        if name == "model":
            for b, pred in baseline_predictions(gm, measured, hidden).items():
                out[b] = _scores(pred, y)
    return out


def replay_curve(gm, ns, n_replays=100, select="active", model_factory=None, seed=0, use_features=True,
                 progress=None, round_size=None, query_factory=None):
    """Mean and sd over ``n_replays`` replays for every ``N`` in ``ns``: list of row dicts."""
    rows = []
    for N in ns:
        res = {}
        for r in range(n_replays):
            rr = replay(gm, N, select, model_factory, rng=np.random.default_rng([seed, N, r]),
                        use_features=use_features, round_size=round_size, query_factory=query_factory)
            for k, v in rr.items():
                res.setdefault(k, []).append(v)
        row = {"n_pairs": N, "hidden_directed": len(gm.tasks) * (len(gm.tasks) - 1) - 2 * N}
        for k, v in res.items():
            v = np.array(v)
            row[f"{k}_accuracy"] = float(v[:, 0].mean())
            row[f"{k}_accuracy_sd"] = float(v[:, 0].std(ddof=1)) if len(v) > 1 else 0.0
            row[f"{k}_f1"] = float(v[:, 1].mean())
        if "model" in res and "main_majority" in res:  # paired: the same replays
            d = np.array(res["model"])[:, 0] - np.array(res["main_majority"])[:, 0]
            row["model_minus_main_majority"] = float(d.mean())
            row["model_minus_main_majority_se"] = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
        rows.append(row)
        if progress:
            progress(row)
    return rows


# ------------------------------------------------------------------------------------------------------------
# feature-only case: choose features by nested leave-one-task-out
# ------------------------------------------------------------------------------------------------------------
def _loto_masks(pairs, tasks):
    tr = np.array([[t not in p for p in pairs] for t in tasks])
    return tr, ~tr


def _fit_groups_loto(X, y, train, subsets, taus):
    """Held-out probabilities of a feature-only GainModel (intercept + features; min-max scaled on each fold's
    training rows) for every (subset of columns, tau) over every fold. Returns ``prob [S, T, F, n]``."""
    F, n = train.shape
    S, p = subsets.shape
    lo = np.stack([X[tr].min(axis=0) if tr.any() else np.zeros(X.shape[1]) for tr in train])
    hi = np.stack([X[tr].max(axis=0) if tr.any() else np.ones(X.shape[1]) for tr in train])
    rng_ = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    Xs = (X[None] - lo[:, None]) / rng_[:, None]  # [F, n, p]
    excess = np.sum(np.maximum(Xs - 1, 0) + np.maximum(-Xs, 0), axis=2)  # [F, n]
    Xc = np.clip(Xs, 0, 1)
    A_all = np.concatenate([np.ones((F, n, 1)), Xc], axis=2)
    out = np.zeros((S, len(taus), F, n))
    for s in range(S):
        m = np.r_[True, subsets[s]]
        A = A_all[:, :, m]
        for k, tau in enumerate(taus):
            pen = np.r_[1.0 / TAU_INTERCEPT**2, np.full(m.sum() - 1, 1.0 / tau**2)]
            w, H, _ = fit_logistic_batch(A, y.astype(float), train.astype(float), pen)
            cov = np.linalg.inv(H)
            Ash = A.copy()
            Ash[:, :, 1:] /= (1.0 + excess)[:, :, None]
            mu = np.einsum("fnq,fq->fn", Ash, w)
            var = np.einsum("fnq,fqr,fnr->fn", Ash, cov, Ash)
            out[s, k] = _moderated(mu, var)
    return out


def loto_feature_search(X, y, pairs, groups, taus=(0.3, 1.0, 3.0), max_groups=3, one_se=True):
    """Greedy forward selection of feature groups (and the prior sd ``tau``) by leave-one-task-out accuracy.

    ``groups``: ``{name: [column indices]}``. Starts from the empty set (intercept only: the base rate); adds
    the group that raises LOTO accuracy most (ties: lower log-loss), up to ``max_groups`` groups. A set on the
    path replaces the best so far only if it is more accurate by more than one standard error of the paired
    difference over the held-out pairs (``one_se``; otherwise by anything), so that noise does not buy a feature.
    Returns ``{"groups": [...], "tau": t, "accuracy": a, "log_loss": l}``.
    """
    y = np.asarray(y, dtype=int)
    tasks = sorted({t for p in pairs for t in p})
    tr, te = _loto_masks(pairs, tasks)
    ok = tr.any(axis=1) & te.any(axis=1)
    tr, te = tr[ok], te[ok]
    names = list(groups)
    p = X.shape[1]

    def mask(sel):
        m = np.zeros(p, dtype=bool)
        for g in sel:
            m[groups[g]] = True
        return m

    def evaluate(cands):
        subsets = np.stack([mask(c) for c in cands])
        prob = _fit_groups_loto(X, y, tr, subsets, list(taus))  # [S, T, F, n]
        correct = ((prob > 0.5) == y)[..., te]  # [S, T, held-out pairs]
        ll = (_log_loss(prob, y) * te).sum(axis=(2, 3)) / te.sum()
        return correct, ll

    base_pred = np.array([[int(y[t_].mean() >= 0.5)] * len(y) for t_ in tr])
    best_correct = (base_pred == y)[te]
    best = {"groups": [], "tau": None, "accuracy": float(best_correct.mean()), "log_loss": float("nan")}
    current = []
    for _ in range(min(max_groups, len(names))):
        cands = [current + [g] for g in names if g not in current]
        correct, ll = evaluate(cands)
        acc = correct.mean(axis=2)
        key = acc - 1e-6 * ll
        s, k = np.unravel_index(int(np.argmax(key)), key.shape)
        current = cands[s]
        d = correct[s, k].astype(float) - best_correct
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if one_se and len(d) > 1 else 0.0
        if d.mean() > se + 1e-12:
            best_correct = correct[s, k]
            best = {"groups": list(current), "tau": float(taus[k]), "accuracy": float(acc[s, k]),
                    "log_loss": float(ll[s, k])}
    return best


def nested_loto(X, y, pairs, groups, taus=(0.3, 1.0, 3.0), max_groups=3):
    """Honest leave-one-task-out accuracy of "search features by inner LOTO, then fit": for every held-out
    task, :func:`loto_feature_search` runs on the pairs without it, and the chosen model predicts its pairs.

    Returns ``{"accuracy", "f1", "majority_accuracy", "always_gain_f1", "rows": [...], "chosen": [...]}``
    (pooled over every held-out pair; a pair is held out twice, once per task, as
    :func:`mtlfast.meta.analysis.leave_one_task_out` counts).
    """
    y = np.asarray(y, dtype=int)
    tasks = sorted({t for p in pairs for t in p})
    preds, ys, maj, chosen, rows = [], [], [], [], []
    for t in tasks:
        tr = np.array([t not in p for p in pairs])
        if tr.sum() < 2 or tr.all():
            continue
        sub_pairs = [p for p, k in zip(pairs, tr) if k]
        Xtr, ytr = X[tr], y[tr]
        m_pred = int(ytr.mean() >= 0.5)
        if len({q for p in sub_pairs for q in p}) < 3 or ytr.min() == ytr.max():
            best = {"groups": [], "tau": None}
        else:
            best = loto_feature_search(Xtr, ytr, sub_pairs, groups, taus, max_groups)
        if best["groups"]:
            cols = sorted(c for g in best["groups"] for c in groups[g])
            model = GainModel(tau_feat=best["tau"], main_effects=False, aux_effects=False)
            model.fit(Xtr[:, cols], ytr)
            pr = model.predict(X[~tr][:, cols])
        else:
            pr = np.full((~tr).sum(), m_pred)
        preds.append(pr)
        ys.append(y[~tr])
        maj.append(np.full((~tr).sum(), m_pred))
        chosen.append({"task": t, "groups": best["groups"], "tau": best["tau"]})
        a, f = _scores(pr, y[~tr])
        rows.append({"task": t, "n_test": int((~tr).sum()), "accuracy": a, "f1": f,
                     "majority_accuracy": _scores(maj[-1], y[~tr])[0]})
    if not preds:
        return {"accuracy": float("nan"), "f1": float("nan"), "majority_accuracy": float("nan"), "rows": [],
                "chosen": []}
    P, Y, Mj = np.concatenate(preds), np.concatenate(ys), np.concatenate(maj)
    acc, f1 = _scores(P, Y)
    macc, _ = _scores(Mj, Y)
    return {"accuracy": acc, "f1": f1, "majority_accuracy": macc,
            "always_gain_f1": _scores(np.ones_like(Y), Y)[1], "rows": rows, "chosen": chosen}


# ------------------------------------------------------------------------------------------------------------
# a gain matrix with a known structure
# ------------------------------------------------------------------------------------------------------------
def synthetic_gains(n_tasks=10, seed=0, main_sd=1.0, aux_sd=0.8, noise_sd=0.5, feature_noise=0.3):
    """A complete gain matrix from task effects + noise, with task features that carry the effects.

    ``gain(m, a) = s_m * (u_m + v_a + e_ma)`` with ``u ~ N(0, main_sd)``, ``v ~ N(0, aux_sd)``,
    ``e ~ N(0, noise_sd)`` and a per-main scale ``s_m`` (log-normal: some tasks move by 0.1 %, others by 10 %).
    Task features: ``size`` = ``1000 * exp(u_m + noise)`` (a main-effect proxy), ``label_entropy`` = ``v_a +
    noise`` (an auxiliary-effect proxy), two pure-noise features (``oov_rate``, ``jsd_train_test``).
    Returns ``(rows, task_features, truth)`` with ``rows`` in the ``read_gains`` format (``f1_single`` too).
    """
    rng = np.random.default_rng(seed)
    tasks = [f"t{i:02d}" for i in range(n_tasks)]
    u = rng.normal(0, main_sd, n_tasks)
    v = rng.normal(0, aux_sd, n_tasks)
    s = np.exp(rng.normal(0, 1.0, n_tasks))
    feats = {t: {"size": float(1000 * np.exp(u[i] + rng.normal(0, feature_noise))),
                 "label_entropy": float(v[i] + rng.normal(0, feature_noise)),
                 "oov_rate": float(rng.uniform(0, 10)), "jsd_train_test": float(rng.uniform(0, 0.3))}
             for i, t in enumerate(tasks)}
    f1 = {t: float(rng.uniform(0.4, 0.95)) for t in tasks}
    rows = []
    for i, m in enumerate(tasks):
        for j, a in enumerate(tasks):
            if i != j:
                g = float(s[i] * (u[i] + v[j] + rng.normal(0, noise_sd)))
                rows.append({"main": m, "aux": a, "gain": g, "label": int(g > 0), "f1_single": f1[m],
                             "label_source": "gain > 0"})
    return rows, feats, {"main": dict(zip(tasks, u)), "aux": dict(zip(tasks, v)), "scale": dict(zip(tasks, s))}


def fit_for_new_tasks(X, y, pairs, groups, gain=None, taus=(0.3, 1.0, 3.0), max_groups=3, random_state=0):
    """The model ``python -m mtlfast.predict`` uses for pairs with a task never trained in a pair: feature groups
    (and their prior sd) chosen by leave-one-task-out on the sweep's pairs (:func:`loto_feature_search`), then a
    :class:`GainModel` with main and auxiliary effects of the sweep's tasks on those features. A pair whose main
    task is known gets its main effect; a new task's effect is unknown (prior mean 0, its full prior variance),
    so its pairs fall back to the features and the base rate. Returns ``(model, columns, search)``."""
    y = np.asarray(y, dtype=int)
    if y.min() == y.max() or len({t for p in pairs for t in p}) < 3:
        search = {"groups": [], "tau": None}
    else:
        search = loto_feature_search(X, y, pairs, groups, taus, max_groups)
    cols = sorted(c for g in search["groups"] for c in groups[g])
    tau_feat = (0.0, search["tau"]) if cols else 0.0
    model = GainModel(tau_feat=tau_feat, random_state=random_state)
    model.fit(X[:, cols], y, pairs=pairs, gain=gain)
    return model, cols, search


def loto_new_tasks(X, y, pairs, groups, gain=None, taus=(0.3, 1.0, 3.0), max_groups=3):
    """Honest leave-one-task-out accuracy of :func:`fit_for_new_tasks`: each task in turn is made "new" (its pairs
    removed), the whole procedure (feature search included) runs on the rest, and the held-out task's pairs are
    predicted. Beside it the majority class of the training pairs. Pooled over every held-out pair."""
    y = np.asarray(y, dtype=int)
    gain = None if gain is None else np.asarray(gain, dtype=float)
    tasks = sorted({t for p in pairs for t in p})
    P, Y, Mj, rows = [], [], [], []
    for t in tasks:
        tr = np.array([t not in p for p in pairs])
        if tr.sum() < 2 or tr.all():
            continue
        sub = [p for p, k in zip(pairs, tr) if k]
        ytr = y[tr]
        hid = [p for p, k in zip(pairs, tr) if not k]
        if ytr.min() == ytr.max():
            pred = np.full(len(hid), ytr[0])
        else:
            model, cols, _s = fit_for_new_tasks(X[tr], ytr, sub, groups, None if gain is None else gain[tr], taus,
                                                max_groups)
            pred = model.predict(X[~tr][:, cols], pairs=hid)
        maj = np.full(len(hid), int(ytr.mean() >= 0.5))
        P.append(pred)
        Y.append(y[~tr])
        Mj.append(maj)
        a, f = _scores(pred, y[~tr])
        rows.append({"task": t, "n_test": len(hid), "accuracy": a, "f1": f,
                     "majority_accuracy": _scores(maj, y[~tr])[0]})
    if not P:
        return {"accuracy": float("nan"), "f1": float("nan"), "majority_accuracy": float("nan"), "rows": []}
    P, Y, Mj = np.concatenate(P), np.concatenate(Y), np.concatenate(Mj)
    acc, f1 = _scores(P, Y)
    return {"accuracy": acc, "f1": f1, "majority_accuracy": _scores(Mj, Y)[0], "rows": rows}


# ------------------------------------------------------------------------------------------------------------
# a budgeted sweep: rounds of pair runs, then the gains of every directed pair, measured or predicted
# ------------------------------------------------------------------------------------------------------------
SELECT_MODES = ("active", "design", "random")


def budget_size(n_tasks, pairs=0, pair_budget=0.0):
    """Pair runs a budget allows: ``pairs`` (N) or ``round(pair_budget * all pairs)``, at least 1; ``None``
    when neither is set (train every pair) or when the budget covers every pair."""
    total = n_tasks * (n_tasks - 1) // 2
    if pairs and pair_budget:
        raise ValueError("--pairs and --pair-budget contradict each other: give one")
    if pairs:
        n = int(pairs)
    elif pair_budget:
        if not 0.0 < pair_budget <= 1.0:
            raise ValueError(f"--pair-budget: expected a fraction in (0, 1], got {pair_budget!r}")
        n = max(1, int(round(pair_budget * total)))
    else:
        return None
    if n < 1:
        raise ValueError(f"--pairs: expected a positive integer, got {pairs!r}")
    return None if n >= total else n


def run_rounds(tasks, n_pairs, select, train_round, measured, features=None, seed=0, round_size=None,
               model_factory=None, say=None):
    """Choose and train ``n_pairs`` pairs in rounds, as :func:`choose_pairs` would.

    ``train_round(pairs)`` trains the pairs of one round (one model array; pairs a resumed sweep already finished
    are skipped by the caller); ``measured()`` returns ``{(main, aux): (label, gain)}`` of every trained pair
    (both directions); ``features(pairs) -> X`` or None. Deterministic for a seed and the measured gains, so a
    resumed sweep picks the same rounds. Returns the rounds.
    """
    if select not in SELECT_MODES:
        raise ValueError(f"--select: expected one of {', '.join(SELECT_MODES)}, got {select!r}")
    rng = np.random.default_rng([int(seed), len(tasks), int(n_pairs)])
    tasks = sorted(tasks)
    factory = model_factory or query_model
    if select == "random":
        allp = all_pairs(tasks)
        idx = rng.choice(len(allp), size=n_pairs, replace=False)
        rounds_plan = [[allp[i] for i in sorted(idx)]]
        sizes = [n_pairs]
    else:
        sizes = round_sizes(len(tasks), n_pairs, select, round_size)
        rounds_plan = [balanced_design(tasks, sizes[0], rng)]
    rounds = []
    for k, size in enumerate(sizes):
        if k < len(rounds_plan):
            pick = rounds_plan[k]
        else:
            so_far = {tuple(sorted(p)) for r in rounds for p in r}  # a resumed sweep's later rounds are not seen
            meas = {p: v for p, v in measured().items() if math.isfinite(v[1]) and tuple(sorted(p)) in so_far}
            pick = next_round(factory, tasks, meas, size, features, rng) if meas else \
                balanced_design(tasks, size, rng, start=[p for r in rounds for p in r])
        if say:
            say(f"  round {k + 1}/{len(sizes)}: {len(pick)} pair run(s): "
                + ", ".join(f"{a}+{b}" for a, b in pick))
        train_round(pick)
        rounds.append(pick)
    return rounds


def complete_gains(measured_rows, tasks, features=None, model_factory=None, f1=None):
    """Every directed pair of ``tasks``: the measured rows (``status`` ``measured``, ``p_gain`` 1 or 0 by the
    label) and, for the others, the gain model's prediction (``status`` ``predicted``, ``p_gain``, ``label``
    the predicted label, ``gain`` and ``f1_pair`` NaN). ``features``: ``pairs -> X`` or None."""
    tasks = list(tasks)
    meas = {(r["main"], r["aux"]): r for r in measured_rows}
    usable = {p: r for p, r in meas.items() if math.isfinite(r["gain"])}
    hidden = [(m, a) for m in tasks for a in tasks if m != a and (m, a) not in meas]
    probs = {}
    if hidden and usable:
        mp = sorted(usable)
        y = np.array([int(usable[p]["label"]) for p in mp])
        g = np.array([float(usable[p]["gain"]) for p in mp])
        Xm = features(mp) if features is not None else np.zeros((len(mp), 0))
        Xh = features(hidden) if features is not None else np.zeros((len(hidden), 0))
        model = (model_factory or GainModel)().fit(Xm, y, pairs=mp, gain=g)
        probs = dict(zip(hidden, model.predict_proba(Xh, pairs=hidden)[:, 1]))
    out = []
    for m in tasks:
        for a in tasks:
            if m == a:
                continue
            if (m, a) in meas:
                r = dict(meas[(m, a)], status="measured")
                r["p_gain"] = float(r["label"]) if math.isfinite(r["gain"]) else math.nan
            else:
                p = float(probs.get((m, a), math.nan))
                r = {"main": m, "aux": a, "f1_single": (f1 or {}).get(m, math.nan), "f1_pair": math.nan,
                     "gain": math.nan, "label": int(p > 0.5) if math.isfinite(p) else "", "status": "predicted",
                     "p_gain": p}
            out.append(r)
    return out


def write_gains_with_status(rows, path, base_columns=("main", "aux", "f1_single", "f1_pair", "gain", "label")):
    """gains.csv of a budgeted sweep: the usual columns (and seed columns when present), ``status``, ``p_gain``."""
    from mtlfast.meta.gains import SEED_COLUMNS, write_rows_csv

    extra = [c for c in SEED_COLUMNS if any(c in r for r in rows)]
    return write_rows_csv(rows, path, list(base_columns) + extra + ["status", "p_gain"])


def budget_summary(rows, seeds=1):
    """Counts of a gains table with ``status``: ``None`` when every row is measured (or there is no status)."""
    pred = [r for r in rows if str(r.get("status", "")).strip().lower() == "predicted"]
    if not pred:
        return None
    tasks = sorted({r["main"] for r in rows} | {r["aux"] for r in rows})
    total = len(tasks) * (len(tasks) - 1) // 2
    trained = total - len({tuple(sorted((r["main"], r["aux"]))) for r in pred})
    return {"tasks": len(tasks), "pairs_total": total, "pairs_trained": trained,
            "runs_saved": (total - trained) * seeds, "directed_predicted": len(pred),
            "directed_measured": len(rows) - len(pred)}


def budget_paragraph(summary):
    """One sentence for a report: how many pair runs a budgeted sweep trained and saved."""
    s = summary
    return (f"**Budgeted sweep**: {s['pairs_trained']} of {s['pairs_total']} pair runs trained, "
            f"{s['runs_saved']} run(s) saved ({100 * (s['pairs_total'] - s['pairs_trained']) / s['pairs_total']:.0f} %"
            f" of the pair runs). {s['directed_predicted']} of {s['directed_predicted'] + s['directed_measured']} "
            "directed gains are *predicted* by the gain model (hatched in Figure 1, `status` = `predicted` and "
            "`p_gain` in gains.csv), not measured; the meta-analysis below uses the measured ones only.")

"""The meta-classifier the original way (``experiments.ipynb`` of Bingel & Søgaard 2017): the original protocol.

What the notebook does, and what :func:`original_pair_matrix` and :func:`original_cv` re-implement:

- **Pair rows.** One row per directed pair (main, aux), main tasks in sorted order and, for each, the other
  tasks in sorted order. Columns ``main_<f>``, ``aux_<f>`` and ``main/aux_<f>`` for every task feature ``f``,
  the ratio a plain division (the notebook divides Python/NumPy floats; a zero ``aux`` value is an error
  here, as it would be there); ``DictVectorizer`` orders the columns by name.
- **Label.** ``np.sign(gain)``: +1 for a gain, -1 for a loss. A gain of exactly 0 would be a third class 0,
  on which the notebook's ``scoring='f1'`` fails; :func:`original_labels` counts it as a loss (as the
  notebook's gain/loss count, ``diff <= 0``, does) and says so.
- **Scaling.** ``MinMaxScaler`` fitted on all rows once, before the CV (so the test folds take part in it).
- **CV.** 100 repetitions of ``KFold(n_splits=5, shuffle=True, random_state=np.random.randint(100))``: a
  fresh seed out of 0..99 per repetition (so repetitions can share a split; with 100 draws about 63 distinct
  splits are expected). Here the seeds come from ``np.random.RandomState(seed).randint(100)``, so a run is
  repeatable.
- **Classifier.** ``LogisticRegression()`` of the scikit-learn the notebook ran (0.18/0.19), whose default
  solver was ``liblinear`` (L2, C = 1, the intercept penalised like a weight): ``solver="liblinear"`` here.
- **Score.** ``cross_val_score(..., scoring='f1')``: F1 of the class +1 (gain) per fold; per repetition the
  mean over the folds; reported: mean and standard deviation (NumPy's default, ddof = 0) of the repetition
  means. The accuracy is computed the same way beside it (the paper reports both; the notebook prints F1).
"""

from __future__ import annotations

import math

import numpy as np

from mtlfast.meta.curves import CURVE_FEATURES, curve_features_original

__all__ = [
    "ORIGINAL_CURVE_COLUMNS",
    "OriginalCVResult",
    "original_curve_feature_table",
    "original_labels",
    "original_pair_matrix",
    "original_cv",
    "original_meta",
]

#: extra per-task columns of the original protocol's curve_features.csv: all four fitted parameters
ORIGINAL_CURVE_COLUMNS = ("nb_a", "nb_b", "nb_c", "nb_d")


class OriginalCVResult(dict):
    """Result of :func:`original_cv` (a dict): ``f1``, ``f1_sd``, ``accuracy``, ``accuracy_sd``,
    ``f1_reps``, ``accuracy_reps``, ``seeds``, ``n_rows``, ``n_columns``, ``n_gain``, ``n_loss``, ``notes``."""


def original_curve_feature_table(curves):
    """``{task: features}`` from ``{task: (iters, losses)}`` with :func:`curve_features_original`."""
    out = {}
    for task, c in curves.items():
        if not isinstance(c, tuple) or len(c) != 2:
            raise ValueError(f"curve of {task!r}: expected (iterations, losses), the original protocol needs "
                             "the iteration numbers")
        out[task] = curve_features_original(c[0], c[1], name=task)
    return out


def original_labels(gains):
    """``np.sign(gain)`` with a tie counted as a loss: ``(labels, notes)``, labels in {-1, +1}."""
    g = np.asarray(gains, dtype=float)
    y = np.where(g > 0, 1, -1)
    notes = []
    ties = int((g == 0).sum())
    if ties:
        notes.append(f"{ties} pair(s) with a gain of exactly 0 counted as losses (the notebook's np.sign would "
                     "give them a class 0, on which its F1 scorer fails)")
    return y, notes


def original_pair_matrix(gains, task_features, features=None):
    """The notebook's pair matrix.

    Parameters
    ----------
    gains : list of dict
        ``main, aux, gain`` per directed pair (other keys ignored).
    task_features : dict
        ``{task: {feature: value}}``.
    features : sequence of str, optional
        Task features to use; default: every feature of :data:`CURVE_FEATURES` and the data features present
        for all tasks (extra keys such as ``nb_a`` are not features).

    Returns
    -------
    dict with ``X`` (float array), ``gain``, ``y`` (-1/+1), ``columns`` (sorted names, as ``DictVectorizer``),
    ``pairs`` (row order: main sorted, aux sorted) and ``notes``.
    """
    from mtlfast.meta.table import TASK_FEATURES

    by_pair = {(g["main"], g["aux"]): float(g["gain"]) for g in gains}
    tasks = sorted(task_features)
    if features is None:
        features = [f for f in TASK_FEATURES if all(f in task_features[t] for t in tasks)]
    features = list(features)
    if not features:
        raise ValueError("original pair matrix: no task feature present for every task")
    missing = [(t, f) for t in tasks for f in features if f not in task_features[t]]
    if missing:
        raise ValueError(f"original pair matrix: feature {missing[0][1]!r} missing for task {missing[0][0]!r}")
    names = sorted(n for f in features for n in (f"main_{f}", f"aux_{f}", f"main/aux_{f}"))
    rows, pairs, g = [], [], []
    notes = []
    for main in tasks:
        for aux in tasks:
            if main == aux or (main, aux) not in by_pair:
                continue
            gain = by_pair[(main, aux)]
            if not math.isfinite(gain):
                notes.append(f"{main}/{aux}: gain undefined, pair left out")
                continue
            d = {}
            for f in features:
                m, a = float(task_features[main][f]), float(task_features[aux][f])
                if a == 0:
                    raise ValueError(f"original pair matrix: {f} of {aux!r} is 0, so main/aux_{f} is a division "
                                     "by zero (the notebook would fail here too)")
                d[f"main_{f}"], d[f"aux_{f}"], d[f"main/aux_{f}"] = m, a, m / a
            rows.append([d[n] for n in names])
            pairs.append((main, aux))
            g.append(gain)
    X = np.array(rows, dtype=float).reshape(len(rows), len(names))
    bad = [n for n, ok in zip(names, np.all(np.isfinite(X), axis=0)) if not ok]
    if bad:
        raise ValueError(f"original pair matrix: non-finite values in column(s) {', '.join(bad)} (a failed curve "
                         "fit or a NaN data feature); the notebook's MinMaxScaler would reject them too")
    y, lnotes = original_labels(g)
    return {"X": X, "gain": np.array(g, dtype=float), "y": y, "columns": names, "pairs": pairs,
            "notes": notes + lnotes}


def original_cv(X, y, n_repeats=100, n_splits=5, seed=0):
    """The notebook's meta-classifier CV (module docstring); returns an :class:`OriginalCVResult`.

    ``X`` is the unscaled pair matrix (scaled here with ``MinMaxScaler`` on all rows), ``y`` in {-1, +1}.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import MinMaxScaler

    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"original_cv: expected X [n, k] and y [n], got shapes {X.shape} and {y.shape}")
    if not set(np.unique(y)) <= {-1, 1}:
        raise ValueError(f"original_cv: expected labels -1/+1, got {sorted(set(np.unique(y).tolist()))}")
    if n_repeats < 1 or n_splits < 2 or len(y) < n_splits:
        raise ValueError(f"original_cv: need n_repeats >= 1, 2 <= n_splits <= rows; got {n_repeats}, {n_splits}, "
                         f"{len(y)} rows")
    Xs = MinMaxScaler().fit_transform(X)
    rng = np.random.RandomState(seed)
    f1_reps, acc_reps, seeds = [], [], []
    notes = []
    for _ in range(n_repeats):
        rs = int(rng.randint(100))
        seeds.append(rs)
        f1s, accs = [], []
        for tr, te in KFold(n_splits=n_splits, shuffle=True, random_state=rs).split(Xs):
            if len(np.unique(y[tr])) < 2:
                # liblinear cannot fit one class; the notebook would fail. Predict that class.
                pred = np.full(len(te), y[tr][0])
                if "single-class" not in " ".join(notes):
                    notes.append("a training fold held a single class: that class predicted")
            else:
                clf = LogisticRegression(solver="liblinear").fit(Xs[tr], y[tr])
                pred = clf.predict(Xs[te])
            truth = y[te]
            tp = int(np.sum((pred == 1) & (truth == 1)))
            fp = int(np.sum((pred == 1) & (truth == -1)))
            fn = int(np.sum((pred == -1) & (truth == 1)))
            # scikit-learn's F1 of class +1; 0 when there is no positive prediction and no positive truth
            f1s.append(2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0)
            accs.append(float(np.mean(pred == truth)))
        f1_reps.append(float(np.mean(f1s)))
        acc_reps.append(float(np.mean(accs)))
    f1_reps, acc_reps = np.array(f1_reps), np.array(acc_reps)
    return OriginalCVResult(
        f1=float(f1_reps.mean()), f1_sd=float(f1_reps.std()), accuracy=float(acc_reps.mean()),
        accuracy_sd=float(acc_reps.std()), f1_reps=f1_reps.tolist(), accuracy_reps=acc_reps.tolist(),
        seeds=seeds, n_rows=int(len(y)), n_columns=int(X.shape[1]), n_gain=int((y == 1).sum()),
        n_loss=int((y == -1).sum()), n_repeats=int(n_repeats), n_splits=int(n_splits), seed=int(seed),
        notes=notes)


def original_meta(gains, task_features, n_repeats=100, n_splits=5, seed=0):
    """The notebook's CV for the feature sets it reports: all features, data features only, curve features only
    (each where present for every task). Returns ``{"rows": [{"name", **OriginalCVResult}], "notes": [...]}``;
    a set that cannot be scored (a zero or non-finite value, one class, too few pairs) is a note, not an error.
    """
    from mtlfast.meta.table import DATA_FEATURES

    tasks = sorted(task_features)
    present = [f for f in (*DATA_FEATURES, *CURVE_FEATURES)
               if tasks and all(f in task_features[t] and math.isfinite(task_features[t][f]) for t in tasks)]
    sets = [("all features", present),
            ("data features", [f for f in present if f in DATA_FEATURES]),
            ("curve features", [f for f in present if f in CURVE_FEATURES])]
    rows, notes = [], []
    seen = set()
    for name, feats in sets:
        if not feats or tuple(feats) in seen:
            continue
        seen.add(tuple(feats))
        try:
            pm = original_pair_matrix(gains, task_features, feats)
            if len(pm["y"]) < n_splits or len(set(pm["y"].tolist())) < 2:
                raise ValueError(f"{len(pm['y'])} pairs, classes {sorted(set(pm['y'].tolist()))}")
            res = original_cv(pm["X"], pm["y"], n_repeats=n_repeats, n_splits=n_splits, seed=seed)
        except ValueError as exc:
            notes.append(f"{name}: not scored ({exc})")
            continue
        rows.append({"name": f"{name} ({len(feats)} per task, {res['n_columns']} columns)", **res,
                     "notes": pm["notes"] + res["notes"]})
    return {"rows": rows, "notes": notes}

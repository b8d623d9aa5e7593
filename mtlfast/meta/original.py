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
    "notebook_folds",
    "original_cv",
    "original_baselines",
    "original_search",
    "original_meta",
    "original_coefficients",
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


def notebook_folds(n, n_repeats=100, n_splits=5, seed=0):
    """The notebook's folds: ``n_repeats`` repetitions of ``KFold(n_splits, shuffle=True, random_state=r)`` with
    ``r = np.random.RandomState(seed).randint(100)`` drawn per repetition. Returns ``(folds, seeds)``, ``folds``
    a list (one per repetition) of lists of ``(train_idx, test_idx)``."""
    from sklearn.model_selection import KFold

    rng = np.random.RandomState(seed)
    folds, seeds = [], []
    for _ in range(n_repeats):
        rs = int(rng.randint(100))
        seeds.append(rs)
        folds.append(list(KFold(n_splits=n_splits, shuffle=True, random_state=rs).split(np.zeros((n, 1)))))
    return folds, seeds


def _f1_acc(pred, truth):
    tp = int(np.sum((pred == 1) & (truth == 1)))
    fp = int(np.sum((pred == 1) & (truth == -1)))
    fn = int(np.sum((pred == -1) & (truth == 1)))
    # scikit-learn's F1 of class +1; 0 when there is no positive prediction and no positive truth
    return (2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0), float(np.mean(pred == truth))


def _fit_predict(Xs, y, tr, te, notes=None):
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y[tr])) < 2:
        # liblinear cannot fit one class; the notebook would fail. Predict that class.
        if notes is not None and "single-class" not in " ".join(notes):
            notes.append("a training fold held a single class: that class predicted")
        return np.full(len(te), y[tr][0])
    return LogisticRegression(solver="liblinear").fit(Xs[tr], y[tr]).predict(Xs[te])


def _cv_scores(Xs, y, folds, notes=None):
    """Per repetition: mean over its folds of F1 (gain class) and accuracy; arrays [n_repeats]."""
    f1_reps, acc_reps = [], []
    for rep in folds:
        sc = [_f1_acc(_fit_predict(Xs, y, tr, te, notes), y[te]) for tr, te in rep]
        f1_reps.append(float(np.mean([s[0] for s in sc])))
        acc_reps.append(float(np.mean([s[1] for s in sc])))
    return np.array(f1_reps), np.array(acc_reps)


def _result(f1_reps, acc_reps, seeds, y, n_columns, n_repeats, n_splits, seed, notes):
    return OriginalCVResult(
        f1=float(f1_reps.mean()), f1_sd=float(f1_reps.std()), accuracy=float(acc_reps.mean()),
        accuracy_sd=float(acc_reps.std()), f1_reps=f1_reps.tolist(), accuracy_reps=acc_reps.tolist(),
        seeds=seeds, n_rows=int(len(y)), n_columns=int(n_columns), n_gain=int((y == 1).sum()),
        n_loss=int((y == -1).sum()), n_repeats=int(n_repeats), n_splits=int(n_splits), seed=int(seed),
        notes=notes)


def _check_cv_args(X, y, n_repeats, n_splits):
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"original_cv: expected X [n, k] and y [n], got shapes {X.shape} and {y.shape}")
    if not set(np.unique(y)) <= {-1, 1}:
        raise ValueError(f"original_cv: expected labels -1/+1, got {sorted(set(np.unique(y).tolist()))}")
    if n_repeats < 1 or n_splits < 2 or len(y) < n_splits:
        raise ValueError(f"original_cv: need n_repeats >= 1, 2 <= n_splits <= rows; got {n_repeats}, {n_splits}, "
                         f"{len(y)} rows")


def original_cv(X, y, n_repeats=100, n_splits=5, seed=0):
    """The notebook's meta-classifier CV (module docstring); returns an :class:`OriginalCVResult`.

    ``X`` is the unscaled pair matrix (scaled here with ``MinMaxScaler`` on all rows), ``y`` in {-1, +1}.
    """
    from sklearn.preprocessing import MinMaxScaler

    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    _check_cv_args(X, y, n_repeats, n_splits)
    Xs = MinMaxScaler().fit_transform(X)
    folds, seeds = notebook_folds(len(y), n_repeats, n_splits, seed)
    notes = []
    f1_reps, acc_reps = _cv_scores(Xs, y, folds, notes)
    return _result(f1_reps, acc_reps, seeds, y, X.shape[1], n_repeats, n_splits, seed, notes)


def original_baselines(y, n_repeats=100, n_splits=5, seed=0):
    """The two trivial predictors on the notebook's folds (:func:`notebook_folds`, same seeds as
    :func:`original_cv`): ``{"majority baseline": result, "always gain": result}``. The majority predictor
    predicts the training folds' majority class (a tie: gain), always-gain predicts +1 everywhere."""
    y = np.asarray(y)
    folds, seeds = notebook_folds(len(y), n_repeats, n_splits, seed)
    out = {}
    for name in ("majority baseline", "always gain"):
        f1_reps, acc_reps = [], []
        for rep in folds:
            sc = []
            for tr, te in rep:
                if name == "always gain":
                    pred = np.ones(len(te), dtype=int)
                else:
                    pred = np.full(len(te), 1 if (y[tr] == 1).sum() >= (y[tr] == -1).sum() else -1)
                sc.append(_f1_acc(pred, y[te]))
            f1_reps.append(float(np.mean([s[0] for s in sc])))
            acc_reps.append(float(np.mean([s[1] for s in sc])))
        out[name] = _result(np.array(f1_reps), np.array(acc_reps), seeds, y, 0, n_repeats, n_splits, seed, [])
    return out


def _greedy(Xs, y, group_cols, folds_of, n_groups):
    """Greedy forward selection of feature groups by mean accuracy (then F1, then fewer groups) on the folds
    ``folds_of`` (a list of repetitions of ``(train_idx, test_idx)``); returns ``(subset, accuracy, f1)`` of the
    best set on the path."""
    current, path = [], []
    while len(current) < n_groups:
        best = None
        for g in range(n_groups):
            if g in current:
                continue
            cols = sorted(c for k in current + [g] for c in group_cols[k])
            f1r, accr = _cv_scores(Xs[:, cols], y, folds_of)
            acc, f1 = float(accr.mean()), float(f1r.mean())
            key = (round(acc, 12), round(f1, 12))  # rounded: ties between equal scores go to the earlier group
            if best is None or key > best[0]:
                best = (key, g, acc, f1)
        current = current + [best[1]]
        path.append((list(current), best[2], best[3]))
    k = max(range(len(path)), key=lambda i: (round(path[i][1], 12), round(path[i][2], 12), -len(path[i][0])))
    return path[k]


def original_search(X, y, columns, n_repeats=20, n_splits=5, seed=0, outer_repeats=5, inner_splits=5):
    """Best combination of task features (groups of ``main_f``, ``aux_f``, ``main/aux_f`` columns) with the
    notebook's ingredients (``MinMaxScaler`` on all rows, liblinear, ``KFold(shuffle=True)`` seeds from 0..99),
    by greedy forward selection on mean accuracy (exhaustive search over 2^14 - 1 combinations with liblinear
    is out of reach). Two numbers:

    - **optimistic** (not nested): the search scored on ``n_repeats`` repetitions of the notebook's folds and
      the best mean reported: the way a combination is found by trying it on the folds it is scored on;
    - **nested**: for every fold of ``outer_repeats`` repetitions of the notebook's folds, the search runs on
      ``KFold(inner_splits)`` of the outer training rows only; the chosen combination is fitted on the outer
      training rows and scored on the outer test rows; mean over repetitions of the fold means
      (``outer_repeats=0``: not computed, ``None``).

    Returns ``{"optimistic": {"features", "accuracy", "f1"}, "nested": OriginalCVResult + "chosen"}``.
    """
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import MinMaxScaler

    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    _check_cv_args(X, y, max(n_repeats, outer_repeats), n_splits)
    feats = list(dict.fromkeys(c.split("_", 1)[1] for c in columns))
    group_cols = [[j for j, c in enumerate(columns) if c.split("_", 1)[1] == f] for f in feats]
    Xs = MinMaxScaler().fit_transform(X)
    folds, _ = notebook_folds(len(y), n_repeats, n_splits, seed)
    sub, acc, f1 = _greedy(Xs, y, group_cols, folds, len(feats))
    optimistic = {"features": [feats[g] for g in sub], "accuracy": float(acc), "f1": float(f1),
                  "n_repeats": int(n_repeats)}
    if not outer_repeats:
        return {"optimistic": optimistic, "nested": None}
    outer, seeds = notebook_folds(len(y), outer_repeats, n_splits, seed + 1)
    f1_reps, acc_reps, chosen, notes = [], [], [], []
    for r, rep in enumerate(outer):
        sc = []
        for k, (tr, te) in enumerate(rep):
            # a small table's outer training rows may be fewer than inner_splits (6 gains: 4 or 5 rows)
            inner = [[(tr[a], tr[b]) for a, b in KFold(n_splits=min(inner_splits, len(tr)), shuffle=True,
                                                         random_state=(seed + 7919 * (r * n_splits + k)) % 2**31)
                      .split(tr)]]
            isub, _a, _f = _greedy(Xs, y, group_cols, inner, len(feats))
            chosen.append([feats[g] for g in isub])
            cols = sorted(c for g in isub for c in group_cols[g])
            sc.append(_f1_acc(_fit_predict(Xs[:, cols], y, tr, te, notes), y[te]))
        f1_reps.append(float(np.mean([s[0] for s in sc])))
        acc_reps.append(float(np.mean([s[1] for s in sc])))
    nested = _result(np.array(f1_reps), np.array(acc_reps), seeds, y, X.shape[1], outer_repeats, n_splits, seed + 1,
                     notes)
    nested["chosen"] = chosen
    return {"optimistic": optimistic, "nested": nested}


def original_coefficients(X, y, columns):
    """Coefficients of the notebook's classifier fitted on all rows (``MinMaxScaler`` on all rows,
    ``LogisticRegression(solver="liblinear")``): rows ``column``, ``mean`` (the coefficient; one fit, so no
    spread), sorted by decreasing ``|mean|``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import MinMaxScaler

    y = np.asarray(y)
    Xs = MinMaxScaler().fit_transform(np.asarray(X, dtype=float))
    coef = LogisticRegression(solver="liblinear").fit(Xs, y).coef_[0]
    rows = [{"column": c, "mean": float(v)} for c, v in zip(columns, coef)]
    return sorted(rows, key=lambda r: -abs(r["mean"]))


def original_meta(gains, task_features, n_repeats=100, n_splits=5, seed=0, search=False, search_repeats=20,
                  outer_repeats=5):
    """The notebook's CV for the feature sets it reports: all features, data features only, curve features only
    (each where present for every task). Returns ``{"rows": [{"name", **OriginalCVResult}], "notes": [...]}``;
    a set that cannot be scored (a zero or non-finite value, one class, too few pairs) is a note, not an error.

    Also ``"table3"``: the rows of Table 3 under the notebook's CV, each a dict with
    ``name`` (``majority baseline``, ``always gain``, ``all features``, ``data features only``, ``curve features
    only``, ``best combination (nested CV)``, ``best combination (optimistic, not nested)``, ``best data features
    (optimistic, not nested)``), ``accuracy``, ``accuracy_sd``, ``f1``, ``f1_sd`` (SD of the repetition means;
    NaN for the optimistic rows) and ``note``: the baselines on the same folds as the CV
    (:func:`original_baselines`), the searches by :func:`original_search` (``search_repeats`` repetitions for
    the optimistic search, ``outer_repeats`` for the nested one; the search rows only with ``search=True``),
    and ``"coefficients"`` (:func:`original_coefficients` of all features).
    """
    from mtlfast.meta.table import DATA_FEATURES

    tasks = sorted(task_features)
    present = [f for f in (*DATA_FEATURES, *CURVE_FEATURES)
               if tasks and all(f in task_features[t] and math.isfinite(task_features[t][f]) for t in tasks)]
    data_f = [f for f in present if f in DATA_FEATURES]
    curve_f = [f for f in present if f in CURVE_FEATURES]
    sets = [("all features", present), ("data features", data_f), ("curve features", curve_f)]
    rows, notes = [], []
    seen = set()
    by_name = {}
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
        by_name[name] = (pm, res)
        rows.append({"name": f"{name} ({len(feats)} per task, {res['n_columns']} columns)", **res,
                     "notes": pm["notes"] + res["notes"]})
    out = {"rows": rows, "notes": notes}
    if "all features" not in by_name:
        return out

    def row(name, r, note=""):
        return {"name": name, "accuracy": r["accuracy"], "accuracy_sd": r["accuracy_sd"], "f1": r["f1"],
                "f1_sd": r["f1_sd"], "note": note}

    pm, res = by_name["all features"]
    out["coefficients"] = original_coefficients(pm["X"], pm["y"], pm["columns"])
    base = original_baselines(pm["y"], n_repeats, n_splits, seed)
    t3 = [row("majority baseline", base["majority baseline"], "predicts the training folds' majority class"),
          row("always gain", base["always gain"], "predicts gain for every pair"),
          row("all features", res, f"{res['n_columns']} columns")]
    for name, label in (("data features", "data features only"), ("curve features", "curve features only")):
        if name in by_name and data_f and curve_f:
            t3.append(row(label, by_name[name][1], f"{by_name[name][1]['n_columns']} columns"))
    out["table3"] = t3
    if not search:
        return out
    s = original_search(pm["X"], pm["y"], pm["columns"], search_repeats, n_splits, seed, outer_repeats, n_splits)
    nest = s["nested"]
    t3.append(row("best combination (nested CV)", nest,
                  f"greedy search inside each of {outer_repeats * n_splits} outer folds"))
    opt = s["optimistic"]
    t3.append({"name": "best combination (optimistic, not nested)", "accuracy": opt["accuracy"],
               "accuracy_sd": math.nan, "f1": opt["f1"], "f1_sd": math.nan,
               "note": f"greedy search scored on the folds it is chosen on ({search_repeats} repetitions): "
                       + ", ".join(opt["features"])})
    search_out = {"optimistic": opt, "nested_chosen": nest["chosen"]}
    if data_f and curve_f:
        dcols = [c for c in pm["columns"] if c.split("_", 1)[1] in set(data_f)]
        idx = [pm["columns"].index(c) for c in dcols]
        sd = original_search(pm["X"][:, idx], pm["y"], dcols, search_repeats, n_splits, seed, 0, n_splits)
        od = sd["optimistic"]
        t3.append({"name": "best data features (optimistic, not nested)", "accuracy": od["accuracy"],
                   "accuracy_sd": math.nan, "f1": od["f1"], "f1_sd": math.nan, "note": ", ".join(od["features"])})
        search_out["optimistic_data"] = od
    out["search"] = search_out
    return out

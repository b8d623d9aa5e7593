"""The whole meta-analysis of one pair table: Table 3 equivalent, ablation, RFE, coefficients, leave-one-task-out.

:func:`meta_analysis` returns plain dicts and lists (JSON-serialisable), which the report renders. Every
number comes from the same seeded folds (``n_repeats`` x ``n_splits`` shuffled stratified k-fold).
"""

from __future__ import annotations

import warnings

import numpy as np

from mtlfast.meta.cv import (
    baseline_scores,
    cross_validate,
    fold_scores,
    make_folds,
    rfe_ranking,
    single_threaded_blas,
)
from mtlfast.meta.search import nested_search, search_best
from mtlfast.meta.table import CURVE_FEATURES, DATA_FEATURES

__all__ = ["PAPER_TABLE3", "PAPER_COUNTS", "PAPER_TASK_NAMES", "SAME_CORPORA", "PAPER_READING", "MetaSettings",
           "meta_analysis", "leave_one_task_out", "feature_only_loto", "compare_gains", "reading_check"]

#: Bingel & Søgaard (2017), Table 3 (DESIGN.md): mean over 100 runs of 5-fold CV
PAPER_TABLE3 = {
    "majority baseline": (0.555, 0.615),
    "all features": (0.749, 0.669),
    "best data features": (0.665, 0.542),
    "best combination": (0.785, 0.713),
}


#: the paper's gain / loss count over its 90 directed pairs (and the released logs': the same)
PAPER_COUNTS = (40, 50)

#: the original work's task names (its released logs, ``../shared/data/eacl2017/logs``) -> the names of the
#: public stand-ins in ``../shared/data`` (MANIFEST.md)
PAPER_TASK_NAMES = {"ccg": "ccg", "chunking": "chu", "com": "com", "fnt": "fnt", "gpos": "pos",
                    "hyperlinks": "hyp", "keysem17": "key", "mwe": "mwe", "semcor": "sem", "streusle": "str"}

#: the public tasks whose corpus is the paper's (MANIFEST.md); ccg (PMB, not CCGbank), pos (EWT, not WSJ) and
#: hyp (Wikipedia, not web/blog text) are substitutes, com a small subset of the Google compression data
SAME_CORPORA = ("chu", "fnt", "key", "mwe", "sem", "str")

#: The paper's reading of its meta-classifier (abstract and discussion of Bingel & Søgaard 2017): gains are more
#: likely for main tasks whose learning curve plateaus quickly, with auxiliary tasks whose curve does not
#: plateau. In this package's curve features (gradients of a falling loss curve, negative, at 10 .. 70 % of
#: training) "plateaus quickly" is a gradient near 0 (a larger value) at 20 .. 70 %, so the reading predicts a
#: positive coefficient on ``main_grad_*`` and a negative one on ``aux_grad_*`` at those points. This
#: translation into signs is this package's; DESIGN.md records the paper's Table 3 but not its coefficients.
PAPER_READING = {f"main_grad_{p}": +1 for p in (20, 30, 50, 70)} | {f"aux_grad_{p}": -1 for p in (20, 30, 50, 70)}


class MetaSettings(dict):
    """Settings of the meta-analysis (a dict with defaults)."""

    DEFAULTS = {
        "n_repeats": 100,
        "n_splits": 5,
        "random_state": 0,
        "stratified": True,
        "C": 1.0,
        "search": "auto",  # auto | exhaustive | greedy | none
        "criterion": "accuracy",
        "outer_repeats": 5,  # nested CV: outer repetitions of n_splits folds
        "inner_splits": 5,
        "inner_repeats": 1,
        "optimistic_repeats": 20,  # None: the same folds as the main CV (n_repeats)
        "rfe": True,
    }

    def __init__(self, **kw):
        unknown = set(kw) - set(self.DEFAULTS)
        if unknown:
            raise ValueError(f"meta settings: unknown keys {sorted(unknown)}; known: {sorted(self.DEFAULTS)}")
        super().__init__({**self.DEFAULTS, **kw})


def _row(name, res, note=""):
    s = res.summary()
    return {"name": name, "accuracy": s["accuracy"], "accuracy_sd": s["accuracy_sd"], "f1": s["f1"],
            "f1_sd": s["f1_sd"], "accuracy_sd_rep": s["accuracy_sd_rep"], "f1_sd_rep": s["f1_sd_rep"],
            "note": note}


def _summ(acc, f1, n_splits):
    from mtlfast.meta.cv import CVResult

    return CVResult(np.asarray(acc), np.asarray(f1), n_splits)


@single_threaded_blas
def meta_analysis(table, settings=None, progress=None):
    """Run the meta-classifier experiments on a :class:`~mtlfast.meta.table.PairTable`.

    Returns a dict with ``counts``, ``table3`` (rows), ``ablation``, ``rfe``, ``coefficients``, ``loto``,
    ``search``, ``notes`` and the ``settings`` used. Degrades instead of failing: with a single label class
    or fewer pairs than folds, only the counts and a note are returned.
    """
    st = MetaSettings(**(settings or {}))
    say = progress or (lambda msg: None)
    with warnings.catch_warnings():  # the message is kept in the notes of the result
        warnings.simplefilter("ignore", RuntimeWarning)
        table = table.dropna_columns()
    y = table.y
    n = len(y)
    out = {"settings": dict(st), "notes": list(table.notes), "counts": {
        "pairs": n, "gain": int(y.sum()), "loss": int(n - y.sum()),
        "tasks": len(table.tasks), "columns": len(table.columns), "label_source": table.label_source}}
    feats = list(table.features)
    out["features"] = feats
    if n == 0 or len(feats) == 0:
        out["notes"].append("no pairs or no features: the meta-classifier was not run")
        return out
    if y.min() == y.max():
        out["notes"].append(f"every pair has the same label ({'gain' if y[0] else 'no gain'}): "
                            "a classifier cannot be trained or evaluated; only the counts are reported")
        return out
    k = min(st["n_splits"], int(np.bincount(y).min()), n)
    if k < 2:
        out["notes"].append("too few pairs of the minority class for cross-validation (need 2)")
        return out
    if k < st["n_splits"]:
        out["notes"].append(f"only {int(np.bincount(y).min())} pairs in the minority class: "
                            f"{k}-fold instead of {st['n_splits']}-fold CV")
    out["settings"]["n_splits_used"] = k
    tr, te = make_folds(y, k, st["n_repeats"], st["random_state"], st["stratified"])
    C = st["C"]

    # --- Table 3 -------------------------------------------------------------------------------------
    rows = []
    base = baseline_scores(y, tr, te)
    rows.append(_row("majority baseline", base["majority"], "predicts the training folds' majority class"))
    rows.append(_row("always gain", base["always_gain"], "predicts gain for every pair"))
    say("meta: all features")
    res_all = cross_validate(table.X, y, tr, te, C=C, keep=True, n_splits=k)
    rows.append(_row("all features", res_all, f"{len(table.columns)} columns"))
    data_f = [f for f in feats if f in DATA_FEATURES]
    curve_f = [f for f in feats if f in CURVE_FEATURES]
    if data_f and curve_f:
        r = cross_validate(table.X, y, tr, te, C=C, col_mask=table.group_mask(data_f), n_splits=k)
        rows.append(_row("data features only", r, f"{len(data_f)} features x 3"))
        r = cross_validate(table.X, y, tr, te, C=C, col_mask=table.group_mask(curve_f), n_splits=k)
        rows.append(_row("curve features only", r, f"{len(curve_f)} features x 3"))
    out["table3"] = rows

    group_cols = [table.groups[f] for f in feats]
    G = len(feats)

    # --- best combination: nested (honest) and non-nested (optimistic) -----------------------------
    search = st["search"]
    if search != "none" and G >= 1:
        say("meta: best combination, nested CV")
        otr, ote = make_folds(y, k, st["outer_repeats"], st["random_state"] + 1, st["stratified"])
        nest = nested_search(table.X, y, group_cols, otr, ote, inner_splits=min(st["inner_splits"], k),
                             inner_repeats=st["inner_repeats"], strategy=search, criterion=st["criterion"],
                             C=C, random_state=st["random_state"] + 2)
        freq = nest["chosen"].mean(axis=0)
        out["search"] = {
            "strategy": search, "criterion": st["criterion"],
            "nested_accuracy": float(nest["accuracy"].mean()), "nested_accuracy_sd": float(nest["accuracy"].std(ddof=1)),
            "nested_f1": float(nest["f1"].mean()), "nested_f1_sd": float(nest["f1"].std(ddof=1)),
            "outer_folds": int(len(nest["accuracy"])),
            "selection_frequency": {f: float(v) for f, v in zip(feats, freq)},
        }
        rows.append({"name": "best combination (nested CV)", "accuracy": out["search"]["nested_accuracy"],
                     "accuracy_sd": out["search"]["nested_accuracy_sd"], "f1": out["search"]["nested_f1"],
                     "f1_sd": out["search"]["nested_f1_sd"],
                     "note": f"search ({search}) inside each of {len(nest['accuracy'])} outer folds"})
        say("meta: best combination, optimistic")
        if st["optimistic_repeats"]:
            otr2, ote2 = make_folds(y, k, st["optimistic_repeats"], st["random_state"], st["stratified"])
        else:
            otr2, ote2 = tr, te
        best = search_best(table.X, y, otr2, ote2, group_cols, search, st["criterion"], C)
        chosen = [f for f, s in zip(feats, best["subset"]) if s]
        out["search"]["optimistic"] = {"features": chosen, "accuracy": best["accuracy"], "f1": best["f1"],
                                       "n_scored": best["n_scored"]}
        rows.append({"name": "best combination (optimistic, not nested)", "accuracy": best["accuracy"],
                     "accuracy_sd": float("nan"), "f1": best["f1"], "f1_sd": float("nan"),
                     "note": "chosen on the folds it is scored on (biased upwards): " + ", ".join(chosen)})
        if data_f and curve_f:
            dcols = [table.groups[f] for f in data_f]
            bd = search_best(table.X, y, otr2, ote2, dcols, search, st["criterion"], C)
            chosen_d = [f for f, s in zip(data_f, bd["subset"]) if s]
            rows.append({"name": "best data features (optimistic, not nested)", "accuracy": bd["accuracy"],
                         "accuracy_sd": float("nan"), "f1": bd["f1"], "f1_sd": float("nan"),
                         "note": ", ".join(chosen_d)})

    # --- ablation: drop one feature group at a time ----------------------------------------------------
    say("meta: ablation")
    full = res_all.summary()
    abl = []
    if G > 1:
        for f in feats:
            keep = [g for g in feats if g != f]
            r = cross_validate(table.X, y, tr, te, C=C, col_mask=table.group_mask(keep), n_splits=k).summary()
            abl.append({"dropped": f, "accuracy": r["accuracy"], "f1": r["f1"],
                        "delta_accuracy": r["accuracy"] - full["accuracy"], "delta_f1": r["f1"] - full["f1"]})
        for name, fs in (("all data features", data_f), ("all curve features", curve_f)):
            keep = [g for g in feats if g not in fs]
            if fs and keep:
                r = cross_validate(table.X, y, tr, te, C=C, col_mask=table.group_mask(keep), n_splits=k).summary()
                abl.append({"dropped": name, "accuracy": r["accuracy"], "f1": r["f1"],
                            "delta_accuracy": r["accuracy"] - full["accuracy"],
                            "delta_f1": r["f1"] - full["f1"]})
    out["ablation"] = abl

    # --- coefficients and RFE ranking over the repeated splits -----------------------------------------
    coef = res_all.coef
    ranks = rfe_ranking(table.X, y, tr, C=C).mean(axis=0) if st["rfe"] and len(table.columns) > 1 else None
    coefs = []
    for j, c in enumerate(table.columns):
        coefs.append({"column": c, "mean": float(coef[:, j].mean()), "sd": float(coef[:, j].std(ddof=1)),
                      "positive_share": float((coef[:, j] > 0).mean()),
                      "rfe_mean_rank": (float(ranks[j]) if ranks is not None else float("nan"))})
    coefs.sort(key=lambda r: -abs(r["mean"]))
    out["coefficients"] = coefs
    out["loto"] = leave_one_task_out(table, C=C)
    say("meta: leave one task out, feature-only model")
    out["loto"]["feature_only"] = feature_only_loto(table)
    return out


def feature_only_loto(table):
    """Leave-one-task-out of the budget module's feature-only model (:func:`mtlfast.meta.budget.nested_loto`): per
    held-out task, feature groups (at most 3) and the prior sd chosen by an inner leave-one-task-out on the other
    pairs, a Bayesian logistic regression on them predicts the held-out task's pairs. Pooled like
    :func:`leave_one_task_out` (a pair held out once per task). Returns the pooled ``accuracy``, ``f1``,
    ``majority_accuracy``, ``always_gain_f1`` and ``chosen`` (groups per held-out task), or a ``note``."""
    from mtlfast.meta.budget import nested_loto

    y = table.y
    if len(table.tasks) < 4 or len(y) == 0 or y.min() == y.max() or not table.columns:
        return {"note": "too few tasks, a single label class or no features"}
    res = nested_loto(table.X, y, table.pairs, table.groups)
    return {k: res[k] for k in ("accuracy", "f1", "majority_accuracy", "always_gain_f1", "chosen")}


def leave_one_task_out(table, C=1.0):
    """For each task: train on the pairs without it, test on the pairs with it (as main or aux).

    Returns a dict with per-task rows and the pooled scores (all held-out predictions together), for the
    classifier and the majority / always-gain baselines.
    """
    y = table.y
    tasks = table.tasks
    n = len(y)
    tr = np.zeros((len(tasks), n), dtype=bool)
    for k, t in enumerate(tasks):
        tr[k] = [t not in p for p in table.pairs]
    te = ~tr
    ok = (tr.sum(axis=1) > 0) & (te.sum(axis=1) > 0)
    rows = []
    if not ok.any() or y.min() == y.max():
        return {"rows": rows, "pooled": None, "note": "not enough tasks or a single label class"}
    tr, te, tasks = tr[ok], te[ok], [t for t, o in zip(tasks, ok) if o]
    single_class = np.array([y[m].min() == y[m].max() for m in tr])
    res = cross_validate(table.X, y, tr, te, C=C, keep=True, n_splits=1)
    pred = res.pred.copy()
    # a training set with one class: predict that class (logistic regression cannot be fitted)
    for k in np.nonzero(single_class)[0]:
        pred[k] = y[tr[k]][0]
    acc, f1 = fold_scores(pred, y, te)
    pos = (tr * y).sum(axis=1)
    maj = (pos >= tr.sum(axis=1) - pos).astype(int)
    acc_m, f1_m = fold_scores(np.broadcast_to(maj[:, None], tr.shape), y, te)
    acc_g, f1_g = fold_scores(np.ones_like(pred), y, te)
    for k, t in enumerate(tasks):
        rows.append({"task": t, "n_test": int(te[k].sum()), "gain_share": float(y[te[k]].mean()),
                     "accuracy": float(acc[k]), "f1": float(f1[k]), "majority_accuracy": float(acc_m[k]),
                     "always_gain_f1": float(f1_g[k])})
    # pooled: every pair is held out twice (once for its main, once for its aux task); count both
    yy = np.concatenate([y[m] for m in te])
    pp = np.concatenate([pred[k][te[k]] for k in range(len(tasks))])
    tp = int(((pp == 1) & (yy == 1)).sum())
    fp = int(((pp == 1) & (yy == 0)).sum())
    fn = int(((pp == 0) & (yy == 1)).sum())
    pooled = {"accuracy": float((pp == yy).mean()), "f1": (2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0,
              "mean_task_accuracy": float(acc.mean()), "mean_task_f1": float(f1.mean()),
              "majority_accuracy": float(acc_m.mean()), "always_gain_f1": float(f1_g.mean())}
    return {"rows": rows, "pooled": pooled}


def compare_gains(ours, paper, tasks=None):
    """Our gains beside the paper's on the directed pairs both have (both tasks in ``tasks``, default all).

    ``ours``, ``paper``: rows with ``main``, ``aux``, ``gain`` (task names already mapped to one naming). Pairs
    with a non-finite gain on either side are left out. Returns a dict: ``n``, ``sign_agree`` (pairs with the same
    sign of the gain; a gain of exactly 0 counts as a loss, as the notebook's gain/loss count), ``sign_agreement``
    (share), ``chance_agreement`` (the share expected if the two signs were independent with the observed gain
    rates), ``spearman`` and ``spearman_p`` (SciPy's ``spearmanr`` of the gains), ``ours_gains``,
    ``paper_gains`` (counts of gains) and ``rows`` (``main, aux, ours, paper, agree``)."""
    from scipy.stats import spearmanr

    keep = None if tasks is None else set(tasks)
    theirs = {(r["main"], r["aux"]): float(r["gain"]) for r in paper}
    rows = []
    for r in ours:
        key = (r["main"], r["aux"])
        if keep is not None and not (key[0] in keep and key[1] in keep):
            continue
        if key not in theirs:
            continue
        a, b = float(r["gain"]), theirs[key]
        if not (np.isfinite(a) and np.isfinite(b)):
            continue
        rows.append({"main": key[0], "aux": key[1], "ours": a, "paper": b, "agree": int((a > 0) == (b > 0))})
    n = len(rows)
    out = {"n": n, "rows": rows, "sign_agree": sum(r["agree"] for r in rows)}
    if n == 0:
        return {**out, "sign_agreement": float("nan"), "chance_agreement": float("nan"), "spearman": float("nan"),
                "spearman_p": float("nan"), "ours_gains": 0, "paper_gains": 0}
    a = np.array([r["ours"] for r in rows])
    b = np.array([r["paper"] for r in rows])
    pa, pb = float((a > 0).mean()), float((b > 0).mean())
    if n > 2 and np.ptp(a) > 0 and np.ptp(b) > 0:
        res = spearmanr(a, b)
        rho, p = float(res.statistic), float(res.pvalue)
    else:
        rho, p = float("nan"), float("nan")
    return {**out, "sign_agreement": out["sign_agree"] / n, "chance_agreement": pa * pb + (1 - pa) * (1 - pb),
            "spearman": rho, "spearman_p": p, "ours_gains": int((a > 0).sum()), "paper_gains": int((b > 0).sum())}


def reading_check(coefficients, reading=None):
    """Our coefficients beside the paper's reading (:data:`PAPER_READING`): one row per column the reading names
    and the table has, with ``column``, ``expected`` (+1 / -1), ``mean``, ``positive_share`` and ``agrees``
    (the sign of the mean coefficient is the expected one). ``coefficients``: rows with ``column``, ``mean`` and
    optionally ``positive_share`` (as :func:`meta_analysis` returns them)."""
    reading = PAPER_READING if reading is None else reading
    by_col = {r["column"]: r for r in coefficients}
    out = []
    for col, sign in reading.items():
        if col not in by_col:
            continue
        m = float(by_col[col]["mean"])
        out.append({"column": col, "expected": sign, "mean": m,
                    "positive_share": float(by_col[col].get("positive_share", float("nan"))),
                    "agrees": int(np.sign(m) == sign)})
    return out

"""Report sections shared by ``mtlfast.analyze`` and ``mtlfast.reproduce``: they render the dict returned by
:func:`mtlfast.meta.analysis.meta_analysis` into a :class:`~mtlfast.report.document.Report`."""

from __future__ import annotations

import math

import numpy as np

from mtlfast.meta.analysis import PAPER_TABLE3

__all__ = ["add_gain_summary", "add_meta_sections", "BASELINE_EXPLANATION"]

BASELINE_EXPLANATION = (
    "The paper's baseline row (accuracy 0.555, F1 0.615) matches two *different* trivial predictors on its "
    "40 gains / 50 losses: predicting the majority class (no gain) is right on 50/90 = 0.556 of the pairs but "
    "has F1 0 for the gain class, while predicting gain everywhere has F1 2·40/(40+90) = 0.615 but accuracy "
    "only 40/90 = 0.444. No single predictor has both numbers, so both baselines are reported here."
)

_PAPER_MAP = {
    "majority baseline": "majority baseline",
    "always gain": "majority baseline",
    "all features": "all features",
    "data features only": None,
    "best data features (optimistic, not nested)": "best data features",
    "best combination (optimistic, not nested)": "best combination",
    "best combination (nested CV)": "best combination",
}


def add_gain_summary(rep, gains_rows):
    g_all = np.array([r["gain"] for r in gains_rows], dtype=float)
    ok = np.isfinite(g_all)
    g = g_all[ok]
    lab = np.array([r.get("label", int(r["gain"] > 0)) for r, o in zip(gains_rows, ok) if o])
    n_pos, n_neg, n_zero = int((g > 0).sum()), int((g < 0).sum()), int((g == 0).sum())
    rep.paragraph(f"{len(g_all)} directed pairs: **{n_pos} gains** and **{n_neg} losses**"
                  + (f" and {n_zero} ties" if n_zero else "")
                  + (f"; mean gain {g.mean():.2f} %, median {np.median(g):.2f} %, range {g.min():.2f} to "
                     f"{g.max():.2f} %." if len(g) else "."))
    if (~ok).any():
        bad = sorted({r["main"] for r, o in zip(gains_rows, ok) if not o})
        rep.paragraph(f"{int((~ok).sum())} gains are undefined (single-task F1 of 0 for main task(s) "
                      f"{', '.join(bad)}): grey in the heatmap and left out of the meta-classifier.")
    if len(lab) and lab.sum() != n_pos:
        rep.paragraph(f"Labels used by the meta-classifier (beyond seed noise): {int(lab.sum())} positive of "
                      f"{len(lab)}.")


def _pm(v, sd):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if sd is None or (isinstance(sd, float) and math.isnan(sd)):
        return f"{v:.3f}"
    return f"{v:.3f} ± {sd:.3f}"


def add_meta_sections(rep, meta, data_features_note=None):
    """Table 3 equivalent, search, ablation, coefficients, leave-one-task-out."""
    st = meta.get("settings", {})
    c = meta.get("counts", {})
    rep.heading("Meta-classifier (Table 3 equivalent)")
    rep.paragraph(
        f"Logistic regression (scikit-learn defaults, C = {st.get('C', 1.0)}), features min-max scaled inside "
        f"every training fold; {st.get('n_repeats')} repetitions of shuffled "
        f"{'stratified ' if st.get('stratified') else ''}{st.get('n_splits_used', st.get('n_splits'))}-fold CV "
        f"(seed {st.get('random_state')}). Mean ± sd over folds; F1 is that of the gain class. "
        f"{c.get('pairs', 0)} pairs ({c.get('gain', 0)} gain / {c.get('loss', 0)} no gain, label: "
        f"{c.get('label_source', 'gain > 0')}), {c.get('columns', 0)} feature columns.")
    if data_features_note:
        rep.paragraph(data_features_note)
    for note in meta.get("notes", []):
        rep.paragraph(f"Note: {note}")
    rows = meta.get("table3")
    if not rows:
        return
    from mtlfast.meta.table import DATA_FEATURES

    no_data = not any(f in DATA_FEATURES for f in meta.get("features", []))
    table = []
    for r in rows:
        paper = PAPER_TABLE3.get(_PAPER_MAP.get(r["name"]) or "", (None, None))
        if no_data and r["name"] not in ("majority baseline", "always gain") and paper != (None, None):
            r = {**r, "note": (r.get("note", "") + "; paper's row uses data + curve features").lstrip("; ")}
        if r["name"] == "majority baseline":
            paper = (0.555, None)
        elif r["name"] == "always gain":
            paper = (None, 0.615)
        table.append([r["name"], _pm(r["accuracy"], r.get("accuracy_sd")), _pm(r["f1"], r.get("f1_sd")),
                      paper[0], paper[1], r.get("note", "")])
    rep.table(["setting", "accuracy", "F1 (gain)", "paper acc.", "paper F1", "note"], table)
    rep.paragraph(BASELINE_EXPLANATION)
    s = meta.get("search")
    if s:
        rep.paragraph(
            f"Best combination of feature groups ({s['strategy']} search by {s['criterion']}). The **nested** "
            f"estimate searches inside each of {s['outer_folds']} outer training folds and scores the chosen "
            f"combination on the outer test fold, so it is not chosen on the folds it is scored on. The "
            f"**optimistic** number is the best mean over combinations on the evaluation folds themselves "
            f"(what a search on the test folds reports; biased upwards; comparable to the paper's 'best' rows).")
        freq = sorted(s["selection_frequency"].items(), key=lambda kv: -kv[1])
        rep.table(["feature group", "chosen in share of outer folds"], [[f, v] for f, v in freq], digits=2)
    abl = meta.get("ablation")
    if abl:
        rep.heading("Feature-group ablation", 3)
        rep.paragraph("Each row drops one task feature (its main, aux and ratio columns) from the full set; "
                      "negative deltas mean the group helps.")
        rep.table(["dropped", "accuracy", "F1", "Δ accuracy", "Δ F1"],
                  [[a["dropped"], a["accuracy"], a["f1"], a["delta_accuracy"], a["delta_f1"]] for a in abl])
    coefs = meta.get("coefficients")
    if coefs:
        rep.heading("Coefficients and RFE ranking", 3)
        rep.paragraph("Coefficients of the all-features model on min-max-scaled features, mean ± sd over all "
                      "training folds (positive: predicts gain); share of folds with a positive sign; mean "
                      "rank under recursive feature elimination (1 = kept longest), per fold.")
        rep.table(["column", "mean coef.", "sd", "share > 0", "RFE mean rank"],
                  [[r["column"], r["mean"], r["sd"], r["positive_share"], r["rfe_mean_rank"]] for r in coefs],
                  digits=2)
    lo = meta.get("loto")
    if lo and lo.get("rows"):
        rep.heading("Leave one task out", 3)
        rep.paragraph("For each task: train on all pairs that do not involve it, test on the pairs that do "
                      "(as main or auxiliary task) — how well gains are predicted for a task never seen.")
        rep.table(["held-out task", "test pairs", "gain share", "accuracy", "F1", "majority acc.",
                   "always-gain F1"],
                  [[r["task"], r["n_test"], r["gain_share"], r["accuracy"], r["f1"], r["majority_accuracy"],
                    r["always_gain_f1"]] for r in lo["rows"]])
        p = lo["pooled"]
        rep.paragraph(f"Mean over tasks: accuracy {p['mean_task_accuracy']:.3f}, F1 {p['mean_task_f1']:.3f} "
                      f"(majority baseline accuracy {p['majority_accuracy']:.3f}, always-gain F1 "
                      f"{p['always_gain_f1']:.3f}); pooled over all held-out predictions: accuracy "
                      f"{p['accuracy']:.3f}, F1 {p['f1']:.3f}.")
        fo = lo.get("feature_only")
        if fo and "accuracy" in fo:
            better = fo["accuracy"] > p["accuracy"]
            rep.paragraph(
                "Beside it, the feature-only model of the budget module (`mtlfast.meta.budget.nested_loto`: per "
                "held-out task, at most three feature groups and the prior sd chosen by an inner leave-one-task-out "
                "on the other pairs; what `python -m mtlfast.predict` uses for new tasks), pooled the same way: "
                f"accuracy {fo['accuracy']:.3f}, F1 {fo['f1']:.3f} (majority {fo['majority_accuracy']:.3f}, "
                f"always-gain F1 {fo['always_gain_f1']:.3f}). On this sweep it is "
                + ("**more accurate** than the all-features regression above." if better else
                   "**not more accurate** than the all-features regression above."))
        elif fo and fo.get("note"):
            rep.paragraph(f"Feature-only model (budget module): not run ({fo['note']}).")
    elif lo and lo.get("note"):
        rep.paragraph(f"Leave one task out: {lo['note']}.")

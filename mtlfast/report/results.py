"""Report sections of a result folder (issue 18): the gain matrix, the seed noise, Table 3 under both CV protocols
beside the paper's numbers, the coefficients beside the paper's reading, and our gains beside the paper's.

:func:`table3_rows` is the one place that lays Table 3 out (``table3.csv`` and the report's table are both made
from its rows), so a test can hold the two to each other."""

from __future__ import annotations

import math

from mtlfast.meta.analysis import PAPER_COUNTS, PAPER_TABLE3, SAME_CORPORA
from mtlfast.report.document import fmt
from mtlfast.report.figures import gain_matrix

__all__ = ["TABLE3_ROWS", "TABLE3_COLUMNS", "table3_rows", "add_gain_matrix", "add_noise_section",
           "add_table3", "add_reading", "add_paper_comparison"]

#: Table 3's rows, in order, with the paper's (accuracy, F1) where the paper has that row (DESIGN.md). The paper's
#: baseline row (0.555 / 0.615) is two different trivial predictors (report.sections.BASELINE_EXPLANATION): its
#: accuracy is the majority class's, its F1 always-gain's. The paper's "best data features" and "best combination"
#: were found by trying combinations on the evaluation folds: the optimistic rows are their counterparts.
TABLE3_ROWS = (
    ("majority baseline", (PAPER_TABLE3["majority baseline"][0], None)),
    ("always gain", (None, PAPER_TABLE3["majority baseline"][1])),
    ("all features", PAPER_TABLE3["all features"]),
    ("data features only", (None, None)),
    ("curve features only", (None, None)),
    ("best data features (optimistic, not nested)", PAPER_TABLE3["best data features"]),
    ("best combination (nested CV)", (None, None)),
    ("best combination (optimistic, not nested)", PAPER_TABLE3["best combination"]),
)
TABLE3_COLUMNS = ("name", "paper_accuracy", "paper_f1", "original_accuracy", "original_accuracy_sd", "original_f1",
                  "original_f1_sd", "clean_accuracy", "clean_accuracy_sd", "clean_f1", "clean_f1_sd")

_NAN = float("nan")


def table3_rows(original, clean):
    """Table 3 as rows of :data:`TABLE3_COLUMNS`: ``original`` and ``clean`` are lists of rows (``name``,
    ``accuracy``, ``accuracy_sd``, ``f1``, ``f1_sd``) of the notebook's CV
    (:func:`mtlfast.meta.original.original_meta` ``["table3"]``) and of mtlfast's
    (:func:`mtlfast.meta.analysis.meta_analysis` ``["table3"]``); a row either lacks is NaN there. Rows of
    :data:`TABLE3_ROWS` that neither protocol has are left out."""
    by = {"original": {r["name"]: r for r in original or []}, "clean": {r["name"]: r for r in clean or []}}
    out = []
    for name, (pa, pf) in TABLE3_ROWS:
        if name not in by["original"] and name not in by["clean"]:
            continue
        row = {"name": name, "paper_accuracy": _NAN if pa is None else pa, "paper_f1": _NAN if pf is None else pf}
        for proto in ("original", "clean"):
            r = by[proto].get(name, {})
            for k in ("accuracy", "accuracy_sd", "f1", "f1_sd"):
                v = r.get(k)
                row[f"{proto}_{k}"] = _NAN if v is None else float(v)
        out.append(row)
    return out


def _pm(v, sd):
    if v is None or not math.isfinite(v):
        return "–"
    if sd is None or not math.isfinite(sd):
        return f"{v:.3f}"
    return f"{v:.3f} ± {sd:.3f}"


def add_table3(rep, rows, original_note, clean_note):
    """Table 3 beside the paper's: one line per row of :func:`table3_rows`."""
    rep.heading("Table 3: the meta-classifier beside the paper's")
    if not rows:
        rep.paragraph("Not computed: no gains, or a single label class, or no features (see the notes below).")
        return
    rep.paragraph(
        "Accuracy and F1 of the gain class of a logistic regression predicting whether a directed pair gains, "
        "under two CV protocols: **original**, the notebook's (`experiments.ipynb`: MinMaxScaler on all rows, "
        "100 x `KFold(5, shuffle=True)` with seeds drawn from 0..99, liblinear; ± SD of the repetition means), "
        "with the original definitions of the task features; **clean**, mtlfast's (scaling inside every "
        "training fold, stratified repeated 5-fold CV, lbfgs objective; ± SD over folds), with the clean "
        "definitions. " + original_note + " " + clean_note)
    rep.paragraph(
        "Rows: *nested CV* searches the best combination of feature groups inside every outer training fold and "
        "scores it on the outer test fold (an honest estimate); *optimistic, not nested* is the best mean over "
        "combinations on the folds it is scored on (biased upwards), the counterpart of the paper's 'best' rows. "
        "Paper: DESIGN.md (Bingel & Søgaard 2017, Table 3); its baseline row is the majority class's accuracy and "
        "always-gain's F1 (no single predictor has both), so its two numbers sit on the two baseline rows here. "
        "The paper's 0.785 / 0.713 is its best combination of data and curve features.")
    table = [[r["name"], fmt(r["paper_accuracy"]), fmt(r["paper_f1"]),
              _pm(r["original_accuracy"], r["original_accuracy_sd"]), _pm(r["original_f1"], r["original_f1_sd"]),
              _pm(r["clean_accuracy"], r["clean_accuracy_sd"]), _pm(r["clean_f1"], r["clean_f1_sd"])]
             for r in rows]
    rep.table(["Table 3 row", "paper acc.", "paper F1", "original CV acc.", "original CV F1", "clean CV acc.",
               "clean CV F1"], table)


def add_gain_matrix(rep, gains, tasks=None):
    """The directed gains as a main x aux table (%, NaN as a dash), with the gain / loss count beside the paper's."""
    tasks, M = gain_matrix(gains, tasks)
    finite = [g["gain"] for g in gains if math.isfinite(g["gain"])]
    n_gain = sum(g > 0 for g in finite)
    n_loss = len(finite) - n_gain
    rep.paragraph(f"**{n_gain} gains and {n_loss} losses** (a gain of exactly 0 counted as a loss) over "
                  f"{len(gains)} directed pairs; the paper: {PAPER_COUNTS[0]} gains and {PAPER_COUNTS[1]} losses "
                  "over its 90.")
    rep.paragraph("Gain (%) of the pair model over the single-task model, F1 of the main task (rows) trained with "
                  "the auxiliary task (columns):")
    rep.table(["main \\ aux", *tasks], [[m, *[M[i, j] for j in range(len(tasks))]] for i, m in enumerate(tasks)],
              digits=2)


def add_noise_section(rep, gains):
    """Which gains lie beyond the single-task seed noise (``beyond_single_noise`` of gains.csv)."""
    rep.heading("Gains beyond the single-task seed noise", 3)
    rows = [g for g in gains if g.get("beyond_single_noise") is not None]
    if not rows:
        rep.paragraph("Not available: the sweep has one single-task seed per task (`--single-seeds` > 1 gives "
                      "the noise floor).")
        return
    beyond = [g for g in rows if g["beyond_single_noise"] == 1]
    n_seeds = sorted({int(g["n_single_seeds"]) for g in rows if g.get("n_single_seeds") is not None})
    rep.paragraph(
        f"A gain lies beyond the noise when |F1_pair − mean F1_single| > 2 × the SD of F1_single over the main "
        f"task's single-task seeds ({'/'.join(map(str, n_seeds))} seeds; a rule of thumb, not a test: with three "
        f"seeds the SD itself is uncertain). **{len(beyond)} of {len(rows)}** directed gains are beyond it: "
        f"{sum(g['gain'] > 0 for g in beyond)} gains and {sum(g['gain'] <= 0 for g in beyond)} losses.")
    sds = {}
    for g in rows:
        sds.setdefault(g["main"], (g.get("f1_single_all"), g.get("f1_single_sd"), g.get("n_single_seeds")))
    rep.table(["main task", "mean F1 single", "SD", "seeds", "noise floor of the gain (2 SD, %)"],
              [[t, m, s, int(n) if n is not None else None,
                (200 * s / m if m and s is not None and math.isfinite(s) else _NAN)]
               for t, (m, s, n) in sorted(sds.items())], digits=4)
    if beyond:
        rep.table(["main", "aux", "gain %", "F1 single (mean)", "F1 pair"],
                  [[g["main"], g["aux"], g["gain"], g.get("f1_single_all"), g.get("f1_pair")]
                   for g in sorted(beyond, key=lambda g: -g["gain"])], digits=3)


def add_reading(rep, checks, top, protocol_name, explain=True):
    """The coefficients of the top columns and the columns the paper's reading names, with its expected sign."""
    rep.heading(f"Coefficients beside the paper's reading ({protocol_name})", 3)
    if explain:
        rep.paragraph(
            "The paper reads its classifier as: MTL gains are more likely for main tasks whose learning curve "
            "plateaus quickly, with auxiliary tasks whose curve does not plateau, and main-task features matter "
            "most. In the curve gradients (negative for a falling loss) that predicts a positive coefficient on "
            "`main_grad_*` and a negative one on `aux_grad_*` at 20–70 % of training (this package's translation "
            "into signs, `mtlfast.meta.analysis.PAPER_READING`).")
    if top:
        rep.paragraph("Largest coefficients (min-max-scaled features; positive predicts gain):")
        rep.table(["column", "coefficient", "share of folds > 0"],
                  [[r["column"], r["mean"], r.get("positive_share", _NAN)] for r in top], digits=3)
        n_main = sum(r["column"].startswith("main_") for r in top)
        n_aux = sum(r["column"].startswith("aux_") for r in top)
        rep.paragraph(f"Of the {len(top)} largest coefficients, {n_main} are main-task columns, {n_aux} "
                      f"auxiliary-task columns and {len(top) - n_main - n_aux} main/aux ratios.")
    if checks:
        agree = sum(c["agrees"] for c in checks)
        rep.paragraph(f"The columns of the reading: **{agree} of {len(checks)}** have the expected sign.")
        rep.table(["column", "expected sign", "coefficient", "share of folds > 0", "agrees"],
                  [[c["column"], "+" if c["expected"] > 0 else "−", c["mean"], c["positive_share"],
                    "yes" if c["agrees"] else "no"] for c in checks], digits=3)


def add_paper_comparison(rep, same, every, source):
    """Our gains beside the paper's (:func:`mtlfast.meta.analysis.compare_gains` results)."""
    rep.heading("Our gains beside the paper's")
    rep.paragraph(
        f"The paper's gains: {source}. Six of the ten public tasks are the paper's corpora "
        f"({', '.join(SAME_CORPORA)}); ccg (PMB, not CCGbank), pos (EWT, not WSJ) and hyp (Wikipedia, not web "
        "text) are substitutes and com is a small subset of the paper's data (../shared/data/MANIFEST.md). The "
        "paper trained 50,000 / 100,000 steps in its released logs; the protocol here is the paper's text.")
    rows = []
    for name, c in (("the six same corpora", same), ("all ten tasks (four substitutes)", every)):
        if c and c["n"]:
            rows.append([name, c["n"], f"{c['sign_agree']} ({c['sign_agreement']:.2f})", c["chance_agreement"],
                         c["spearman"], c["spearman_p"], f"{c['ours_gains']} / {c['paper_gains']}"])
    if not rows:
        rep.paragraph("No directed pair in common.")
        return
    rep.table(["pairs", "n", "same sign (share)", "chance agreement", "Spearman ρ", "p", "gains: ours / paper"],
              rows, digits=3)
    rep.paragraph("Chance agreement: the share of equal signs expected if our signs and the paper's were "
                  "independent with the observed gain rates. Spearman: SciPy's `spearmanr` of the two gains.")
    if same and same["n"]:
        rep.table(["main", "aux", "ours %", "paper %", "same sign"],
                  [[r["main"], r["aux"], r["ours"], r["paper"], "yes" if r["agree"] else "no"]
                   for r in same["rows"]], digits=2)

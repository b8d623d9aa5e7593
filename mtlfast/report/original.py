"""Report section of the original protocol's meta-classifier CV (:func:`mtlfast.meta.original.original_cv`)."""

from __future__ import annotations

from mtlfast.meta.analysis import PAPER_TABLE3

__all__ = ["add_original_cv_section"]


def add_original_cv_section(rep, rows, data_features_note=None):
    """A heading, what the CV is, and one table row per result in ``rows`` (dicts with ``name`` and the keys of
    :class:`~mtlfast.meta.original.OriginalCVResult`), next to the paper's Table 3."""
    rep.heading("Meta-classifier, the notebook's CV (original protocol)")
    if data_features_note:
        rep.paragraph(data_features_note)
    if not rows:
        rep.paragraph("Not computed (see the notes above).")
        return
    r0 = rows[0]
    rep.paragraph(
        f"As `experiments.ipynb`: the pair features (main, aux, main/aux) scaled with `MinMaxScaler` fitted on all "
        f"{r0['n_rows']} rows before the CV; {r0['n_repeats']} repetitions of "
        f"`KFold({r0['n_splits']}, shuffle=True)`, each with a seed drawn from 0..99 "
        f"(`np.random.RandomState({r0['seed']}).randint(100)` here, `np.random.randint(100)` there); "
        "`LogisticRegression(solver='liblinear')` (the default of the scikit-learn the notebook ran); label = "
        "sign of the gain; per repetition the mean over the folds of the F1 of the gain class (and of the "
        "accuracy); shown: mean ± SD of the repetition means. "
        f"{r0['n_gain']} gains / {r0['n_loss']} losses.")
    table = [[r["name"], r["n_columns"], f"{r['accuracy']:.3f} ± {r['accuracy_sd']:.3f}",
              f"{r['f1']:.3f} ± {r['f1_sd']:.3f}"] for r in rows]
    for name, (acc, f1) in PAPER_TABLE3.items():
        table.append([f"paper: {name}", "", f"{acc:.3f}", f"{f1:.3f}"])
    rep.table(["features", "columns", "accuracy", "F1 (gain)"], table)
    notes = [n for r in rows for n in r.get("notes", [])]
    if notes:
        rep.bullets(sorted(set(notes)))

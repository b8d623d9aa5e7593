"""Reproduce Bingel & Søgaard (EACL 2017) from the original training logs.

    python -m mtlfast.reproduce --logs ../shared/data/eacl2017/logs [--protocol original|clean] --out OUT

Reads ``<logs>/<run>/loss_dv.log`` and ``loss_tr.log`` (``Iter N, task T, loss L[, acc A, f1 F, p P, r R]``;
single-task runs are folders named after the task, pair runs ``<a>_<b>``), and writes into OUT:

- ``gains.csv`` (the sweep's format: ``main, aux, f1_single, f1_pair, gain, label``): single-task F1 at
  iteration 50,000, pair F1 of the main task at iteration 100,000 (each task has its own lines in a pair run),
  ``gain = (F1_pair / F1_single - 1) * 100``;
- ``curve_features.csv``: the 7 curve features of every single-task ``loss_tr.log``;
- ``heatmap.png`` (Figure 1), ``curves.png``, ``report.md`` and ``report.html``;
- ``pair_table.csv`` (the curve-feature pair table) and ``meta.json`` (all numbers of the meta-analysis).

The original corpora are not shareable, so the data features are absent: the meta-classifier results are
those that can be computed from the curve features alone.

Two protocols (README, "Original vs clean"):

- ``--protocol original`` (default: these are the original work's logs): what ``experiments.ipynb`` does.
  F1 from the first log line of the iteration; curve features of every ``loss_tr.log`` entry in file order
  with ``x`` = iteration number (:func:`mtlfast.meta.curves.curve_features_original`: gradients per
  iteration, ``curve_fit`` of ``a + b ln(c x + d)`` with SciPy's defaults, raw ``b`` and ``c``);
  ``curve_features.csv`` also holds all four fitted parameters (``nb_a .. nb_d``); the pair matrix and the
  meta-classifier CV of the notebook (:mod:`mtlfast.meta.original`: MinMaxScaler on all rows, 100 x
  ``KFold(5, shuffle=True)``, liblinear logistic regression, F1 of the gain class), in ``original_cv.json``
  and the report.
- ``--protocol clean``: the clean curve features (gradients per logged entry, ``d`` fixed to 1 or
  ``--free-d``, optional ``--clean-curves``) and the full meta-analysis (stratified repeated CV, nested
  best-combination search, ablation, RFE, leave-one-task-out) in ``meta.json``.
"""

from __future__ import annotations

import json
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from mtlfast.meta.gains import gain_row
from mtlfast.cli import Parser, UsageError, add_cv_options, cv_settings, run_main
from mtlfast.report.files import jsonable, write_csv

__all__ = ["LogError", "PROTOCOLS", "parse_log", "read_logs", "compute_gains", "original_curves", "reproduce",
           "reproduce_original", "main"]

PROG = "python -m mtlfast.reproduce"
PROTOCOLS = ("original", "clean")

_LINE = re.compile(
    r"^Iter\s+(?P<iter>\d+),\s*task\s+(?P<task>[^,\s]+),\s*loss\s+(?P<loss>[^,\s]+)"
    r"(?:,\s*acc\s+(?P<acc>[^,\s]+),\s*f1\s+(?P<f1>[^,\s]+),\s*p\s+(?P<p>[^,\s]+),\s*r\s+(?P<r>[^,\s]+))?\s*$"
)

SINGLE_ITER = 50_000
PAIR_ITER = 100_000


class LogError(ValueError):
    """A log file that cannot be read; the message names the file and line."""


def parse_log(path):
    """Parse one log file into a list of dicts (``iter, task, loss`` and, for dev logs, ``acc, f1, p, r``)."""
    path = Path(path)
    out = []
    with open(path) as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            m = _LINE.match(line.strip())
            if not m:
                raise LogError(f"{path} line {n}: expected 'Iter N, task T, loss L[, acc A, f1 F, p P, r R]', "
                               f"got {line.strip()[:80]!r}")
            d = {"iter": int(m["iter"]), "task": m["task"], "loss": float(m["loss"])}
            if m["f1"] is not None:
                d.update(acc=float(m["acc"]), f1=float(m["f1"]), p=float(m["p"]), r=float(m["r"]))
            out.append(d)
    return out


def read_logs(logs_dir):
    """Find runs: ``{"single": {task: folder}, "pair": {(a, b): folder}}`` (a, b sorted)."""
    logs_dir = Path(logs_dir)
    if not logs_dir.is_dir():
        raise LogError(f"{logs_dir}: not a folder (expected the logs folder of the original work)")
    runs = sorted(p for p in logs_dir.iterdir() if (p / "loss_dv.log").exists())
    single = {p.name: p for p in runs if "_" not in p.name}
    pair = {}
    for p in runs:
        if "_" in p.name:
            a, b = p.name.split("_", 1)
            pair[tuple(sorted((a, b)))] = p
    if not single:
        raise LogError(f"{logs_dir}: no single-task run folders with loss_dv.log found")
    return {"single": single, "pair": pair}


def _f1_at(records, task, it, where, first=False):
    vals = [r["f1"] for r in records if r["iter"] == it and r["task"] == task and "f1" in r]
    if not vals:
        raise LogError(f"{where}: no line 'Iter {it}, task {task}, ...' with an F1 value")
    # a resumed run may repeat an iteration: the last line is the final state (clean); the notebook's get_f1
    # stops at the first matching line (original)
    return vals[0] if first else vals[-1]


def compute_gains(runs, single_iter=SINGLE_ITER, pair_iter=PAIR_ITER, first=False):
    """The directed gains from the dev logs. Returns ``(rows, notes)``.

    ``first``: read the first line of an iteration that a resumed log repeats (the notebook), not the last.
    """
    notes = []
    f1_single = {}
    for task, folder in runs["single"].items():
        f1_single[task] = _f1_at(parse_log(folder / "loss_dv.log"), task, single_iter, folder / "loss_dv.log",
                                 first)
    rows = []
    for (a, b), folder in sorted(runs["pair"].items()):
        recs = parse_log(folder / "loss_dv.log")
        for main, aux in ((a, b), (b, a)):
            if main not in f1_single:
                notes.append(f"{folder.name}: no single-task run for {main}; pair skipped")
                continue
            fp = _f1_at(recs, main, pair_iter, folder / "loss_dv.log", first)
            rows.append(gain_row(main, aux, f1_single[main], fp))
    rows.sort(key=lambda r: (r["main"], r["aux"]))
    return rows, notes


def single_curves(runs, clean=False, single_iter=SINGLE_ITER):
    """Training-loss curves of the single-task runs: ``{task: (iters, losses)}`` and notes on irregularities.

    ``clean=False`` (default): every entry of the task's lines of ``loss_tr.log`` in file order (the original
    analysis also kept every entry; :func:`original_curves` is its exact reading).
    ``clean=True``: drop entries before a restart (iteration counter going back) and beyond ``single_iter``.
    """
    out, notes = {}, []
    for task, folder in sorted(runs["single"].items()):
        recs = [r for r in parse_log(folder / "loss_tr.log") if r["task"] == task]
        it = np.array([r["iter"] for r in recs])
        loss = np.array([r["loss"] for r in recs])
        back = np.nonzero(np.diff(it) <= 0)[0]
        if len(back):
            notes.append(f"{task}: loss_tr.log restarts at entry {back[-1] + 2} (the first {back[-1] + 1} "
                         f"entries are from an earlier start of the run)")
        if it.size and it.max() > single_iter:
            notes.append(f"{task}: single-task run logged up to iteration {it.max():,} "
                         f"({len(it)} entries), not {single_iter:,}")
        if clean:
            start = back[-1] + 1 if len(back) else 0
            it, loss = it[start:], loss[start:]
            keep = it <= single_iter
            it, loss = it[keep], loss[keep]
        out[task] = (it, loss)
    return out, notes


def original_curves(runs):
    """The notebook's learning curves: ``{task: (iters, losses)}`` of every ``loss_tr.log`` line in file order.

    Like the notebook's ``read_learning_curve``, no line is dropped or filtered by task (a restarted log is
    read as it is). Returns ``(curves, notes)``; the notes name restarts, overlong logs and foreign task lines.
    """
    out, notes = {}, []
    for task, folder in sorted(runs["single"].items()):
        recs = parse_log(folder / "loss_tr.log")
        it = np.array([r["iter"] for r in recs], dtype=np.int64)
        loss = np.array([r["loss"] for r in recs], dtype=float)
        back = np.nonzero(np.diff(it) <= 0)[0]
        if len(back):
            notes.append(f"{task}: loss_tr.log restarts at entry {back[-1] + 2} (kept, as the notebook read "
                         f"every entry)")
        other = sorted({r["task"] for r in recs} - {task})
        if other:
            notes.append(f"{task}: loss_tr.log also holds lines of task(s) {', '.join(other)} (kept, as the "
                         "notebook did not filter by task)")
        if it.size and it.max() > SINGLE_ITER:
            notes.append(f"{task}: logged up to iteration {it.max():,} ({len(it)} entries); the gradients are "
                         "taken at shares of all entries")
        out[task] = (it, loss)
    return out, notes


def reproduce(logs_dir, out_dir, settings=None, clean_curves=False, fix_d=True, quiet=False,
              single_iter=SINGLE_ITER, pair_iter=PAIR_ITER, protocol="clean"):
    """Run the whole reproduction; returns a dict with ``gains``, ``curve_features``, ``meta``, ``paths``.

    ``protocol="original"`` runs :func:`reproduce_original` (``settings`` may then hold ``n_repeats``,
    ``n_splits`` and ``random_state``; ``clean_curves`` and ``fix_d`` must keep their defaults).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "original":
        if clean_curves or not fix_d:
            raise ValueError("clean_curves / fix_d=False belong to the clean protocol's curve features")
        s = dict(settings or {})
        return reproduce_original(logs_dir, out_dir, n_repeats=s.get("n_repeats", 100),
                                  n_splits=s.get("n_splits", 5), seed=s.get("random_state", 0), quiet=quiet,
                                  single_iter=single_iter, pair_iter=pair_iter)
    from mtlfast.meta.analysis import meta_analysis
    from mtlfast.meta.curves import CURVE_FEATURES
    from mtlfast.meta.table import curve_feature_table, pair_table
    from mtlfast.report import Report, heatmap, plot_curves
    from mtlfast.report.sections import add_gain_summary, add_meta_sections

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runs = read_logs(logs_dir)
    gains, notes = compute_gains(runs, single_iter, pair_iter)
    write_csv(out_dir / "gains.csv", gains, ["main", "aux", "f1_single", "f1_pair", "gain", "label"])
    curves, cnotes = single_curves(runs, clean=clean_curves, single_iter=single_iter)
    notes += cnotes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cf = curve_feature_table(curves, fix_d=fix_d)
    notes += [str(w.message) for w in caught]
    write_csv(out_dir / "curve_features.csv", [{"task": t, **cf[t]} for t in sorted(cf)],
               ["task", *CURVE_FEATURES])
    say(f"reproduce: {len(gains)} gains and curve features of {len(cf)} tasks read in "
        f"{time.perf_counter() - t0:.1f} s")
    table = pair_table(gains, cf)
    write_csv(out_dir / "pair_table.csv", table.to_rows(), ["main", "aux", "gain", "label", *table.columns])
    t1 = time.perf_counter()
    meta = meta_analysis(table, settings, progress=say)
    meta_s = time.perf_counter() - t1
    say(f"reproduce: meta-analysis in {meta_s:.1f} s")
    heatmap(gains, out_dir / "heatmap.png",
            title="Relative F1 gain (%) from the original logs (rows: main task, columns: auxiliary task)")
    plot_curves(curves, out_dir / "curves.png", title="Single-task training loss (original loss_tr.log)")

    rep = Report("Reproduction of Bingel & Søgaard (EACL 2017) from the released logs")
    rep.paragraph(f"Computed by `python -m mtlfast.reproduce` from `{Path(logs_dir)}`: "
                  f"{len(runs['single'])} single-task runs and {len(runs['pair'])} pair runs. Single-task F1 read "
                  f"at iteration {single_iter:,}, pair F1 at iteration {pair_iter:,} (test split, as logged in "
                  f"`loss_dv.log`); gain = (F1 pair / F1 single − 1) × 100.")
    rep.heading("Gains (Figure 1)")
    add_gain_summary(rep, gains)
    rep.paragraph("The paper reports 40 gains and 50 losses.")
    rep.image("heatmap.png", "Figure 1: relative gains; rows main task, columns auxiliary task")
    rep.heading("Single-task learning curves and curve features")
    rep.image("curves.png", "Single-task training-loss curves")
    d_note = ("d fixed to 1, since only c/d is identifiable." if fix_d else
              "d free (the original's four parameters, fitted from mtlfast's start values with bounds; "
              "`--protocol original` is the original's own fit).")
    rep.paragraph("Gradients: central difference (L[i+1] − L[i−1]) / 2 at i = int(n·p) over the n entries of "
                  "`loss_tr.log` (loss per logged entry). Log curve a·ln(c·x + d) + b fitted to every 10th of the "
                  "first 5,000 entries, x = 0, 1, …; " + d_note)
    rep.table(["task", *CURVE_FEATURES], [[t, *[cf[t][f] for f in CURVE_FEATURES]] for t in sorted(cf)], digits=4)
    if notes:
        rep.paragraph("Irregularities in the logs" + (" (curves cleaned: restart entries and entries after "
                                                      "50,000 dropped)" if clean_curves else
                                                      " (kept, as the original analysis read every entry; "
                                                      "`--clean-curves` drops them)") + ":")
        rep.bullets(notes)
    add_meta_sections(rep, meta, data_features_note=(
        "**Data features are absent**: the original corpora are not shareable, so only the 7 curve features "
        "(21 columns: main, aux, main/aux) are available; the data-only and all-features rows of the paper "
        "cannot be recomputed. The paper's numbers are shown for reference, not as like-for-like comparisons."))
    rep.heading("Settings", 3)
    rep.code(json.dumps(jsonable({**meta.get("settings", {}), "clean_curves": clean_curves, "fix_d": fix_d,
                                   "meta_seconds": round(meta_s, 2)}), indent=2))
    md = rep.write(out_dir)
    (out_dir / "meta.json").write_text(json.dumps(jsonable(meta), indent=1))
    return {"gains": gains, "curve_features": cf, "meta": meta, "table": table, "notes": notes,
            "paths": {"report": md, "heatmap": out_dir / "heatmap.png"}, "meta_seconds": meta_s}


def reproduce_original(logs_dir, out_dir, n_repeats=100, n_splits=5, seed=0, quiet=False,
                       single_iter=SINGLE_ITER, pair_iter=PAIR_ITER):
    """The reproduction the notebook's way (original protocol; module docstring).

    Writes ``gains.csv``, ``curve_features.csv`` (the 7 features and ``nb_a .. nb_d``), ``pair_table.csv``
    (the notebook's 21 curve columns), ``original_cv.json``, ``heatmap.png``, ``curves.png``, ``report.md``
    and ``report.html``. Returns a dict with ``gains``, ``curve_features``, ``original_cv``, ``notes``,
    ``paths`` and ``protocol``.
    """
    from mtlfast.meta.curves import CURVE_FEATURES
    from mtlfast.meta.original import (ORIGINAL_CURVE_COLUMNS, original_curve_feature_table, original_cv,
                                       original_pair_matrix)
    from mtlfast.report import Report, heatmap, plot_curves
    from mtlfast.report.original import add_original_cv_section
    from mtlfast.report.sections import add_gain_summary

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runs = read_logs(logs_dir)
    gains, notes = compute_gains(runs, single_iter, pair_iter, first=True)
    write_csv(out_dir / "gains.csv", gains, ["main", "aux", "f1_single", "f1_pair", "gain", "label"])
    curves, cnotes = original_curves(runs)
    notes += cnotes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cf = original_curve_feature_table(curves)
    notes += [str(w.message) for w in caught]
    cols = [*CURVE_FEATURES, *ORIGINAL_CURVE_COLUMNS]
    write_csv(out_dir / "curve_features.csv", [{"task": t, **{c: cf[t][c] for c in cols}} for t in sorted(cf)],
              ["task", *cols])
    say(f"reproduce: {len(gains)} gains and curve features of {len(cf)} tasks read in "
        f"{time.perf_counter() - t0:.1f} s (original protocol)")
    cv = None
    try:
        pm = original_pair_matrix(gains, cf, CURVE_FEATURES)
    except ValueError as exc:
        notes.append(f"no meta-classifier: {exc}")
    else:
        notes += pm["notes"]
        write_csv(out_dir / "pair_table.csv",
                  [{"main": m, "aux": a, "gain": g, "label": int(lab),
                    **dict(zip(pm["columns"], map(float, row)))}
                   for (m, a), g, lab, row in zip(pm["pairs"], pm["gain"], pm["y"], pm["X"])],
                  ["main", "aux", "gain", "label", *pm["columns"]])
        if len(set(pm["y"].tolist())) < 2 or len(pm["y"]) < n_splits:
            notes.append(f"no meta-classifier: {len(pm['y'])} pairs, classes {sorted(set(pm['y'].tolist()))}")
        else:
            t1 = time.perf_counter()
            cv = original_cv(pm["X"], pm["y"], n_repeats=n_repeats, n_splits=n_splits, seed=seed)
            cv = {"name": "all 7 curve features (21 columns)", **cv}
            say(f"reproduce: original CV in {time.perf_counter() - t1:.1f} s")
    (out_dir / "original_cv.json").write_text(json.dumps(jsonable(
        {"protocol": "original", "curve_only": cv, "notes": notes}), indent=1))
    heatmap(gains, out_dir / "heatmap.png",
            title="Relative F1 gain (%) from the original logs (rows: main task, columns: auxiliary task)")
    plot_curves({t: c[1] for t, c in curves.items()}, out_dir / "curves.png",
                title="Single-task training loss (original loss_tr.log)")

    rep = Report("Reproduction of Bingel & Søgaard (EACL 2017) from the released logs: original protocol")
    rep.paragraph(f"Computed by `python -m mtlfast.reproduce --protocol original` from `{Path(logs_dir)}`: "
                  f"{len(runs['single'])} single-task runs and {len(runs['pair'])} pair runs, the way the authors' "
                  f"`experiments.ipynb` does. Single-task F1 read at iteration {single_iter:,}, pair F1 at "
                  f"iteration {pair_iter:,} (first matching line of `loss_dv.log`, scored on the test split); "
                  "gain = (F1 pair / F1 single − 1) × 100.")
    rep.heading("Gains (Figure 1)")
    add_gain_summary(rep, gains)
    rep.paragraph("The paper reports 40 gains and 50 losses.")
    rep.image("heatmap.png", "Figure 1: relative gains; rows main task, columns auxiliary task")
    rep.heading("Single-task learning curves and curve features (the notebook's definitions)")
    rep.image("curves.png", "Single-task training-loss curves")
    rep.paragraph("Every `loss_tr.log` entry in file order, x = iteration number. Gradients "
                  "(y[i+1] − y[i−1]) / (x[i+1] − x[i−1]) at i = int(n·p), n = all entries (loss per iteration). "
                  "`scipy.optimize.curve_fit` of a + b·ln(c·x + d) to every 10th of the first 5,000 entries with "
                  "SciPy's defaults (start values 1, Levenberg-Marquardt); the notebook keeps b and c "
                  "(`curve_a` = nb_b, `curve_c` = nb_c). c is not identifiable from a curve (only c/d is), so "
                  "its value is where Levenberg-Marquardt stopped from the start values.")
    rep.table(["task", *cols], [[t, *[cf[t][c] for c in cols]] for t in sorted(cf)], digits=6)
    if notes:
        rep.paragraph("Notes:")
        rep.bullets(notes)
    add_original_cv_section(rep, [cv] if cv else [], data_features_note=(
        "Data features are absent: the original corpora are not shareable, so only the 7 curve features "
        "(21 columns: main, aux, main/aux) are available."))
    md = rep.write(out_dir)
    return {"protocol": "original", "gains": gains, "curve_features": cf, "original_cv": cv, "notes": notes,
            "paths": {"report": md, "heatmap": out_dir / "heatmap.png", "original_cv": out_dir / "original_cv.json"}}


def format_summary_original(res):
    """The console summary of the original protocol."""
    from mtlfast.meta.curves import CURVE_FEATURES

    g = np.array([r["gain"] for r in res["gains"]])
    lines = [f"{len(g)} directed gains: {int((g > 0).sum())} gains, {int((g <= 0).sum())} losses "
             "(the notebook counts gain <= 0 as a loss; paper: 40 gains, 50 losses)", "",
             "Curve features, the notebook's way (curve_a = b, curve_c = c of a + b ln(c x + d)):"]
    cf = res["curve_features"]
    lines.append("  " + "  ".join(f"{h:>12}" for h in ["task", *CURVE_FEATURES]))
    for t in sorted(cf):
        lines.append("  " + "  ".join([f"{t:>12}", *[f"{cf[t][c]:12.5g}" for c in CURVE_FEATURES]]))
    cv = res.get("original_cv")
    lines.append("")
    if cv:
        lines.append(f"Meta-classifier from curve features only, the notebook's CV ({cv['n_repeats']} x "
                     f"KFold({cv['n_splits']}, shuffle), MinMaxScaler on all rows, liblinear logistic regression):")
        lines.append(f"  {cv['name']}: F1 (gain) {cv['f1']:.3f} ± {cv['f1_sd']:.3f}, accuracy "
                     f"{cv['accuracy']:.3f} ± {cv['accuracy_sd']:.3f} (SD of the repetition means)")
    else:
        lines.append("No meta-classifier (see the notes in the report).")
    lines.append("")
    lines.append(f"Report: {res['paths']['report']}")
    return "\n".join(lines)


def format_summary(res):
    """The console summary: gains count and the curve-feature meta-classifier table."""
    g = np.array([r["gain"] for r in res["gains"]])
    lines = [f"{len(g)} directed gains: {int((g > 0).sum())} gains, {int((g < 0).sum())} losses"
             f"{', ' + str(int((g == 0).sum())) + ' ties' if (g == 0).any() else ''} "
             "(paper: 40 gains, 50 losses)",
             "",
             "Meta-classifier from curve features only (data features absent: the original corpora are not "
             "shareable):"]
    rows = [{**r, "name": "all 7 curve features (21 columns)" if r["name"] == "all features" else r["name"]}
            for r in res["meta"].get("table3", [])]
    w = max([len(r["name"]) for r in rows] + [10])
    lines.append(f"  {'setting':<{w}}  {'accuracy':>15}  {'F1 (gain)':>15}")
    for r in rows:
        a = f"{r['accuracy']:.3f}" + (f" ± {r['accuracy_sd']:.3f}" if np.isfinite(r.get("accuracy_sd", np.nan)) else "")
        f = f"{r['f1']:.3f}" + (f" ± {r['f1_sd']:.3f}" if np.isfinite(r.get("f1_sd", np.nan)) else "")
        lines.append(f"  {r['name']:<{w}}  {a:>15}  {f:>15}")
    for n in res["meta"].get("notes", []):
        lines.append(f"  note: {n}")
    lines.append("")
    lines.append(f"Report: {res['paths']['report']}")
    return "\n".join(lines)


def build_parser():
    p = Parser(
        prog=PROG,
        description="Reproduce the paper's gains, Figure 1, curve features and the curve-feature meta-classifier "
                    "from the original training logs.")
    p.add_argument("--logs", required=True, type=Path,
                   help="folder holding one sub-folder per run with loss_dv.log and loss_tr.log "
                        "(e.g. ../shared/data/eacl2017/logs)")
    p.add_argument("--out", type=Path, default=Path("mtlfast-out/reproduce"),
                   help="output folder (created; default: mtlfast-out/reproduce)")
    p.add_argument("--single-iter", type=int, default=SINGLE_ITER,
                   help=f"iteration at which single-task F1 is read (default {SINGLE_ITER:,})")
    p.add_argument("--pair-iter", type=int, default=PAIR_ITER,
                   help=f"iteration at which pair F1 is read (default {PAIR_ITER:,})")
    p.add_argument("--protocol", choices=PROTOCOLS, default="original",
                   help="original (default): the curve features, gains and meta-classifier CV of the authors' "
                        "experiments.ipynb; clean: mtlfast's curve features and full meta-analysis (README, "
                        "'Original vs clean')")
    p.add_argument("--clean-curves", action="store_true",
                   help="(clean protocol) drop loss_tr.log entries from before a restart and after iteration "
                        "50,000 (the original analysis kept them)")
    p.add_argument("--free-d", action="store_true",
                   help="(clean protocol) fit d of a·ln(c·x+d)+b as well, from mtlfast's start values with bounds "
                        "(c is then not identifiable; --protocol original is the original's own fit)")
    p.add_argument("--exhaustive", action="store_true",
                   help="same as --search exhaustive (all 127 combinations of the 7 curve groups; the default "
                        "'auto' already does this)")
    add_cv_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    return p


def main(argv=None):
    return run_main(PROG, lambda: _main(argv), (LogError, OSError))


def _main(argv):
    args = build_parser().parse_args(argv)
    if args.protocol == "original" and (args.clean_curves or args.free_d):
        raise UsageError("--clean-curves and --free-d belong to the clean protocol's curve features "
                         "(use --protocol clean)")
    if args.exhaustive:
        args.search = "exhaustive"
    settings = cv_settings(args)
    res = reproduce(args.logs, args.out, settings, clean_curves=args.clean_curves, fix_d=not args.free_d,
                    quiet=args.quiet, single_iter=args.single_iter, pair_iter=args.pair_iter,
                    protocol=args.protocol)
    print(format_summary_original(res) if args.protocol == "original" else format_summary(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reproduce Bingel & Søgaard (EACL 2017) from the original training logs.

    python -m mtlfast.reproduce --logs ../shared/data/eacl2017/logs --out OUT

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
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from mtlfast.metrics import relative_gain
from mtlfast.report.files import jsonable, write_csv

__all__ = ["LogError", "parse_log", "read_logs", "compute_gains", "reproduce", "main"]

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


def _f1_at(records, task, it, where):
    vals = [r["f1"] for r in records if r["iter"] == it and r["task"] == task and "f1" in r]
    if not vals:
        raise LogError(f"{where}: no line 'Iter {it}, task {task}, ...' with an F1 value")
    return vals[-1]  # a resumed run may repeat an iteration: the last line is the final state


def compute_gains(runs, single_iter=SINGLE_ITER, pair_iter=PAIR_ITER):
    """The directed gains from the dev logs. Returns ``(rows, notes)``."""
    notes = []
    f1_single = {}
    for task, folder in runs["single"].items():
        f1_single[task] = _f1_at(parse_log(folder / "loss_dv.log"), task, single_iter, folder / "loss_dv.log")
    rows = []
    for (a, b), folder in sorted(runs["pair"].items()):
        recs = parse_log(folder / "loss_dv.log")
        for main, aux in ((a, b), (b, a)):
            if main not in f1_single:
                notes.append(f"{folder.name}: no single-task run for {main}; pair skipped")
                continue
            fp = _f1_at(recs, main, pair_iter, folder / "loss_dv.log")
            fs = f1_single[main]
            gain = relative_gain(fp, fs)
            rows.append({"main": main, "aux": aux, "f1_single": fs, "f1_pair": fp, "gain": gain,
                         "label": int(gain > 0)})
    rows.sort(key=lambda r: (r["main"], r["aux"]))
    return rows, notes


def single_curves(runs, clean=False, single_iter=SINGLE_ITER):
    """Training-loss curves of the single-task runs: ``{task: (iters, losses)}`` and notes on irregularities.

    ``clean=False`` (default, as the original analysis): every entry of ``loss_tr.log`` in file order.
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


def reproduce(logs_dir, out_dir, settings=None, clean_curves=False, fix_d=True, quiet=False,
              single_iter=SINGLE_ITER, pair_iter=PAIR_ITER):
    """Run the whole reproduction; returns a dict with ``gains``, ``curve_features``, ``meta``, ``paths``."""
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
    rep.paragraph("Gradients: central difference (L[i+1] − L[i−1]) / 2 at i = int(n·p) over the n entries of "
                  "`loss_tr.log` (loss per logged entry). Log curve a·ln(c·x + d) + b fitted to every 10th of the "
                  "first 5,000 entries, x = 0, 1, …; " + ("d fixed to 1, since only c/d is identifiable."
                                                           if fix_d else "d free, as the original."))
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
    p = argparse.ArgumentParser(
        prog="python -m mtlfast.reproduce",
        description="Reproduce the paper's gains, Figure 1, curve features and the curve-feature meta-classifier "
                    "from the original training logs.")
    p.add_argument("--logs", required=True, type=Path,
                   help="folder holding one sub-folder per run with loss_dv.log and loss_tr.log "
                        "(e.g. ../shared/data/eacl2017/logs)")
    p.add_argument("--out", type=Path, default=Path("mtlfast-out/reproduce"),
                   help="output folder (created; default: mtlfast-out/reproduce)")
    p.add_argument("--repeats", type=int, default=100, help="repetitions of k-fold CV (default 100)")
    p.add_argument("--folds", type=int, default=5, help="k of k-fold CV (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the CV splits (default 0)")
    p.add_argument("--search", choices=["auto", "exhaustive", "greedy", "none"], default="auto",
                   help="best-combination search over feature groups (auto: exhaustive up to 1,023 "
                        "combinations, greedy beyond; the 7 curve groups give 127)")
    p.add_argument("--outer-repeats", type=int, default=10,
                   help="repetitions of the outer k-fold CV of the nested search (default 10)")
    p.add_argument("--single-iter", type=int, default=SINGLE_ITER,
                   help=f"iteration at which single-task F1 is read (default {SINGLE_ITER:,})")
    p.add_argument("--pair-iter", type=int, default=PAIR_ITER,
                   help=f"iteration at which pair F1 is read (default {PAIR_ITER:,})")
    p.add_argument("--clean-curves", action="store_true",
                   help="drop loss_tr.log entries from before a restart and after iteration 50,000 (the "
                        "original analysis kept them)")
    p.add_argument("--free-d", action="store_true",
                   help="fit d of a·ln(c·x+d)+b as well, as the original (c is then not identifiable)")
    p.add_argument("--exhaustive", action="store_true",
                   help="same as --search exhaustive (all 127 combinations of the 7 curve groups; the default "
                        "'auto' already does this)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.exhaustive:
        args.search = "exhaustive"
    settings = {"n_repeats": args.repeats, "n_splits": args.folds, "random_state": args.seed,
                "search": args.search, "outer_repeats": args.outer_repeats, "inner_repeats": 2,
                "optimistic_repeats": None}
    try:
        res = reproduce(args.logs, args.out, settings, clean_curves=args.clean_curves, fix_d=not args.free_d,
                        quiet=args.quiet, single_iter=args.single_iter, pair_iter=args.pair_iter)
    except (LogError, OSError) as exc:
        print(f"mtlfast.reproduce: {exc}", file=sys.stderr)
        return 2
    print(format_summary(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

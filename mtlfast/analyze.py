"""Turn a finished sweep into the paper's findings: ``python -m mtlfast.analyze --out DIR``.

Reads the sweep output folder (docs/ARCHITECTURE.md: ``gains.csv``, ``curves.csv``, ``features.csv``,
``runs.csv``, ``scores.csv``, ``config.json``) and writes into it:

- ``heatmap.png`` (Figure 1), ``curves.png`` (single-task learning curves);
- ``curve_features.csv`` (7 per task), ``pair_table.csv`` (the 42-column meta-learning table), ``meta.json``;
- ``report.md`` and a self-contained ``report.html`` (images embedded), with the Table 3 equivalent next to
  the paper's numbers, the coefficient table, the ablation, leave-one-task-out results and the run settings.

Degrades instead of failing: without ``features.csv`` the meta-classifier uses the curve features only,
without ``curves.csv`` the data features only; with a single label class, too few pairs or no features it
says so in the report. ``gains.csv`` is required (or ``scores.csv``, from which the gains are recomputed).
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path

from mtlfast.cli import EXIT_OK, Parser, add_cv_options, add_out, cv_settings, resolve_out, run_main
from mtlfast.report.files import jsonable, write_csv

__all__ = ["analyze", "AnalyzeError", "main"]

PROG = "python -m mtlfast.analyze"


class AnalyzeError(ValueError):
    """The sweep folder lacks what the analysis needs; the message says what."""


def _gains_from_scores(path):
    """Recompute gains from ``scores.csv`` (final-step ``f1_micro_no_o`` on the test split, mean over seeds)."""
    from mtlfast.meta.gains import directed_gains, task_order
    from mtlfast.meta.table import read_csv

    rows, cols = read_csv(path)
    need = {"kind", "tasks", "task", "split", "step", "metric", "value"}
    if not need <= set(cols):
        raise AnalyzeError(f"{path}: expected columns {sorted(need)}, got {cols}")
    last = {}
    for r in rows:
        if r["metric"] != "f1_micro_no_o" or r["split"] != "test":
            continue
        key = (r["kind"], r["tasks"], r.get("seed", "0"), r["task"])
        step = int(float(r["step"]))
        if key not in last or step >= last[key][0]:
            last[key] = (step, float(r["value"]))
    single, pair = {}, {}
    for (kind, tasks, seed, task), (_s, v) in last.items():
        if kind == "single" or "+" not in tasks:
            single[(task, seed)] = v
        else:
            others = [t for t in tasks.split("+") if t != task]
            if others:
                pair[(task, others[0], seed)] = v
    # As the sweep: mean of the per-seed gains (pair and single run of the same seed), seed tests with seeds > 1.
    order = task_order(r["tasks"].split("+") for r in rows)
    return [{**g, "label_source": "gain > 0"} for g in directed_gains(single, pair, order)]


def analyze(out_dir, quiet=False, settings=None, protocol=None):
    """Analyse a sweep folder and write ``heatmap.png``, ``report.md`` and ``report.html`` into it.

    Parameters
    ----------
    out_dir : path
        The sweep output folder.
    quiet : bool
        No progress messages on stderr.
    settings : dict, optional
        Meta-analysis settings (:class:`mtlfast.meta.analysis.MetaSettings`), e.g. ``{"n_repeats": 100}``.
    protocol : {"original", "clean"}, optional
        Default: the sweep's (``config.json``), else clean. ``original`` adds the notebook's curve features
        (:func:`mtlfast.meta.curves.curve_features_original`) and its meta-classifier CV
        (:func:`mtlfast.meta.original.original_meta`, ``original_cv.json``); README, "Original vs clean".

    Returns
    -------
    Path of ``report.md``.
    """
    from mtlfast.meta.analysis import meta_analysis
    from mtlfast.meta.curves import CURVE_FEATURES
    from mtlfast.meta.table import (DATA_FEATURES, curve_feature_table, pair_table, read_csv,
                                    read_data_features, read_gains, read_single_curves)
    from mtlfast.report import Report, heatmap, plot_curves
    from mtlfast.report.sections import add_gain_summary, add_meta_sections

    say = (lambda *a: None) if quiet else (lambda *a: print("analyze:", *a, file=sys.stderr))
    out = Path(out_dir)
    if not out.is_dir():
        raise AnalyzeError(f"{out}: not a folder (expected a sweep output folder)")
    t0 = time.perf_counter()
    notes = []
    budget, predicted = None, {}
    if (out / "gains.csv").exists():
        gains = read_gains(out / "gains.csv")  # measured rows only
        from mtlfast.meta.budget import budget_summary
        from mtlfast.meta.table import read_csv
        from mtlfast.report.figures import predicted_cells

        all_rows = read_csv(out / "gains.csv")[0]  # a budgeted sweep's predicted rows too
        budget, predicted = budget_summary(all_rows), predicted_cells(all_rows)
    elif (out / "scores.csv").exists():
        gains = _gains_from_scores(out / "scores.csv")
        notes.append("gains.csv missing: gains recomputed from scores.csv (final-step test F1, mean over seeds)")
    else:
        raise AnalyzeError(f"{out}: neither gains.csv nor scores.csv found (run `python -m mtlfast.sweep` first)")
    config = {}
    if (out / "config.json").exists():
        try:
            config = json.loads((out / "config.json").read_text())
        except json.JSONDecodeError as exc:
            notes.append(f"config.json unreadable ({exc})")
    protocol = protocol or config.get("protocol") or "clean"
    if protocol not in ("original", "clean"):
        raise AnalyzeError(f"protocol: expected 'original' or 'clean', got {protocol!r}")

    # --- task features ---------------------------------------------------------------------------------
    task_feats = {}
    data_present = (out / "features.csv").exists()
    if data_present:
        for t, d in read_data_features(out / "features.csv").items():
            task_feats.setdefault(t, {}).update(d)
    else:
        notes.append("features.csv missing: the meta-classifier uses the learning-curve features only")
    curves = {}
    if (out / "curves.csv").exists():
        curves = read_single_curves(out / "curves.csv")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if protocol == "original":
                from mtlfast.meta.original import original_curve_feature_table

                cf = original_curve_feature_table(curves)
            else:
                cf = curve_feature_table(curves)
        notes += [str(w.message) for w in caught]
        for t, d in cf.items():
            task_feats.setdefault(t, {}).update(d)
        write_csv(out / "curve_features.csv", [{"task": t, **cf[t]} for t in sorted(cf)], ["task", *CURVE_FEATURES])
    else:
        cf = {}
        notes.append("curves.csv missing: no learning-curve features")
    table = pair_table(gains, task_feats)
    write_csv(out / "pair_table.csv", table.to_rows(), ["main", "aux", "gain", "label", *table.columns])
    say(f"{len(gains)} gains, {len(task_feats)} tasks with features, {len(table.columns)} columns")
    t1 = time.perf_counter()
    meta = meta_analysis(table, settings, progress=say)
    meta_s = time.perf_counter() - t1
    say(f"meta-analysis in {meta_s:.1f} s")

    # --- figures ---------------------------------------------------------------------------------------
    if gains:
        heatmap(gains, out / "heatmap.png", predicted=predicted)
    if curves:
        plot_curves(curves, out / "curves.png")

    # --- report ----------------------------------------------------------------------------------------
    rep = Report("mtlfast sweep report")
    rep.paragraph(f"Sweep folder `{out}`. Written by `python -m mtlfast.analyze` "
                  f"({time.strftime('%Y-%m-%d %H:%M:%S')}).")
    steps = (config.get("steps_single"), config.get("steps_pair"))
    if steps[0] and steps[0] < 25_000:
        rep.paragraph(f"**Short runs**: {steps[0]:,} single-task / {steps[1]:,} pair steps (the paper: 25,000 / "
                      "50,000). Gains after few steps also reflect how fast a pair learns, not only what a "
                      "converged model gains; check the single-task F1 below before reading them.")
    opt = (config.get("lr"), config.get("rho"), config.get("eps"))
    if all(v is not None for v in opt):
        note = ("PyTorch's defaults, used by the no-argument demo so that few steps train the taggers"
                if tuple(opt) == (1.0, 0.9, 1e-6) else
                "the original work's settings" if tuple(opt) == (0.1, 0.95, 1e-8) else "user-set")
        rep.paragraph(f"Optimiser: Adadelta lr {opt[0]}, rho {opt[1]}, eps {opt[2]} ({note}; the original work "
                      "used lr 0.1, rho 0.95, eps 1e-8).")
    rep.heading("Gains (Figure 1)")
    if budget:
        from mtlfast.meta.budget import budget_paragraph

        rep.paragraph(budget_paragraph(budget))
    if gains:
        add_gain_summary(rep, gains)
        rep.image("heatmap.png", "Figure 1: relative gain (%) of the pair model over the single-task model; rows "
                                 "main task, columns auxiliary task; blue gain, red loss")
        tasks = sorted({g["main"] for g in gains})
        f1s = {g["main"]: g.get("f1_single") for g in gains}
        if any(v is not None for v in f1s.values()):
            rep.table(["task", "single-task F1"], [[t, f1s.get(t)] for t in tasks])
        rows = []
        for g in sorted(gains, key=lambda g: -g["gain"] if g["gain"] == g["gain"] else math.inf)[:10]:  # NaN last
            rows.append([g["main"], g["aux"], g.get("f1_single"), g.get("f1_pair"), g["gain"],
                         g.get("gain_sd", float("nan")), g["label"]])
        rep.paragraph("Largest gains:")
        rep.table(["main", "aux", "F1 single", "F1 pair", "gain %", "gain sd", "label"], rows)
    else:
        rep.paragraph("No gains in this sweep yet.")
    rep.heading("Single-task learning curves")
    if curves:
        rep.image("curves.png", "Single-task training-loss curves (moving average)")
        rep.table(["task", *CURVE_FEATURES], [[t, *[cf[t][f] for f in CURVE_FEATURES]] for t in sorted(cf)],
                  digits=4)
    else:
        rep.paragraph("No curves (curves.csv missing).")
    if data_present:
        present = [f for f in DATA_FEATURES if any(f in task_feats[t] for t in task_feats)]
        rep.heading("Data features", 3)
        rep.table(["task", *present], [[t, *[task_feats[t].get(f, float("nan")) for f in present]]
                                       for t in sorted(task_feats)], digits=4)
    meta["notes"] = notes + meta.get("notes", [])
    if protocol == "original":
        from mtlfast.meta.original import original_meta
        from mtlfast.report.original import add_original_cv_section

        s = settings or {}
        orig = original_meta(gains, task_feats, s.get("n_repeats", 100), s.get("n_splits", 5), s.get("random_state", 0))
        (out / "original_cv.json").write_text(json.dumps(jsonable({"protocol": "original", **orig}), indent=1))
        add_original_cv_section(rep, orig["rows"], "Notes: " + "; ".join(orig["notes"]) if orig["notes"] else None)
        rep.paragraph("Below: mtlfast's own meta-analysis (the clean protocol's CV) of the same features.")
    add_meta_sections(rep, meta)
    rep.heading("Run settings")
    if (out / "runs.csv").exists():
        rows, _ = read_csv(out / "runs.csv")
        kinds = {}
        for r in rows:
            k = kinds.setdefault(r.get("kind", "?"), [0, 0.0, 0])
            k[0] += 1
            try:
                k[1] += float(r.get("seconds") or 0)
            except ValueError:
                pass
            k[2] += r.get("status", "done") in ("done", "finished", "ok", "complete", "completed")
        rep.table(["kind", "runs", "finished", "seconds (sum)"], [[k, v[0], v[2], v[1]] for k, v in kinds.items()],
                  digits=1)
    rep.code(json.dumps(config, indent=2, sort_keys=True) if config else "(config.json missing)")
    rep.code(json.dumps(jsonable({**meta.get("settings", {}), "meta_seconds": round(meta_s, 2),
                                   "total_seconds": round(time.perf_counter() - t0, 2)}), indent=2))
    md = rep.write(out)
    (out / "meta.json").write_text(json.dumps(jsonable(meta), indent=1))
    say(f"wrote {md} and {out / 'report.html'}")
    return md


def build_parser():
    p = Parser(prog=PROG, description="Analyse a sweep folder: gains heatmap, curve features, meta-classifier "
                                      "(Table 3), report.md and report.html, written into the sweep folder.")
    add_out(p, "the sweep folder (holds gains.csv, curves.csv, features.csv, ...); the report is written into it",
            positional_alias=True)
    add_cv_options(p)
    p.add_argument("--protocol", choices=("original", "clean"),
                   help="original: also the notebook's curve features and meta-classifier CV (original_cv.json); "
                        "default: the sweep's protocol from config.json, else clean")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    return p


def main(argv=None):
    from mtlfast.meta.table import TableError

    def body():
        args = build_parser().parse_args(argv)
        out = resolve_out(args)
        print(analyze(out, quiet=args.quiet, settings=cv_settings(args), protocol=args.protocol))
        return EXIT_OK

    return run_main(PROG, body, (AnalyzeError, TableError, OSError))


if __name__ == "__main__":
    sys.exit(main())

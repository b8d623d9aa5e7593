"""Rank auxiliary tasks for new tasks without training any pair: ``python -m mtlfast.predict``.

Fits :class:`mtlfast.meta.GainPredictor` on a finished sweep (its pair table and gains), then predicts the
gain label and probability for every pair involving a new task, from the new tasks' own features only:

- data features: a CSV with a ``task`` column and any of the 7 data features (``features.csv`` of a sweep, or
  ``python -m mtlfast.stats``), given with ``--new-task-features``;
- learning-curve features: the training-loss curves of the new tasks' single-task runs, ``--new-curves``
  (a ``curves.csv`` in the sweep format, or any CSV with ``task, step, loss``);
- or both from a folder holding ``features.csv`` and/or ``curves.csv`` (``--new-sweep``; e.g. a sweep that ran
  only the single-task runs of the new tasks).

The model (:func:`mtlfast.meta.budget.fit_for_new_tasks`): a :class:`mtlfast.meta.budget.GainModel` with the
sweep tasks' main- and auxiliary-task effects and the feature groups (and their regularisation) chosen by
leave-one-task-out on the sweep, a group kept only when it beats the base rate by more than a standard error. A
new task's own effect is unknown, so its pairs lean on the features and shrink towards the base rate, the more
so where its features lie outside the sweep's range. Before the rankings it prints its own leave-one-task-out
accuracy on the sweep (the whole procedure refitted without each task in turn) beside the majority baseline, and
says plainly when it is no better. ``GainPredictor`` (:func:`fit_predictor`) is kept for library use.

The predictor uses the task features available for *every* task (sweep and new); the others are left out
and listed. Output: one row per directed pair ``main, aux, p_gain, predicted_gain, main_is_new, aux_is_new``
(``--csv FILE``) and, on stdout, for every new task the auxiliary tasks ranked by the probability of a gain,
and the known tasks that the new task is predicted to help.

Example::

    python -m mtlfast.predict --out mtlfast-out --new-task-features new/features.csv \\
        --new-curves new/curves.csv --csv predictions.csv

``--out DIR`` is the sweep folder, as for ``mtlfast.sweep`` and ``mtlfast.analyze`` (``--sweep DIR``, its old
spelling, still works).
"""

from __future__ import annotations

import csv
import math
import sys
import warnings
from pathlib import Path

from mtlfast.cli import Parser, UsageError, add_out, resolve_out, run_main

__all__ = ["PredictError", "load_sweep_features", "fit_predictor", "predict_new", "format_loto", "main"]

PROG = "python -m mtlfast.predict"


class PredictError(ValueError):
    """Bad input to the predictor; the message names the file and what was expected."""


def load_sweep_features(folder=None, features_csv=None, curves_csv=None):
    """``{task: {feature: value}}`` from a folder (features.csv, curves.csv) and/or explicit files."""
    from mtlfast.meta.table import curve_feature_table, read_data_features, read_single_curves

    feats = {}
    folder = Path(folder) if folder else None
    fcsv = Path(features_csv) if features_csv else (folder / "features.csv" if folder else None)
    ccsv = Path(curves_csv) if curves_csv else (folder / "curves.csv" if folder else None)
    if fcsv is not None and fcsv.exists():
        for t, d in read_data_features(fcsv).items():
            feats.setdefault(t, {}).update(d)
    elif features_csv:
        raise PredictError(f"{fcsv}: file not found")
    if ccsv is not None and ccsv.exists():
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            for t, d in curve_feature_table(read_single_curves(ccsv)).items():
                feats.setdefault(t, {}).update(d)
    elif curves_csv:
        raise PredictError(f"{ccsv}: file not found")
    return feats


def _usable(feats_by_task, tasks, candidates):
    return [f for f in candidates
            if all(math.isfinite(feats_by_task.get(t, {}).get(f, math.nan)) for t in tasks)]


def fit_predictor(sweep_dir, new_features, C=1.0, random_state=0):
    """Fit a GainPredictor on a sweep, using the task features that the sweep's and the new tasks share.

    Returns ``(predictor, features_used, all_features, known_tasks)``.
    """
    from mtlfast.meta.predictor import GainPredictor

    table, used, all_feats, known = _sweep_table(sweep_dir, new_features)
    pred = GainPredictor(C=C, columns=table.columns, random_state=random_state).fit(table.X, table.y)
    return pred, used, all_feats, known


def _sweep_table(sweep_dir, new_features):
    """The sweep's pair table on the task features every sweep task and every new task has."""
    from mtlfast.meta.table import TASK_FEATURES, pair_table, read_gains

    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / "gains.csv").exists():
        raise PredictError(f"{sweep_dir}: no gains.csv (expected a finished sweep folder)")
    gains = read_gains(sweep_dir / "gains.csv")
    known_feats = load_sweep_features(sweep_dir)
    known = sorted({g["main"] for g in gains} | {g["aux"] for g in gains})
    missing = [t for t in known if t not in known_feats]
    if missing:
        raise PredictError(f"{sweep_dir}: no features (features.csv / curves.csv) for tasks {missing}")
    all_feats = {**known_feats, **new_features}
    used = _usable(all_feats, known + sorted(new_features), TASK_FEATURES)
    if not used:
        raise PredictError("no task feature is available for every sweep task and every new task")
    table = pair_table(gains, all_feats, features=used)
    if table.y.min() == table.y.max():
        raise PredictError(f"{sweep_dir}: every pair has the same label; nothing to learn")
    return table, used, all_feats, known


def predict_new(sweep_dir, new_features, C=1.0, random_state=0, evaluate=True):
    """Predictions for every directed pair involving a new task. Returns ``(rows, features_used, info)``.

    The model is :func:`mtlfast.meta.budget.fit_for_new_tasks`: feature groups chosen by leave-one-task-out on
    the sweep, the sweep tasks' main and auxiliary effects, a new task's effect unknown (its pairs lean on the
    features and the base rate). ``info`` holds the chosen groups and, with ``evaluate``, the honest
    leave-one-task-out accuracy of the whole procedure beside the majority baseline
    (:func:`mtlfast.meta.budget.loto_new_tasks`). ``C`` is kept for the old interface and not used.
    """
    from mtlfast.meta.budget import fit_for_new_tasks, loto_new_tasks
    from mtlfast.meta.predictor import pairs_for_new_tasks
    from mtlfast.meta.table import pair_table

    if not new_features:
        raise PredictError("no new tasks given (their features are empty)")
    table, used, all_feats, known = _sweep_table(sweep_dir, new_features)
    new = sorted(t for t in new_features if t not in known)
    if not new:
        raise PredictError(f"every given task is already in the sweep ({sorted(new_features)})")
    groups = table.groups
    model, cols, search = fit_for_new_tasks(table.X, table.y, table.pairs, groups, gain=table.gains,
                                            random_state=random_state)
    pairs = pairs_for_new_tasks(known, new)
    tab_new = pair_table([{"main": m, "aux": a, "gain": 0.0, "label": 0} for m, a in pairs], all_feats,
                         features=used)
    proba = model.predict_proba(tab_new.X[:, cols], pairs=tab_new.pairs)[:, 1]
    rows = [{"main": m, "aux": a, "p_gain": float(p), "predicted_gain": int(p > 0.5),
             "main_is_new": int(m in new), "aux_is_new": int(a in new)} for (m, a), p in zip(tab_new.pairs, proba)]
    rows.sort(key=lambda r: (r["main"], -r["p_gain"], r["aux"]))
    info = {"groups": search["groups"], "tau": search.get("tau")}
    if evaluate:
        info["loto"] = loto_new_tasks(table.X, table.y, table.pairs, groups, gain=table.gains)
    return rows, used, info


def format_loto(info):
    """The predictor's leave-one-task-out accuracy beside the majority baseline, and a plain verdict."""
    lo = info.get("loto")
    if not lo or lo.get("accuracy") != lo.get("accuracy"):
        return "leave-one-task-out accuracy: not available (too few tasks or one label class)"
    n = sum(r["n_test"] for r in lo["rows"])
    line = (f"leave-one-task-out accuracy of this predictor on the sweep: {lo['accuracy']:.3f} "
            f"(majority baseline {lo['majority_accuracy']:.3f}; {n} held-out pairs, each task in turn treated as new)")
    if lo["accuracy"] <= lo["majority_accuracy"]:
        line += ("\nNO BETTER THAN THE MAJORITY BASELINE: on this sweep, pairs with an unseen task are predicted no "
                 "better than by always answering the majority class; treat the rankings below as uninformative.")
    return line


def format_ranking(rows, top=None):
    lines = []
    new = sorted({r["main"] for r in rows if r["main_is_new"]} | {r["aux"] for r in rows if r["aux_is_new"]})
    for t in new:
        aux = [r for r in rows if r["main"] == t]
        aux.sort(key=lambda r: -r["p_gain"])
        lines.append(f"{t} as main task: auxiliary tasks ranked by P(gain)")
        for r in aux[:top] if top is not None else aux:
            lines.append(f"  {r['aux']:<20} {r['p_gain']:.3f}  {'gain' if r['predicted_gain'] else 'no gain'}")
        helps = sorted((r for r in rows if r["aux"] == t and not r["main_is_new"]), key=lambda r: -r["p_gain"])
        lines.append(f"{t} as auxiliary task: main tasks it is predicted to help")
        for r in helps[:top] if top is not None else helps:
            lines.append(f"  {r['main']:<20} {r['p_gain']:.3f}  {'gain' if r['predicted_gain'] else 'no gain'}")
    return "\n".join(lines)


def build_parser():
    p = Parser(
        prog=PROG,
        description="Fit the gain predictor on a finished sweep and rank auxiliary tasks for new tasks from "
                    "their data features and/or single-task learning curves (no pair training).")
    add_out(p, "the finished sweep folder (gains.csv, features.csv, curves.csv)", old_flag="--sweep")
    p.add_argument("--new-task-features", type=Path,
                   help="CSV with a 'task' column and data features of the new tasks (features.csv format)")
    p.add_argument("--new-curves", type=Path,
                   help="CSV with the new tasks' single-task training-loss curves (curves.csv format or "
                        "task,step,loss)")
    p.add_argument("--new-sweep", type=Path, help="folder with features.csv and/or curves.csv of the new tasks")
    p.add_argument("--csv", type=Path, metavar="FILE", help="write all predictions to this CSV file")
    p.add_argument("--top", type=int, default=None, help="show only the best N per list")
    p.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength (default 1.0)")
    return p


def main(argv=None):
    from mtlfast.meta.table import TableError

    return run_main(PROG, lambda: _main(argv), (PredictError, TableError, OSError))


def _main(argv):
    args = build_parser().parse_args(argv)
    sweep = resolve_out(args, "the sweep folder", old_flag="--sweep")
    if args.top is not None and args.top < 1:
        raise UsageError(f"--top: expected a positive integer, got {args.top}")
    if not (args.new_task_features or args.new_curves or args.new_sweep):
        raise UsageError("expected the new tasks: --new-task-features, --new-curves or --new-sweep")
    new = load_sweep_features(args.new_sweep, args.new_task_features, args.new_curves)
    rows, used, info = predict_new(sweep, new, C=args.C)
    from mtlfast.meta.table import TASK_FEATURES

    left = [f for f in TASK_FEATURES if f not in used]
    print(f"features used ({len(used)}): {', '.join(used)}")
    if left:
        print(f"not available for every task, left out: {', '.join(left)}")
    print("feature groups chosen by leave-one-task-out: "
          + (", ".join(info["groups"]) if info["groups"] else "none (base rate and task effects only)"))
    print(format_loto(info))
    print(format_ranking(rows, args.top))
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, ["main", "aux", "p_gain", "predicted_gain", "main_is_new", "aux_is_new"])
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

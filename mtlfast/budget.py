"""Replay budgeted sweeps on a complete gain matrix: ``python -m mtlfast.budget --gains FILE [--features ...]``.

For every budget ``N`` (default 5, 6, ..., 40, capped at all pairs but one) and every replay (default 100), hide
all but ``N`` pairs, chosen as ``python -m mtlfast.sweep --pairs N --select SELECT`` would choose them (the
measurements of a chosen pair are looked up in the gain matrix instead of trained), predict the hidden directed
pairs with :class:`mtlfast.meta.budget.GainModel`, and score label accuracy and F1 (gain class) on them.
Baselines on the same hidden pairs:

- ``random_pairs``: the same model on ``N`` uniformly random pairs;
- ``main_majority``: each main task's majority sign among its measured pairs (loss where none is measured
  or on a tie);
- ``feature_only``: the paper's classifier (min-max scaling + logistic regression, C = 1) on the pair features
  of the measured pairs (only with ``--features``);
- ``always_loss``.

Inputs: ``--gains`` a ``gains.csv`` (``main, aux, gain`` [``label``, ``f1_single``]) of a complete sweep;
``--features`` zero or more CSV files: a task table (``task`` + any of the 14 task features, e.g. a sweep's
``features.csv`` or reproduce's ``curve_features.csv``) or training curves (``task, step, loss``: a sweep's
``curves.csv``), whose curve features are computed. Writes ``budget.csv``, ``budget.md`` and ``budget.png`` into
``--out`` and prints the table.

Example (the released logs of the paper)::

    python -m mtlfast.reproduce --logs ../shared/data/eacl2017/logs --out rep
    python -m mtlfast.budget --gains rep/gains.csv --features rep/curve_features.csv --out rep/budget
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from mtlfast.cli import Parser, UsageError, run_main

__all__ = ["BudgetError", "load_task_features", "parse_ns", "run_budget", "format_table", "main"]

PROG = "python -m mtlfast.budget"

METHODS = ("model", "random_pairs", "main_majority", "feature_only", "always_loss")
LABELS = {"model": "gain model", "random_pairs": "same model, random pairs", "main_majority": "main-task majority",
          "feature_only": "feature-only (paper)", "always_loss": "always loss"}


class BudgetError(ValueError):
    """Bad input; the message names the file or option and what was expected."""


def load_task_features(paths):
    """``{task: {feature: value}}`` from task tables and/or curve files (see the module docstring)."""
    from mtlfast.meta.table import TASK_FEATURES, curve_feature_table, read_csv, read_single_curves

    out = {}
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise BudgetError(f"--features {p}: file not found")
        rows, cols = read_csv(p)
        if "task" not in cols:
            raise BudgetError(f"--features {p}: expected a 'task' column (task features or task,step,loss curves),"
                              f" got {cols}")
        if "step" in cols and "loss" in cols:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for t, d in curve_feature_table(read_single_curves(p)).items():
                    out.setdefault(t, {}).update(d)
            continue
        known = [c for c in cols if c in TASK_FEATURES]
        if not known:
            raise BudgetError(f"--features {p}: no known task feature among its columns {cols}"
                              f" (expected some of {', '.join(TASK_FEATURES)})")
        for i, r in enumerate(rows, start=2):
            d = out.setdefault(r["task"], {})
            for c in known:
                try:
                    d[c] = float(r[c]) if r[c] not in ("", None) else math.nan
                except ValueError:
                    raise BudgetError(f"{p} line {i}: expected a number in column {c!r}, got {r[c]!r}") from None
    return out


def parse_ns(text, n_pairs_total):
    """``"5-40"``, ``"5,10,15"`` or ``"5-40:5"`` -> sorted budgets, capped at ``n_pairs_total - 1``."""
    ns = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                rng, _, step = part.partition(":")
                a, b = (int(x) for x in rng.split("-"))
                ns.update(range(a, b + 1, int(step) if step else 1))
            elif part:
                ns.add(int(part))
    except ValueError:
        raise BudgetError(f"--n: expected budgets like 5-40, 5-40:5 or 5,10,15, got {text!r}") from None
    bad = [n for n in ns if n < 1]
    if bad:
        raise BudgetError(f"--n: budgets must be >= 1, got {sorted(bad)}")
    capped = sorted(n for n in ns if n < n_pairs_total)
    if not capped:
        raise BudgetError(f"--n: every budget leaves no pair to predict (the matrix has {n_pairs_total} pairs)")
    return capped


def run_budget(gains_path, feature_paths=(), ns="5-40", n_replays=100, select="active", seed=0, round_size=None,
               progress=None):
    """Load the inputs and run :func:`mtlfast.meta.budget.replay_curve`. Returns ``(rows, info)``."""
    from mtlfast.meta.budget import GainMatrix, replay_curve
    from mtlfast.meta.table import TableError, read_gains

    gains_path = Path(gains_path)
    if not gains_path.exists():
        raise BudgetError(f"--gains {gains_path}: file not found")
    try:
        rows = read_gains(gains_path)
    except TableError as exc:
        raise BudgetError(str(exc)) from None
    bad = [r for r in rows if not math.isfinite(r["gain"])]
    if bad:
        raise BudgetError(f"{gains_path}: {len(bad)} gain(s) are not finite (e.g. {bad[0]['main']}/{bad[0]['aux']});"
                          " a replay needs a complete matrix of numbers")
    tf = load_task_features(feature_paths) if feature_paths else None
    try:
        gm = GainMatrix(rows, tf)
    except ValueError as exc:
        raise BudgetError(f"{gains_path}: {exc}") from None
    if len(gm.tasks) < 3:
        raise BudgetError(f"{gains_path}: a replay needs at least 3 tasks, got {len(gm.tasks)}")
    total = len(gm.tasks) * (len(gm.tasks) - 1) // 2
    budgets = parse_ns(ns, total) if isinstance(ns, str) else sorted(ns)
    t0 = time.perf_counter()
    out = replay_curve(gm, budgets, n_replays, select, seed=seed, use_features=bool(gm.columns),
                       round_size=round_size, progress=progress)
    info = {"tasks": gm.tasks, "pairs": total, "features": gm.features, "columns": gm.columns, "dropped": gm.dropped,
            "select": select, "replays": n_replays, "seed": seed, "seconds": time.perf_counter() - t0,
            "gain_share": sum(r["label"] for r in rows) / len(rows)}
    return out, info


def format_table(rows, info):
    """Markdown table: N, runs saved, hidden directed pairs, accuracy (and F1) of every method."""
    methods = [m for m in METHODS if f"{m}_accuracy" in rows[0]]
    paired = "model_minus_main_majority" in rows[0]
    head = ["N pairs trained", "hidden directed pairs"] + [f"{LABELS[m]} acc / F1" for m in methods]
    if paired:
        head.append("model − majority (± s.e.)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["n_pairs"]), str(r["hidden_directed"])]
        for m in methods:
            a, f = r[f"{m}_accuracy"], r[f"{m}_f1"]
            cells.append(f"{a:.3f} / {f:.3f}")
        if paired:
            cells.append(f"{r['model_minus_main_majority']:+.3f} ± {r['model_minus_main_majority_se']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows, info, path, title=None):
    from mtlfast.report.figures import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    ns = [r["n_pairs"] for r in rows]
    styles = {"model": ("C0", "-", 2.2), "random_pairs": ("C0", "--", 1.4), "main_majority": ("C1", "-", 1.4),
              "feature_only": ("C2", "-", 1.2), "always_loss": ("0.5", ":", 1.2)}
    for m in METHODS:
        if f"{m}_accuracy" not in rows[0]:
            continue
        c, ls, lw = styles[m]
        ax.plot(ns, [r[f"{m}_accuracy"] for r in rows], color=c, ls=ls, lw=lw, label=LABELS[m])
    ax.set_xlabel(f"pairs trained (of {info['pairs']})")
    ax.set_ylabel("label accuracy on the untrained directed pairs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"Budgeted sweep replay: select={info['select']}, mean of {info['replays']} replays",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------------------
# the budgeted sweep (called by mtlfast.sweep: it trains the singles, then hands the pair rounds to this)
# ------------------------------------------------------------------------------------------------------------
def _single_f1(store):
    f1 = store.final_f1()
    out = {}
    for r in store.runs():
        tasks = r["tasks"].split("+")
        if r["status"] == "done" and len(tasks) == 1 and (r["run_id"], tasks[0]) in f1:
            out.setdefault(tasks[0], []).append(f1[(r["run_id"], tasks[0])])
    return {t: sum(v) / len(v) for t, v in out.items()}


def _sweep_features(store, out, names):
    """Pair features from the sweep's records so far: data features, the single runs' curve features, the main
    task's single-task F1 (those finite for every task)."""
    from mtlfast.meta.budget import PairFeatures

    store.export()  # features.csv and curves.csv of what has finished
    paths = [p for p in (Path(out) / "features.csv", Path(out) / "curves.csv") if p.exists()]
    try:
        tf = load_task_features(paths) if paths else {}
    except BudgetError:
        tf = {}
    return PairFeatures(tf, names, _single_f1(store))


def _measured(store):
    from mtlfast.meta.gains import store_gains

    return {(g["main"], g["aux"]): (int(g["label"]), float(g["gain"])) for g in store_gains(store)
            if math.isfinite(g["gain"])}


def train_budgeted_pairs(cfg, names, store, out, n_pairs, run_group, say=None):
    """Train ``n_pairs`` pair runs of a sweep in rounds (:func:`mtlfast.meta.budget.run_rounds`), each round one
    model array through ``run_group(specs)``; runs a resumed sweep already finished are skipped, unfinished ones
    continue from their checkpoint. Returns the rounds."""
    from mtlfast.meta.budget import run_rounds
    from mtlfast.train import plan_runs

    steps_single, steps_pair = cfg.resolved_steps()

    def train_round(pairs):
        specs = plan_runs(names, cfg.seed, cfg.seeds, cfg.n_single_seeds(), steps_single, steps_pair, pairs=pairs,
                          singles=False)
        store.add_runs(specs)
        todo = []
        for s in specs:
            if store.status(s.run_id) == "done":
                continue
            s.resume = store.resume_state(s.run_id)
            todo.append(s)
        if todo:
            run_group(todo)

    feats = _sweep_features(store, out, names) if cfg.select == "active" else None
    return run_rounds(names, n_pairs, cfg.select, train_round, lambda: _measured(store), feats, seed=cfg.seed,
                      say=say)


def write_budgeted_gains(gains, names, store, out, say=None):
    """gains.csv of a budgeted sweep: the measured rows and the gain model's predictions for the others."""
    from mtlfast.meta.budget import budget_summary, complete_gains, write_gains_with_status

    pf = _sweep_features(store, out, names)
    rows = complete_gains(gains, names, pf.X if pf.columns else None, f1=_single_f1(store))
    path = write_gains_with_status(rows, Path(out) / "gains.csv")
    s = budget_summary(rows)
    if say and s:
        say(f"Budget: {s['pairs_trained']} of {s['pairs_total']} pair runs trained, {s['runs_saved']} run(s) saved;"
            f" {s['directed_predicted']} directed gains predicted (status 'predicted', p_gain in gains.csv);"
            f" features for the gain model: {', '.join(pf.columns) or 'none'}")
    return path


def build_parser():
    p = Parser(
        prog=PROG,
        description="Replay budgeted sweeps on a complete gain matrix: train only N pairs (chosen as the sweep "
                    "would), predict the rest, and score the predictions against the measured labels.")
    p.add_argument("--gains", required=True, type=Path, help="gains.csv of a complete sweep (main, aux, gain)")
    p.add_argument("--features", nargs="*", default=[], type=Path,
                   help="task feature tables (task + feature columns) and/or curves (task, step, loss)")
    p.add_argument("--n", default="5-40", help="budgets (pairs trained): 5-40, 5-40:5 or 5,10,15 (default 5-40)")
    p.add_argument("--replays", type=int, default=100, help="replays per budget (default 100)")
    p.add_argument("--select", choices=("active", "design", "random"), default="active",
                   help="how the sweep chooses pairs (default active: a balanced first round, then rounds of "
                        "the pairs the model is least sure of)")
    p.add_argument("--round-size", type=int, default=None,
                   help="pairs per active round after the first (default max(2, ceil(tasks / 4)))")
    p.add_argument("--seed", type=int, default=0, help="seed of the replays (default 0)")
    p.add_argument("--out", type=Path, default=None, help="write budget.csv, budget.md and budget.png here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv=None):
    return run_main(PROG, lambda: _main(argv), (BudgetError, OSError))


def _main(argv):
    args = build_parser().parse_args(argv)
    if args.replays < 1:
        raise UsageError(f"--replays: expected a positive integer, got {args.replays}")
    if args.round_size is not None and args.round_size < 1:
        raise UsageError(f"--round-size: expected a positive integer, got {args.round_size}")
    say = (lambda r: None) if args.quiet else (
        lambda r: print(f"  N={r['n_pairs']}: model {r['model_accuracy']:.3f}, main-task majority "
                        f"{r['main_majority_accuracy']:.3f}", file=sys.stderr, flush=True))
    rows, info = run_budget(args.gains, args.features, args.n, args.replays, args.select, args.seed,
                            args.round_size, say)
    table = format_table(rows, info)
    head = (f"{len(info['tasks'])} tasks, {info['pairs']} pairs, gain share {info['gain_share']:.3f}; "
            f"features: {', '.join(info['features']) if info['features'] else 'none'}"
            f"{' + main single-task F1' if 'main_f1_single' in info['columns'] else ''}"
            f"{'; not finite for every task, left out: ' + ', '.join(info['dropped']) if info['dropped'] else ''}"
            f"; select {info['select']}, "
            f"{info['replays']} replays per budget, seed {info['seed']}; {info['seconds']:.0f} s")
    print(head)
    print(table)
    if args.out:
        from mtlfast.report.files import write_csv

        args.out.mkdir(parents=True, exist_ok=True)
        write_csv(args.out / "budget.csv", rows, list(rows[0]))
        cmd = "python -m mtlfast.budget " + " ".join(sys.argv[1:] if argv is None else argv)
        (args.out / "budget.md").write_text(f"# Budgeted sweep replay\n\n`{cmd}`\n\n{head}\n\n{table}\n\n"
                                            "Accuracy and F1 (gain class) on the untrained directed pairs, mean "
                                            "over the replays.\n", encoding="utf-8")
        plot(rows, info, args.out / "budget.png")
        print(f"wrote budget.csv, budget.md, budget.png into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does bf16 give the same science as fp32? (issue 7, must-show 4)

Trains single-task runs on a few tasks for a fixed number of steps, with seeds 0 and 1 in fp32 and the same
seeds in bf16 (all runs of one precision as one model array), and compares test F1 (micro, without O): the
bf16-vs-fp32 difference for the same seed against the fp32 difference between seeds.

    python bench/bench_bf16_science.py --data ../shared/data --tasks pos,chu,key \
        --glove ../shared/data/embeddings/glove.6B.50d.trimmed.txt --steps 2000

Writes bench/out/bench_bf16_science.csv.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the checkout's mtlfast, also when it is not installed

from mtlfast.train import RunSpec, Scores, TrainSettings, prepare_inputs, run_id_for, train_group  # noqa: E402


def f1_by_run(inputs, tasks, seeds, precision, steps):
    specs = [RunSpec(run_id_for((t,), s), (t,), s, steps) for t in tasks for s in seeds]
    out = {}

    def on_event(e):
        if isinstance(e, Scores):
            for task, split, metric, value in e.rows:
                if split == "test" and metric == "f1_micro_no_o":
                    out[(task, e.run_id.split("@")[1])] = value

    t0 = time.perf_counter()
    train_group(specs, inputs, TrainSettings(precision=precision, eval_splits=("test",)), on_event)
    return {(t, int(s)): v for (t, s), v in out.items()}, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--tasks", default="pos,chu,key")
    ap.add_argument("--glove")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--csv", default=str(HERE / "out" / "bench_bf16_science.csv"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    tasks = args.tasks.split(",")
    inputs = prepare_inputs([Path(args.data) / t for t in tasks], args.glove, 100, tasks)
    seeds = (0, 1)
    res = {}
    for prec in ("fp32", "bf16"):
        res[prec], secs = f1_by_run(inputs, tasks, seeds, prec, args.steps)
        print(f"{prec}: {len(tasks) * len(seeds)} runs x {args.steps} steps in {secs:.0f} s")
    print(f"\ntest F1 (micro, without O) after {args.steps} steps")
    print("| task | fp32 seed 0 | fp32 seed 1 | bf16 seed 0 | bf16 seed 1 | |fp32 s0 - s1| | max |bf16 - fp32| same seed |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for t in tasks:
        f0, f1 = res["fp32"][(t, 0)], res["fp32"][(t, 1)]
        b0, b1 = res["bf16"][(t, 0)], res["bf16"][(t, 1)]
        seed_gap = abs(f0 - f1)
        prec_gap = max(abs(b0 - f0), abs(b1 - f1))
        print(f"| {t} | {f0:.4f} | {f1:.4f} | {b0:.4f} | {b1:.4f} | {seed_gap:.4f} | {prec_gap:.4f} |")
        rows.append(dict(task=t, steps=args.steps, fp32_seed0=f0, fp32_seed1=f1, bf16_seed0=b0, bf16_seed1=b1,
                         seed_gap_fp32=seed_gap, max_precision_gap=prec_gap))
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

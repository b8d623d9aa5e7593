"""End-to-end training step: mtlfast's engine vs the plain-PyTorch reference protocol, side by side.

Two measurements, both in one process run (issue 7, must-show 2 and 3):

1. one run (a single task): ms per training step of ``bench/reference_protocol.py`` (nn.Embedding + nn.LSTM +
   torch.optim.Adadelta, Python batching) vs the mtlfast engine at K = 1, fp32 and bf16;
2. the model array of every run of a sweep (10 tasks: 10 single + 45 pair runs = 55; the generated suite: 28):
   run-steps per second vs the reference's (which trains one run at a time), and from it the projected
   paper-scale sweep time (10 x 25,000 + 45 x 50,000 run-steps; the array holds 55 runs for the first 25,000
   steps and the 45 pairs after).

``--protocol original|clean`` chooses the protocol of both sides (the reference runs ``--original`` for the
original one), ``--device`` the engine's device. Every engine measurement also records a per-part profile of
the array step (:class:`mtlfast.train.engine.StepProfile`: bi-LSTM forward+backward, heads + cross-entropy +
head update, the bi-LSTM's optimiser, embedding lookup + row update, batch assembly (sampling, padding,
dropout masks, transfer), other), summed over the timed blocks, printed as ms per step and share of the step,
and written to the CSV (``prof_<part>_ms`` columns).

Usage::

    python bench/bench_step.py --data ../shared/data --glove ../shared/data/embeddings/glove.6B.50d.trimmed.txt
    python bench/bench_step.py --protocol original --precisions fp32 --no-reference ...
    python bench/bench_step.py                      # generated default suite, no embeddings

Medians over ``--repeat`` timed blocks after warm-up; never asserts a time. Writes bench/out/bench_step.csv.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # the checkout's mtlfast, also when it is not installed

import reference_protocol  # noqa: E402

from mtlfast.ops.dispatch import cpu_features  # noqa: E402
from mtlfast.train import RunSpec, TrainSettings, engine, prepare_inputs, run_id_for  # noqa: E402
from mtlfast.train.model import ModelArray  # noqa: E402

PAPER_SINGLE, PAPER_PAIR = 25_000, 50_000


def _suite(args) -> list[Path]:
    if args.data:
        root = Path(args.data)
        paths = sorted(p for p in root.iterdir() if (p / "train.tsv").exists())
    else:
        from mtlfast.data.synthetic import generate_suite

        root = Path(tempfile.mkdtemp(prefix="mtlfast-bench-")) / "data"
        paths = [Path(p) for p in generate_suite(root, seed=0)]
    if args.tasks:
        want = args.tasks.split(",")
        paths = [p for p in paths if p.name in want]
    return paths


def _array(inputs, task_tuples, settings):
    specs = [RunSpec(run_id_for(t, 0), t, 0, 10**9) for t in task_tuples]
    runs, states = [], []
    for s in specs:
        run, state = engine._start_run(s, inputs, settings)
        runs.append(run)
        states.append(state)
    return ModelArray(states, [r.step for r in runs], settings.device), runs


def time_engine(inputs, task_tuples, precision, steps, repeat, warmup, protocol="clean", device="cpu"):
    """(median seconds per array step, StepProfile of the timed steps)."""
    settings = TrainSettings(precision=precision, protocol=protocol, device=device)
    arr, runs = _array(inputs, task_tuples, settings)
    step = engine._array_step_original if protocol == "original" else engine._array_step
    for _ in range(warmup):
        step(arr, runs, inputs, settings)
    prof = engine.StepProfile(device)
    times = []
    for _ in range(repeat):
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            step(arr, runs, inputs, settings, prof=prof)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times), prof


def _profile_cols(prof) -> dict:
    per = {p: prof.seconds[p] / max(prof.steps, 1) * 1e3 for p in prof.PARTS}
    return {f"prof_{p}_ms": round(v, 3) for p, v in per.items()}


def _print_profile(prof, indent="    ") -> None:
    per = {p: prof.seconds[p] / max(prof.steps, 1) * 1e3 for p in prof.PARTS}
    total = sum(per.values()) or 1.0
    print(indent + "profile (ms/step, share): " + ", ".join(f"{p} {v:.2f} ({v / total:.0%})" for p, v in per.items()))


def time_reference(task_dir: Path, glove, steps, repeat, threads, protocol="clean") -> float:
    """Median seconds per step of the plain-PyTorch protocol (its own warm-up excluded)."""
    times = []
    fn = reference_protocol.train_original if protocol == "original" else reference_protocol.train
    for r in range(repeat):
        out = fn([task_dir], steps=steps, seed=r, glove_path=glove, threads=threads, evaluate_test=False)
        times.append(out["ms_per_step"] / 1e3)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="folder of task folders (default: the generated suite)")
    ap.add_argument("--glove", help="GloVe text file (both sides use it)")
    ap.add_argument("--tasks", help="comma-separated task names to use (default: all)")
    ap.add_argument("--single-task", help="task for the one-run comparison (default: the first)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50, help="steps per timed block (one run)")
    ap.add_argument("--array-steps", type=int, default=5, help="steps per timed block (model array)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-array", action="store_true", help="skip the model-array measurement")
    ap.add_argument("--no-reference", action="store_true", help="skip the plain-PyTorch reference (ratios blank)")
    ap.add_argument("--no-pairs", action="store_true", help="skip the pairs-only array (no projection)")
    ap.add_argument("--protocol", choices=("clean", "original"), default="clean")
    ap.add_argument("--device", default="cpu", help="the engine's device (cpu, cuda, cuda:1, ...)")
    ap.add_argument("--precisions", default="fp32,bf16", help="comma-separated, of fp32, bf16")
    ap.add_argument("--csv", default=str(HERE / "out" / "bench_step.csv"))
    args = ap.parse_args(argv)
    precs = [p for p in args.precisions.split(",") if p]
    bad = [p for p in precs if p not in ("fp32", "bf16")]
    if bad or not precs:
        ap.error(f"--precisions: expected a comma-separated list of fp32, bf16; got {args.precisions!r}")
    try:
        dev = torch.device(args.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("no CUDA device is available")
    except (RuntimeError, ValueError) as e:
        ap.error(f"--device: expected cpu or an available cuda device; got {args.device!r} ({e})")

    torch.set_num_threads(args.threads)
    paths = _suite(args)
    names = [p.name for p in paths]
    single = args.single_task or names[0]
    feats = cpu_features()
    machine = f"{feats['model']}; {args.threads} threads; torch {torch.__version__}; {platform.python_version()}"
    if dev.type == "cuda":
        machine += f"; {torch.cuda.get_device_name(dev)}"
    print(f"machine: {machine}; protocol {args.protocol}; device {args.device}")
    print(f"suite: {len(names)} tasks ({', '.join(names)}); embeddings: {args.glove or 'random 100-d'}")

    inputs = prepare_inputs(paths, args.glove, 100, names, protocol=args.protocol)
    rows = []
    common = dict(protocol=args.protocol, device=args.device)

    ref = None
    if not args.no_reference:
        ref = time_reference(paths[names.index(single)], args.glove, args.steps + 20, args.repeat, args.threads,
                             args.protocol)
        print(f"\n[one run: {single}]  reference protocol (nn.LSTM, torch.optim.Adadelta): {ref * 1e3:.2f} ms/step")
        rows.append(dict(case="one run", impl="reference", precision="fp32", K=1, task=single, ms_per_array_step=ref * 1e3,
                         ms_per_run_step=ref * 1e3, ratio=1.0, **common))
    else:
        print(f"\n[one run: {single}]  (no reference)")
    for prec in precs:
        t, prof = time_engine(inputs, [(single,)], prec, args.steps, args.repeat, 10, args.protocol, args.device)
        print(f"  mtlfast engine K=1 {prec}: {t * 1e3:.2f} ms/step" + (f"   speed-up x{ref / t:.2f}" if ref else ""))
        _print_profile(prof)
        rows.append(dict(case="one run", impl="mtlfast", precision=prec, K=1, ms_per_array_step=t * 1e3,
                         ms_per_run_step=t * 1e3, ratio=ref / t if ref else "", **common, **_profile_cols(prof)))

    if not args.no_array:
        all_runs = [(n,) for n in names] + list(itertools.combinations(names, 2))
        pairs_only = list(itertools.combinations(names, 2))
        # The reference's step time depends on the task (sentence lengths, label count), so the array's reference
        # is each run's own: the mean step time of its tasks (a pair run's step trains one of its two tasks).
        ref_run = ref_paper = ref_rate = None
        if ref:
            ref_task = {single: ref}
            for name, path in zip(names, paths):
                if name not in ref_task:
                    ref_task[name] = time_reference(path, args.glove, args.steps + 20, args.repeat, args.threads,
                                                    args.protocol)
            print("  reference ms/step by task: " + ", ".join(f"{n} {ref_task[n] * 1e3:.2f}" for n in names))
            ref_run = {r: statistics.mean(ref_task[t] for t in r) for r in all_runs}
            ref_rate = len(all_runs) / sum(ref_run.values())
            ref_paper = sum(ref_run[r] * (PAPER_SINGLE if len(r) == 1 else PAPER_PAIR) for r in all_runs)
            for n in names:
                rows.append(dict(case="one run", impl="reference", precision="fp32", K=1, task=n,
                                 ms_per_array_step=ref_task[n] * 1e3, ms_per_run_step=ref_task[n] * 1e3, **common))
        print(f"\n[model array: {len(all_runs)} runs]" + (f"  reference: {ref_rate:.1f} run-steps/s (one run at a time,"
                                                         " each run at its own tasks' step time)" if ref else ""))
        for prec in precs:
            t_all, prof = time_engine(inputs, all_runs, prec, args.array_steps, args.repeat, 2, args.protocol,
                                      args.device)
            rate = len(all_runs) / t_all
            n_single, n_pair = len(names), len(pairs_only)
            print(f"  mtlfast K={len(all_runs)} {prec}: {t_all * 1e3:.1f} ms/array step = {rate:.1f} run-steps/s"
                  + (f"  x{rate / ref_rate:.2f} the reference" if ref else ""))
            _print_profile(prof)
            row = dict(case=f"array {len(all_runs)} runs", impl="mtlfast", precision=prec, K=len(all_runs),
                       ms_per_array_step=t_all * 1e3, ms_per_run_step=t_all * 1e3 / len(all_runs),
                       ratio=rate / ref_rate if ref else "", **common, **_profile_cols(prof))
            if not args.no_pairs:
                t_pairs, _ = time_engine(inputs, pairs_only, prec, args.array_steps, args.repeat, 2, args.protocol,
                                         args.device)
                projected = PAPER_SINGLE * t_all + (PAPER_PAIR - PAPER_SINGLE) * t_pairs
                print(f"    K={n_pair}: {t_pairs * 1e3:.1f} ms/array step; paper-scale sweep ({n_single} x "
                      f"{PAPER_SINGLE:,} + {n_pair} x {PAPER_PAIR:,} steps): mtlfast {projected / 3600:.2f} h"
                      + (f" vs reference {ref_paper / 3600:.2f} h" if ref else ""))
                row["projected_paper_h"] = projected / 3600
                if ref:
                    row["reference_paper_h"] = ref_paper / 3600
            rows.append(row)

    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r})
    with open(args.csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["machine", "suite", *keys])
        w.writeheader()
        for r in rows:
            w.writerow(dict(r, machine=machine, suite=",".join(names)))
    print(f"\nwrote {args.csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

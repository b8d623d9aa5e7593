"""Fused bi-LSTM (mtlfast._C, CPU) vs torch.nn.LSTM(bidirectional=True), side by side in one process run.

For each configuration (K models, batch B, length T, input E, hidden H, threads, precision) both sides get the
same inputs and weights:
  ours : one ``mtlfast.ops.bilstm`` call over the whole model array [K, B, T, E];
  torch: K calls of ``torch.nn.LSTM(bidirectional=True, batch_first=True)`` on the dense padded batch (its
         fastest path; every sequence has full length T so both compute the same thing; with ``--ragged``,
         lengths are drawn in [1, T] and torch runs packed sequences, the way it handles ragged batches exactly;
         with ``--tasks``, lengths follow the real tasks (see :func:`task_lengths`), torch again packed).
Modes: forward (no autograd graph) and forward+backward (sum of outputs, gradients of input and all weights).
The two sides alternate repetition by repetition, so load from other processes hits both alike; medians after
warm-up, ratio = torch / ours (> 1 means mtlfast is faster).

Prints a table and writes bench/out/bench_bilstm.csv with the configuration and machine. Never asserts a time.

    python bench/bench_bilstm.py                       # the issue's grid: K 1,10; E 50,100; threads 1,2
    python bench/bench_bilstm.py --K 1 --E 50 --threads 2 --repeat 50
    python bench/bench_bilstm.py --tasks --T 30 --K 10,55 --E 50   # ragged like the shared tasks
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn.utils.rnn import pack_padded_sequence

HERE = Path(__file__).resolve().parent
# --root DIR: time the mtlfast of another checkout (e.g. a frozen copy of an older commit with its own build).
_ROOT = next((a.split("=", 1)[1] if "=" in a else sys.argv[i + 2] for i, a in enumerate(sys.argv[1:])
              if a.startswith("--root")), str(HERE.parent))
sys.path.insert(0, _ROOT)

from mtlfast.nn import BiLSTM  # noqa: E402
from mtlfast.ops import bilstm, dispatch  # noqa: E402
from mtlfast.ops.dispatch import cpu_features  # noqa: E402


def ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v]


def machine() -> str:
    model = cpu_features()["model"]
    c = dispatch.require_c()
    return (f"{model}; {len(os.sched_getaffinity(0))} cpus; torch {torch.__version__}; "
            f"kernel {c.cpu_kernel_path()}; gemm {c.gemm_backend()}; load {os.getloadavg()[0]:.1f}")


def run_pair(f_ours, f_torch, repeat: int, warmup: int) -> tuple[float, float]:
    """Median ms of each side; f_torch None: ours only (torch's time is NaN)."""
    for _ in range(warmup):
        f_ours()
        if f_torch is not None:
            f_torch()
    t_ours, t_torch = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f_ours()
        t1 = time.perf_counter()
        if f_torch is not None:
            f_torch()
        t2 = time.perf_counter()
        t_ours.append(t1 - t0)
        t_torch.append(t2 - t1)
    return statistics.median(t_ours) * 1e3, (statistics.median(t_torch) * 1e3 if f_torch else float("nan"))


def task_lengths(K, B, T, gen):
    """Lengths [K, B] shaped like the ten shared tasks' batches, cut at T: every tenth run (k % 10 == 9) draws
    from a short task (mean ~6 tokens, like ccg: gamma shape 4, mean 6, longest of a batch ~11), the others from
    sentence-length tasks (gamma shape 3, mean 21 before the cut: ~19 after the cut at 30)."""
    short = torch.tensor([k % 10 == 9 for k in range(K)]).unsqueeze(1)
    shape = torch.where(short, 4.0, 3.0).expand(K, B)
    mean = torch.where(short, 6.0, 21.0).expand(K, B)
    g = torch._standard_gamma(shape.contiguous(), generator=gen) * (mean / shape)
    return g.round().clamp(1, T).long()


def case(K, B, T, E, H, precision, ragged, seed=0, tasks=False):
    gen = torch.Generator().manual_seed(seed)
    mod = BiLSTM(K, E, H, precision=precision, backend="cpu")
    mod.reset_parameters(generator=gen)
    lstms = [mod.to_torch(k) for k in range(K)]
    x = torch.randn(K, B, T, E, generator=gen)
    if tasks:
        ragged = True
        lengths = task_lengths(K, B, T, gen)
    else:
        lengths = torch.randint(1, T + 1, (K, B), generator=gen) if ragged else torch.full((K, B), T)
    x_ours = x.clone().requires_grad_(True)
    xs_torch = [x[k].clone().requires_grad_(True) for k in range(K)]

    def ours_fwd():
        with torch.no_grad():
            mod(x_ours, lengths)

    def ours_fb():
        mod(x_ours, lengths).sum().backward()

    def torch_out(k):
        if ragged:
            packed = pack_padded_sequence(xs_torch[k], lengths[k], batch_first=True, enforce_sorted=False)
            return lstms[k](packed)[0].data
        return lstms[k](xs_torch[k])[0]

    def torch_fwd():
        with torch.no_grad():
            for k in range(K):
                torch_out(k)

    def torch_fb():
        for k in range(K):
            torch_out(k).sum().backward()

    return (ours_fwd, torch_fwd), (ours_fb, torch_fb)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--K", type=ints, default=[1, 10], help="model-array sizes (comma list; default 1,10)")
    ap.add_argument("--B", type=int, default=32, help="batch size (default 32)")
    ap.add_argument("--T", type=int, default=25, help="padded length (default 25)")
    ap.add_argument("--E", type=ints, default=[50, 100], help="input sizes (comma list; default 50,100)")
    ap.add_argument("--H", type=int, default=100, help="hidden units per direction (default 100)")
    ap.add_argument("--threads", type=ints, default=[1, 2], help="torch thread counts (comma list; default 1,2)")
    ap.add_argument("--precision", default="fp32", help="comma list of fp32,bf16 for our side (torch is fp32)")
    ap.add_argument("--ragged", action="store_true", help="ragged lengths; torch then runs packed sequences")
    ap.add_argument("--tasks", action="store_true",
                    help="ragged lengths like the real tasks (task_lengths: mean ~19 cut at T, every tenth run "
                         "mean ~6); torch runs packed sequences")
    ap.add_argument("--no-torch", action="store_true", help="time mtlfast only (before/after comparisons)")
    ap.add_argument("--root", default=str(HERE.parent),
                    help="import mtlfast from this checkout (default: this one); for timing an older build")
    ap.add_argument("--repeat", type=int, default=30, help="timed repetitions per side (default 30)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed repetitions per side (default 5)")
    ap.add_argument("--csv", default=str(HERE / "out" / "bench_bilstm.csv"), help="CSV output path")
    args = ap.parse_args(argv)
    dispatch.require_c()

    print(f"machine: {machine()}")
    print(f"mtlfast from: {Path(sys.modules['mtlfast'].__file__).parent}")
    print(f"command: python bench/bench_bilstm.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    header = f"{'mode':<10}{'K':>4}{'E':>5}{'thr':>4} {'prec':<5}{'mtlfast ms':>11}{'nn.LSTM ms':>11}{'ratio':>7}"
    print(header)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for K in args.K:
            for E in args.E:
                for precision in args.precision.split(","):
                    fwd, fb = case(K, args.B, args.T, E, args.H, precision, args.ragged, tasks=args.tasks)
                    for mode, (f_ours, f_torch) in (("fwd", fwd), ("fwd+bwd", fb)):
                        ours_ms, torch_ms = run_pair(f_ours, None if args.no_torch else f_torch, args.repeat,
                                                     args.warmup)
                        ratio = torch_ms / ours_ms
                        print(f"{mode:<10}{K:>4}{E:>5}{threads:>4} {precision:<5}{ours_ms:>11.3f}{torch_ms:>11.3f}"
                              f"{ratio:>6.2f}x", flush=True)
                        rows.append(dict(mode=mode, K=K, B=args.B, T=args.T, E=E, H=args.H, threads=threads,
                                         precision=precision, ragged=args.ragged or args.tasks,
                                         tasks=args.tasks, mtlfast_ms=round(ours_ms, 4),
                                         torch_ms=round(torch_ms, 4), ratio=round(ratio, 4), repeat=args.repeat,
                                         machine=machine()))
    out = Path(args.csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""fp32 vs bf16 matrix products for the shapes of one model-array training step (decision input).

For every product of a bi-LSTM tagger step (B = 32 sentences, T = 25 steps, E = 50, H = 100, heads of L labels)
this times torch.mm / torch.bmm (oneDNN / MKL on CPU) in fp32, in bf16 with operands already in bf16, and in
bf16 including the fp32 -> bf16 conversion of the operands that change every call (master weights and
activations stay fp32 in a mixed-precision step), single (K = 1) and batched over a model array (K runs,
x 2 directions where the product is per direction). Prints a table (median µs per call, GFLOP/s, speed-up of
bf16 over fp32) and a short conclusion derived from the numbers, and writes bench/out/bench_bf16_probe.csv.

    python bench/bench_bf16_probe.py --threads 2            # K = 1, 10, 55
    python bench/bench_bf16_probe.py --threads 2 --K 1,10   # quicker
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the checkout's mtlfast, also when it is not installed

from mtlfast.ops.dispatch import cpu_features  # noqa: E402


def cpu_desc() -> str:
    f = cpu_features()
    model = f["model"]
    feats = [k for k in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f[k]]
    return (f"{model}; {os.cpu_count()} cpus; flags {' '.join(feats) or 'none of avx512/amx'}; torch {torch.__version__}; "
            f"capability {torch.backends.cpu.get_cpu_capability()}; threads {torch.get_num_threads()}")


CLOCK = time.perf_counter


def timeit(fn, min_time: float, max_reps: int = 20000) -> tuple[float, float]:
    """(median, min) µs per call over batches of calls lasting at least ~min_time/10 each, on CLOCK
    (wall time, or process CPU time with --clock cpu)."""
    for _ in range(3):
        fn()
    n = 1
    while True:  # calibrate the inner loop length
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > min_time / 10 or n >= max_reps:
            break
        n *= 2
    samples = []
    t_end = time.perf_counter() + min_time
    while time.perf_counter() < t_end or len(samples) < 5:
        t0 = CLOCK()
        for _ in range(n):
            fn()
        samples.append((CLOCK() - t0) / n)
    return statistics.median(samples) * 1e6, min(samples) * 1e6


def products(B: int, T: int, E: int, H: int, L: int):
    """(name, M, K, N, per_direction, what) of one training step's products; A [M, K] @ W [K, N]."""
    G = 4 * H
    BT = B * T
    return [
        ("rec_fwd", B, H, G, True, "per timestep h[t-1] @ W_hh^T (x T steps)"),
        ("rec_bwd", B, G, H, True, "per timestep dgates @ W_hh (x T steps)"),
        ("in_proj", BT, E, G, True, "all timesteps x @ W_ih^T (hoisted)"),
        ("dW_hh", G, BT, H, True, "dgates^T @ h over all timesteps"),
        ("dW_ih", G, BT, E, True, "dgates^T @ x over all timesteps"),
        ("dx", BT, G, E, True, "dgates @ W_ih (input gradient)"),
        ("head_fwd", BT, 2 * H, L, False, "states @ W_out^T"),
        ("head_dW", L, BT, 2 * H, False, "dlogits^T @ states"),
        ("head_dx", BT, L, 2 * H, False, "dlogits @ W_out"),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--K", default="1,10,55",
                    help="model-array sizes (comma-separated). K = 1: one torch.mm per product (one run, one "
                         "direction); K > 1: one torch.bmm over K runs (x 2 directions for per-direction products)")
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--T", type=int, default=25)
    ap.add_argument("--E", type=int, default=50)
    ap.add_argument("--H", type=int, default=100)
    ap.add_argument("--L", type=int, default=50, help="labels of a head (pos 49, ccg 279)")
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds of timing per measurement")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall time (default) or process CPU time: with --threads 1 on a shared, loaded machine the "
                         "CPU time estimates the idle-machine wall time")
    ap.add_argument("--csv", default=str(HERE / "out" / "bench_bf16_probe.csv"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    desc = cpu_desc()
    print(f"machine: {desc}; clock {args.clock}")
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(f"WARNING: load average {load:.1f} > {os.cpu_count()} cpus: other processes share the cores, "
              "multi-threaded timings will be inflated (see the min columns in the CSV)")
    print(f"mkldnn available {torch.backends.mkldnn.is_available()}; "
          f"bf16 on this CPU: {getattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported', lambda: 'n/a')()}")
    hdr = (f"{'product':9s} {'K':>3s} {'batch':>5s} {'M x K x N':>16s} {'MFLOP':>8s} {'fp32 µs':>9s} {'bf16 µs':>9s} "
           f"{'+cvt µs':>9s} {'fp32 GF/s':>9s} {'bf16 GF/s':>9s} {'bf16 x':>7s} {'+cvt x':>7s} {'rel err':>8s}")
    print(hdr)
    print("-" * len(hdr))
    rows = []
    for K in [int(k) for k in args.K.split(",")]:
        for name, M, Kd, N, per_dir, what in products(args.B, args.T, args.E, args.H, args.L):
            batch = 1 if K == 1 else K * (2 if per_dir else 1)
            a = torch.randn(batch, M, Kd) if batch > 1 else torch.randn(M, Kd)
            w = torch.randn(batch, Kd, N) * Kd ** -0.5 if batch > 1 else torch.randn(Kd, N) * Kd ** -0.5
            a16, w16 = a.bfloat16(), w.bfloat16()
            mm = torch.bmm if batch > 1 else torch.mm
            t32, m32 = timeit(lambda: mm(a, w), args.min_time)
            t16, m16 = timeit(lambda: mm(a16, w16), args.min_time)
            # mixed precision: both operands converted each call (recurrent weights would be converted once
            # per step and reused over T timesteps, so for rec_* this is the pessimistic bound)
            tcv, mcv = timeit(lambda: mm(a.bfloat16(), w.bfloat16()), args.min_time)
            ref = mm(a.double(), w.double())
            err16 = float((mm(a16, w16).double() - ref).norm() / ref.norm())
            flops = 2.0 * batch * M * Kd * N
            r = dict(product=name, K=K, batch=batch, M=M, Kdim=Kd, N=N, mflop=flops / 1e6, fp32_us=t32, bf16_us=t16,
                     bf16_cvt_us=tcv, fp32_gflops=flops / t32 / 1e3, bf16_gflops=flops / t16 / 1e3,
                     speedup=t32 / t16, speedup_cvt=t32 / tcv, bf16_rel_err=err16, fp32_min_us=m32,
                     bf16_min_us=m16, bf16_cvt_min_us=mcv, what=what)
            rows.append(r)
            print(f"{name:9s} {K:3d} {batch:5d} {f'{M}x{Kd}x{N}':>16s} {r['mflop']:8.2f} {t32:9.1f} {t16:9.1f} "
                  f"{tcv:9.1f} {r['fp32_gflops']:9.1f} {r['bf16_gflops']:9.1f} {r['speedup']:7.2f} "
                  f"{r['speedup_cvt']:7.2f} {err16:8.1e}")
        print()
    # Per-step totals: recurrent products run T times per step (forward and backward)
    print("per training step (recurrent products x T, all others once), ms:")
    for K in sorted({r["K"] for r in rows}):
        tot = {"fp32_us": 0.0, "bf16_us": 0.0, "bf16_cvt_us": 0.0}
        for r in rows:
            if r["K"] != K:
                continue
            reps = args.T if r["product"].startswith("rec_") else 1
            for key in tot:
                tot[key] += r[key] * reps
        print(f"  K={K:3d}: fp32 {tot['fp32_us'] / 1e3:8.2f}  bf16 {tot['bf16_us'] / 1e3:8.2f}  "
              f"bf16+cvt {tot['bf16_cvt_us'] / 1e3:8.2f}  (x{tot['fp32_us'] / tot['bf16_us']:.2f} / "
              f"x{tot['fp32_us'] / tot['bf16_cvt_us']:.2f})")
    wins = sorted({f"{r['product']}(K={r['K']})" for r in rows if r["speedup_cvt"] >= 1.2})
    losses = sorted({f"{r['product']}(K={r['K']})" for r in rows if r["speedup"] < 0.9})
    print("\nconclusion (from these numbers):")
    print(f"  bf16 (with conversion) >= 1.2x faster: {', '.join(wins) or 'nowhere'}")
    print(f"  bf16 slower than fp32 (<0.9x, even without conversion): {', '.join(losses) or 'nowhere'}")
    out = Path(args.csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]) + ["threads", "clock", "machine"])
        wr.writeheader()
        for r in rows:
            wr.writerow(dict(r, threads=args.threads, clock=args.clock, machine=desc))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

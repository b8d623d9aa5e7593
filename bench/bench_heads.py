"""The array step's heads op alone (:func:`mtlfast.ops.heads_step_`) on real inputs, fp32 and bf16.

Builds the model array of every run of the ten shared tasks (10 single + 45 pair runs, as ``bench_step.py``),
runs ``--capture`` array steps of the engine and records the inputs each step passed to ``heads_step_`` (the
bi-LSTM output, tags, drawn slots, label counts). Then times ``heads_step_`` alone on those inputs (on copies of
the heads and their Adadelta state), per precision, and prints ms per call, the products' FLOPs and GFLOP/s.

Usage::

    python bench/bench_heads.py --data ../shared/data --glove ../shared/data/embeddings/glove.6B.50d.trimmed.txt \
        --protocol original --threads 2

Medians over ``--repeat`` passes over the captured steps; never asserts a time. Also prints the CPU time and
page faults per call. In the training step the op's large outputs (dy: 42 MB at K = 55) come from memory the step
freed before; alone, glibc would map (and the kernel zero) fresh pages for them on every call, so on glibc the
bench raises malloc's mmap and trim thresholds (mallopt) to time the op as the step sees it.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import statistics
import sys
import resource
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mtlfast import ops  # noqa: E402
from mtlfast.train import TrainSettings, engine, prepare_inputs  # noqa: E402
from bench_step import _array  # noqa: E402  (the same model array as bench_step's)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--glove")
    ap.add_argument("--protocol", choices=("clean", "original"), default="original")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--capture", type=int, default=4, help="array steps whose heads inputs are timed")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--precisions", default="fp32,bf16")
    args = ap.parse_args(argv)
    try:  # glibc: M_TRIM_THRESHOLD (-1), M_MMAP_THRESHOLD (-3)
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 31)
        libc.mallopt(-3, 1 << 30)
    except OSError:
        pass
    torch.set_num_threads(args.threads)
    root = Path(args.data)
    paths = sorted(p for p in root.iterdir() if (p / "train.tsv").exists())
    names = [p.name for p in paths]
    inputs = prepare_inputs(paths, args.glove, 100, names, protocol=args.protocol)
    tuples = [(n,) for n in names] + list(itertools.combinations(names, 2))
    settings = TrainSettings(precision="fp32", protocol=args.protocol)
    arr, runs = _array(inputs, tuples, settings)
    captured = []
    real = ops.heads_step_

    def spy(y, *a, **kw):
        captured.append((y.clone(), [t.clone() for t in a[:6]], a[6:], dict(kw)))
        return real(y, *a, **kw)

    ops.heads_step_ = spy
    step = engine._array_step_original if args.protocol == "original" else engine._array_step
    try:
        for _ in range(args.capture):
            step(arr, runs, inputs, settings)
    finally:
        ops.heads_step_ = real
    flops = 0
    for y, _, (slots, n_lab, tags), kw in captured:
        N = (tags != engine.PAD_TAG).sum(dim=(1, 2))
        flops += int((6 * N * torch.as_tensor(n_lab) * y.shape[3]).sum())
    flops /= len(captured)
    print(f"K = {arr.K}, {len(captured)} captured steps, products {flops / 1e9:.2f} GFLOP per call, "
          f"{args.threads} threads")
    for prec in args.precisions.split(","):
        # the heads move in place: each precision starts from copies of the captured heads (made once, untimed)
        state = [[x.clone() for x in heads] for _, heads, _, _ in captured]
        times = []
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(args.repeat + 1):
            t = 0.0
            for (y, _, rest, kw), h in zip(captured, state):
                t0 = time.perf_counter()
                ops.heads_step_(y, *h, *rest, **dict(kw, precision=prec))
                t += time.perf_counter() - t0
            times.append(t / len(captured))
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        calls = (args.repeat + 1) * len(captured)
        med = statistics.median(times[1:])
        print(f"  {prec}: {med * 1e3:.2f} ms/call ({flops / med / 1e9:.1f} GFLOP/s on the products); per call "
              f"user {(ru1.ru_utime - ru0.ru_utime) / calls * 1e3:.1f} ms, sys {(ru1.ru_stime - ru0.ru_stime) / calls * 1e3:.1f} ms "
              f"(CPU time), {(ru1.ru_minflt - ru0.ru_minflt) / calls:.0f} page faults")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

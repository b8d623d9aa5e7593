"""Engine step time of the original protocol vs the clean one, same runs, same machine, interleaved.

For each protocol, an array of the runs of a sweep over ``--tasks`` (singles and pairs) takes ``--steps``
training steps after ``--warmup`` steps; the two protocols alternate ``--repeat`` times and the median
ms per array step of each is printed (with the ratio original / clean).

    python bench/bench_protocol.py --data ../shared/data --tasks pos chu key mwe \\
        --embeddings ../shared/data/embeddings/glove.6B.50d.trimmed.txt --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mtlfast.train import RunSpec, TrainSettings, prepare_inputs, run_id_for  # noqa: E402
from mtlfast.train import engine  # noqa: E402
from mtlfast.train.model import ModelArray  # noqa: E402


def make_array(inputs, settings, tasks):
    runs = [(t,) for t in tasks] + list(itertools.combinations(tasks, 2))
    specs = [RunSpec(run_id_for(r, 0), r, 0, 10**9) for r in runs]
    started = [engine._start_run(s, inputs, settings) for s in specs]
    return [r for r, _ in started], ModelArray([st for _, st in started], [0] * len(specs), settings.device)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--tasks", nargs="+", default=["pos", "chu", "key", "mwe"])
    ap.add_argument("--embeddings", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    setups = {}
    for proto in ("original", "clean"):
        inputs = prepare_inputs([args.data], args.embeddings, task_names=args.tasks, protocol=proto)
        settings = TrainSettings(protocol=proto)
        runs, arr = make_array(inputs, settings, args.tasks)
        step = engine._array_step_original if proto == "original" else engine._array_step
        for _ in range(args.warmup):
            step(arr, runs, inputs, settings)
        setups[proto] = (inputs, settings, runs, arr, step)
    times = {p: [] for p in setups}
    for _ in range(args.repeat):
        for proto, (inputs, settings, runs, arr, step) in setups.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(arr, runs, inputs, settings)
            times[proto].append((time.perf_counter() - t0) / args.steps * 1e3)
    K = len(setups["original"][2])
    print(f"engine step, array of K = {K} runs ({len(args.tasks)} single + pairs of {', '.join(args.tasks)}), "
          f"threads {args.threads}, {args.steps} steps x {args.repeat} interleaved repeats, torch {torch.__version__}")
    for proto, ts in times.items():
        print(f"  {proto:8s} median {statistics.median(ts):7.2f} ms per array step  (all: "
              + ", ".join(f"{t:.2f}" for t in ts) + ")")
    r = statistics.median(times["original"]) / statistics.median(times["clean"])
    print(f"  original / clean = {r:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

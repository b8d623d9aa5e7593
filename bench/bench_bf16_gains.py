"""Does bf16 give the same gains as fp32? (issue 16, "bf16 vs fp32 on the science")

Reads two finished sweeps of the same tasks and settings, one in fp32 with two seeds (``--seeds 2``) and one
in bf16 with seed 0, and prints every directed gain three ways: fp32 seed 0, fp32 seed 1 and bf16 seed 0. For
each gain it sets the precision difference |bf16 s0 - fp32 s0| beside the seed difference |fp32 s1 - fp32 s0|,
and sums up: how many gains change sign with the precision and with the seed, and the median / largest of
both differences. bf16 is "within seed noise" when its differences are no larger than the seed's.

The sweeps (reduced real-data sweep of the issue; pos, chu, key, mwe, 5,000 / 10,000 steps)::

    G=../shared/data/embeddings/glove.6B.50d.trimmed.txt
    for P in "fp32 2" "bf16 1"; do set -- $P
      python -m mtlfast.sweep --data ../shared/data --tasks pos chu key mwe --embeddings $G --protocol original \\
          --steps-single 5000 --steps-pair 10000 --precision $1 --seeds $2 --threads 2 --no-progress --out out/$1
    done
    python bench/bench_bf16_gains.py --fp32 out/fp32 --bf16 out/bf16

Writes bench/out/bench_bf16_gains.csv. Trains nothing.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the checkout's mtlfast, also when it is not installed

from mtlfast.meta.gains import relative_gain  # noqa: E402
from mtlfast.store import Store  # noqa: E402


def scores(folder: Path) -> tuple[dict, dict]:
    """single[(task, seed)] and pair[(main, aux, seed)] test F1 of the finished runs of one sweep folder."""
    store = Store(folder)
    f1 = store.final_f1()
    single, pair = {}, {}
    for r in store.runs():
        if r["status"] != "done":
            continue
        tasks = r["tasks"].split("+")
        if len(tasks) == 1:
            single[(tasks[0], r["seed"])] = f1[(r["run_id"], tasks[0])]
        else:
            a, b = tasks
            pair[(a, b, r["seed"])] = f1[(r["run_id"], a)]
            pair[(b, a, r["seed"])] = f1[(r["run_id"], b)]
    store.close()
    return single, pair


def gains(single: dict, pair: dict, seed: int) -> dict:
    return {(m, a): relative_gain(f, single[(m, s)]) for (m, a, s), f in pair.items()
            if s == seed and (m, s) in single}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fp32", type=Path, required=True, help="finished fp32 sweep folder with seeds 0 and 1")
    ap.add_argument("--bf16", type=Path, required=True, help="finished bf16 sweep folder with seed 0")
    ap.add_argument("--csv", type=Path, default=HERE / "out" / "bench_bf16_gains.csv")
    args = ap.parse_args(argv)
    for folder in (args.fp32, args.bf16):
        if not (folder / "mtlfast.db").exists():
            ap.error(f"{folder}: no mtlfast.db (expected a finished sweep folder)")
    s32, p32 = scores(args.fp32)
    s16, p16 = scores(args.bf16)
    g0, g1, b0 = gains(s32, p32, 0), gains(s32, p32, 1), gains(s16, p16, 0)
    keys = [k for k in g0 if k in g1 and k in b0]
    if not keys:
        ap.error("no directed pair has fp32 seeds 0 and 1 and bf16 seed 0")
    rows = []
    print(f"{'main':>5} {'aux':>5} {'fp32 s0':>9} {'fp32 s1':>9} {'bf16 s0':>9} {'|bf16-fp32|':>12} {'|s1-s0|':>9}")
    for m, a in keys:
        dp, ds = abs(b0[(m, a)] - g0[(m, a)]), abs(g1[(m, a)] - g0[(m, a)])
        rows.append({"main": m, "aux": a, "gain_fp32_s0": g0[(m, a)], "gain_fp32_s1": g1[(m, a)],
                     "gain_bf16_s0": b0[(m, a)], "precision_diff": dp, "seed_diff": ds})
        print(f"{m:>5} {a:>5} {g0[(m, a)]:9.4f} {g1[(m, a)]:9.4f} {b0[(m, a)]:9.4f} {dp:12.4f} {ds:9.4f}")
    single_rows = sorted({t for (t, _) in s32})
    print("\nsingle-task test F1:")
    for t in single_rows:
        print(f"  {t:>5}: fp32 s0 {s32[(t, 0)]:.4f}  s1 {s32.get((t, 1), math.nan):.4f}  bf16 s0 "
              f"{s16.get((t, 0), math.nan):.4f}")
    dps = [r["precision_diff"] for r in rows]
    dss = [r["seed_diff"] for r in rows]
    flip_p = sum((r["gain_bf16_s0"] > 0) != (r["gain_fp32_s0"] > 0) for r in rows)
    flip_s = sum((r["gain_fp32_s1"] > 0) != (r["gain_fp32_s0"] > 0) for r in rows)
    print(f"\n{len(rows)} directed gains. |bf16 - fp32| (same seed): median {statistics.median(dps):.4f}, "
          f"max {max(dps):.4f}, sign changes {flip_p}. |seed 1 - seed 0| (fp32): median {statistics.median(dss):.4f}, "
          f"max {max(dss):.4f}, sign changes {flip_s}.")
    within = statistics.median(dps) <= statistics.median(dss) and flip_p <= flip_s
    print("bf16 is within seed noise" if within else "bf16 is NOT within seed noise")
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

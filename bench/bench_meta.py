"""Benchmark: the vectorised meta-classifier CV against scikit-learn's loop, same folds, same process.

    python bench/bench_meta.py [--repeats 100] [--sk-runs 1] [--exhaustive]

Task: 100 repetitions of shuffled stratified 5-fold CV of MinMaxScaler + LogisticRegression (C=1) on a 90 x 42
pair table (a fake 10-task sweep, tests/fakesweep.py). Measured:

- ``sklearn_loop``: for every fold, ``make_pipeline(MinMaxScaler(), LogisticRegression()).fit`` + predict +
  accuracy/F1 (what ``cross_val_score`` does for one metric);
- ``mtlfast_vectorised``: :func:`mtlfast.meta.cv.cross_validate` (all 500 fits in one batched Newton solve);
- with ``--exhaustive``: the nested exhaustive search over the 14 feature groups (16,383 combinations per outer
  fold; ``--outer-repeats`` x 5 outer folds, ``--inner-repeats`` x 5 inner folds), timed once.

Both sides are warmed up; medians are reported with the ratio, plus how many test predictions differ (only
points within the solvers' tolerance of the decision boundary may). Writes ``bench/out/bench_meta.csv``. Never
asserts a time.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def machine():
    from mtlfast.ops.dispatch import cpu_features

    cpu = cpu_features()["model"]
    import sklearn

    return (f"{cpu}; {os.cpu_count()} cores; Python {platform.python_version()}; numpy {np.__version__}; "
            f"scikit-learn {sklearn.__version__}; load avg {os.getloadavg()[0]:.1f}")


def pair_table_90x42():
    sys.path.insert(0, str(HERE.parent / "tests"))
    from fakesweep import write_fake_sweep  # tests/fakesweep.py: a fake sweep through the real writers
    from mtlfast.meta.table import curve_feature_table, pair_table, read_data_features, read_gains, read_single_curves

    with tempfile.TemporaryDirectory() as d:
        write_fake_sweep(d, n_tasks=10, random_state=0)
        feats = read_data_features(Path(d) / "features.csv")
        for t, v in curve_feature_table(read_single_curves(Path(d) / "curves.csv")).items():
            feats[t].update(v)
        return pair_table(read_gains(Path(d) / "gains.csv"), feats)


def sklearn_loop(X, y, train, test):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    preds = np.zeros(train.shape, dtype=int)
    acc, f1 = [], []
    for k in range(train.shape[0]):
        m = make_pipeline(MinMaxScaler(), LogisticRegression()).fit(X[train[k]], y[train[k]])
        p = m.predict(X[test[k]])
        preds[k, test[k]] = p
        acc.append(accuracy_score(y[test[k]], p))
        f1.append(f1_score(y[test[k]], p, zero_division=0))
    return preds, np.array(acc), np.array(f1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=100, help="CV repetitions (default 100)")
    ap.add_argument("--runs", type=int, default=7, help="timed runs of the vectorised CV (median; default 7)")
    ap.add_argument("--sk-runs", type=int, default=1, help="timed runs of the scikit-learn loop (default 1)")
    ap.add_argument("--exhaustive", action="store_true", help="also time the nested exhaustive 14-group search")
    ap.add_argument("--outer-repeats", type=int, default=1)
    ap.add_argument("--inner-repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "bench_meta.csv")
    args = ap.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from mtlfast.meta.cv import cross_validate, make_folds
    from mtlfast.meta.search import nested_search

    tab = pair_table_90x42()
    X, y = tab.X, tab.y
    train, test = make_folds(y, 5, args.repeats, random_state=0)
    rows = []
    desc = machine()
    print(f"machine: {desc}")
    print(f"table {X.shape[0]} x {X.shape[1]}, {train.shape[0]} folds")

    # warm-up
    res = cross_validate(X, y, train, test, keep=True)
    t_vec = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        res = cross_validate(X, y, train, test, keep=True)
        t_vec.append(time.perf_counter() - t0)
    with threadpool_limits(limits=1, user_api="blas"):  # faster for tiny fits; the loop's best case
        sklearn_loop(X, y, train[:5], test[:5])
        t_sk = []
        for _ in range(args.sk_runs):
            t0 = time.perf_counter()
            sk_pred, sk_acc, sk_f1 = sklearn_loop(X, y, train, test)
            t_sk.append(time.perf_counter() - t0)
    differ = (sk_pred != res.pred) & test
    boundary = np.abs(res.decision[differ]).max() if differ.any() else 0.0
    med_vec, med_sk = statistics.median(t_vec), statistics.median(t_sk)
    print(f"scikit-learn loop : {med_sk:8.3f} s  (median of {len(t_sk)})  acc {sk_acc.mean():.4f}  F1 {sk_f1.mean():.4f}")
    print(f"mtlfast vectorised: {med_vec:8.3f} s  (median of {len(t_vec)})  acc {res.accuracy.mean():.4f}  "
          f"F1 {res.f1.mean():.4f}")
    print(f"speed-up          : {med_sk / med_vec:8.1f} x")
    print(f"differing test predictions: {int(differ.sum())} of {int(test.sum())} "
          f"(max |decision| among them {boundary:.2e})")
    common = {"machine": desc, "n": X.shape[0], "p": X.shape[1], "folds": train.shape[0]}
    rows.append({**common, "what": "cv_sklearn_loop", "seconds_median": med_sk, "runs": len(t_sk),
                 "accuracy": sk_acc.mean(), "f1": sk_f1.mean()})
    rows.append({**common, "what": "cv_mtlfast_vectorised", "seconds_median": med_vec, "runs": len(t_vec),
                 "accuracy": res.accuracy.mean(), "f1": res.f1.mean(), "speedup": med_sk / med_vec,
                 "differing_predictions": int(differ.sum())})
    if args.exhaustive:
        otr, ote = make_folds(y, 5, args.outer_repeats, random_state=1)
        groups = [tab.groups[f] for f in tab.features]
        t0 = time.perf_counter()
        nest = nested_search(X, y, groups, otr, ote, inner_splits=5, inner_repeats=args.inner_repeats,
                             strategy="exhaustive",
                             progress=lambda i, n: print(f"  outer fold {i}/{n}: {time.perf_counter() - t0:.1f} s",
                                                         flush=True))
        t_ex = time.perf_counter() - t0
        n_fits = otr.shape[0] * (2 ** len(groups) - 1) * 5 * args.inner_repeats
        print(f"nested exhaustive search: {len(groups)} groups, {otr.shape[0]} outer folds x "
              f"{5 * args.inner_repeats} inner folds = {n_fits:,} fits in {t_ex:.1f} s "
              f"({1e6 * t_ex / n_fits:.0f} us per fit); nested accuracy {nest['accuracy'].mean():.3f}")
        rows.append({**common, "what": "nested_exhaustive_14_groups", "seconds_median": t_ex, "runs": 1,
                     "accuracy": nest["accuracy"].mean(), "f1": nest["f1"].mean(), "fits": n_fits})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cols = ["what", "seconds_median", "runs", "speedup", "accuracy", "f1", "differing_predictions", "fits", "n", "p",
            "folds", "machine"]
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

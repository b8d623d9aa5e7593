"""A small fake sweep folder with known values, for tests, benchmarks and trying the report without training.

:func:`write_fake_sweep` writes the CSV files of docs/ARCHITECTURE.md (``gains.csv``, ``runs.csv``,
``scores.csv``, ``curves.csv``, ``features.csv``, ``config.json``). Curves follow ``a ln(c x + 1) + b`` plus
noise with known per-task parameters; gains follow a logistic rule on two task features, so the
meta-classifier has something to find.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from mtlfast.meta.table import DATA_FEATURES

__all__ = ["write_fake_sweep"]


def write_fake_sweep(out_dir, n_tasks=7, seeds=1, steps_single=2000, log_every=10, random_state=0,
                     with_features=True, with_curves=True, all_gain=False):
    """Write a fake sweep into ``out_dir``; returns a dict of the true values (``params``, ``gains``)."""
    rng = np.random.default_rng(random_state)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [f"task{i}" for i in range(n_tasks)]
    feats = {}
    for t in tasks:
        feats[t] = {
            "size": float(rng.integers(500, 20000)), "n_labels": float(rng.integers(2, 50)),
            "tokens_per_type": float(rng.uniform(2, 20)), "oov_rate": float(rng.uniform(0, 15)),
            "label_entropy": float(rng.uniform(0.5, 4)), "frobenius_norm": float(rng.uniform(50, 2000)),
            "jsd_train_test": float(rng.uniform(0.01, 0.3)),
        }
    params = {t: {"a": float(-rng.uniform(0.2, 1.0)), "b": float(rng.uniform(2, 4)),
                  "c": float(10 ** rng.uniform(-2, 0.5))} for t in tasks}
    n_entries = steps_single // log_every
    f1_single = {t: float(rng.uniform(0.4, 0.95)) for t in tasks}
    gains = []
    for m in tasks:
        for a in tasks:
            if m == a:
                continue
            z = (np.log(feats[a]["size"]) - np.log(feats[m]["size"])) + 0.8 * (params[m]["a"] - params[a]["a"])
            g = float(3 * z + rng.normal(0, 1.5))
            if all_gain:
                g = abs(g) + 0.1
            fp = f1_single[m] * (1 + g / 100)
            row = {"main": m, "aux": a, "f1_single": f1_single[m], "f1_pair": fp, "gain": (fp / f1_single[m] - 1) * 100}
            row["label"] = int(row["gain"] > 0)
            gains.append(row)
    with open(out / "gains.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["main", "aux", "f1_single", "f1_pair", "gain", "label"])
        w.writeheader()
        w.writerows(gains)
    runs, scores, curves = [], [], []
    for s in range(seeds):
        for t in tasks:
            rid = f"{t}@{s}"
            runs.append({"run_id": rid, "kind": "single", "tasks": t, "seed": s, "steps": steps_single,
                         "status": "done", "seconds": 1.0})
            scores.append({"run_id": rid, "kind": "single", "tasks": t, "seed": s, "task": t, "split": "test",
                           "step": steps_single, "metric": "f1_micro_no_o", "value": f1_single[t]})
            x = np.arange(n_entries)
            p = params[t]
            loss = p["a"] * np.log(p["c"] * x + 1) + p["b"] + rng.normal(0, 0.01, n_entries)
            for i in range(n_entries):
                curves.append({"run_id": rid, "kind": "single", "tasks": t, "seed": s, "task": t,
                               "step": (i + 1) * log_every, "loss": float(loss[i])})
        for i, m in enumerate(tasks):
            for a in tasks[i + 1:]:
                rid = f"{m}+{a}@{s}"
                runs.append({"run_id": rid, "kind": "pair", "tasks": f"{m}+{a}", "seed": s,
                             "steps": 2 * steps_single, "status": "done", "seconds": 2.0})
                for task, other in ((m, a), (a, m)):
                    g = next(r for r in gains if r["main"] == task and r["aux"] == other)
                    scores.append({"run_id": rid, "kind": "pair", "tasks": f"{m}+{a}", "seed": s, "task": task,
                                   "split": "test", "step": 2 * steps_single, "metric": "f1_micro_no_o",
                                   "value": g["f1_pair"]})
                    curves.append({"run_id": rid, "kind": "pair", "tasks": f"{m}+{a}", "seed": s, "task": task,
                                   "step": 10, "loss": 9.0})
    for name, rows, cols in (
        ("runs.csv", runs, ["run_id", "kind", "tasks", "seed", "steps", "status", "seconds"]),
        ("scores.csv", scores, ["run_id", "kind", "tasks", "seed", "task", "split", "step", "metric", "value"]),
    ):
        with open(out / name, "w", newline="") as fh:
            w = csv.DictWriter(fh, cols)
            w.writeheader()
            w.writerows(rows)
    if with_curves:
        with open(out / "curves.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, ["run_id", "kind", "tasks", "seed", "task", "step", "loss"])
            w.writeheader()
            w.writerows(curves)
    if with_features:
        with open(out / "features.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, ["task", *DATA_FEATURES])
            w.writeheader()
            for t in tasks:
                w.writerow({"task": t, **feats[t]})
    (out / "config.json").write_text(json.dumps({"steps_single": steps_single, "steps_pair": 2 * steps_single,
                                                 "seeds": seeds, "fake": True}, indent=2))
    return {"tasks": tasks, "params": params, "features": feats, "gains": gains, "f1_single": f1_single}

"""A small fake sweep folder with known values, for tests and benchmarks of the analysis (no training).

:func:`write_fake_sweep` writes a sweep folder through the real writers: runs, F1 scores, loss points and data
features go into an :class:`mtlfast.store.Store` and out through ``Store.export`` (runs.csv, scores.csv,
curves.csv, features.csv), the gains through :func:`mtlfast.meta.gains.store_gains` and ``write_gains_csv``
(gains.csv), so the schema and the gain formula are the package's own. What is fake is the numbers: curves
follow ``a ln(c x + 1) + b`` plus noise with known per-task parameters, and every pair's F1 is set so that its
gain is a known value from a logistic-looking rule on two task features (the meta-classifier has something
to find). The returned truth holds those intended values, which tests compare with what the package computes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mtlfast.config import SweepConfig
from mtlfast.meta.gains import store_gains, write_gains_csv
from mtlfast.stats import DATA_FEATURES
from mtlfast.store import PRIMARY_METRIC, Store
from mtlfast.train import RunSpec, run_id_for

__all__ = ["write_fake_sweep"]


def write_fake_sweep(out_dir, n_tasks=7, seeds=1, steps_single=2000, log_every=10, random_state=0,
                     with_features=True, with_curves=True, all_gain=False):
    """Write a fake sweep into ``out_dir``. Returns the truth: ``tasks``, curve ``params`` (a, b, c per task),
    data ``features``, ``f1_single`` and the intended ``gains`` (rows with ``main, aux, f1_single, f1_pair, gain``;
    ``gain`` is the value chosen, not recomputed)."""
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
    assert set(feats[tasks[0]]) == set(DATA_FEATURES)
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
            gains.append({"main": m, "aux": a, "f1_single": f1_single[m], "f1_pair": f1_single[m] * (1 + g / 100),
                          "gain": g})
    pair_f1 = {(g["main"], g["aux"]): g["f1_pair"] for g in gains}
    steps_pair = 2 * steps_single
    cfg = SweepConfig(steps_single=steps_single, steps_pair=steps_pair, seeds=seeds, log_every=log_every)
    store = Store(out, cfg)
    with store.tx():
        for s in range(seeds):
            singles = [RunSpec(run_id_for((t,), s), (t,), s, steps_single) for t in tasks]
            pairs = [RunSpec(run_id_for((m, a), s), (m, a), s, steps_pair)
                     for i, m in enumerate(tasks) for a in tasks[i + 1:]]
            store.add_runs(singles + pairs)
            for spec in singles:
                (t,) = spec.tasks
                p = params[t]
                x = np.arange(n_entries)
                loss = p["a"] * np.log(p["c"] * x + 1) + p["b"] + rng.normal(0, 0.01, n_entries)
                for i in range(n_entries):
                    store.add_losses(spec.run_id, (i + 1) * log_every, [(t, float(loss[i]))])
                store.add_scores(spec.run_id, steps_single, [(t, "test", PRIMARY_METRIC, f1_single[t])])
                store.finish_run(spec.run_id, steps_single, 1.0)
            for spec in pairs:
                m, a = spec.tasks
                store.add_losses(spec.run_id, 10, [(m, 9.0), (a, 9.0)])
                store.add_scores(spec.run_id, steps_pair, [(m, "test", PRIMARY_METRIC, pair_f1[(m, a)]),
                                                            (a, "test", PRIMARY_METRIC, pair_f1[(a, m)])])
                store.finish_run(spec.run_id, steps_pair, 2.0)
        if with_features:
            for t in tasks:
                store.set_features(t, feats[t])
    write_gains_csv(store_gains(store), out / "gains.csv")
    store.export()
    store.close()
    if not with_curves:
        (out / "curves.csv").unlink()
    if not with_features:
        (out / "features.csv").unlink()
    (out / "config.json").write_text(json.dumps({**cfg.to_dict(), "fake": True}, indent=2, sort_keys=True))
    return {"tasks": tasks, "params": params, "features": feats, "gains": gains, "f1_single": f1_single}

"""Gains of the pair runs over the single-task runs, and whether they are beyond seed noise.

The one place that turns final F1 scores into the rows of ``gains.csv`` (docs/ARCHITECTURE.md): the sweep
(from its store), ``mtlfast.analyze`` (from ``scores.csv`` when ``gains.csv`` is missing) and
``mtlfast.reproduce`` (from the original logs) all go through :func:`directed_gains` / :func:`gain_row`.

- Gain(main, aux) = ``mtlfast.metrics.relative_gain(F1_pair(main), F1_single(main))``; label = gain > 0.
- With several seeds: the mean of the per-seed gains (pair and single run of the same seed), its sample
  standard deviation, and Welch's t-test of pair vs single F1 over the seeds (:func:`welch`);
  ``label_beyond_noise`` = 1 when the pair is better and p < 0.05.
- With several seeds of the single-task runs (``--single-seeds N``, which may exceed the pair runs' seeds): the
  single-task seed noise of the main task (:func:`single_noise`). ``f1_single_all`` is the mean and
  ``f1_single_sd`` the sample standard deviation (ddof 1) of F1_single(main) over all ``n_single_seeds``
  single-task seeds; ``beyond_single_noise`` = 1 when |F1_pair(main) - f1_single_all| > 2 x f1_single_sd
  (F1_pair: the mean over the pair seeds), else 0; nan when fewer than two single seeds or a score is nan.
  A rule of thumb, not a test: with three seeds the SD itself is uncertain. The sign of the difference is the
  sign of the gain.
- Task order: first appearance in the runs (:func:`task_order`).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from mtlfast.metrics import relative_gain

__all__ = ["GAIN_COLUMNS", "SEED_COLUMNS", "NOISE_COLUMNS", "NOISE_SDS", "task_order", "welch", "beyond_noise",
           "single_noise", "gain_row", "directed_gains", "store_gains", "write_gains_csv", "write_rows_csv"]

#: Columns of gains.csv; SEED_COLUMNS follow them when the sweep has several seeds.
GAIN_COLUMNS = ("main", "aux", "f1_single", "f1_pair", "gain", "label")
SEED_COLUMNS = ("gain_sd", "n_seeds", "label_beyond_noise", "p_value")
#: Columns of the single-task seed noise (:func:`single_noise`); they follow when some task has >= 2 single seeds.
NOISE_COLUMNS = ("f1_single_all", "f1_single_sd", "n_single_seeds", "beyond_single_noise")
#: A gain is beyond the single-task seed noise when |F1_pair - mean F1_single| exceeds this many sample SDs.
NOISE_SDS = 2.0


def task_order(task_lists: Iterable[Iterable[str]]) -> list[str]:
    """Task names in order of first appearance over the given runs' task lists (``("a",), ("a", "b"), ...``)."""
    return list(dict.fromkeys(t for tasks in task_lists for t in tasks))


def welch(pair_f1, single_f1, alpha: float = 0.05) -> tuple[float, str]:
    """Welch's t-test of pair vs single F1 over seeds: ``(p, "gain" | "loss")`` if p < alpha, else
    ``(p, "noise")``. Fewer than two values on a side, or a NaN: ``(nan, "noise")``. Both sides without
    spread: p = 1 when their means are equal, else 0 (SciPy would return NaN)."""
    from scipy import stats

    a, b = np.asarray(pair_f1, float), np.asarray(single_f1, float)
    if len(a) < 2 or len(b) < 2 or np.isnan(a).any() or np.isnan(b).any():
        return math.nan, "noise"
    if np.var(a, ddof=1) == 0 and np.var(b, ddof=1) == 0:
        if a.mean() == b.mean():
            return 1.0, "noise"
        return 0.0, "gain" if a.mean() > b.mean() else "loss"
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    if p < alpha:
        return p, "gain" if a.mean() > b.mean() else "loss"
    return p, "noise"


def beyond_noise(pair_f1, single_f1, alpha: float = 0.05) -> tuple[float, int]:
    """:func:`welch` as the ``(p_value, label_beyond_noise)`` pair of gains.csv."""
    p, verdict = welch(pair_f1, single_f1, alpha)
    return p, int(verdict == "gain")


def single_noise(f1_pair, single_f1, k: float = NOISE_SDS) -> dict:
    """The :data:`NOISE_COLUMNS` of one directed gain: ``f1_pair`` = F1_pair(main) (one value, or the values of
    the pair seeds, averaged), ``single_f1`` = F1_single(main) of every single-task seed. ``beyond_single_noise``
    = 1 when |mean F1_pair - mean F1_single| > k x the sample SD (ddof 1) of F1_single; nan with fewer than two
    single-task seeds or a nan score."""
    fp = float(np.mean(np.asarray(f1_pair, float)))
    fs = np.asarray(single_f1, float)
    mean = float(fs.mean()) if len(fs) else math.nan
    sd = float(fs.std(ddof=1)) if len(fs) > 1 else math.nan
    beyond = math.nan if not (math.isfinite(fp) and math.isfinite(mean) and math.isfinite(sd)) else \
        int(abs(fp - mean) > k * sd)
    return {"f1_single_all": mean, "f1_single_sd": sd, "n_single_seeds": int(len(fs)), "beyond_single_noise": beyond}


def gain_row(main: str, aux: str, f1_single: float, f1_pair: float) -> dict:
    """One directed gain from one pair of scores: the first six columns of gains.csv."""
    gain = relative_gain(f1_pair, f1_single)
    return {"main": main, "aux": aux, "f1_single": float(f1_single), "f1_pair": float(f1_pair), "gain": gain,
            "label": int(gain > 0)}


def directed_gains(single: dict, pair: dict, order: list[str] | None = None,
                   seed_columns: bool | None = None, noise_columns: bool | None = None) -> list[dict]:
    """The rows of gains.csv from final F1 scores.

    ``single[(task, seed)]`` = single-task F1 of ``task``; ``pair[(main, aux, seed)]`` = F1 of ``main`` in
    its pair run with ``aux``. A directed pair gets a row when some seed has both scores. ``order``: the task
    order of the rows (default: first appearance in ``single`` then ``pair``). ``seed_columns``: add
    :data:`SEED_COLUMNS` (default: when the pair scores hold more than one seed; ``mtlfast.meta.table`` then
    labels by ``label_beyond_noise``). ``noise_columns``: add
    :data:`NOISE_COLUMNS` from every single-task seed of the main task, also seeds without a pair run
    (default: when some task has two or more single-task seeds). Per-seed gains pair seed s with seed s.
    """
    seeds = sorted({s for (_, s) in single} | {s for (_, _, s) in pair})
    if order is None:
        order = task_order([(t,) for (t, _) in single] + [(m, a) for (m, a, _) in pair])
    if seed_columns is None:  # the pair runs' seeds: extra single-task seeds alone give no per-seed gains
        seed_columns = len({s for (_, _, s) in pair}) > 1
    single_by_task: dict[str, list[float]] = {}
    for (t, s) in sorted(single, key=lambda k: k[1]):
        single_by_task.setdefault(t, []).append(single[(t, s)])
    if noise_columns is None:
        noise_columns = any(len(v) > 1 for v in single_by_task.values())
    out = []
    for main in order:
        for aux in order:
            if main == aux:
                continue
            fs = [single[(main, s)] for s in seeds if (main, s) in single and (main, aux, s) in pair]
            fp = [pair[(main, aux, s)] for s in seeds if (main, s) in single and (main, aux, s) in pair]
            if not fs:
                continue
            gains = [relative_gain(b, a) for a, b in zip(fs, fp)]
            gain = float(np.mean(gains))
            row = {"main": main, "aux": aux, "f1_single": float(np.mean(fs)), "f1_pair": float(np.mean(fp)),
                   "gain": gain, "label": int(gain > 0)}
            if seed_columns:
                row["gain_sd"] = float(np.std(gains, ddof=1)) if len(gains) > 1 else math.nan
                row["n_seeds"] = len(gains)
                row["p_value"], row["label_beyond_noise"] = beyond_noise(fp, fs)
            if noise_columns:
                row.update(single_noise(fp, single_by_task[main]))
            out.append(row)
    return out


def store_gains(store) -> list[dict]:
    """:func:`directed_gains` of the finished runs of an :class:`mtlfast.store.Store` (final-step test
    ``f1_micro_no_o``). Rows in the order the runs were registered; seed columns when the sweep's pair runs have
    more than one seed (even before all of them have finished); noise columns when some task has two or more
    finished single-task seeds."""
    runs = store.runs()
    f1 = store.final_f1()
    single, pair = {}, {}
    for r in runs:
        if r["status"] != "done":
            continue
        tasks = r["tasks"].split("+")
        if len(tasks) == 1:
            single[(tasks[0], r["seed"])] = f1.get((r["run_id"], tasks[0]), math.nan)
        else:
            a, b = tasks
            pair[(a, b, r["seed"])] = f1.get((r["run_id"], a), math.nan)
            pair[(b, a, r["seed"])] = f1.get((r["run_id"], b), math.nan)
    order = task_order(r["tasks"].split("+") for r in runs)
    return directed_gains(single, pair, order, seed_columns=len({r["seed"] for r in runs if "+" in r["tasks"]}) > 1)


def write_gains_csv(rows: list[dict], path) -> Path:
    """Write gains.csv atomically; an undefined gain (single-task F1 = 0) is written as ``nan``."""
    header = list(GAIN_COLUMNS) + (list(SEED_COLUMNS) if rows and "gain_sd" in rows[0] else []) \
        + (list(NOISE_COLUMNS) if rows and "beyond_single_noise" in rows[0] else [])
    return write_rows_csv(rows, path, header)


def write_rows_csv(rows: list[dict], path, header) -> Path:
    """Write ``rows`` (dicts) as a CSV with columns ``header`` atomically (a temporary file, then a rename);
    a missing column is written empty, a NaN float as ``nan``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for g in rows:
            w.writerow(["nan" if isinstance(v, float) and math.isnan(v) else v for v in (g.get(h, "") for h in header)])
    os.replace(tmp, path)
    return path

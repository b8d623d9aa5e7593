"""The pair table: 14 features per task for main, aux and main/aux = 42 named columns, and the gain label.

Reads a sweep output folder (docs/ARCHITECTURE.md): ``gains.csv``, ``features.csv`` (data features, optional)
and ``curves.csv`` (training-loss curves; the single-task runs give the curve features).

Column names are ``main_<feature>``, ``aux_<feature>`` and ``ratio_<feature>`` for every task feature, ordered
feature by feature (``main_size, aux_size, ratio_size, main_n_labels, ...``), data features first, then curve
features. A *feature group* is the three columns of one task feature.

Division by zero in ``ratio = main / aux``: where ``aux == 0`` the ratio is 1 if ``main == 0`` too (equal
values), otherwise ``sign(main)`` times the largest finite ``|ratio|`` of that column (at least 1), i.e. "as
large as the most extreme real ratio", keeping the sign. A ratio involving a NaN feature is NaN. Columns that still
contain NaN (e.g. a failed curve fit) are dropped by :meth:`PairTable.dropna_columns` with a warning.

Label: ``gain > 0``; when ``gains.csv`` has a ``label_beyond_noise`` column (sweeps with several seeds) that
column is used instead (truthy values ``1``/``true``/``True`` mean a gain beyond seed noise).
"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtlfast.meta.curves import CURVE_FEATURES, curve_features
from mtlfast.stats import DATA_FEATURES

TASK_FEATURES = DATA_FEATURES + CURVE_FEATURES

__all__ = [
    "DATA_FEATURES",
    "CURVE_FEATURES",
    "TASK_FEATURES",
    "PairTable",
    "read_csv",
    "read_gains",
    "read_data_features",
    "read_single_curves",
    "curve_feature_table",
    "pair_table",
    "safe_ratio",
    "DEFINITIONS",
    "read_feature_definitions",
    "read_prefixed_columns",
]

#: the two definitions of the task features (README, "Original vs clean"): the notebook's and mtlfast's
DEFINITIONS = ("original", "clean")


class TableError(ValueError):
    """A sweep CSV file is missing a column or holds a value that cannot be read."""


def read_csv(path):
    """Rows of a CSV file as dicts (strings)."""
    path = Path(path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        cols = reader.fieldnames or []
    return rows, cols


def _float(value, path, line, col):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TableError(f"{path} line {line}: expected a number in column {col!r}, got {value!r}") from None


def _truthy(v):
    return str(v).strip().lower() in ("1", "1.0", "true", "yes")


def read_gains(path):
    """Read ``gains.csv``: list of dicts with ``main, aux, f1_single, f1_pair, gain, label`` (+ optional).

    Rows a budgeted sweep predicted instead of measuring (``status`` = ``predicted``) are left out."""
    rows, cols = read_csv(path)
    need = ("main", "aux", "gain")
    missing = [c for c in need if c not in cols]
    if missing:
        raise TableError(f"{path}: expected columns {list(need)}, missing {missing} (have {cols})")
    out = []
    for i, r in enumerate(rows, start=2):
        if (r.get("status") or "").strip().lower() == "predicted":
            continue  # a budgeted sweep's prediction (mtlfast.meta.budget), not a measured gain
        g = {"main": r["main"], "aux": r["aux"], "gain": _float(r["gain"], path, i, "gain")}
        for c in ("f1_single", "f1_pair", "gain_sd", "n_seeds"):
            if c in cols and r.get(c) not in (None, ""):
                g[c] = _float(r[c], path, i, c)
        if "label_beyond_noise" in cols and r.get("label_beyond_noise") not in (None, ""):
            g["label"] = int(_truthy(r["label_beyond_noise"]))
            g["label_source"] = "label_beyond_noise"
        else:
            g["label"] = int(g["gain"] > 0)
            g["label_source"] = "gain > 0"
        out.append(g)
    return out


def read_data_features(path):
    """Read ``features.csv`` into ``{task: {feature: float}}`` (only the known data features)."""
    rows, cols = read_csv(path)
    if "task" not in cols:
        raise TableError(f"{path}: expected a 'task' column, got {cols}")
    out = {}
    for i, r in enumerate(rows, start=2):
        out[r["task"]] = {f: (_float(r[f], path, i, f) if r.get(f) not in (None, "") else math.nan)
                          for f in DATA_FEATURES if f in cols}
    return out


def read_single_curves(path):
    """Training-loss curves of the single-task runs in ``curves.csv``: ``{task: (steps, losses)}``.

    Several seeds are averaged step by step (steps present in every seed).
    """
    rows, cols = read_csv(path)
    need = ("task", "step", "loss")
    missing = [c for c in need if c not in cols]
    if missing:
        raise TableError(f"{path}: expected columns {list(need)}, missing {missing}")
    per = {}
    for i, r in enumerate(rows, start=2):
        kind = (r.get("kind") or "").strip().lower()
        tasks = r.get("tasks") or r["task"]
        single = kind == "single" if kind else ("+" not in tasks)
        if not single:
            continue
        key = (r["task"], r.get("seed", "0"), r.get("run_id", ""))
        per.setdefault(key, {})[int(_float(r["step"], path, i, "step"))] = _float(r["loss"], path, i, "loss")
    by_task = {}
    for (task, _seed, _run), curve in per.items():
        by_task.setdefault(task, []).append(curve)
    out = {}
    for task, curves in by_task.items():
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        losses = np.array([[c[s] for s in steps] for c in curves]).mean(axis=0)
        out[task] = (np.array(steps), losses)
    return out


def curve_feature_table(curves, fix_d=True):
    """``{task: {curve feature: value}}`` from ``{task: losses}`` or ``{task: (steps, losses)}``."""
    out = {}
    for task, c in curves.items():
        losses = c[1] if isinstance(c, tuple) else c
        out[task] = curve_features(losses, name=task, fix_d=fix_d)
    return out


def safe_ratio(main, aux):
    """Element-wise ``main / aux`` with the division-by-zero rule of the module docstring."""
    main = np.asarray(main, dtype=float)
    aux = np.asarray(aux, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = main / aux
    zero = aux == 0
    finite = r[np.isfinite(r) & ~zero]
    big = max(1.0, float(np.max(np.abs(finite)))) if finite.size else 1.0
    r = np.where(zero & (main == 0), 1.0, r)
    r = np.where(zero & (main != 0) & np.isfinite(main), np.sign(main) * big, r)
    return r


@dataclass
class PairTable:
    """Meta-learning data set: one row per directed pair (main, aux)."""

    X: np.ndarray  # [n_pairs, n_columns]
    y: np.ndarray  # [n_pairs] 0/1
    columns: list  # names
    pairs: list  # [(main, aux)]
    gains: np.ndarray  # [n_pairs]
    features: list  # task features used, in column order (groups)
    label_source: str = "gain > 0"
    notes: list = field(default_factory=list)

    @property
    def groups(self):
        """``{task feature: [column indices]}`` (main, aux, ratio)."""
        out = {}
        for j, c in enumerate(self.columns):
            out.setdefault(c.split("_", 1)[1], []).append(j)
        return out

    def group_mask(self, feats):
        """Boolean column mask selecting the groups of the given task features."""
        feats = set(feats)
        return np.array([c.split("_", 1)[1] in feats for c in self.columns])

    @property
    def tasks(self):
        return sorted({t for p in self.pairs for t in p})

    def dropna_columns(self):
        """Drop columns with NaN values (warns); returns a new table."""
        bad = ~np.all(np.isfinite(self.X), axis=0)
        if not bad.any():
            return self
        dropped = [c for c, b in zip(self.columns, bad) if b]
        msg = f"pair table: dropped {len(dropped)} column(s) with missing values: {', '.join(dropped)}"
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        keep = ~bad
        cols = [c for c, k in zip(self.columns, keep) if k]
        feats = [f for f in self.features if any(c.split("_", 1)[1] == f for c in cols)]
        return PairTable(self.X[:, keep], self.y, cols, self.pairs, self.gains, feats, self.label_source,
                         self.notes + [msg])

    def select(self, feats):
        """A table restricted to the given task features (groups)."""
        m = self.group_mask(feats)
        return PairTable(self.X[:, m], self.y, [c for c, k in zip(self.columns, m) if k], self.pairs,
                         self.gains, [f for f in self.features if f in set(feats)], self.label_source,
                         list(self.notes))

    def to_rows(self):
        """List of dicts (main, aux, gain, label, columns...) for writing a CSV."""
        rows = []
        for i, (m, a) in enumerate(self.pairs):
            r = {"main": m, "aux": a, "gain": float(self.gains[i]), "label": int(self.y[i])}
            r.update({c: float(v) for c, v in zip(self.columns, self.X[i])})
            rows.append(r)
        return rows


def pair_table(gains, task_features, features=None):
    """Build the pair table.

    Parameters
    ----------
    gains : list of dict
        Rows with ``main, aux, gain, label`` (as returned by :func:`read_gains`).
    task_features : dict
        ``{task: {feature: value}}``; features missing for a task are NaN.
    features : sequence of str, optional
        Task features to use, in order. Default: those of :data:`TASK_FEATURES` present for any task.

    Returns
    -------
    PairTable
    """
    if features is None:
        present = set()
        for d in task_features.values():
            present.update(d)
        features = [f for f in TASK_FEATURES if f in present]
    features = list(features)
    notes = []
    finite = [g for g in gains if math.isfinite(g["gain"])]
    if len(finite) < len(gains):
        notes.append(f"{len(gains) - len(finite)} pair(s) with an undefined gain (single-task F1 0) left out")
    rows = [g for g in finite if g["main"] in task_features and g["aux"] in task_features]
    skipped = len(finite) - len(rows)
    if skipped:
        notes.append(f"{skipped} pair(s) skipped: a task has no features")
    n = len(rows)
    cols, blocks = [], []
    for f in features:
        mv = np.array([task_features[g["main"]].get(f, math.nan) for g in rows], dtype=float)
        av = np.array([task_features[g["aux"]].get(f, math.nan) for g in rows], dtype=float)
        blocks += [mv, av, safe_ratio(mv, av)]
        cols += [f"main_{f}", f"aux_{f}", f"ratio_{f}"]
    X = np.column_stack(blocks) if blocks else np.zeros((n, 0))
    y = np.array([int(g["label"]) for g in rows], dtype=int)
    src = rows[0].get("label_source", "gain > 0") if rows else "gain > 0"
    return PairTable(X, y, cols, [(g["main"], g["aux"]) for g in rows],
                     np.array([g["gain"] for g in rows], dtype=float), features, src, notes)


def read_prefixed_columns(path, names):
    """``{definition: {task: {feature: float}}}`` of the ``<definition>_<feature>`` columns of a CSV (only
    definitions with every feature column present)."""
    rows, cols = read_csv(path)
    if "task" not in cols:
        raise TableError(f"{path}: expected a 'task' column, got {cols}")
    out = {}
    for d in DEFINITIONS:
        if not all(f"{d}_{f}" in cols for f in names):
            continue
        out[d] = {r["task"]: {f: (_float(r[f"{d}_{f}"], path, i, f"{d}_{f}") if r[f"{d}_{f}"] not in (None, "")
                                  else math.nan) for f in names} for i, r in enumerate(rows, start=2)}
    return out


def read_feature_definitions(folder, protocol):
    """The task features of a result folder by definition: ``{"original": {task: {feature: value}}, "clean":
    ...}``, each holding the data features (``features.csv``) and the curve features (``curve_features.csv``)
    of that definition where the folder has them.

    The unprefixed columns of both files hold the sweep's own definition (``protocol``); columns
    ``<definition>_<feature>`` (``clean_size``, ``original_grad_10``, ...) hold the other one. A definition
    without data or curve features is returned with what it has (possibly an empty dict per task)."""
    folder = Path(folder)
    if protocol not in DEFINITIONS:
        raise TableError(f"protocol: expected one of {DEFINITIONS}, got {protocol!r}")
    out = {d: {} for d in DEFINITIONS}
    for name, names, plain in (("features.csv", DATA_FEATURES, read_data_features),
                               ("curve_features.csv", CURVE_FEATURES, None)):
        path = folder / name
        if not path.exists():
            continue
        if plain is not None:
            own = plain(path)
        else:
            rows, cols = read_csv(path)
            own = {r["task"]: {f: _float(r[f], path, i, f) if r[f] not in (None, "") else math.nan
                               for f in names if f in cols} for i, r in enumerate(rows, start=2)}
        for t, d in own.items():
            out[protocol].setdefault(t, {}).update(d)
        for d, by_task in read_prefixed_columns(path, names).items():
            if d == protocol:
                continue
            for t, v in by_task.items():
                out[d].setdefault(t, {}).update(v)
    return out

"""The CSV and JSON files a sweep folder holds next to its report (written by analyze and reproduce)."""

from __future__ import annotations

import csv

import numpy as np


def write_csv(path, rows, cols) -> None:
    """``rows`` (dicts) as CSV with the columns ``cols`` (other keys ignored); floats as ``repr`` (round-trips)."""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})


def jsonable(o):
    """``o`` with NumPy scalars made Python ones and non-finite floats made None (JSON has no NaN)."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o

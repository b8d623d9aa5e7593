"""Figures of the report: the gains heatmap (Figure 1 of the paper) and the single-task learning curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["heatmap", "gain_matrix", "plot_curves", "predicted_cells"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def gain_matrix(gains_rows, tasks=None):
    """``(tasks, M)`` with ``M[i, j]`` = gain of main task ``tasks[i]`` with auxiliary task ``tasks[j]`` (NaN if absent).

    ``gains_rows``: iterable of dicts (or objects) with ``main``, ``aux`` and ``gain``.
    """
    rows = [r if isinstance(r, dict) else vars(r) for r in gains_rows]
    if tasks is None:
        tasks = sorted({r["main"] for r in rows} | {r["aux"] for r in rows})
    idx = {t: i for i, t in enumerate(tasks)}
    M = np.full((len(tasks), len(tasks)), np.nan)
    for r in rows:
        if r["main"] in idx and r["aux"] in idx:
            M[idx[r["main"]], idx[r["aux"]]] = float(r["gain"])
    return list(tasks), M


def predicted_cells(gains_rows):
    """``{(main, aux): p_gain}`` of the rows a budgeted sweep predicted instead of measuring (``status`` column
    ``predicted``; ``p_gain`` NaN when absent)."""
    out = {}
    for r in gains_rows:
        r = r if isinstance(r, dict) else vars(r)
        if str(r.get("status", "")).strip().lower() == "predicted":
            try:
                p = float(r.get("p_gain", math.nan))
            except (TypeError, ValueError):
                p = math.nan
            out[(r["main"], r["aux"])] = p
    return out


def heatmap(gains_rows, path, title=None, tasks=None, unit="%", predicted=None):
    """Figure 1: relative gains, main tasks as rows, auxiliary tasks as columns.

    Diverging colours centred at 0 (blue = gain, red = loss, symmetric scale), every cell annotated with its
    value; the diagonal (no pair) is left blank. Writes ``path`` (PNG) and returns it.

    Cells of a budgeted sweep that were predicted, not measured (``predicted``: ``{(main, aux): p_gain}``;
    default: the rows whose ``status`` is ``predicted``, see :func:`predicted_cells`) are drawn hatched, in pale
    blue (gain likely) or pale red (loss likely) by their probability, and annotated ``p=0.73`` instead of a gain.
    """
    plt = _plt()
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle

    rows = [r if isinstance(r, dict) else vars(r) for r in gains_rows]
    if predicted is None:
        predicted = predicted_cells(rows)
    predicted = dict(predicted)
    measured_rows = [r for r in rows if (r["main"], r["aux"]) not in predicted]
    if tasks is None:
        tasks = sorted({r["main"] for r in rows} | {r["aux"] for r in rows} | {t for p in predicted for t in p})
    tasks, M = gain_matrix(measured_rows, tasks)
    n = len(tasks)
    finite = M[np.isfinite(M)]
    lim = float(np.max(np.abs(finite))) if finite.size else 1.0
    lim = lim if lim > 0 else 1.0
    size = max(4.0, 0.75 * n + 2.2)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    cmap = plt.get_cmap("RdBu").with_extremes(bad="#e6e6e6")
    im = ax.imshow(np.ma.masked_invalid(M), cmap=cmap, norm=TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim))
    ax.set_xticks(range(n), labels=tasks, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels=tasks)
    ax.set_xlabel("auxiliary task")
    ax.set_ylabel("main task")
    fs = 9 if n <= 10 else max(5, 9 - (n - 10) // 3)
    for i in range(n):
        for j in range(n):
            v = M[i, j]
            if math.isfinite(v):
                ax.text(j, i, f"{v:+.1f}", ha="center", va="center", fontsize=fs,
                        color="white" if abs(v) > 0.6 * lim else "black")
    idx = {t: k for k, t in enumerate(tasks)}
    for (m, a), p in predicted.items():
        if m not in idx or a not in idx:
            continue
        i, j = idx[m], idx[a]
        shade = 0.5 if not math.isfinite(p) else p
        face = cmap(0.5 + 0.35 * (shade - 0.5))  # pale: at most a third of the way to the measured extremes
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=face, edgecolor="0.45", hatch="///",
                               linewidth=0.6))
        ax.text(j, i, f"p={p:.2f}" if math.isfinite(p) else "pred.", ha="center", va="center",
                fontsize=max(5, fs - 2), style="italic", color="black",
                bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.7})
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label(f"relative gain of the pair model over single-task ({unit})")
    if predicted:
        ax.set_xlabel(f"auxiliary task        hatched: predicted, not trained ({len(predicted)} of "
                      f"{n * (n - 1)} cells; p = probability of a gain)")
    ax.set_title(title or "Gain of multi-task over single-task F1 (main task, auxiliary task)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _smooth(v, w):
    if len(v) < w or w <= 1:
        return v
    k = np.ones(w) / w
    return np.convolve(v, k, mode="valid")


def plot_curves(curves, path, title=None, window=20):
    """Single-task training-loss curves, one line per task (moving average over ``window`` entries).

    ``curves``: ``{task: (steps, losses)}`` or ``{task: losses}`` (x = entry index then).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    cmap = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    for i, (task, c) in enumerate(sorted(curves.items())):
        if isinstance(c, tuple):
            steps, losses = np.asarray(c[0], float), np.asarray(c[1], float)
        else:
            losses = np.asarray(c, float)
            steps = np.arange(len(losses), dtype=float)
        if len(losses) == 0:
            continue
        w = min(window, max(1, len(losses) // 10))
        sm = _smooth(losses, w)
        ax.plot(steps[w - 1 :] if w > 1 and len(losses) >= w else steps, sm, label=task, color=cmap(i % cmap.N),
                lw=1.3)
    ax.set_xlabel("training step" if any(isinstance(c, tuple) for c in curves.values()) else "log entry")
    ax.set_ylabel(f"training loss (moving average, {window} entries)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title(title or "Single-task learning curves", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

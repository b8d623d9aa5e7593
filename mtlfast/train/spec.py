"""What the engine is asked to do (run specs, settings) and what it reports back (events)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of the protocol (the original's settings by default) and run-time choices."""

    hidden: int = 100
    dropout: float = 0.1
    batch_size: int = 32
    max_len: int = 30
    lr: float = 0.1
    rho: float = 0.95
    eps: float = 1e-8
    log_every: int = 10
    eval_every: int = 0  # 0: only at the end
    eval_splits: tuple[str, ...] = ("dev", "test")
    eval_batch_size: int = 128
    checkpoint_every: int = 0  # every N steps; 0: not by steps (Ctrl-C still checkpoints)
    # and every so many seconds of wall time, but never more often than keeps writing them under about 5% of the
    # time; 0: not by time
    checkpoint_seconds: float = 0.0
    precision: str = "fp32"
    backend: str = "auto"
    device: str = "cpu"
    slots: int = 2  # task slots per run (heads); a run has 1 (single) or 2 (pair) tasks
    protocol: str = "clean"  # "original" | "clean" (mtlfast.train.engine's docstring; README "Original vs clean")

    @classmethod
    def from_config(cls, cfg) -> "TrainSettings":
        return cls(hidden=cfg.hidden, dropout=cfg.dropout, batch_size=cfg.batch_size, max_len=cfg.max_len,
                   lr=cfg.lr, rho=cfg.rho, eps=cfg.eps, log_every=cfg.log_every, eval_every=cfg.eval_every,
                   eval_batch_size=cfg.eval_batch_size, checkpoint_every=cfg.checkpoint_every,
                   checkpoint_seconds=60.0 * getattr(cfg, "checkpoint_minutes", 0.0),
                   precision=cfg.precision, backend=cfg.backend, device=cfg.device,
                   protocol=getattr(cfg, "protocol", None) or "clean")


@dataclass
class RunSpec:
    """One training run: a single task or a pair, a seed and a step budget.

    ``resume`` is a checkpoint state (as produced by a :class:`Checkpoint` event) to continue from, or None.
    """

    run_id: str
    tasks: tuple[str, ...]
    seed: int
    steps: int
    resume: dict | None = None

    @property
    def kind(self) -> str:
        return "single" if len(self.tasks) == 1 else "pair"

    def rng_streams(self) -> tuple[np.random.Generator, int]:
        """The run's own random streams, from (seed, tasks) alone: a numpy Generator for task draws and
        sampling, and the seed of its torch Generator (initialisation, dropout)."""
        key = zlib.crc32("+".join(self.tasks).encode("utf-8"))
        ss = np.random.SeedSequence([int(self.seed), int(key)])
        np_ss, torch_ss = ss.spawn(2)
        torch_seed = int(torch_ss.generate_state(1, np.uint64)[0] & np.uint64((1 << 63) - 1))
        return np.random.Generator(np.random.PCG64(np_ss)), torch_seed


def run_id_for(tasks: tuple[str, ...], seed: int) -> str:
    return f"{'+'.join(tasks)}@{seed}"


def plan_runs(task_names, seed: int, pair_seeds: int, single_seeds: int, steps_single: int, steps_pair: int,
              pairs=None, singles: bool = True) -> list[RunSpec]:
    """The runs of a sweep, in training order: every single-task run first (seeds ``seed`` ..
    ``seed + single_seeds - 1``; by seed, then task), then the pair runs (seeds ``seed`` ..
    ``seed + pair_seeds - 1``; by seed, then pair), so that model arrays cut from the front train the singles
    first. ``pairs``: the pairs to plan (default: every unordered pair of ``task_names``; a pair's tasks are put
    in the suite's order, which names the run); ``singles=False`` plans the pair runs only (a budget's rounds).
    The one plan of :mod:`mtlfast.sweep` and :mod:`mtlfast.budget`."""
    import itertools

    names = list(task_names)
    order = {t: i for i, t in enumerate(names)}
    if pairs is None:
        pairs = list(itertools.combinations(names, 2))
    else:
        pairs = [tuple(sorted(p, key=order.get)) for p in pairs]
    specs = []
    if singles:
        for i in range(single_seeds):
            specs += [RunSpec(run_id_for((t,), seed + i), (t,), seed + i, steps_single) for t in names]
    for i in range(pair_seeds):
        specs += [RunSpec(run_id_for(p, seed + i), p, seed + i, steps_pair) for p in pairs]
    return specs


# ---------------------------------------------------------------------------------------------------------
# Events (engine -> driver). Only the driver writes the store.


@dataclass
class RunStarted:
    run_id: str
    step: int  # 0, or the step it resumes from


@dataclass
class LossPoints:
    """Training loss of ``run_id`` at ``step``: ``points`` = [(task, mean loss of that task's batches since
    its previous point)]."""

    run_id: str
    step: int
    points: list[tuple[str, float]]


@dataclass
class Scores:
    run_id: str
    step: int
    rows: list[tuple[str, str, str, float]]  # (task, split, metric, value)


@dataclass
class Checkpoint:
    run_id: str
    step: int
    state: dict[str, Any]


@dataclass
class RunDone:
    run_id: str
    step: int
    seconds: float


@dataclass
class Progress:
    run_steps: int  # run-steps just completed by the array


Event = RunStarted | LossPoints | Scores | Checkpoint | RunDone | Progress
EventCallback = Callable[[Event], None]


class TrainingInterrupted(Exception):
    """Raised by the engine after it has emitted a checkpoint of every active run because it was asked to stop."""

"""How much memory one run of a model array holds, and how many runs fit: the sweep's default ``--array-size``.

Every run of a model array carries its own copy of everything (:mod:`mtlfast.train.model`), so a sweep's
memory grows with its array size K. Per run, in bytes (fp32 = 4 bytes, V words, E embedding dimensions, H
hidden units per direction, S = ``slots`` task heads padded to L labels, the largest label set of the array):

==============  =====================================================================================
parameters      embedding ``V E`` + bi-LSTM ``2 (4H E + 4H H + 4H)`` + heads ``S L (2H + 1)``, times 4
optimiser       Adadelta's two accumulators of every parameter. The **clean** protocol: one per run (2x the
                parameters) plus ``emb.last`` (int64 [V]). The **original** protocol keeps one optimiser per
                task slot for the shared layers (embedding, bi-LSTM): ``2 S`` accumulators of each, 2 of the
                heads; so its embedding state is ``(1 + 2S) V E`` floats against the clean ``3 V E``
                (1.67x with S = 2), in single runs too (their second slot exists but is never drawn).
step            what one training step allocates per run for its ``B x T`` positions (``T = max_len``):
                the looked-up embeddings and their gradient with the kernel's copies (6 E per position),
                the bi-LSTM output, its gradient and copies, dropout masks (10 x 2H), the saved gate
                activations, cell states and the backward's gate gradients (2 x 4H + 2 x 2H + 2 x 4H),
                the head's logits, probabilities and gradients (3 L), batch ids (4 int64); plus the
                gradients of the bi-LSTM weights and one temporary copy of them (2x the bi-LSTM), and in the
                original protocol the per-task accumulators gathered for the drawn slot (2x the bi-LSTM).
build           while an array is built, each run's state exists twice (the run's own tensors and their
                stacked copy in the array), so the state counts twice at that moment.
==============  =====================================================================================

The array also holds, once and not per run, one evaluation pass (``eval_batch_size`` whole sentences of the
longest evaluated split, forward only) and a fixed margin for the interpreter and libraries already loaded;
:func:`array_overhead`. :func:`fit_array` turns these into the largest K whose peak, ``overhead + K x
peak per run``, fits into a safe fraction of the available memory (:func:`available_memory`: MemAvailable of
``/proc/meminfo``, capped by the cgroup's limit when the process has one; the free memory of the GPU for
``--device cuda``). ``tests/train/test_memory.py`` holds the state part against the real tensors of
:func:`mtlfast.train.model.init_run_state` and :class:`~mtlfast.train.model.ModelArray` (within 1 %; it is
exact today) and the whole estimate against the peak resident memory of a real array of 6 runs (between the
runs' state and the planned bytes: measured 1.0-1.6x below the plan on the synthetic suite at 1000-d).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunBytes", "ArrayFit", "ArrayMemoryError", "SAFE_FRACTION", "run_bytes", "run_bytes_for",
           "array_overhead", "available_memory", "fit_array", "fmt_bytes"]

#: The fraction of the available memory a sweep plans to use (the rest: the OS, other jobs, estimate error).
SAFE_FRACTION = 0.7
FP32 = 4
INT64 = 8
#: Evaluation batches' activations per position (forward only): y, its copy, gate activations, cell states.
_EVAL_FLOATS_PER_H = 2 + 2 + 8 + 4


class ArrayMemoryError(ValueError):
    """Not even one run fits into the available memory; the message says how much it needs, how much there is,
    and what to reduce."""


@dataclass(frozen=True)
class RunBytes:
    """Bytes one run of a model array holds (module docstring)."""

    params: int
    optimiser: int
    step: int  # one training step's activations and gradients
    embedding: int  # of params + optimiser: the embedding table and its optimiser state

    @property
    def state(self) -> int:
        """Parameters and optimiser state: what a run keeps between steps (and what a checkpoint holds)."""
        return self.params + self.optimiser

    @property
    def peak(self) -> int:
        """The most the run needs at one moment: its state twice while the array is built, or its state plus
        one step's activations while it trains."""
        return self.state + max(self.state, self.step)


def run_bytes(vocab_size: int, emb_dim: int, hidden: int, n_labels: int, *, batch_size: int = 32,
              max_len: int = 30, protocol: str = "clean", slots: int = 2, dropout: float = 0.1) -> RunBytes:
    """:class:`RunBytes` of one run (module docstring). ``n_labels``: the largest label count of the array's
    runs (heads are padded to it)."""
    if protocol not in ("clean", "original"):
        raise ValueError(f"protocol: expected 'original' or 'clean', got {protocol!r}")
    for name, v in (("vocab_size", vocab_size), ("emb_dim", emb_dim), ("hidden", hidden), ("n_labels", n_labels),
                    ("batch_size", batch_size), ("max_len", max_len), ("slots", slots)):
        if int(v) < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    V, E, H, L, S = int(vocab_size), int(emb_dim), int(hidden), int(n_labels), int(slots)
    emb = V * E
    lstm = 2 * (4 * H * E + 4 * H * H + 4 * H)
    heads = S * L * 2 * H + S * L
    params = (emb + lstm + heads) * FP32
    if protocol == "original":  # one Adadelta per task slot for the shared layers (model.SHARED)
        optimiser = (2 * S * (emb + lstm) + 2 * heads) * FP32
        emb_state = (1 + 2 * S) * emb * FP32
    else:
        optimiser = 2 * (emb + lstm + heads) * FP32 + V * INT64  # + emb.last
        emb_state = 3 * emb * FP32 + V * INT64
    P = int(batch_size) * int(max_len)
    drop = 10 if protocol == "clean" and dropout > 0 else 6  # without dropout: no mask, no masked copy
    per_pos = 6 * E + drop * 2 * H + (8 * H + 4 * H + 8 * H) + 3 * L
    step = P * per_pos * FP32 + 4 * P * INT64 + 2 * lstm * FP32
    if protocol == "original":
        step += 2 * lstm * FP32
    return RunBytes(params=params, optimiser=optimiser, step=step, embedding=emb_state)


def run_bytes_for(inputs, settings, tasks=None) -> RunBytes:
    """:func:`run_bytes` for a suite (:class:`~mtlfast.train.TrainInputs`) and
    :class:`~mtlfast.train.TrainSettings`; heads padded to the largest label set of ``tasks`` (default: every
    task of the suite, the bound for any array of its runs)."""
    names = list(tasks) if tasks is not None else [t.name for t in inputs.tasks]
    L = max(inputs.n_labels(t) for t in names)
    return run_bytes(inputs.vocab_size, inputs.emb_dim, settings.hidden, L, batch_size=settings.batch_size,
                     max_len=settings.max_len, protocol=settings.protocol, slots=settings.slots,
                     dropout=settings.dropout)


#: A fixed margin per array for what the estimate does not itemise (allocator slack, the kernels' per-thread
#: workspaces, checkpoints being written).
ARRAY_MARGIN = 64 << 20


def array_overhead(inputs, settings) -> int:
    """Bytes an array needs once, whatever its K: the largest evaluation pass (``eval_batch_size`` whole
    sentences of the longest dev/test sentence; the original protocol evaluates ``batch_size`` sentences cut
    to ``max_len``) plus :data:`ARRAY_MARGIN`."""
    H = settings.hidden
    E = inputs.emb_dim
    L = max(inputs.n_labels(t.name) for t in inputs.tasks)
    if settings.protocol == "original":
        B, T = settings.batch_size, settings.max_len
    else:
        import numpy as np

        B, T = settings.eval_batch_size, 1
        for task in inputs.suite.tasks.values():
            for name in settings.eval_splits:
                split = task.splits.get(name)
                if split is not None and len(split.offsets) > 1:
                    T = max(T, int(np.diff(np.asarray(split.offsets)).max()))
    per_pos = 2 * E + _EVAL_FLOATS_PER_H * H + 2 * L
    return B * T * per_pos * FP32 + ARRAY_MARGIN


# ------------------------------------------------------------------------------------------ available memory
def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _meminfo(root: Path) -> dict[str, int]:
    out = {}
    try:
        with open(root / "proc" / "meminfo", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts:
                    out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    except (OSError, ValueError):
        pass
    return out


def _cgroup_room(root: Path) -> tuple[int, str] | None:
    """(limit - usage, where) of the process's cgroup when it has a memory limit (v2, then v1); None if not."""
    try:
        lines = (root / "proc" / "self" / "cgroup").read_text().splitlines()
    except OSError:
        lines = []
    v2_path, v1_path = None, None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2_path = parts[2]
        elif "memory" in parts[1].split(","):
            v1_path = parts[2]
    cg = root / "sys" / "fs" / "cgroup"
    candidates = []
    if v2_path is not None:
        for base in (cg / v2_path.lstrip("/"), cg):
            candidates.append((base / "memory.max", base / "memory.current", "cgroup memory.max"))
    if v1_path is not None:
        for base in (cg / "memory" / v1_path.lstrip("/"), cg / "memory"):
            candidates.append((base / "memory.limit_in_bytes", base / "memory.usage_in_bytes",
                               "cgroup memory.limit_in_bytes"))
    for limit_file, usage_file, what in candidates:
        limit = _read_int(limit_file)
        if limit is None or limit >= 1 << 60:  # "max" / the v1 "no limit" value
            continue
        usage = _read_int(usage_file) or 0
        return max(limit - usage, 0), f"{what} {fmt_bytes(limit)} - {fmt_bytes(usage)} in use"
    return None


def available_memory(device: str = "cpu", *, root: str | Path = "/") -> tuple[int, str]:
    """(bytes available to this process now, where the number comes from). CPU: MemAvailable of
    /proc/meminfo (MemFree when the kernel has no MemAvailable), capped by the cgroup's limit minus its usage
    when the process runs under a memory limit. ``cuda``/``cuda:N``: the GPU's free memory
    (``torch.cuda.mem_get_info``). ``root``: a fake file-system root for tests."""
    if device.startswith("cuda"):
        import torch

        free, total = torch.cuda.mem_get_info(torch.device(device))
        return int(free), f"free memory of {device} ({fmt_bytes(free)} of {fmt_bytes(total)})"
    root = Path(root)
    info = _meminfo(root)
    if "MemAvailable" in info:
        avail, src = info["MemAvailable"], "MemAvailable"
    elif "MemFree" in info:
        avail, src = info["MemFree"], "MemFree"
    else:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            src = "free physical pages"
        except (ValueError, OSError, AttributeError):
            raise ArrayMemoryError("cannot tell the memory available (no /proc/meminfo): give --array-size K") from None
    room = _cgroup_room(root)
    if room is not None and room[0] < avail:
        return room[0], f"{room[1]} (below {src} {fmt_bytes(avail)})"
    return avail, src


# ----------------------------------------------------------------------------------------------- array size
@dataclass(frozen=True)
class ArrayFit:
    """How many runs one array takes (``size``), and the sentence that says why."""

    size: int
    reason: str
    per_run: RunBytes
    overhead: int
    available: int
    usable: int


def fmt_bytes(n: float) -> str:
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"  # pragma: no cover


def fit_array(n_runs: int, per_run: RunBytes, overhead: int, available: int, source: str = "available",
              fraction: float = SAFE_FRACTION) -> ArrayFit:
    """The default array size: the largest K <= ``n_runs`` with ``overhead + K x per_run.peak`` within
    ``fraction`` of ``available``. :class:`ArrayMemoryError` when not even one run fits."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction: expected a value in (0, 1], got {fraction!r}")
    usable = int(available * fraction)
    room = usable - overhead
    need_one = overhead + per_run.peak
    if room < per_run.peak:
        raise ArrayMemoryError(
            f"one run needs about {fmt_bytes(need_one)} ({fmt_bytes(per_run.state)} of parameters and optimiser"
            f" state, of which {fmt_bytes(per_run.embedding)} embedding table and its state, held twice while"
            f" the array is built, {fmt_bytes(per_run.step)} per step, {fmt_bytes(overhead)} for evaluation and"
            f" margin), but only {fmt_bytes(usable)} may be used ({fraction:.0%} of {fmt_bytes(available)}"
            f" {source}): reduce the vocabulary (--embeddings with fewer words, fewer --tasks), --emb-dim,"
            f" --hidden or --batch-size, use --protocol clean (smaller optimiser state), or free memory")
    fit = room // per_run.peak
    size = int(min(fit, n_runs)) if n_runs > 0 else int(fit)
    what = (f"{fmt_bytes(per_run.peak)} per run at peak ({fmt_bytes(per_run.state)} state), {fmt_bytes(usable)}"
            f" usable = {fraction:.0%} of {fmt_bytes(available)} {source}")
    if fit >= n_runs:
        reason = f"all {n_runs} run(s) fit in one array ({what})"
    else:
        reason = (f"{int(fit)} of {n_runs} runs fit in one array ({what}): {math.ceil(n_runs / fit)} arrays;"
                  " --array-size K overrides")
    return ArrayFit(size=max(size, 1), reason=reason, per_run=per_run, overhead=overhead, available=available,
                    usable=usable)

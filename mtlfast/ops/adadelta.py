"""Fused Adadelta for model arrays: dense flat buffers, masked blocks and lazy embedding rows.

The update is TensorFlow's Adadelta (the original work's optimiser), which is also ``torch.optim.Adadelta``
without weight decay; the original's settings are the defaults here (``lr=0.1, rho=0.95, eps=1e-8``;
PyTorch's own defaults differ)::

    sq  <- rho * sq + (1 - rho) * g**2
    upd <- sqrt(acc + eps) / sqrt(sq + eps) * g
    acc <- rho * acc + (1 - rho) * upd**2
    p   <- p - lr * upd

Every op has a pure-PyTorch reference beside it (``reference_*``), used as the test oracle and as the
fallback when ``mtlfast._C`` is missing, lacks the op, or the tensors are not contiguous CPU float tensors
(``backend="auto"``). ``backend="c"`` insists on the compiled op, ``backend="reference"`` forces the oracle.

How the training engine uses them (model array of K runs; see also :class:`LazyEmbeddingAdadelta`)::

    # shared bi-LSTM weights/biases: every run steps every step
    adadelta_(lstm_params, lstm_grads, lstm_sq, lstm_acc)
    # heads stacked [K, S, L, 2H]: only the task slot drawn by run k this step moves (others untouched,
    # exactly as torch.optim skips a parameter whose .grad is None)
    adadelta_(head_params, head_grads, head_sq, head_acc, mask=slot_mask(slots, S))
    # embedding table [K, V, E]: only rows of this step's tokens are touched, exactly
    emb_opt.step(token_ids [K, B*T], grad_of_embedded_inputs [K, B*T, E])
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from mtlfast.ops import dispatch
from mtlfast.ops.dispatch import _C, has_fused_adadelta

__all__ = [
    "DEFAULT_LR",
    "DEFAULT_RHO",
    "DEFAULT_EPS",
    "adadelta_",
    "reference_adadelta_",
    "slot_mask",
    "adadelta_rows_",
    "reference_adadelta_rows_",
    "adadelta_rows_flush_",
    "reference_adadelta_rows_flush_",
    "embedding_grad_rows",
    "reference_embedding_grad_rows",
    "embedding_rows_update_",
    "reference_embedding_rows_update_",
    "LazyEmbeddingAdadelta",
    "FusedAdadelta",
    "sparse_adadelta_occurrences_",
    "reference_sparse_adadelta_occurrences_",
    "batched_sparse_adadelta_occurrences_",
    "adadelta_slots_",
    "reference_adadelta_slots_",
    "has_fused_adadelta",
]

#: The original work's Adadelta settings (TensorFlow's defaults).
DEFAULT_LR = 0.1
DEFAULT_RHO = 0.95
DEFAULT_EPS = 1e-8

TensorList = Union[torch.Tensor, Sequence[torch.Tensor]]
MaskArg = Union[None, torch.Tensor, Sequence[Optional[torch.Tensor]]]


def _as_list(x: TensorList, name: str) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    out = list(x)
    for i, t in enumerate(out):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"adadelta_: {name}[{i}] must be a torch.Tensor; got {type(t).__name__}")
    return out


def _masks_list(mask: MaskArg, n: int) -> list[Optional[torch.Tensor]]:
    if mask is None:
        return [None] * n
    if isinstance(mask, torch.Tensor):
        return [mask] * n
    out = list(mask)
    if len(out) != n:
        raise ValueError(f"adadelta_: mask must be one tensor or one entry per param; got {len(out)} for {n} params")
    return out


def _c_ok(tensors: Sequence[torch.Tensor]) -> bool:
    if not tensors:
        return True
    dtype = tensors[0].dtype
    return all(
        t.device.type == "cpu" and t.dtype == dtype and dtype in (torch.float32, torch.float64) and t.is_contiguous()
        for t in tensors
    )


def _cuda_op(name: str, tensors: Sequence[torch.Tensor], backend: str):
    """The CUDA twin ``_C.<name>`` when every tensor is a contiguous CUDA float32/float64 tensor and the
    extension was built with CUDA kernels (same arguments as the CPU op); else None."""
    if backend == "reference" or _C is None or not hasattr(_C, name) or not tensors:
        return None
    dtype = tensors[0].dtype
    if all(t.device.type == "cuda" and t.dtype == dtype and dtype in (torch.float32, torch.float64)
           and t.is_contiguous() for t in tensors):
        return getattr(_C, name)
    return None


def _pick(backend: str, ok: bool, op: str) -> bool:
    """Return True to use the compiled op."""
    if backend == "reference":
        return False
    if backend not in ("auto", "c"):
        raise ValueError(f"{op}: backend must be 'auto', 'c' or 'reference'; got {backend!r}")
    have = has_fused_adadelta()
    if backend == "c":
        if not have:
            dispatch.require_c()
            raise RuntimeError(f"{op}: mtlfast._C was built without the fused optimiser ops; rebuild it")
        if not ok:
            raise ValueError(f"{op}: backend='c' needs contiguous CPU float32/float64 tensors of one dtype")
        return True
    return have and ok


# ---------------------------------------------------------------------------------------------------------
# Dense and masked update


@torch.no_grad()
def reference_adadelta_(
    params: TensorList,
    grads: TensorList,
    sq: TensorList,
    acc: TensorList,
    *,
    lr: float = DEFAULT_LR,
    rho: float = DEFAULT_RHO,
    eps: float = DEFAULT_EPS,
    mask: MaskArg = None,
) -> None:
    """Pure-PyTorch Adadelta, torch.optim.Adadelta's exact operation sequence; same arguments as
    :func:`adadelta_`."""
    ps, gs, ss, as_ = (_as_list(x, n) for x, n in ((params, "params"), (grads, "grads"), (sq, "sq"), (acc, "acc")))
    masks = _masks_list(mask, len(ps))
    for p, g, s, a, m in zip(ps, gs, ss, as_, masks):
        if m is None:
            s.mul_(rho).addcmul_(g, g, value=1 - rho)
            std = s.add(eps).sqrt_()
            delta = a.add(eps).sqrt_().div_(std).mul_(g)
            a.mul_(rho).addcmul_(delta, delta, value=1 - rho)
            p.add_(delta, alpha=-lr)
            continue
        if m.dtype != torch.bool or tuple(m.shape) != tuple(p.shape[: m.dim()]):
            raise ValueError(
                f"adadelta_: mask must be a bool tensor whose shape is a prefix of {tuple(p.shape)}; "
                f"got {m.dtype} {tuple(m.shape)}"
            )
        m = m.to(p.device)
        pm, gm, sm, am = p[m], g[m], s[m], a[m]
        reference_adadelta_(pm, gm, sm, am, lr=lr, rho=rho, eps=eps)
        p[m], s[m], a[m] = pm, sm, am


def adadelta_(
    params: TensorList,
    grads: TensorList,
    sq: TensorList,
    acc: TensorList,
    *,
    lr: float = DEFAULT_LR,
    rho: float = DEFAULT_RHO,
    eps: float = DEFAULT_EPS,
    mask: MaskArg = None,
    backend: str = "auto",
) -> None:
    """Fused in-place Adadelta over tensors (or lists of tensors) of matching shapes.

    Parameters
    ----------
    params, grads, sq, acc : Tensor or sequence of Tensors
        ``params[i]``, ``grads[i]``, ``sq[i]`` (running mean of g^2) and ``acc[i]`` (running mean of
        update^2) share one shape; any shapes, e.g. flat buffers or stacked ``[K, ...]`` model-array
        parameters. One pass over all of them, parallel over elements, GIL released.
    lr, rho, eps : float
        Defaults are the original work's (TensorFlow's) settings.
    mask : None, bool Tensor, or sequence of (bool Tensor or None)
        Per parameter, a bool tensor whose shape is a prefix of the parameter's shape (``[K]`` or
        ``[K, S]``): blocks whose mask is False are skipped entirely (not decayed, not moved), as
        ``torch.optim.Adadelta`` skips a parameter whose ``.grad`` is None. One tensor applies to all params.
        Gradients of skipped blocks are never read (they may hold anything).
    backend : {"auto", "c", "reference"}
    """
    ps, gs, ss, as_ = (_as_list(x, n) for x, n in ((params, "params"), (grads, "grads"), (sq, "sq"), (acc, "acc")))
    gs = [g.contiguous() for g in gs]  # read only: a copy keeps the fused path (params/sq/acc are written in place)
    masks = _masks_list(mask, len(ps))
    cuda = _cuda_op("adadelta_cuda_", ps + gs + ss + as_, backend)
    if cuda is not None:
        cuda(ps, gs, ss, as_, [None if m is None else m.to(ps[0].device) for m in masks], float(lr), float(rho),
             float(eps))
        return
    masks_ok = all(m is None or m.device.type == "cpu" for m in masks)
    if _pick(backend, _c_ok(ps + gs + ss + as_) and masks_ok, "adadelta_"):
        _C.adadelta_(ps, gs, ss, as_, masks, float(lr), float(rho), float(eps))
    else:
        reference_adadelta_(ps, gs, ss, as_, lr=lr, rho=rho, eps=eps, mask=masks)


def slot_mask(slots: torch.Tensor, num_slots: int) -> torch.Tensor:
    """Bool mask ``[K, num_slots]`` with ``mask[k, slots[k]] = True``; ``slots[k] = -1`` selects nothing.

    For heads stacked ``[K, S, L, 2H]`` where run k updated only the head of its drawn task slot."""
    slots = torch.as_tensor(slots, dtype=torch.int64)
    if slots.dim() != 1:
        raise ValueError(f"slot_mask: slots must have shape [K]; got {tuple(slots.shape)}")
    if slots.numel() and (int(slots.min()) < -1 or int(slots.max()) >= num_slots):
        raise ValueError(f"slot_mask: slots must lie in [-1, {num_slots}); got {slots.tolist()}")
    return torch.arange(num_slots, device=slots.device).unsqueeze(0) == slots.unsqueeze(1)


# ---------------------------------------------------------------------------------------------------------
# Lazy embedding rows


@torch.no_grad()
def reference_adadelta_rows_(
    table: torch.Tensor,
    grad_rows: torch.Tensor,
    row_ids: torch.Tensor,
    sq: torch.Tensor,
    acc: torch.Tensor,
    last_step: torch.Tensor,
    step: int,
    *,
    lr: float = DEFAULT_LR,
    rho: float = DEFAULT_RHO,
    eps: float = DEFAULT_EPS,
) -> None:
    """Pure-PyTorch version of :func:`adadelta_rows_` (same arguments).

    Device-generic (everything stays on the table's device, no host sync), the K runs in one pass: this is
    also the update path wherever the compiled op does not apply."""
    batched = table.dim() == 3
    t3, s3, a3 = (x if batched else x.unsqueeze(0) for x in (table, sq, acc))
    l2 = last_step if batched else last_step.unsqueeze(0)
    i2 = row_ids if batched else row_ids.unsqueeze(0)
    g3 = grad_rows if batched else grad_rows.unsqueeze(0)
    keep = i2 >= 0
    run = torch.arange(i2.shape[0], device=i2.device)[:, None].expand(i2.shape)[keep]
    ids = i2[keep]
    g = g3[keep]
    # A row untouched for k steps had its sq/acc decayed by rho each step (its update was 0): apply rho^k now.
    missed = (step - 1 - l2[run, ids]).clamp_min(0).to(torch.float64)
    factor = torch.pow(torch.full_like(missed, rho), missed).to(t3.dtype).unsqueeze(1)
    s = s3[run, ids] * factor
    a = a3[run, ids] * factor
    p = t3[run, ids]
    reference_adadelta_(p, g, s, a, lr=lr, rho=rho, eps=eps)
    t3[run, ids], s3[run, ids], a3[run, ids] = p, s, a
    l2[run, ids] = step


def adadelta_rows_(
    table: torch.Tensor,
    grad_rows: torch.Tensor,
    row_ids: torch.Tensor,
    sq: torch.Tensor,
    acc: torch.Tensor,
    last_step: torch.Tensor,
    step: int,
    *,
    lr: float = DEFAULT_LR,
    rho: float = DEFAULT_RHO,
    eps: float = DEFAULT_EPS,
    backend: str = "auto",
) -> None:
    """Exact lazy Adadelta on the touched rows of an embedding table (in place).

    With no weight decay a row whose gradient is zero only has its ``sq`` and ``acc`` decayed by ``rho``
    (its update is exactly 0), so instead of touching all V rows every step, a row is brought up to date
    when it is next touched: both are multiplied by ``rho ** (step - 1 - last_step)`` first. The result
    equals dense ``torch.optim.Adadelta`` with a dense (mostly zero) gradient up to float rounding.

    Parameters
    ----------
    table, sq, acc : Tensor [V, E] or [K, V, E]
    grad_rows : Tensor [N, E] or [K, N, E]
        Summed gradient of each touched row (see :func:`embedding_grad_rows`).
    row_ids : int64 Tensor [N] or [K, N]
        Distinct within each k; -1 marks padding (skipped).
    last_step : int64 Tensor [V] or [K, V]
        Number of optimiser steps already folded into each row's ``sq``/``acc``; start at zeros.
    step : int
        1-based number of the step being applied (the same counter for all K runs of an array).
    """
    grad_rows = grad_rows.contiguous()
    cuda = _cuda_op("adadelta_rows_cuda_", [table, grad_rows, sq, acc], backend)
    if cuda is not None and row_ids.device == table.device and last_step.device == table.device:
        cuda(table, grad_rows, row_ids, sq, acc, last_step, int(step), float(lr), float(rho), float(eps))
        return
    ok = (_c_ok([table, grad_rows, sq, acc]) and row_ids.device.type == "cpu" and last_step.device.type == "cpu"
          and last_step.is_contiguous())
    if _pick(backend, ok, "adadelta_rows_"):
        _C.adadelta_rows_(table, grad_rows, row_ids, sq, acc, last_step, int(step), float(lr), float(rho), float(eps))
    else:
        reference_adadelta_rows_(table, grad_rows, row_ids, sq, acc, last_step, step, lr=lr, rho=rho, eps=eps)


@torch.no_grad()
def reference_adadelta_rows_flush_(
    sq: torch.Tensor, acc: torch.Tensor, last_step: torch.Tensor, step: int, *, rho: float = DEFAULT_RHO
) -> None:
    """Pure-PyTorch version of :func:`adadelta_rows_flush_`."""
    missed = (step - last_step).clamp_min(0).to(torch.float64)
    factor = torch.pow(torch.full_like(missed, rho), missed).to(sq.dtype).unsqueeze(-1)
    sq.mul_(factor)
    acc.mul_(factor)
    last_step.clamp_(min=step)


def adadelta_rows_flush_(
    sq: torch.Tensor,
    acc: torch.Tensor,
    last_step: torch.Tensor,
    step: int,
    *,
    rho: float = DEFAULT_RHO,
    backend: str = "auto",
) -> None:
    """Bring every row's ``sq``/``acc`` to ``step`` completed steps (for checkpoints, or to compare with a
    dense optimiser): multiply by ``rho ** (step - last_step)``, set ``last_step = step``. The table itself
    never lags (untouched rows do not move), so evaluation needs no flush."""
    cuda = _cuda_op("adadelta_rows_flush_cuda_", [sq, acc], backend)
    if cuda is not None and last_step.device == sq.device:
        cuda(sq, acc, last_step, int(step), float(rho))
        return
    ok = _c_ok([sq, acc]) and last_step.device.type == "cpu" and last_step.is_contiguous()
    if _pick(backend, ok, "adadelta_rows_flush_"):
        _C.adadelta_rows_flush_(sq, acc, last_step, int(step), float(rho))
    else:
        reference_adadelta_rows_flush_(sq, acc, last_step, step, rho=rho)


def reference_embedding_grad_rows(
    ids: torch.Tensor, grad_out: torch.Tensor, num_rows: int, *, ignore_id: int = -1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-PyTorch version of :func:`embedding_grad_rows` (same output, rows in order of first appearance).

    Device-generic: every tensor it makes is on ``ids``' device, and the K runs are handled together (one
    ``torch.unique`` over the flat ``[K * num_rows]`` row space), so it is also the update path off the CPU."""
    batched = ids.dim() == 2
    i2 = ids if batched else ids.unsqueeze(0)
    g3 = grad_out if batched else grad_out.unsqueeze(0)
    K, N = i2.shape
    E = g3.shape[-1]
    dev = i2.device
    keep = i2 != ignore_id
    run = torch.arange(K, device=dev)[:, None].expand(K, N)[keep]  # run of each kept token, non-decreasing
    flat = i2[keep] + run * num_rows
    g = g3[keep]
    uniq, inverse = torch.unique(flat, return_inverse=True)
    # Order of first appearance: kept tokens are in (run, position) order, so sorting the distinct rows by
    # their first token keeps runs apart and each run's rows in order of appearance.
    n = flat.numel()
    first = torch.full((uniq.numel(),), n, dtype=torch.int64, device=dev).scatter_reduce_(
        0, inverse, torch.arange(n, device=dev), reduce="amin"
    )
    order = torch.argsort(first)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=dev)
    summed = torch.zeros(uniq.numel(), E, dtype=g3.dtype, device=dev).index_add_(0, rank[inverse], g)
    rows = uniq[order]
    row_run = torch.div(rows, num_rows, rounding_mode="floor")
    counts = torch.bincount(row_run, minlength=K)
    U = int(counts.max()) if K and rows.numel() else 0
    slot = torch.arange(rows.numel(), device=dev) - (torch.cumsum(counts, 0) - counts)[row_run]
    row_ids = torch.full((K, U), -1, dtype=torch.int64, device=dev)
    grad_rows = torch.zeros(K, U, E, dtype=g3.dtype, device=dev)
    row_ids[row_run, slot] = rows - row_run * num_rows
    grad_rows[row_run, slot] = summed
    if not batched:
        return row_ids[0], grad_rows[0]
    return row_ids, grad_rows


def embedding_grad_rows(
    ids: torch.Tensor, grad_out: torch.Tensor, num_rows: int, *, ignore_id: int = -1, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse embedding backward: sum ``grad_out`` over tokens with equal id.

    Parameters
    ----------
    ids : int64 Tensor [N] or [K, N]
        Token ids of the batch (flattened ``[B*T]``); values in ``[0, num_rows)`` or ``ignore_id``.
    grad_out : Tensor [N, E] or [K, N, E]
        Gradient of the embedding lookup's output.
    ignore_id : int
        Tokens with this id contribute nothing (e.g. the pad id); -1: none.

    Returns
    -------
    row_ids : int64 Tensor [U] or [K, U]
        Distinct ids in order of first appearance, padded with -1 to U = max distinct count over k.
    grad_rows : Tensor [U, E] or [K, U, E]
        Summed gradients (zeros in padding).
    """
    grad_out = grad_out.contiguous()
    ok = _c_ok([grad_out]) and ids.device.type == "cpu" and ids.dtype == torch.int64
    if _pick(backend, ok, "embedding_grad_rows"):
        return _C.embedding_grad_rows(ids, grad_out, int(num_rows), int(ignore_id))
    return reference_embedding_grad_rows(ids, grad_out, num_rows, ignore_id=ignore_id)


def reference_embedding_rows_update_(
    table: torch.Tensor,
    sq: torch.Tensor,
    acc: torch.Tensor,
    last_step: torch.Tensor,
    ids: torch.Tensor,
    grad_out: torch.Tensor,
    step: int,
    *,
    lr: float = DEFAULT_LR,
    rho: float = DEFAULT_RHO,
    eps: float = DEFAULT_EPS,
    ignore_id: int = -1,
) -> None:
    """Pure-PyTorch version of :func:`embedding_rows_update_`: :func:`reference_embedding_grad_rows` then
    :func:`reference_adadelta_rows_`, on whatever device the tensors are."""
    row_ids, grad_rows = reference_embedding_grad_rows(ids, grad_out, table.shape[-2], ignore_id=ignore_id)
    reference_adadelta_rows_(table, grad_rows, row_ids, sq, acc, last_step, step, lr=lr, rho=rho, eps=eps)


def embedding_rows_update_(
    table: torch.Tensor,
    sq: torch.Tensor,
    acc: torch.Tensor,
    last_step: torch.Tensor,
    ids: torch.Tensor,
    grad_out: torch.Tensor,
    step: int,
    *,
    lr: float = DEFAULT_LR,
    rho: float = DEFAULT_RHO,
    eps: float = DEFAULT_EPS,
    ignore_id: int = -1,
    backend: str = "auto",
) -> None:
    """Sparse embedding backward + exact lazy Adadelta for one table or a model array's tables, in place.

    ``table, sq, acc`` [V, E] / [K, V, E]; ``last_step`` int64 [V] / [K, V]; ``ids`` [N] / [K, N] token ids
    (``ignore_id`` = skipped); ``grad_out`` [N, E] / [K, N, E] the gradient of the looked-up vectors; ``step``
    the 1-based step being applied. :func:`embedding_grad_rows` then :func:`adadelta_rows_`, each through its
    compiled op where it applies (CPU; the row update also on CUDA) and its device-generic reference
    elsewhere; ``backend="reference"`` forces the references."""
    row_ids, grad_rows = embedding_grad_rows(ids, grad_out, table.shape[-2], ignore_id=ignore_id, backend=backend)
    adadelta_rows_(table, grad_rows, row_ids, sq, acc, last_step, step, lr=lr, rho=rho, eps=eps, backend=backend)


@torch.no_grad()
def reference_adadelta_slots_(params, grads, sq, acc, slots, *, lr: float = DEFAULT_LR, rho: float = DEFAULT_RHO,
                              eps: float = DEFAULT_EPS) -> None:
    """Device-generic :func:`adadelta_slots_` (same arguments): gather the drawn slots' state, update, scatter."""
    ps, gs, ss, as_ = (_as_list(x, n) for x, n in ((params, "params"), (grads, "grads"), (sq, "sq"), (acc, "acc")))
    slots_t = torch.as_tensor(slots, dtype=torch.int64).to(ps[0].device)
    ar = torch.arange(slots_t.numel(), device=slots_t.device)
    sel = [(s[ar, slots_t], a[ar, slots_t]) for s, a in zip(ss, as_)]
    reference_adadelta_(ps, gs, [a for a, _ in sel], [b for _, b in sel], lr=lr, rho=rho, eps=eps)
    for s, a, (s_new, a_new) in zip(ss, as_, sel):
        s[ar, slots_t] = s_new
        a[ar, slots_t] = a_new


def adadelta_slots_(params, grads, sq, acc, slots, *, lr: float = DEFAULT_LR, rho: float = DEFAULT_RHO,
                    eps: float = DEFAULT_EPS, backend: str = "auto") -> None:
    """Adadelta on model-array parameters ``params[i]`` [K, ...] whose state has one slot per task,
    ``sq[i]``, ``acc[i]`` [K, S, ...]: run k's block moves with its state slot ``slots[k]`` (int [K]), in
    place; the other slots are untouched (the original protocol's one optimiser per task). The compiled op
    updates the slots where they lie (contiguous CPU float32); elsewhere :func:`reference_adadelta_slots_`."""
    if backend not in ("auto", "c", "reference"):
        raise ValueError(f"adadelta_slots_: backend must be 'auto', 'c' or 'reference'; got {backend!r}")
    ps, gs, ss, as_ = (_as_list(x, n) for x, n in ((params, "params"), (grads, "grads"), (sq, "sq"), (acc, "acc")))
    gs = [g.contiguous() for g in gs]
    have = _C is not None and hasattr(_C, "adadelta_slots_")
    ok = have and all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous()
                      for t in ps + gs + ss + as_)
    if backend == "c" and not ok:
        if not have:
            dispatch.require_c()
            raise RuntimeError("adadelta_slots_: mtlfast._C lacks this op; rebuild it")
        raise ValueError("adadelta_slots_: backend='c' needs contiguous CPU float32 tensors")
    if backend == "reference" or not ok:
        reference_adadelta_slots_(ps, gs, ss, as_, slots, lr=lr, rho=rho, eps=eps)
        return
    slots_t = torch.as_tensor(slots.cpu() if isinstance(slots, torch.Tensor) else slots, dtype=torch.int64)
    _C.adadelta_slots_(ps, gs, ss, as_, slots_t.contiguous(), float(lr), float(rho), float(eps))


def _occurrence_rank(keys: torch.Tensor) -> torch.Tensor:
    """For each entry of ``keys`` [N], how many earlier entries hold the same key (0 for a key's first
    occurrence, 1 for its second, ...), in entry order."""
    order = torch.argsort(keys, stable=True)
    ks = keys[order]
    start = torch.ones_like(ks, dtype=torch.bool)
    start[1:] = ks[1:] != ks[:-1]
    idx = torch.arange(ks.numel(), device=ks.device)
    first = torch.cummax(torch.where(start, idx, torch.zeros_like(idx)), 0).values
    rank = torch.empty_like(idx)
    rank[order] = idx - first
    return rank


def _adadelta_round(table, sq, acc, rows, state_rows, g, lr, rho, eps) -> None:
    """One round of the per-occurrence Adadelta: entry i moves ``table[rows[i]]`` with gradient ``g[i]`` and the
    state rows ``sq[state_rows[i]]``, ``acc[state_rows[i]]`` (each row at most once per round), in place."""
    a = sq[state_rows] * rho + g * g * (1 - rho)
    u = (acc[state_rows] + eps).sqrt() / (a + eps).sqrt() * g
    sq[state_rows] = a
    acc[state_rows] = acc[state_rows] * rho + u * u * (1 - rho)
    table[rows] = table[rows] - lr * u


@torch.no_grad()
def reference_sparse_adadelta_occurrences_(table, sq, acc, slots, rows, grads, *, lr: float = DEFAULT_LR,
                                           rho: float = DEFAULT_RHO, eps: float = DEFAULT_EPS) -> None:
    """Device-generic :func:`sparse_adadelta_occurrences_` (same arguments): per run, the same arithmetic in
    rounds, the j-th occurrences of all rows at once."""
    K = table.shape[0]
    slot_list = slots.tolist() if isinstance(slots, torch.Tensor) else [int(s) for s in slots]
    for k in range(K):
        s = int(slot_list[k])
        t, a2, u2 = table[k], sq[k, s], acc[k, s]
        r = rows[k]
        keep = r >= 0
        r, g = r[keep], grads[k][keep]
        if r.numel() == 0:
            continue
        rank = _occurrence_rank(r)
        for j in range(int(rank.max()) + 1):
            rr = r[rank == j]
            _adadelta_round(t, a2, u2, rr, rr, g[rank == j], lr, rho, eps)


@torch.no_grad()
def batched_sparse_adadelta_occurrences_(table, sq, acc, slots, rows, grads, *, lr: float = DEFAULT_LR,
                                         rho: float = DEFAULT_RHO, eps: float = DEFAULT_EPS) -> None:
    """Device-generic :func:`sparse_adadelta_occurrences_` for all K runs at once (the path on a GPU).

    The same arithmetic as :func:`reference_sparse_adadelta_occurrences_`, but the entries of every run are
    ranked together by occurrence (the j-th occurrence of row r of run k has rank j) and each round updates the
    rank-j entries of all runs with one gather and one scatter per tensor: a fixed number of device ops per
    round, rounds = the largest occurrence count of any row in any run, and one host synchronisation per call
    (the round sizes) instead of a Python loop over runs with one per run."""
    K, V, E = table.shape
    S = sq.shape[1]
    slots_t = torch.as_tensor(slots, dtype=torch.int64).to(table.device)
    rows = rows.to(table.device, torch.int64)
    keep = rows >= 0
    kk = torch.arange(K, device=table.device)[:, None].expand_as(rows)[keep]  # entry order: run, then position
    r = rows[keep]
    if r.numel() == 0:
        return
    g = grads[keep].to(table.dtype)
    key = kk * V + r  # row of the flat [K * V, E] table
    rank = _occurrence_rank(key)
    # entries sorted by rank (stable: within a round any order works, each row occurs once per round)
    by_rank = torch.argsort(rank, stable=True)
    sizes = torch.bincount(rank).tolist()  # the one synchronisation
    t_flat = table.view(K * V, E)
    state = (kk * S + slots_t[kk]) * V + r  # row of the flat [K * S * V, E] state
    a2, u2 = sq.view(K * S * V, E), acc.view(K * S * V, E)
    for sel in torch.split(by_rank, sizes):
        _adadelta_round(t_flat, a2, u2, key[sel], state[sel], g[sel], lr, rho, eps)


def sparse_adadelta_occurrences_(table, sq, acc, slots, rows, grads, *, lr: float = DEFAULT_LR,
                                 rho: float = DEFAULT_RHO, eps: float = DEFAULT_EPS, backend: str = "auto") -> None:
    """TensorFlow's ``SparseApplyAdadelta`` for each run of a model array, in place (the original protocol's
    embedding update).

    table [K, V, E]; sq, acc [K, S, V, E] (per-task state; run k uses slot ``slots[k]``); slots int [K]; rows
    int64 [K, N] (-1: skip); grads [K, N, E], or batch-major [K, B, T, E] with ``N = T * B`` and the entries in
    time-major order (entry ``t * B + b`` is ``grads[k, b, t]``: the bi-LSTM's input gradient as it is). Entry i
    of run k updates row ``rows[k, i]`` with its gradient, one entry after the other (a row that occurs twice is
    updated twice, each time from the state the previous entry left). The compiled op runs all K runs in one call
    (contiguous CPU float32 tensors); elsewhere (a GPU) :func:`batched_sparse_adadelta_occurrences_`;
    ``backend="reference"`` forces the per-run reference, ``"batched"`` the batched one.
    """
    if backend not in ("auto", "c", "batched", "reference"):
        raise ValueError("sparse_adadelta_occurrences_: backend must be 'auto', 'c', 'batched' or 'reference'; "
                         f"got {backend!r}")
    have = _C is not None and hasattr(_C, "sparse_adadelta_occurrences_")
    ok = (have and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (table, sq, acc, grads))
          and table.is_contiguous() and sq.is_contiguous() and acc.is_contiguous() and rows.device.type == "cpu")
    if grads.dim() == 4:
        if grads.shape[1] * grads.shape[2] != rows.shape[1]:
            raise ValueError("sparse_adadelta_occurrences_: batch-major grads [K, B, T, E] need rows [K, T * B]; got "
                             f"grads {tuple(grads.shape)} and rows {tuple(rows.shape)}")
        if not (ok and backend in ("auto", "c")):  # the compiled op reads them as they are; the others time-major
            grads = grads.transpose(1, 2).reshape(grads.shape[0], -1, grads.shape[3])
    if backend == "batched":
        batched_sparse_adadelta_occurrences_(table, sq, acc, slots, rows, grads, lr=lr, rho=rho, eps=eps)
        return
    slots_t = torch.as_tensor(slots.cpu() if isinstance(slots, torch.Tensor) else slots, dtype=torch.int64)
    if backend == "c" and not ok:
        if not have:
            dispatch.require_c()
            raise RuntimeError("sparse_adadelta_occurrences_: mtlfast._C lacks this op; rebuild it")
        raise ValueError("sparse_adadelta_occurrences_: backend='c' needs contiguous CPU float32 tensors")
    if backend == "reference":
        reference_sparse_adadelta_occurrences_(table, sq, acc, slots, rows, grads, lr=lr, rho=rho, eps=eps)
        return
    if not ok:
        batched_sparse_adadelta_occurrences_(table, sq, acc, slots, rows, grads, lr=lr, rho=rho, eps=eps)
        return
    _C.sparse_adadelta_occurrences_(table, sq, acc, slots_t, rows.to(torch.int64), grads, float(lr), float(rho),
                                    float(eps))


class LazyEmbeddingAdadelta:
    """Adadelta state of one embedding table ``[V, E]`` or model-array table ``[K, V, E]``, updated lazily.

    ``step(ids, grad_out)`` = :func:`embedding_grad_rows` + :func:`adadelta_rows_`; ``flush()`` brings all
    rows' state to the current step; ``state_dict()`` / ``load_state_dict()`` for checkpoints (the state is
    flushed first so a checkpoint equals the dense optimiser's state).
    """

    def __init__(
        self,
        table: torch.Tensor,
        *,
        lr: float = DEFAULT_LR,
        rho: float = DEFAULT_RHO,
        eps: float = DEFAULT_EPS,
        ignore_id: int = -1,
        backend: str = "auto",
    ):
        if table.dim() not in (2, 3):
            raise ValueError(f"LazyEmbeddingAdadelta: table must have shape [V, E] or [K, V, E]; got {tuple(table.shape)}")
        self.table = table
        self.lr, self.rho, self.eps, self.ignore_id, self.backend = lr, rho, eps, ignore_id, backend
        self.sq = torch.zeros_like(table)
        self.acc = torch.zeros_like(table)
        self.last_step = torch.zeros(table.shape[:-1], dtype=torch.int64, device=table.device)
        self.steps_done = 0

    @torch.no_grad()
    def step(self, ids: torch.Tensor, grad_out: torch.Tensor) -> None:
        """Apply one step. ``ids`` [N] / [K, N] (any trailing shape is flattened per k), ``grad_out``
        ids.shape + [E]. Empty ids = a step with an all-zero gradient (every row decays, none moves)."""
        batched = self.table.dim() == 3
        E = self.table.shape[-1]
        if batched:
            K = self.table.shape[0]
            ids, grad_out = ids.reshape(K, -1), grad_out.reshape(K, -1, E)
        else:
            ids, grad_out = ids.reshape(-1), grad_out.reshape(-1, E)
        row_ids, grad_rows = embedding_grad_rows(
            ids, grad_out, self.table.shape[-2], ignore_id=self.ignore_id, backend=self.backend
        )
        self.steps_done += 1
        adadelta_rows_(
            self.table, grad_rows, row_ids, self.sq, self.acc, self.last_step, self.steps_done,
            lr=self.lr, rho=self.rho, eps=self.eps, backend=self.backend,
        )

    def flush(self) -> None:
        adadelta_rows_flush_(self.sq, self.acc, self.last_step, self.steps_done, rho=self.rho, backend=self.backend)

    def state_dict(self) -> dict:
        self.flush()
        return {"sq": self.sq.clone(), "acc": self.acc.clone(), "steps_done": self.steps_done}

    def load_state_dict(self, state: dict) -> None:
        self.sq.copy_(state["sq"])
        self.acc.copy_(state["acc"])
        self.steps_done = int(state["steps_done"])
        self.last_step.fill_(self.steps_done)


class FusedAdadelta(torch.optim.Optimizer):
    """Drop-in for ``torch.optim.Adadelta(params, lr, rho, eps)`` (no weight decay) using one fused pass.

    Parameters whose ``.grad`` is None are skipped, as in torch.optim. Defaults are the original work's.
    """

    def __init__(self, params, lr: float = DEFAULT_LR, rho: float = DEFAULT_RHO, eps: float = DEFAULT_EPS,
                 backend: str = "auto"):
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"FusedAdadelta: rho must be in [0, 1]; got {rho}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps))
        self.backend = backend

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            ps, gs, ss, as_ = [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("FusedAdadelta does not take sparse gradients; use LazyEmbeddingAdadelta")
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                    state["acc_delta"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                ps.append(p)
                gs.append(p.grad.contiguous())
                ss.append(state["square_avg"])
                as_.append(state["acc_delta"])
            if ps:
                c_ok = all(p.is_contiguous() for p in ps)
                backend = self.backend if c_ok or self.backend == "reference" else "reference"
                adadelta_(ps, gs, ss, as_, lr=group["lr"], rho=group["rho"], eps=group["eps"], backend=backend)
        return loss

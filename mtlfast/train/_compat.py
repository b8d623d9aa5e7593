"""The engine's kernels: ``mtlfast.ops.bilstm`` and the fused Adadelta ops of ``mtlfast.optim``.

Kept in one place so that the engine names exactly which implementation runs (shown in the sweep's banner).
Both packages fall back to their own pure-PyTorch references when ``mtlfast._C`` is missing.
"""

from __future__ import annotations

from mtlfast import _backend
from mtlfast.ops import bilstm  # noqa: F401
from mtlfast.optim import adadelta_, adadelta_rows_, embedding_grad_rows, has_fused_adadelta, slot_mask  # noqa: F401


def describe() -> str:
    c = "compiled mtlfast._C" if _backend.has_c() else "pure-PyTorch references (mtlfast._C not built)"
    opt = "fused" if has_fused_adadelta() else "reference"
    return f"kernels: {c}; Adadelta: {opt}"


def embedding_rows_update_(table, sq, acc, last_step, ids, grad_out, step, *, lr, rho, eps, force_generic=False):
    """Sparse embedding backward + lazy exact Adadelta for a model array's tables.

    table, sq, acc [K, V, E]; last_step int64 [K, V]; ids int64 [K, N] (-1 = ignore); grad_out [K, N, E];
    ``step`` the 1-based array step being applied. On CPU: the fused ops of ``mtlfast.optim``. Elsewhere (or
    ``force_generic``): the same arithmetic with device-generic torch ops (unique + index_add over the flat
    [K*V] rows; rho^k decay of rows untouched for k steps, as in ``mtlfast.optim.adadelta_rows_``).
    """
    import torch

    if table.device.type == "cpu" and not force_generic:
        V = table.shape[1]
        row_ids, grad_rows = embedding_grad_rows(ids, grad_out, V, ignore_id=-1)
        adadelta_rows_(table, grad_rows, row_ids, sq, acc, last_step, step, lr=lr, rho=rho, eps=eps)
        return
    K, V, E = table.shape
    keep = ids >= 0
    flat = (ids + torch.arange(K, device=ids.device)[:, None] * V)[keep]
    rows, inverse = torch.unique(flat, return_inverse=True)
    grad_rows = torch.zeros(rows.shape[0], E, dtype=grad_out.dtype, device=grad_out.device)
    grad_rows.index_add_(0, inverse, grad_out[keep])
    t2, s2, a2, l1 = table.view(K * V, E), sq.view(K * V, E), acc.view(K * V, E), last_step.view(K * V)
    missed = (step - 1 - l1[rows]).clamp_(min=0).to(torch.float64)
    factor = torch.pow(torch.full_like(missed, rho), missed).to(table.dtype)[:, None]
    s, a, p = s2[rows] * factor, a2[rows] * factor, t2[rows]
    s.mul_(rho).addcmul_(grad_rows, grad_rows, value=1 - rho)
    delta = a.add(eps).sqrt_().div_(s.add(eps).sqrt_()).mul_(grad_rows)
    a.mul_(rho).addcmul_(delta, delta, value=1 - rho)
    p.add_(delta, alpha=-lr)
    t2[rows], s2[rows], a2[rows] = p, s, a
    l1[rows] = step

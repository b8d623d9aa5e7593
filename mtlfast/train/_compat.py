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

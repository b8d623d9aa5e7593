"""Fused bidirectional LSTM over a model array: the autograd op and its pure-PyTorch reference.

Layout (docs/ARCHITECTURE.md): batch-first, model array leading, gate order i, f, g, o (as ``torch.nn.LSTM``),
direction 0 = forward in time, 1 = backward, one bias per direction (= ``b_ih + b_hh`` of ``torch.nn.LSTM``).

======== ================ ==============================================================
x        [K, B, T, E]     float32 (float64 for gradcheck)
lengths  [K, B]           integer, 1 <= lengths <= T, sequences right-padded
w_ih     [K, 2, 4H, E]
w_hh     [K, 2, 4H, H]
bias     [K, 2, 4H]
y        [K, B, T, 2H]    ``y[..., :H]`` forward states, ``y[..., H:]`` backward states, 0 where padded
======== ================ ==============================================================

Semantics equal ``torch.nn.LSTM(bidirectional=True)`` run on packed sequences: the backward direction starts
from a zero state at each sequence's own last token, so results never depend on how much padding follows.
"""

from __future__ import annotations

import torch

from mtlfast.ops import dispatch

__all__ = ["bilstm", "reference_bilstm", "PRECISIONS", "BACKENDS"]

PRECISIONS = ("fp32", "bf16")
BACKENDS = ("auto", "cpu", "cuda", "reference")


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _check_args(x, lengths, w_ih, w_hh, bias, precision, backend):
    """Validate shapes, dtypes and devices; return (K, B, T, E, H) and int64 lengths on x's device."""
    if precision not in PRECISIONS:
        raise ValueError(f"bilstm: precision must be one of {PRECISIONS}; got {precision!r}")
    if backend not in BACKENDS:
        raise ValueError(f"bilstm: backend must be one of {BACKENDS}; got {backend!r}")
    for name, t in (("x", x), ("lengths", lengths), ("w_ih", w_ih), ("w_hh", w_hh), ("bias", bias)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"bilstm: {name} must be a torch.Tensor; got {type(t).__name__}")
    if x.dim() != 4:
        raise ValueError(f"bilstm: x must have shape [K, B, T, E]; got {_shape(x)}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"bilstm: x must be float32 or float64; got {x.dtype}")
    if w_hh.dim() != 4:
        raise ValueError(f"bilstm: w_hh must have shape [K, 2, 4H, H]; got {_shape(w_hh)}")
    K, B, T, E = x.shape
    H = w_hh.shape[3]
    if min(K, B, T, E, H) < 1:
        raise ValueError(f"bilstm: K, B, T, E and H must all be >= 1; got x {_shape(x)}, w_hh {_shape(w_hh)}")
    expected = {
        "w_ih": ((K, 2, 4 * H, E), "[K, 2, 4H, E]"),
        "w_hh": ((K, 2, 4 * H, H), "[K, 2, 4H, H]"),
        "bias": ((K, 2, 4 * H), "[K, 2, 4H]"),
    }
    for name, t in (("w_ih", w_ih), ("w_hh", w_hh), ("bias", bias)):
        shape, doc = expected[name]
        if tuple(t.shape) != shape:
            raise ValueError(
                f"bilstm: {name} must have shape {doc} = {list(shape)} (K={K}, E={E}, H={H} from x and w_hh); "
                f"got {_shape(t)}"
            )
        if t.dtype != x.dtype:
            raise TypeError(f"bilstm: {name} must have the dtype of x ({x.dtype}); got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"bilstm: {name} must be on the device of x ({x.device}); got {t.device}")
    if tuple(lengths.shape) != (K, B):
        raise ValueError(f"bilstm: lengths must have shape [K, B] = [{K}, {B}]; got {_shape(lengths)}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"bilstm: lengths must be an integer tensor; got {lengths.dtype}")
    lengths = lengths.to(dtype=torch.int64)
    if lengths.device.type == "cpu":  # on a GPU the check would cost a device sync (and break graph capture)
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1 or hi > T:
            raise ValueError(f"bilstm: lengths must lie in [1, T] = [1, {T}]; got values in [{lo}, {hi}]")
    if precision == "bf16" and x.dtype != torch.float32:
        raise TypeError(f"bilstm: precision='bf16' needs float32 inputs (fp32 master weights); got {x.dtype}")
    return (K, B, T, E, H), lengths


def _round_bf16(t: torch.Tensor) -> torch.Tensor:
    """Values rounded to bfloat16, kept in t's dtype; gradient passes straight through."""
    return t + (t.to(torch.bfloat16).to(t.dtype) - t).detach()


def reference_bilstm(x, lengths, w_ih, w_hh, bias, *, precision="fp32", backend="reference"):
    """Pure-PyTorch bi-LSTM over a model array: the oracle of :func:`bilstm` and its fallback.

    Same signature and semantics as :func:`bilstm`; differentiable through ordinary autograd. A time loop
    over dense batched products, with masks for the ragged lengths: a row's state is held (forward direction,
    after its end) or kept at zero (backward direction, before its last token) where ``t >= length``.

    Parameters
    ----------
    x : Tensor [K, B, T, E]
    lengths : integer Tensor [K, B], values in [1, T]
    w_ih : Tensor [K, 2, 4H, E]
    w_hh : Tensor [K, 2, 4H, H]
    bias : Tensor [K, 2, 4H]
    precision : {"fp32", "bf16"}
        ``"bf16"`` rounds the operands of every matrix product to bfloat16 and accumulates in the input dtype.
    backend : str
        Ignored (accepted so both functions share one signature).

    Returns
    -------
    Tensor [K, B, T, 2H]
    """
    (K, B, T, E, H), lengths = _check_args(x, lengths, w_ih, w_hh, bias, precision, "auto")
    rnd = _round_bf16 if precision == "bf16" else (lambda t: t)
    xr, wih, whh = rnd(x), rnd(w_ih), rnd(w_hh)
    # Input projection of all timesteps at once: [K, 2, B, T, 4H].
    xproj = torch.einsum("kbte,kdge->kdbtg", xr, wih) + bias[:, :, None, None, :]
    mask = torch.arange(T, device=x.device)[None, None, :] < lengths.to(x.device)[:, :, None]  # [K, B, T]
    outs = []
    for d in (0, 1):
        h = x.new_zeros(K, B, H)
        c = x.new_zeros(K, B, H)
        ys = [None] * T
        whh_t = whh[:, d].transpose(1, 2)  # [K, H, 4H]
        for t in range(T) if d == 0 else range(T - 1, -1, -1):
            gates = xproj[:, d, :, t] + torch.bmm(rnd(h), whh_t)
            i, f, g, o = gates.chunk(4, dim=-1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            m = mask[:, :, t, None]
            h = torch.where(m, h_new, h)
            c = torch.where(m, c_new, c)
            ys[t] = torch.where(m, h_new, torch.zeros_like(h_new))
        outs.append(torch.stack(ys, dim=2))
    return torch.cat(outs, dim=-1)


class _BiLSTMCpu(torch.autograd.Function):
    """Autograd over the fused CPU kernels of ``mtlfast._C``."""

    @staticmethod
    def forward(ctx, x, lengths, w_ih, w_hh, bias, precision):
        C = dispatch.require_c()
        y, acts, cells = C.bilstm_forward(x, lengths, w_ih, w_hh, bias, precision)
        ctx.save_for_backward(x, lengths, w_ih, w_hh, y, acts, cells)
        ctx.precision = precision
        ctx.mark_non_differentiable()
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x, lengths, w_ih, w_hh, y, acts, cells = ctx.saved_tensors
        C = dispatch.require_c()
        dx, dw_ih, dw_hh, dbias = C.bilstm_backward(
            dy.contiguous(), x, lengths, w_ih, w_hh, y, acts, cells, ctx.precision
        )
        need = ctx.needs_input_grad
        return (
            dx if need[0] else None,
            None,
            dw_ih if need[2] else None,
            dw_hh if need[3] else None,
            dbias if need[4] else None,
            None,
        )


class _BiLSTMCuda(torch.autograd.Function):
    """Autograd over the CUDA kernels of ``mtlfast._C`` (csrc/cuda, built only with a CUDA torch and nvcc)."""

    @staticmethod
    def forward(ctx, x, lengths, w_ih, w_hh, bias, precision, training):
        C = dispatch.require_cuda()
        y, *saved = C.bilstm_forward_cuda(x, lengths, w_ih, w_hh, bias, precision, training)
        ctx.precision = precision
        ctx.save_for_backward(lengths, w_ih, w_hh, *saved)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        lengths, w_ih, w_hh, *saved = ctx.saved_tensors
        dx, dw_ih, dw_hh, dbias = dispatch.require_cuda().bilstm_backward_cuda(
            dy.contiguous(), lengths, w_ih, w_hh, *saved, ctx.precision
        )
        return dx, None, dw_ih, dw_hh, dbias, None, None


def bilstm(x, lengths, w_ih, w_hh, bias, *, precision="fp32", backend="auto"):
    """Bidirectional single-layer LSTM over a model array of K independent models, fused.

    Parameters
    ----------
    x : Tensor [K, B, T, E]
        Right-padded input sequences, float32 (float64 accepted, e.g. for gradcheck).
    lengths : integer Tensor [K, B]
        True lengths, ``1 <= lengths <= T``.
    w_ih : Tensor [K, 2, 4H, E]
        Input weights per model and direction (gate order i, f, g, o).
    w_hh : Tensor [K, 2, 4H, H]
        Recurrent weights.
    bias : Tensor [K, 2, 4H]
        One bias per direction (``b_ih + b_hh`` of ``torch.nn.LSTM``).
    precision : {"fp32", "bf16"}
        ``"bf16"``: operands of every matrix product rounded to bfloat16, products accumulated in fp32; cell
        state, gates and master weights stay fp32.
    backend : {"auto", "cpu", "cuda", "reference"}
        ``"auto"`` uses the compiled kernel of the tensors' device when ``mtlfast._C`` has it (CPU: always
        built; CUDA: float32 with a CUDA build), else the reference; ``"cpu"`` / ``"cuda"`` insist on that
        compiled kernel; ``"reference"`` is :func:`reference_bilstm`.

    Returns
    -------
    Tensor [K, B, T, 2H]
        Forward states in ``[..., :H]``, backward states in ``[..., H:]``, zero at padded positions.

    Raises
    ------
    ValueError, TypeError
        On a wrong shape, dtype or device, naming the argument, the expected and the received shape.
    """
    _, lengths = _check_args(x, lengths, w_ih, w_hh, bias, precision, backend)
    if backend == "reference":
        return reference_bilstm(x, lengths, w_ih, w_hh, bias, precision=precision)
    on_cpu, on_cuda = x.device.type == "cpu", x.device.type == "cuda"
    if backend == "cpu":
        if not on_cpu:
            raise ValueError(f"bilstm: backend='cpu' needs CPU tensors; got x on {x.device}")
        dispatch.require_c()
    elif backend == "cuda":
        if not on_cuda or x.dtype != torch.float32:
            raise ValueError(f"bilstm: backend='cuda' needs float32 CUDA tensors; got x {x.dtype} on {x.device}")
        dispatch.require_cuda()
    elif on_cuda and x.dtype == torch.float32 and dispatch.has_cuda_kernels():
        backend = "cuda"
    elif not (on_cpu and dispatch.has_c()):
        return reference_bilstm(x, lengths, w_ih, w_hh, bias, precision=precision)
    if backend == "cuda":
        training = torch.is_grad_enabled() and any(t.requires_grad for t in (x, w_ih, w_hh, bias))
        return _BiLSTMCuda.apply(x, lengths.to(x.device), w_ih, w_hh, bias, precision, training)
    return _BiLSTMCpu.apply(x, lengths.cpu(), w_ih, w_hh, bias, precision)

"""The per-run parts of a model array's training step, each as one call over all K runs.

- :func:`heads_step_`: each run's drawn head, mean token cross-entropy and that head's Adadelta update, ragged
  by label count (run k uses head slot ``slots[k]`` and its first ``n_lab[k]`` labels), returning the K
  losses (a tensor, not read back) and the gradient of the bi-LSTM output.
- :func:`make_batches`: the K runs' sampled sentences as one padded ``[K, B, T]`` batch.
- :func:`dropout_masks`: counter-based dropout keyed by (run seed, run step, position), so that a run's mask is
  the same alone, in any array and after a resume.

Each has a pure-PyTorch ``reference_*`` twin (device-generic: the path off the CPU, the fallback without
``mtlfast._C``, and the test oracle); the compiled ops are in ``csrc/cpu/heads_cpu.cpp``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mtlfast.ops.adadelta import DEFAULT_EPS, DEFAULT_LR, DEFAULT_RHO, reference_adadelta_
from mtlfast.ops.dispatch import _C

__all__ = [
    "heads_step_",
    "reference_heads_step_",
    "batched_heads_step_",
    "make_batches",
    "reference_make_batches",
    "dropout_masks",
    "reference_dropout_masks",
    "dropout_threshold",
]

PAD_TAG = -100


def _has(name: str) -> bool:
    return _C is not None and hasattr(_C, name)


def _backend(backend: str, op: str) -> None:
    if backend not in ("auto", "c", "reference"):
        raise ValueError(f"{op}: backend must be 'auto', 'c' or 'reference'; got {backend!r}")
    if backend == "c" and not _has(op):
        raise RuntimeError(f"{op}: mtlfast._C is missing or lacks this op; rebuild it "
                           "(python setup.py build_ext --inplace)")


def _ints(x) -> list[int]:
    if isinstance(x, torch.Tensor):
        return [int(v) for v in x.tolist()]
    return [int(v) for v in np.asarray(x).reshape(-1)]


def _int64_cpu(x) -> torch.Tensor:
    """A CPU int64 tensor [K] of ``x`` (tensor, array or list), without a copy where none is needed."""
    if isinstance(x, torch.Tensor):
        return x.to("cpu", torch.int64).contiguous()
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).reshape(-1), dtype=np.int64))


# ---------------------------------------------------------------------------------------------------------
# Heads


HEAD_PRECISIONS = ("fp32", "bf16")


def _check_precision(precision: str) -> None:
    if precision not in HEAD_PRECISIONS:
        raise ValueError(f"heads_step_: precision must be one of {HEAD_PRECISIONS}; got {precision!r}")


def _round_bf16(t: torch.Tensor) -> torch.Tensor:
    """``t`` rounded to bfloat16 (nearest even), held in its own dtype."""
    return t.to(torch.bfloat16).to(t.dtype)


@torch.no_grad()
def reference_heads_step_(y, head_w, head_b, w_sq, b_sq, w_acc, b_acc, slots, n_lab, tags, *, positions: int = 0,
                          ignore_tag: int = PAD_TAG, lr: float = DEFAULT_LR, rho: float = DEFAULT_RHO,
                          eps: float = DEFAULT_EPS, precision: str = "fp32"):
    """Pure-PyTorch :func:`heads_step_` (same arguments and result): one run after the other, on any device.
    ``precision="bf16"`` rounds the three products' operands (y, W, dlogits) to bfloat16 and multiplies them in
    float32 (products of bf16 values are exact in float32: a bf16 product with float32 accumulation)."""
    _check_precision(precision)
    rnd = _round_bf16 if precision == "bf16" else (lambda t: t)
    K = y.shape[0]
    dy = torch.zeros_like(y)
    losses = torch.zeros(K, dtype=y.dtype, device=y.device)
    valid = tags != ignore_tag
    for k, (s, n) in enumerate(zip(_ints(slots), _ints(n_lab))):
        mask = valid[k]
        yk = y[k][mask]  # [N, 2H]
        N = yk.shape[0]
        if N == 0 and positions == 0:
            continue
        w, b = head_w[k, s, :n], head_b[k, s, :n]
        yr, wr = rnd(yk), rnd(w)
        logp = torch.log_softmax(torch.addmm(b, yr, wr.t()), dim=1)
        tk = tags[k][mask]
        rows = torch.arange(N, device=y.device)
        denom = positions if positions else N
        loss = -logp[rows, tk].sum()
        d = logp.exp_()
        d[rows, tk] -= 1.0
        d.mul_(1.0 / denom)
        db = d.sum(dim=0)
        if positions:
            P = positions - N
            if P < 0:
                raise ValueError(f"heads_step_: original loss over {positions} positions, but run {k}'s batch "
                                 f"holds {N} real tokens")
            lb = torch.log_softmax(b, dim=0)
            loss = loss - P * lb[0]
            pb = lb.exp()
            pb[0] -= 1.0
            db += pb * (P / denom)
        losses[k] = loss / denom
        dr = rnd(d)
        g_w = dr.t() @ yr
        dy[k][mask] = dr @ wr
        reference_adadelta_([w, b], [g_w, db], [w_sq[k, s, :n], b_sq[k, s, :n]], [w_acc[k, s, :n], b_acc[k, s, :n]],
                            lr=lr, rho=rho, eps=eps)
    return losses, dy


@torch.no_grad()
def batched_heads_step_(y, head_w, head_b, w_sq, b_sq, w_acc, b_acc, slots, n_lab, tags, *, positions: int = 0,
                        ignore_tag: int = PAD_TAG, lr: float = DEFAULT_LR, rho: float = DEFAULT_RHO,
                        eps: float = DEFAULT_EPS, precision: str = "fp32"):
    """Device-generic :func:`heads_step_` for all K runs at once (the path on a GPU): the same arithmetic as
    :func:`reference_heads_step_` as batched products over the runs' drawn heads padded to L labels (labels
    ``>= n_lab[k]`` masked out of the softmax and out of the update), a fixed number of device ops per call
    and no host synchronisation. With ``positions`` > 0 every run's batch must hold at most ``positions`` real
    tokens (the engine's batches always do: B sentences cut to max_len); this path does not check it, which
    would cost a synchronisation."""
    _check_precision(precision)
    rnd = _round_bf16 if precision == "bf16" else (lambda t: t)
    K, B, T, D = y.shape
    L = head_w.shape[2]
    dev = y.device
    ar = torch.arange(K, device=dev)
    slots_t = torch.as_tensor(slots, dtype=torch.int64).to(dev)
    n_t = torch.as_tensor(n_lab, dtype=torch.int64).to(dev)
    lab_ok = torch.arange(L, device=dev)[None, :] < n_t[:, None]  # [K, L]
    w, b = head_w[ar, slots_t], head_b[ar, slots_t]  # [K, L, D], [K, L] (copies)
    valid = (tags != ignore_tag).reshape(K, B * T)
    tg = torch.where(valid, tags.reshape(K, B * T), torch.zeros_like(valid, dtype=torch.int64))
    yr, wr = rnd(y.reshape(K, B * T, D)), rnd(w)
    neg = torch.tensor(float("-inf"), dtype=y.dtype, device=dev)
    logits = torch.baddbmm(b[:, None, :], yr, wr.transpose(1, 2))
    logp = torch.log_softmax(torch.where(lab_ok[:, None, :], logits, neg), dim=2)  # [K, N, L]
    vf = valid.to(y.dtype)
    n_real = vf.sum(1)  # [K]
    denom = torch.full_like(n_real, float(positions)) if positions else n_real.clamp(min=1.0)
    inv = 1.0 / denom
    loss = -(logp.gather(2, tg[..., None])[..., 0] * vf).sum(1)
    d = logp.exp()
    d.scatter_add_(2, tg[..., None], -vf[..., None])
    d.mul_((vf * inv[:, None])[..., None])  # 0 at padding
    db = d.sum(1)  # [K, L]
    move = lab_ok
    if positions:
        P = positions - n_real
        lb = torch.log_softmax(torch.where(lab_ok, b, neg), dim=1)
        loss = loss - P * lb[:, 0]
        pb = lb.exp()
        pb[:, 0] -= 1.0
        db = db + pb * (P * inv)[:, None]
    else:  # a run without real tokens: loss 0 and its head does not move
        move = lab_ok & (n_real > 0)[:, None]
    losses = loss * inv
    dr = rnd(d)
    g_w = torch.bmm(dr.transpose(1, 2), yr)  # [K, L, D]
    dy = torch.bmm(dr, wr).reshape(K, B, T, D)
    # Adadelta on the drawn slots (gathered copies), kept for rows < n_lab only: a select, not reference_adadelta_'s
    # boolean mask, which would synchronise with the host
    for p, g, sq, acc, m, full in ((w, g_w, w_sq, w_acc, move[..., None], head_w), (b, db, b_sq, b_acc, move, head_b)):
        s_old, a_old = sq[ar, slots_t], acc[ar, slots_t]
        p_new, s_new, a_new = p.clone(), s_old.clone(), a_old.clone()
        reference_adadelta_(p_new, g, s_new, a_new, lr=lr, rho=rho, eps=eps)
        full[ar, slots_t] = torch.where(m, p_new, p)
        sq[ar, slots_t] = torch.where(m, s_new, s_old)
        acc[ar, slots_t] = torch.where(m, a_new, a_old)
    return losses, dy


def heads_step_(y, head_w, head_b, w_sq, b_sq, w_acc, b_acc, slots, n_lab, tags, *, positions: int = 0,
                ignore_tag: int = PAD_TAG, lr: float = DEFAULT_LR, rho: float = DEFAULT_RHO,
                eps: float = DEFAULT_EPS, precision: str = "fp32", backend: str = "auto"):
    """Heads, cross-entropy and the drawn heads' Adadelta update of K runs in one call (in place on the heads).

    Parameters
    ----------
    y : Tensor [K, B, T, D]
        The bi-LSTM's output (after dropout), without autograd history (``y.detach()``).
    head_w, w_sq, w_acc : Tensor [K, S, L, D]; head_b, b_sq, b_acc : Tensor [K, S, L]
        Heads and their Adadelta state; only rows ``:n_lab[k]`` of slot ``slots[k]`` of run k move.
    slots, n_lab : int [K] (tensor, array or list)
        Each run's drawn head slot and its task's label count (ragged: runs differ).
    tags : int64 Tensor [K, B, T]
        Targets, ``ignore_tag`` at padding; each real tag in ``[0, n_lab[k])``.
    positions : int
        0: each run's loss is the mean over its real tokens. > 0 (the original protocol): the mean over
        ``positions`` positions (batch x max_len), the ``positions - N`` beyond the real tokens having output 0
        and target 0, which adds ``-(P/positions) log softmax(b)[0]`` to the loss and a closed-form term to the
        bias gradient only.
    lr, rho, eps : the Adadelta settings.
    backend : {"auto", "c", "batched", "reference"}
        "auto": the compiled op for CPU float32 tensors, :func:`batched_heads_step_` elsewhere (a GPU);
        "reference": :func:`reference_heads_step_` (one run after the other).
    precision : {"fp32", "bf16"}
        "bf16": the three products (logits, the weight gradient, dy) take bfloat16 operands (y, W and the logits'
        gradient rounded to nearest even) with float32 accumulation; softmax, loss, bias gradient and Adadelta
        stay float32 on the float32 weights. The compiled op runs them natively on CPUs with AVX512-BF16 (the
        avx512_bf16 kernel build active) and in float32 elsewhere; the reference (other devices) rounds the
        operands and multiplies in float32.

    Returns
    -------
    losses : Tensor [K] (y's dtype and device; 0 for a run without real tokens and ``positions == 0``, whose
        head then does not move)
    dy : Tensor like y, the gradient of the mean loss of each run with respect to y (0 at padding).
    """
    args = (y, head_w, head_b, w_sq, b_sq, w_acc, b_acc, slots, n_lab, tags)
    kw = dict(positions=positions, ignore_tag=ignore_tag, lr=lr, rho=rho, eps=eps, precision=precision)
    if backend == "batched":
        return batched_heads_step_(*args, **kw)
    _backend(backend, "heads_step_")
    _check_precision(precision)
    tensors = [y, head_w, head_b, w_sq, b_sq, w_acc, b_acc]
    ok = (_has("heads_step_") and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
          and all(t.is_contiguous() for t in tensors[1:]) and tags.device.type == "cpu")
    if backend == "c" and not ok:
        raise ValueError("heads_step_: backend='c' needs CPU float32 tensors (heads and state contiguous)")
    if backend == "reference":
        return reference_heads_step_(*args, **kw)
    if not ok:  # another device (a GPU): all runs at once
        return batched_heads_step_(*args, **kw)
    return _C.heads_step_(y, head_w, head_b, w_sq, b_sq, w_acc, b_acc, _int64_cpu(slots), _int64_cpu(n_lab),
                          tags.to(torch.int64),
                          int(positions), int(ignore_tag), float(lr), float(rho), float(eps), precision)


# ---------------------------------------------------------------------------------------------------------
# Batches


def reference_make_batches(tokens: Sequence, tags: Sequence, offsets: Sequence, idx, max_len: int,
                           pad_tag: int = PAD_TAG):
    """Pure-NumPy/PyTorch :func:`make_batches` (same arguments and result)."""
    idx = np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx, dtype=np.int64)
    K, B = idx.shape
    starts, lens = [], []
    for k in range(K):
        off = np.asarray(offsets[k])
        n = len(off) - 1
        if idx[k].size and (idx[k].min() < 0 or idx[k].max() >= n):
            raise IndexError(f"make_batches: run {k}'s sentence indices must be in [0, {n}); got "
                             f"{idx[k].min()} .. {idx[k].max()}")
        starts.append(off[idx[k]])
        ln = off[idx[k] + 1] - off[idx[k]]
        lens.append(np.minimum(ln, max_len) if max_len > 0 else ln)
    lengths = np.stack(lens).astype(np.int64) if K else np.zeros((0, B), np.int64)
    T = int(lengths.max()) if lengths.size else 0
    out_tok = np.zeros((K, B, T), dtype=np.int64)
    out_tag = np.full((K, B, T), pad_tag, dtype=np.int64)
    pos = np.arange(T)
    for k in range(K):
        inside = pos[None, :] < lengths[k][:, None]
        flat = (starts[k][:, None] + pos[None, :])[inside]
        out_tok[k][inside] = np.asarray(tokens[k])[flat]
        out_tag[k][inside] = np.asarray(tags[k])[flat]
    return torch.from_numpy(out_tok), torch.from_numpy(out_tag), torch.from_numpy(lengths)


def make_batches(tokens: Sequence, tags: Sequence, offsets: Sequence, idx, max_len: int, pad_tag: int = PAD_TAG,
                 backend: str = "auto"):
    """One padded batch of K runs' sampled sentences.

    ``tokens[k]``, ``tags[k]``: int32 [n_tok] of run k's split (CPU tensors; ``torch.from_numpy`` of an encoded
    split's arrays, made once per run), ``offsets[k]`` int64 [n + 1]; ``idx`` int64 [K, B] each run's sentence
    indices; sentences cut to ``max_len`` tokens (<= 0: no cut). Returns CPU int64 tensors ``tokens [K, B, T]``
    (0 at padding), ``tags [K, B, T]`` (``pad_tag`` at padding), ``lengths [K, B]``; T = the longest sentence
    of all runs."""
    _backend(backend, "gather_batches")
    idx_t = torch.as_tensor(idx, dtype=torch.int64)
    ok = (_has("gather_batches") and all(isinstance(t, torch.Tensor) for t in (*tokens, *tags, *offsets)))
    if backend == "c" and not ok:
        raise ValueError("make_batches: backend='c' needs torch tensors for tokens, tags and offsets")
    if backend == "reference" or not ok:
        return reference_make_batches(tokens, tags, offsets, idx_t, max_len, pad_tag)
    return _C.gather_batches(list(tokens), list(tags), list(offsets), idx_t, int(max_len), int(pad_tag))


# ---------------------------------------------------------------------------------------------------------
# Counter-based dropout

_M32 = 0xFFFFFFFF


def _mul32(x, c: int):
    """(x * c) mod 2^32 for 32-bit x (ints or int64 tensors) without leaving int64: two 16-bit halves of c."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def _mix32(x):
    """Wellons' lowbias32, as ``mix32`` in csrc/cpu/heads_cpu.cpp (Python ints or int64 tensors)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _dropout_key(seed: int, step: int) -> tuple[int, int]:
    seed, step = int(seed) & 0xFFFFFFFFFFFFFFFF, int(step) & 0xFFFFFFFFFFFFFFFF
    a = _mix32((seed & _M32) ^ _mix32((seed >> 32) ^ 0x9E3779B9))
    k1 = _mix32(a ^ _mix32((step & _M32) ^ _mix32((step >> 32) ^ 0x85EBCA6B)))
    return k1, _mix32(k1 ^ 0xC2B2AE35)


def dropout_threshold(p: float) -> int:
    """The 24-bit threshold of drop probability ``p``: an element is kept when its 24 random bits are >= it,
    so the keep rate is ``1 - threshold / 2^24`` (``1 - p`` within 3e-8)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must lie in [0, 1); got {p}")
    return int(round(p * (1 << 24)))


def reference_dropout_masks(seeds, steps, B: int, T: int, D: int, max_len: int, p: float, device="cpu"):
    """Pure-PyTorch :func:`dropout_masks` (same arguments and result, bit for bit), on any device."""
    seeds, steps = _ints(seeds), _ints(steps)
    if T > max_len:
        raise ValueError(f"dropout_masks: T = {T} exceeds max_len = {max_len} (the counter's time extent)")
    thr = dropout_threshold(p)
    scale = 1.0 / (1.0 - p)
    keys = torch.tensor([_dropout_key(s, t) for s, t in zip(seeds, steps)], dtype=torch.int64,
                        device=device).reshape(len(seeds), 2)
    pos = ((torch.arange(B, device=device)[:, None, None] * max_len + torch.arange(T, device=device)[None, :, None])
           * D + torch.arange(D, device=device)[None, None, :])  # [B, T, D]
    k1 = keys[:, 0].view(-1, 1, 1, 1)
    k2 = keys[:, 1].view(-1, 1, 1, 1)
    bits = _mix32(_mix32((pos[None] + k1) & _M32) ^ k2)
    keep = (bits >> 8) >= thr
    return keep.to(torch.float32) * torch.tensor(scale, dtype=torch.float32, device=device)


def dropout_masks(seeds, steps, B: int, T: int, D: int, max_len: int, p: float, device="cpu",
                  backend: str = "auto") -> torch.Tensor:
    """Dropout scales float32 ``[K, B, T, D]`` of K runs: ``1 / (1 - p)`` where kept, 0 where dropped.

    Element ``(b, t, j)`` of run k is a hash of ``(seeds[k], steps[k], (b * max_len + t) * D + j)`` (counter
    based, no generator state): a run's mask at a step depends on nothing else, so it is the same alone, in
    any array (whatever T the array pads to) and after a resume. ``seeds``, ``steps``: int [K]; ``T <=
    max_len``; ``device``: where the mask is made (the compiled op on the CPU, the reference elsewhere)."""
    _backend(backend, "dropout_masks")
    dev = torch.device(device)
    ok = _has("dropout_masks") and dev.type == "cpu"
    if backend == "c" and not ok:
        raise ValueError("dropout_masks: backend='c' makes masks on the CPU only")
    if backend == "reference" or not ok:
        return reference_dropout_masks(seeds, steps, B, T, D, max_len, p, dev)
    return _C.dropout_masks(_int64_cpu(seeds), _int64_cpu(steps), int(B), int(T), int(D), int(max_len), dropout_threshold(p),
                            1.0 / (1.0 - p))

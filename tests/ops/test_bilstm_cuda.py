"""CUDA kernels of mtlfast (csrc/cuda) against independent oracles, on a GPU.

Every test here is skipped unless ``torch.cuda.is_available()`` and ``mtlfast._C`` was built with its CUDA
sources (``_C.WITH_CUDA``). The ops are called directly (``_C.bilstm_forward_cuda`` / ``_C.bilstm_backward_cuda``
through a small autograd Function below), so the kernels are tested independently of how ``mtlfast.ops`` wires
them.

Oracles: ``torch.nn.LSTM(bidirectional=True)`` on packed sequences (cuDNN, one model of the array at a time),
``mtlfast.ops.reference_bilstm`` in float64, and for the optimiser ``mtlfast.ops``' references.

Tolerances, precision "fp32" (3xTF32 tensor-core recurrence, fp32 state and GEMMs, exp/tanh accurate to ~1e-6):
every element within ``RTOL * (|expected| + max|expected|)`` of the float64 answer with ``RTOL = 1e-4`` for the
output and ``2e-4`` for gradients (a 10-20x margin over the 1e-5 of the CPU kernel, for the tf32 split's
~2^-21 residue, ex2.approx and cuBLAS's summation order over B*T rows). Against cuDNN (which itself runs fp32
here) the same bounds. Precision "bf16": flash-attention's rule: the kernel's error against float64 is at most
twice the error of PyTorch's own bf16 computation (``reference_bilstm(precision="bf16")``) plus 1e-3 of the
tensor's scale.
"""

from __future__ import annotations

import pytest
import torch

from mtlfast.ops import dispatch

CUDA_OK = torch.cuda.is_available() and dispatch.has_cuda_kernels()
REASON = (
    "no CUDA device" if not torch.cuda.is_available()
    else "mtlfast._C was built without CUDA kernels (needs a CUDA build of torch and nvcc at build time)"
)
pytestmark = pytest.mark.skipif(not CUDA_OK, reason=REASON)

RTOL_Y = 1e-4
RTOL_GRAD = 2e-4
DEV = "cuda"


def _C():
    return dispatch.require_cuda()


def _reference_bilstm():
    try:
        from mtlfast.ops import reference_bilstm
    except Exception as exc:  # pragma: no cover - depends on what is merged
        pytest.skip(f"mtlfast.ops.reference_bilstm unavailable: {exc}")
    return reference_bilstm


class FusedCuda(torch.autograd.Function):
    """The CUDA ops as an autograd Function (what mtlfast.ops does, kept local so the kernels are tested alone)."""

    @staticmethod
    def forward(ctx, x, lengths, w_ih, w_hh, bias, precision):
        y, *saved = _C().bilstm_forward_cuda(x, lengths, w_ih, w_hh, bias, precision, True)
        ctx.precision = precision
        ctx.save_for_backward(lengths, w_ih, w_hh, *saved)
        return y

    @staticmethod
    def backward(ctx, dy):
        lengths, w_ih, w_hh, *saved = ctx.saved_tensors
        dx, dw_ih, dw_hh, dbias = _C().bilstm_backward_cuda(dy.contiguous(), lengths, w_ih, w_hh, *saved,
                                                            ctx.precision)
        return dx, None, dw_ih, dw_hh, dbias, None


def fused(x, lengths, w_ih, w_hh, bias, precision="fp32"):
    return FusedCuda.apply(x, lengths, w_ih, w_hh, bias, precision)


# ---- problems and oracles -------------------------------------------------------------------------------------

def make_problem(K, B, T, E, H, seed=0, weight_scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (K, B), generator=gen)
    lengths[:, 0] = 1
    if B > 1:
        lengths[:, 1] = T
    bound = 1.0 / H ** 0.5
    x = torch.randn(K, B, T, E, generator=gen)  # padded positions hold garbage on purpose
    w_ih = (torch.rand(K, 2, 4 * H, E, generator=gen) * 2 - 1) * bound * weight_scale
    w_hh = (torch.rand(K, 2, 4 * H, H, generator=gen) * 2 - 1) * bound * 2 * weight_scale
    bias = (torch.rand(K, 2, 4 * H, generator=gen) * 2 - 1) * bound
    dy = torch.randn(K, B, T, 2 * H, generator=gen)
    return [t.to(DEV) for t in (x, lengths, w_ih, w_hh, bias, dy)]


def run(fn, x, lengths, w_ih, w_hh, bias, dy, dtype=None, **kw):
    """Output and gradients of sum(y * dy) w.r.t. x, w_ih, w_hh, bias."""
    dtype = dtype or x.dtype
    leaves = [t.detach().to(dtype).clone().requires_grad_(True) for t in (x, w_ih, w_hh, bias)]
    y = fn(leaves[0], lengths, *leaves[1:], **kw)
    (y * dy.to(y.dtype)).sum().backward()
    return [y.detach()] + [t.grad for t in leaves]


def torch_lstm(x, lengths, w_ih, w_hh, bias, dy):
    """nn.LSTM(bidirectional=True) on packed sequences (cuDNN), one model at a time; array layout out."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    K, B, T, E = x.shape
    H = w_hh.shape[-1]
    outs = [[] for _ in range(5)]
    for k in range(K):
        lstm = torch.nn.LSTM(E, H, batch_first=True, bidirectional=True).to(x.device)
        with torch.no_grad():
            for d, sfx in enumerate(("", "_reverse")):
                getattr(lstm, f"weight_ih_l0{sfx}").copy_(w_ih[k, d])
                getattr(lstm, f"weight_hh_l0{sfx}").copy_(w_hh[k, d])
                getattr(lstm, f"bias_ih_l0{sfx}").copy_(bias[k, d])
                getattr(lstm, f"bias_hh_l0{sfx}").zero_()
        xk = x[k].detach().clone().requires_grad_(True)
        packed = pack_padded_sequence(xk, lengths[k].cpu(), batch_first=True, enforce_sorted=False)
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # full fp32, not cuDNN's TF32 default
            yk, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=T)
            (yk * dy[k]).sum().backward()
        grads = [xk.grad]
        for name in ("weight_ih", "weight_hh", "bias_ih"):
            grads.append(torch.stack([getattr(lstm, f"{name}_l0{s}").grad for s in ("", "_reverse")]))
        for lst, t in zip(outs, [yk.detach()] + grads):
            lst.append(t)
    return [torch.stack(o) for o in outs]


def assert_close_scaled(actual, expected, rtol, what):
    expected = expected.to(actual.dtype)
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale, msg=lambda m: f"{what}: {m}")


NAMES = ("y", "dx", "dw_ih", "dw_hh", "dbias")

# (K, B, T, E, H): batch 1, length 1, ragged, several K, H not a multiple of 16, B not a multiple of 16/32
# (16-row blocks), the paper's shape, and H = 300 (W_hh read through L2 instead of shared memory).
GRID = [
    (1, 1, 1, 3, 4),
    (1, 3, 5, 4, 6),
    (2, 5, 7, 8, 16),
    (3, 17, 9, 10, 20),
    (2, 33, 6, 12, 33),
    (4, 32, 30, 50, 100),
    (2, 8, 5, 16, 300),
]


@pytest.mark.parametrize("K,B,T,E,H", GRID, ids=[f"K{k}-B{b}-T{t}-E{e}-H{h}" for k, b, t, e, h in GRID])
def test_fp32_matches_reference_and_cudnn(K, B, T, E, H):
    x, lengths, w_ih, w_hh, bias, dy = make_problem(K, B, T, E, H)
    got = run(fused, x, lengths, w_ih, w_hh, bias, dy)
    ref = run(_reference_bilstm(), x, lengths, w_ih, w_hh, bias, dy, dtype=torch.float64)
    cudnn = torch_lstm(x, lengths, w_ih, w_hh, bias, dy)
    for name, a, r, c in zip(NAMES, got, ref, cudnn):
        rtol = RTOL_Y if name == "y" else RTOL_GRAD
        assert_close_scaled(a, r, rtol, f"{name} vs reference_bilstm (float64)")
        assert_close_scaled(a, c, rtol, f"{name} vs torch.nn.LSTM (cuDNN)")


def test_padded_positions_are_zero_and_get_no_gradient():
    x, lengths, w_ih, w_hh, bias, dy = make_problem(3, 9, 8, 6, 10)
    y, dx, *_ = run(fused, x, lengths, w_ih, w_hh, bias, dy)
    pad = torch.arange(8, device=DEV)[None, None, :] >= lengths[:, :, None]
    assert y[pad].abs().max().item() == 0.0
    assert dx[pad].abs().max().item() == 0.0


def test_padding_length_does_not_matter():
    x, lengths, w_ih, w_hh, bias, dy = make_problem(2, 6, 5, 4, 12)
    longer = torch.cat([x, torch.randn(2, 6, 4, 4, device=DEV) * 100], 2)
    dy_longer = torch.cat([dy, torch.randn(2, 6, 4, 24, device=DEV)], 2)
    a = run(fused, x, lengths, w_ih, w_hh, bias, dy)
    b = run(fused, longer, lengths, w_ih, w_hh, bias, dy_longer)
    assert_close_scaled(b[0][:, :, :5], a[0], 1e-5, "y")
    assert_close_scaled(b[1][:, :, :5], a[1], 1e-5, "dx")
    for name, ga, gb in zip(NAMES[2:], a[2:], b[2:]):
        assert_close_scaled(gb, ga, 1e-5, name)


def test_model_array_equals_separate_calls():
    x, lengths, w_ih, w_hh, bias, dy = make_problem(3, 7, 6, 5, 18)
    whole = run(fused, x, lengths, w_ih, w_hh, bias, dy)
    for k in range(3):
        one = run(fused, *(t[k:k + 1] for t in (x, lengths, w_ih, w_hh, bias, dy)))
        for name, a, b in zip(NAMES, whole, one):
            assert_close_scaled(a[k:k + 1], b, 1e-5, f"{name}[k={k}]")


def test_inference_mode_returns_same_output_and_saves_nothing():
    x, lengths, w_ih, w_hh, bias, _ = make_problem(2, 32, 10, 8, 100)
    c = _C()
    y_train, *saved = c.bilstm_forward_cuda(x, lengths, w_ih, w_hh, bias, "fp32", True)
    y_eval, *empty = c.bilstm_forward_cuda(x, lengths, w_ih, w_hh, bias, "fp32", False)
    torch.testing.assert_close(y_eval, y_train, rtol=0, atol=0)
    assert all(t.numel() > 0 for t in saved) and all(t.numel() == 0 for t in empty)


def test_bf16_error_within_twice_pytorch_bf16():
    ref = _reference_bilstm()
    x, lengths, w_ih, w_hh, bias, dy = make_problem(2, 32, 12, 50, 100, seed=3)
    exact = run(ref, x, lengths, w_ih, w_hh, bias, dy, dtype=torch.float64)
    torch_bf16 = run(ref, x, lengths, w_ih, w_hh, bias, dy, precision="bf16")
    ours = run(fused, x, lengths, w_ih, w_hh, bias, dy, precision="bf16")
    for name, e, t, o in zip(NAMES, exact, torch_bf16, ours):
        scale = e.abs().max().item()
        err_torch = (t.double() - e).abs().max().item()
        err_ours = (o.double() - e).abs().max().item()
        assert err_ours <= 2 * err_torch + 1e-3 * scale, f"{name}: ours {err_ours:.3g}, PyTorch bf16 {err_torch:.3g}"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_plan_keeps_weights_on_chip_for_the_paper_shape(precision):
    plan = _C().bilstm_cuda_plan(55, 32, 100, precision, True)
    assert plan["fits"] and plan["blocks"] > 0 and plan["smem_bytes"] <= plan["device_smem_optin"]
    # bf16 W_hh (448 x 112 x 2 B) fits from 180 KB (A100: 16-row blocks); fp32 (448 x 104 x 4 B) needs H100's 227 KB.
    need = 180 * 1024 if precision == "bf16" else 227 * 1024
    if plan["device_smem_optin"] >= need:
        assert plan["weights_on_chip"], plan


@pytest.mark.parametrize("placement", ["smem", "l2"])
def test_forced_weight_placement_gives_same_result(monkeypatch, placement):
    x, lengths, w_ih, w_hh, bias, dy = make_problem(3, 32, 8, 20, 100, seed=4)
    auto = run(fused, x, lengths, w_ih, w_hh, bias, dy)
    monkeypatch.setenv("MTLFAST_CUDA_WHH", placement)
    if not _C().bilstm_cuda_plan(3, 32, 100, "fp32", True)["fits"]:
        pytest.skip(f"W_hh does not fit in shared memory on {torch.cuda.get_device_name()}")
    forced = run(fused, x, lengths, w_ih, w_hh, bias, dy)
    for name, a, b in zip(NAMES, forced, auto):
        assert_close_scaled(a, b, 1e-5, f"{name} with W_hh in {placement}")


def test_errors_name_the_argument():
    x, lengths, w_ih, w_hh, bias, _ = make_problem(2, 3, 4, 5, 6)
    c = _C()
    with pytest.raises(RuntimeError, match=r"w_hh must have shape \[K, 2, 4H, H\]"):
        c.bilstm_forward_cuda(x, lengths, w_ih, w_hh[:, :, :-1], bias, "fp32", True)
    with pytest.raises(RuntimeError, match=r"lengths must be"):
        c.bilstm_forward_cuda(x, lengths.int(), w_ih, w_hh, bias, "fp32", True)
    with pytest.raises(RuntimeError, match=r"x must be Float.*reference"):
        c.bilstm_forward_cuda(x.double(), lengths, w_ih, w_hh, bias, "fp32", True)
    with pytest.raises(RuntimeError, match=r"precision must be 'fp32' or 'bf16'"):
        c.bilstm_forward_cuda(x, lengths, w_ih, w_hh, bias, "fp16", True)
    y, *saved = c.bilstm_forward_cuda(x, lengths, w_ih, w_hh, bias, "fp32", False)
    with pytest.raises(RuntimeError, match=r"training=False"):
        c.bilstm_backward_cuda(torch.zeros_like(y), lengths, w_ih, w_hh, *saved, "fp32")


# ---- Adadelta ---------------------------------------------------------------------------------------------------

def _optim():
    try:
        from mtlfast.ops import adadelta as optim
    except Exception as exc:  # pragma: no cover
        pytest.skip(f"mtlfast.ops.adadelta unavailable: {exc}")
    return optim


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adadelta_dense_and_masked_match_reference(dtype):
    optim = _optim()
    gen = torch.Generator().manual_seed(1)
    shapes = [(3, 40, 7), (3, 4, 5, 6), (1000,)]
    masks = [torch.tensor([True, False, True]), torch.tensor([[True, False, True, True]] * 3), None]
    state = {}
    for which in ("ours", "ref"):
        torch.manual_seed(0)
        ps = [torch.randn(s, generator=gen.manual_seed(i), dtype=dtype).to(DEV) for i, s in enumerate(shapes)]
        sq = [torch.zeros_like(p) for p in ps]
        acc = [torch.zeros_like(p) for p in ps]
        ms = [m.to(DEV) if m is not None else None for m in masks]
        for step in range(5):
            gs = [torch.randn(s, generator=gen.manual_seed(100 + 10 * step + i), dtype=dtype).to(DEV)
                  for i, s in enumerate(shapes)]
            if which == "ours":
                _C().adadelta_cuda_(ps, gs, sq, acc, ms, 0.1, 0.95, 1e-8)
            else:
                optim.reference_adadelta_(ps, gs, sq, acc, lr=0.1, rho=0.95, eps=1e-8, mask=ms)
        state[which] = ps + sq + acc
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-14)
    for a, b in zip(state["ours"], state["ref"]):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("step_kind", ["int", "tensor0d", "tensorK"])
def test_lazy_embedding_rows_equal_dense_adadelta(step_kind):
    optim = _optim()
    K, V, E, steps = 2, 50, 9, 12
    gen = torch.Generator().manual_seed(2)
    table = torch.randn(K, V, E, generator=gen).to(DEV)
    dense = table.clone()
    sq, acc = torch.zeros_like(table), torch.zeros_like(table)
    dsq, dacc = torch.zeros_like(table), torch.zeros_like(table)
    last = torch.zeros(K, V, dtype=torch.int64, device=DEV)
    step_t = torch.zeros((K,) if step_kind == "tensorK" else (), dtype=torch.int64, device=DEV)
    for step in range(1, steps + 1):
        n = 6 if step % 4 else 0  # some steps touch no row at all
        ids = torch.stack([torch.randperm(V, generator=gen)[:n] for _ in range(K)]).to(DEV)
        ids[:, :1] = -1 if n else ids[:, :1]  # a padding slot
        grad_rows = torch.randn(K, n, E, generator=gen).to(DEV)
        dense_grad = torch.zeros_like(table)
        for k in range(K):
            keep = ids[k] >= 0
            dense_grad[k, ids[k][keep]] = grad_rows[k][keep]
        optim.reference_adadelta_([dense], [dense_grad], [dsq], [dacc], lr=0.1, rho=0.95, eps=1e-8)
        step_t.fill_(step)
        step_arg = step if step_kind == "int" else step_t
        _C().adadelta_rows_cuda_(table, grad_rows, ids, sq, acc, last, step_arg, 0.1, 0.95, 1e-8)
    torch.testing.assert_close(table, dense, rtol=1e-5, atol=1e-6)
    _C().adadelta_rows_flush_cuda_(sq, acc, last, steps if step_kind == "int" else step_t, 0.95)
    torch.testing.assert_close(sq, dsq, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(acc, dacc, rtol=1e-5, atol=1e-9)
    assert int(last.min()) == steps


# ---- CUDA graphs ------------------------------------------------------------------------------------------------

def test_training_step_is_capturable_in_a_cuda_graph():
    """Forward, backward and the optimiser captured once, replayed on new data: same as eager."""
    x, lengths, w_ih, w_hh, bias, dy = make_problem(4, 32, 10, 16, 100, seed=5)
    params = [w_ih.clone(), w_hh.clone(), bias.clone()]
    sq = [torch.zeros_like(p) for p in params]
    acc = [torch.zeros_like(p) for p in params]
    static = {"x": x.clone(), "lengths": lengths.clone(), "dy": dy.clone()}

    def step(ps, s, a):
        c = _C()
        y, *saved = c.bilstm_forward_cuda(static["x"], static["lengths"], ps[0], ps[1], ps[2], "fp32", True)
        _, dw_ih, dw_hh, dbias = c.bilstm_backward_cuda(static["dy"], static["lengths"], ps[0], ps[1], *saved, "fp32")
        c.adadelta_cuda_(ps, [dw_ih, dw_hh, dbias], s, a, [None, None, None], 0.1, 0.95, 1e-8)
        return y

    eager = ([p.clone() for p in params], [t.clone() for t in sq], [t.clone() for t in acc])
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside capture (cuBLAS handles, workspace)
        step([p.clone() for p in params], [t.clone() for t in sq], [t.clone() for t in acc])
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y_static = step(params, sq, acc)
    for i in range(3):
        nx, nl, _, _, _, ndy = make_problem(4, 32, 10, 16, 100, seed=10 + i)
        for key, val in (("x", nx), ("lengths", nl), ("dy", ndy)):
            static[key].copy_(val)
        graph.replay()
        y_eager = step(*eager)
        torch.cuda.synchronize()
        torch.testing.assert_close(y_static, y_eager, rtol=0, atol=0)
        for a, b in zip(params, eager[0]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)

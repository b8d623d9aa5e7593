"""Fused bi-LSTM over a model array against independent oracles.

Oracles: ``torch.nn.LSTM(bidirectional=True)`` on packed sequences (one per model of the array), and
``reference_bilstm`` (pure PyTorch, dense + masks). Compared: the output and the gradients of the input, both
weight matrices and the bias.

Tolerances (float32): every element within ``RTOL * (|expected| + max|expected|)`` with ``RTOL = 1e-5``, i.e.
1e-5 relative to the element, with an absolute floor of 1e-5 of the tensor's largest value (needed for
elements that cancel to ~0 in long sums, such as weight gradients over B*T rows). float64: ``gradcheck`` with
its default tolerances. bf16: judged as flash-attention does: the kernel's error against the float64 answer
is at most twice the error of PyTorch's own bf16 computation (``reference_bilstm(precision="bf16")``) plus a
small floor.
"""

from __future__ import annotations

import itertools
import zlib

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mtlfast.nn import BiLSTM
from mtlfast.ops import bilstm, dispatch, reference_bilstm
from mtlfast.ops.dispatch import cpu_kernel_paths, forced_cpu_kernel_path

RTOL = 1e-5

needs_c = pytest.mark.skipif(not dispatch.has_c(), reason=f"mtlfast._C not built: {dispatch.backends()['error']}")

# One device-generic body per test; the CUDA variants run whatever backend "auto" picks for CUDA tensors.
DEVICES = [pytest.param("cpu", marks=needs_c, id="cpu"),
           pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"), id="cuda")]
BACKEND = {"cpu": "cpu", "cuda": "auto"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Run on one thread (the tests are many tiny calls, where spinning thread pools on a busy machine cost
    more than the work); test_model_array_equals_separate_calls runs the multi-threaded split explicitly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_close_f32(actual, expected, what):
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=RTOL * scale, msg=lambda m: f"{what}: {m}")


def make_lengths(K, B, T, gen):
    """Ragged lengths in [1, T], always including length 1 and length T where the batch allows."""
    lengths = torch.randint(1, T + 1, (K, B), generator=gen)
    lengths[:, 0] = 1
    if B > 1:
        lengths[:, 1] = T
    return lengths


def make_problem(K, B, T, E, H, dtype=torch.float32, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    lengths = make_lengths(K, B, T, gen)
    x = torch.randn(K, B, T, E, generator=gen, dtype=dtype)
    # Padded positions hold garbage on purpose: it must not leak into anything.
    mod = BiLSTM(K, E, H, dtype=dtype)
    mod.reset_parameters(generator=gen)
    with torch.no_grad():  # larger weights than the default init exercise saturation of the gates
        mod.w_hh.mul_(2.0)
    dy = torch.randn(K, B, T, 2 * H, generator=gen, dtype=dtype)
    return (x.to(device), lengths.to(device), mod.w_ih.detach().to(device), mod.w_hh.detach().to(device),
            mod.bias.detach().to(device), dy.to(device))


def run_op(fn, x, lengths, w_ih, w_hh, bias, dy, **kw):
    leaves = [t.clone().requires_grad_(True) for t in (x, w_ih, w_hh, bias)]
    y = fn(leaves[0], lengths, *leaves[1:], **kw)
    (y * dy).sum().backward()
    return [y.detach()] + [t.grad for t in leaves]


def run_torch_lstm(x, lengths, w_ih, w_hh, bias, dy):
    """nn.LSTM(bidirectional=True) on packed sequences, one model at a time; grads in the array layout. The
    oracle runs on the CPU whatever the problem's device (its results are CPU tensors)."""
    x, lengths, w_ih, w_hh, bias, dy = (t.detach().cpu() for t in (x, lengths, w_ih, w_hh, bias, dy))
    K, B, T, E = x.shape
    H = w_hh.shape[-1]
    mod = BiLSTM(K, E, H, dtype=x.dtype)
    with torch.no_grad():
        mod.w_ih.copy_(w_ih), mod.w_hh.copy_(w_hh), mod.bias.copy_(bias)
    ys, gx, gih, ghh, gb = [], [], [], [], []
    for k in range(K):
        lstm = mod.to_torch(k)
        xk = x[k].detach().clone().requires_grad_(True)
        packed = pack_padded_sequence(xk, lengths[k].cpu(), batch_first=True, enforce_sorted=False)
        out, _ = lstm(packed)
        yk, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
        (yk * dy[k]).sum().backward()
        ys.append(yk.detach())
        gx.append(xk.grad)
        gih.append(torch.stack([lstm.weight_ih_l0.grad, lstm.weight_ih_l0_reverse.grad]))
        ghh.append(torch.stack([lstm.weight_hh_l0.grad, lstm.weight_hh_l0_reverse.grad]))
        # d/d(b_ih + b_hh) = d/d b_ih
        gb.append(torch.stack([lstm.bias_ih_l0.grad, lstm.bias_ih_l0_reverse.grad]))
    return [torch.stack(t) for t in (ys, gx, gih, ghh, gb)]


NAMES = ("y", "dx", "dw_ih", "dw_hh", "dbias")
GRID = list(itertools.product([1, 3], [1, 7, 32], [1, 5, 40], [(50, 100), (16, 8)]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("K,B,T,EH", GRID, ids=[f"K{k}-B{b}-T{t}-E{e}H{h}" for k, b, t, (e, h) in GRID])
def test_matches_torch_lstm_and_reference(device, K, B, T, EH):
    E, H = EH
    prob = make_problem(K, B, T, E, H, seed=K * 1000 + B * 10 + T, device=device)
    ours = run_op(bilstm, *prob, backend=BACKEND[device])
    torch_lstm = run_torch_lstm(*prob)
    ref = run_op(reference_bilstm, *prob)
    for name, a, t, r in zip(NAMES, ours, torch_lstm, ref):
        assert_close_f32(a.cpu(), t, f"{name} vs torch.nn.LSTM (K={K}, B={B}, T={T}, E={E}, H={H})")
        assert_close_f32(a.cpu(), r.cpu(), f"{name} vs reference_bilstm (K={K}, B={B}, T={T}, E={E}, H={H})")
    # Padded positions: zero output and zero input gradient.
    x, lengths = prob[0], prob[1]
    pad = torch.arange(T, device=lengths.device)[None, None, :] >= lengths[:, :, None]
    assert torch.all(ours[0][pad] == 0)
    assert torch.all(ours[1][pad] == 0)


@pytest.mark.parametrize("device", DEVICES)
def test_reference_matches_torch_lstm(device):
    """The oracle itself agrees with nn.LSTM (so a shared mistake of kernel and reference cannot hide)."""
    prob = make_problem(2, 5, 6, 4, 3, seed=7, device=device)
    for name, r, t in zip(NAMES, run_op(reference_bilstm, *prob), run_torch_lstm(*prob)):
        assert_close_f32(r.cpu(), t, f"reference {name} vs torch.nn.LSTM")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn", ["bilstm", "reference_bilstm"])
def test_gradcheck_float64(device, fn):
    K, B, T, E, H = 2, 2, 4, 3, 2
    x, lengths, w_ih, w_hh, bias, _ = make_problem(K, B, T, E, H, dtype=torch.float64, seed=3, device=device)
    f = bilstm if fn == "bilstm" else reference_bilstm
    kw = {"backend": BACKEND[device]} if fn == "bilstm" else {}
    inputs = [t.clone().requires_grad_(True) for t in (x, w_ih, w_hh, bias)]
    assert torch.autograd.gradcheck(lambda a, b, c, d: f(a, lengths, b, c, d, **kw), inputs)


@pytest.mark.parametrize("device", DEVICES)
def test_model_array_equals_separate_calls(device):
    K, B, T, E, H = 3, 7, 9, 16, 8
    prob = make_problem(K, B, T, E, H, seed=11, device=device)
    torch.set_num_threads(2)  # the K x 2 (model, direction) tasks split over threads
    try:
        together = run_op(bilstm, *prob, backend=BACKEND[device])
    finally:
        torch.set_num_threads(1)
    x, lengths, w_ih, w_hh, bias, dy = prob
    for k in range(K):
        sl = slice(k, k + 1)
        alone = run_op(bilstm, x[sl], lengths[sl], w_ih[sl], w_hh[sl], bias[sl], dy[sl], backend=BACKEND[device])
        for name, a, b in zip(NAMES, together, alone):
            torch.testing.assert_close(a[sl], b, rtol=1e-6, atol=1e-7, msg=lambda m: f"model {k} {name}: {m}")


@pytest.mark.parametrize("device", DEVICES)
def test_padding_length_does_not_matter(device):
    K, B, T, E, H, extra = 2, 5, 6, 4, 3, 7
    x, lengths, w_ih, w_hh, bias, dy = make_problem(K, B, T, E, H, seed=5, device=device)
    y = bilstm(x, lengths, w_ih, w_hh, bias, backend=BACKEND[device])
    x_long = torch.cat([x, torch.randn(K, B, extra, E, device=x.device) * 100], dim=2)
    y_long = bilstm(x_long, lengths, w_ih, w_hh, bias, backend=BACKEND[device])
    torch.testing.assert_close(y_long[:, :, :T], y, rtol=0, atol=0)
    assert torch.all(y_long[:, :, T:] == 0)


PATHS = ["portable", "avx2", "avx512", "avx512_bf16"]


@needs_c
@pytest.mark.parametrize("path", PATHS)
def test_each_cpu_kernel_path(path):
    if path not in cpu_kernel_paths():
        pytest.skip(f"this CPU cannot run the {path} kernels")
    prob = make_problem(2, 7, 12, 16, 24, seed=13)
    ref = run_op(reference_bilstm, *prob)
    with forced_cpu_kernel_path(path):
        assert dispatch._C.cpu_kernel_path() == path
        ours = run_op(bilstm, *prob, backend="cpu")
    for name, a, r in zip(NAMES, ours, ref):
        assert_close_f32(a, r, f"{name} ({path} kernels)")


LANES_CASES = [(1, 40, 6, 5, 13), (2, 17, 9, 7, 3), (1, 33, 25, 50, 100), (2, 16, 1, 4, 12)]


@needs_c
@pytest.mark.parametrize("K,B,T,E,H", LANES_CASES, ids=[f"K{k}-B{b}-T{t}-E{e}-H{h}" for k, b, t, e, h in LANES_CASES])
@pytest.mark.parametrize("gemm", ["auto", "aten"])
def test_fp32_avx512_lanes_path(K, B, T, E, H, gemm):
    """The fp32 AVX-512 path (batch in vector lanes, fused step kernels; saved tensors 4-D) on batch sizes that
    leave partial lane vectors (B % 16 != 0, B > 32), ragged lengths, H with partial register tiles, T = 1; with
    MKL and with the at::mm fallback for its GEMMs."""
    if not any(p in cpu_kernel_paths() for p in ("avx512", "avx512_bf16")):
        pytest.skip("this CPU has no AVX-512")
    prob = make_problem(K, B, T, E, H, seed=31 + B + T)
    C = dispatch._C
    with forced_cpu_kernel_path("avx512"):
        _, acts, cells = C.bilstm_forward(*prob[:5], "fp32")
        assert acts.dim() == 4 and cells.dim() == 4, "the lanes layout is not in use"
        C.set_gemm_backend(gemm)
        try:
            ours = run_op(bilstm, *prob, backend="cpu")
        finally:
            C.set_gemm_backend("auto")
    ref = run_op(reference_bilstm, *prob)
    for name, a, r in zip(NAMES, ours, ref):
        assert_close_f32(a, r, f"{name} (lanes path, K={K} B={B} T={T} E={E} H={H}, gemm {gemm})")


def ragged_lengths(case):
    """Lengths [K, B] (T) of the ragged cases: each stresses where the lanes kernels skip steps and narrow
    tiles. Rows come in shuffled order (the kernels sort them per run). The seed comes from the case's name through
    crc32, not hash(): str hashes change with every process (PYTHONHASHSEED), which made the lengths, and so the
    outcome of a tolerance check, differ from run to run."""
    gen = torch.Generator().manual_seed(zlib.crc32(case.encode()) % 1000)
    if case == "runs-of-different-lengths":  # long, short and mixed runs in one array
        T = 30
        L = torch.stack([torch.randint(20, 31, (32,), generator=gen), torch.randint(1, 7, (32,), generator=gen),
                         torch.randint(1, 31, (32,), generator=gen), torch.full((32,), 11)])
    elif case == "run-all-length-1":
        T = 9
        L = torch.stack([torch.randint(1, 10, (20,), generator=gen), torch.ones(20, dtype=torch.long)])
    elif case == "one-live-row":  # one long row, the rest length 1: 16-lane tiles with one live lane
        T = 12
        one = torch.ones(33, dtype=torch.long)
        one[17] = 12
        L = torch.stack([one, torch.randint(1, 13, (33,), generator=gen)])
    elif case == "single-row-batch":
        T = 8
        L = torch.tensor([[5], [8], [1]])
    elif case == "T-much-longer":  # every run ends long before T
        T = 64
        L = torch.randint(1, 8, (3, 24), generator=gen)
    elif case == "tile-boundaries":  # live row counts cross 48, 33, 32, 31, 17, 16, 15, 1 as t grows
        T = 14
        row = torch.tensor([14] + [13] * 14 + [12] + [11] + [10] * 14 + [9] + [8] + [7] * 14 + [6])
        assert row.numel() == 48
        L = torch.stack([row, row.clamp(max=5), torch.full((48,), 14), torch.full((48,), 1)])
    elif case == "eight-lane-tails":  # live rows 1-8 and 17-24 of a 32-lane block (8-lane tiles), B > 32
        T = 40
        L = torch.stack([torch.arange(1, 41), torch.tensor([12] * 20 + [3] * 20), torch.tensor([5] * 7 + [1] * 33),
                         torch.full((40,), 40)])
    else:  # pragma: no cover
        raise ValueError(case)
    perm = torch.stack([torch.randperm(L.shape[1], generator=gen) for _ in range(L.shape[0])])
    return torch.gather(L, 1, perm), T


RAGGED = ["runs-of-different-lengths", "run-all-length-1", "one-live-row", "single-row-batch", "T-much-longer",
          "tile-boundaries", "eight-lane-tails"]


def ragged_problem(case, E=16, H=12, seed=41):
    lengths, T = ragged_lengths(case)
    K, B = lengths.shape
    x, _, w_ih, w_hh, bias, dy = make_problem(K, B, T, E, H, seed=seed)
    return x, lengths, w_ih, w_hh, bias, dy


@needs_c
@pytest.mark.parametrize("case", RAGGED)
@pytest.mark.parametrize("path", ["avx512", "auto"])
def test_ragged_lanes_path(case, path):
    """Ragged arrays on the lanes path, which runs each (run, direction) only over its longest row's steps and
    narrows 32-lane tiles to 16 or 8 lanes (or none) when few rows are live: exact against packed nn.LSTM and
    reference_bilstm, forward and all gradients, zeros at every padded position (y and dx)."""
    if path != "auto" and path not in cpu_kernel_paths():
        pytest.skip("this CPU has no AVX-512")
    prob = ragged_problem(case)
    with forced_cpu_kernel_path(path):
        ours = run_op(bilstm, *prob, backend="cpu")
    torch_lstm = run_torch_lstm(*prob)
    ref = run_op(reference_bilstm, *prob)
    for name, a, t, r in zip(NAMES, ours, torch_lstm, ref):
        assert_close_f32(a, t, f"{name} vs torch.nn.LSTM ({case}, {path})")
        assert_close_f32(a, r, f"{name} vs reference_bilstm ({case}, {path})")
    T = prob[0].shape[2]
    pad = torch.arange(T)[None, None, :] >= prob[1][:, :, None]
    assert torch.all(ours[0][pad] == 0) and torch.all(ours[1][pad] == 0), "padded positions must stay zero"


@needs_c
def test_ragged_padding_never_leaks():
    """Garbage (huge values) in x and dy past each row's end changes nothing, and a longer padded T with the same rows gives
    the same numbers (bit for bit): the skipped steps are truly not computed from padding."""
    x, lengths, w_ih, w_hh, bias, dy = ragged_problem("runs-of-different-lengths")
    K, B, T, E = x.shape
    base = run_op(bilstm, x, lengths, w_ih, w_hh, bias, dy, backend="cpu")
    pad = torch.arange(T)[None, None, :] >= lengths[:, :, None]
    x2 = x.clone()
    x2[pad] = 1e6
    dy2 = dy.clone()
    dy2[pad] = 1e30
    noisy = run_op(bilstm, x2, lengths, w_ih, w_hh, bias, dy2, backend="cpu")
    for name, a, b in zip(NAMES, noisy, base):
        if name == "dx":
            a, b = a[~pad], b[~pad]
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=lambda m: f"{name} with garbage padding: {m}")
    extra = 17
    xl = torch.cat([x, torch.randn(K, B, extra, E)], dim=2)
    dyl = torch.cat([dy, torch.randn(K, B, extra, dy.shape[-1])], dim=2)
    longer = run_op(bilstm, xl, lengths, w_ih, w_hh, bias, dyl, backend="cpu")
    for name, a, b in zip(NAMES, longer, base):
        if name in ("y", "dx"):
            assert torch.all(a[:, :, T:] == 0), f"{name} past T must be zero"
            a = a[:, :, :T]
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=lambda m: f"{name} with T + {extra}: {m}")


@needs_c
def test_backward_follows_the_saved_layout():
    """Forward on the AVX-512 lanes path, backward with another build forced (and vice versa): the backward reads
    the layout from the saved tensors, so the gradients stay right."""
    if not any(p in cpu_kernel_paths() for p in ("avx512", "avx512_bf16")):
        pytest.skip("this CPU has no AVX-512")
    prob = make_problem(2, 7, 12, 16, 24, seed=37)
    ref = run_op(reference_bilstm, *prob)
    for first, second in (("avx512", "portable"), ("portable", "avx512")):
        leaves = [t.clone().requires_grad_(True) for t in (prob[0], prob[2], prob[3], prob[4])]
        with forced_cpu_kernel_path(first):
            y = bilstm(leaves[0], prob[1], *leaves[1:], backend="cpu")
        with forced_cpu_kernel_path(second):
            (y * prob[5]).sum().backward()
        for name, a, r in zip(NAMES, [y.detach()] + [t.grad for t in leaves], ref):
            assert_close_f32(a, r, f"{name} (forward {first}, backward {second})")


@needs_c
def test_aten_gemm_fallback():
    """The at::mm path used when torch exposes no MKL gives the same answer."""
    prob = make_problem(2, 7, 12, 16, 24, seed=17)
    ref = run_op(reference_bilstm, *prob)
    C = dispatch._C
    C.set_gemm_backend("aten")
    try:
        assert C.gemm_backend() == "aten"
        ours = run_op(bilstm, *prob, backend="cpu")
    finally:
        C.set_gemm_backend("auto")
    for name, a, r in zip(NAMES, ours, ref):
        assert_close_f32(a, r, f"{name} (at::mm products)")


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_error_within_twice_pytorch_bf16(device):
    K, B, T, E, H = 2, 6, 9, 50, 100
    prob = make_problem(K, B, T, E, H, seed=19, device=device)
    exact = run_op(reference_bilstm, *[p.double() for p in prob[:1]], prob[1], *[p.double() for p in prob[2:]])
    ours = run_op(bilstm, *prob, precision="bf16", backend=BACKEND[device])
    torch_bf16 = run_op(reference_bilstm, *prob, precision="bf16")
    fp32 = run_op(bilstm, *prob, backend=BACKEND[device])
    for name, o, t, e, f in zip(NAMES, ours, torch_bf16, exact, fp32):
        err_ours = (o.double() - e).abs().max().item()
        err_torch = (t.double() - e).abs().max().item()
        err_fp32 = (f.double() - e).abs().max().item()
        floor = 1e-6 * e.abs().max().item()
        assert err_ours <= 2 * err_torch + floor, f"{name}: bf16 kernel error {err_ours:.3g} vs PyTorch bf16 {err_torch:.3g}"
        assert err_fp32 < err_ours or err_ours <= floor, f"{name}: bf16 did not change the products ({err_ours:.3g})"


def rms(t):
    return t.double().pow(2).mean().sqrt().item()


def bf16_errors(ours, torch_bf16, exact):
    for name, o, t, e in zip(NAMES, ours, torch_bf16, exact):
        yield name, (o.double() - e).abs().max().item(), (t.double() - e).abs().max().item(), e.abs().max().item()


@needs_c
@pytest.mark.parametrize("path", PATHS)
def test_bf16_each_cpu_kernel_path(path):
    """Native bf16 dot products (avx512_bf16) and the rounded-operand fp32 products of the other paths."""
    if path not in cpu_kernel_paths():
        pytest.skip(f"this CPU cannot run the {path} kernels")
    prob = make_problem(2, 5, 7, 50, 100, seed=29)
    exact = run_op(reference_bilstm, *[p.double() for p in prob[:1]], prob[1], *[p.double() for p in prob[2:]])
    torch_bf16 = run_op(reference_bilstm, *prob, precision="bf16")
    with forced_cpu_kernel_path(path):
        ours = run_op(bilstm, *prob, precision="bf16", backend="cpu")
    for name, err_ours, err_torch, scale in bf16_errors(ours, torch_bf16, exact):
        assert err_ours <= 2 * err_torch + 1e-6 * scale, f"{name} ({path}): {err_ours:.3g} vs PyTorch bf16 {err_torch:.3g}"


BF16_LANES_CASES = [("shape", (2, 32, 30, 50, 100)), ("shape", (1, 40, 6, 5, 13)), ("shape", (2, 17, 9, 7, 3))] + [
    ("ragged", c) for c in RAGGED]


@needs_c
@pytest.mark.parametrize("kind,case", BF16_LANES_CASES, ids=[f"{k}-{c}" for k, c in BF16_LANES_CASES])
def test_bf16_lanes_path(kind, case):
    """bf16 lanes kernels (vdpbf16ps, AVX512-BF16): they run for precision="bf16" on the avx512_bf16 build (saved
    tensors in the 4-D lanes layout), and round what the general bf16 path rounds. Checked forward and all
    gradients, on full and ragged arrays, odd E and H and B > 32:
    * against the float64 answer, at the bf16 tolerance (at most twice PyTorch's own bf16 error plus a floor);
    * against the general bf16 path (the lanes kernels turned off), which rounds the same operands in another
      order of fp32 accumulation: the largest difference within 0.75 of PyTorch's bf16 error, and the RMS
      difference within a quarter of the RMS difference between fp32 and the general bf16 path (no rounding at
      all). Measured over 54 random length draws (bench/RESULTS.md, "bf16 lanes vs the general path"): at most
      0.60 and 0.12; the general path against itself with the bias moved by one fp32 ulp reaches 0.51 on dx, so
      the largest difference is rounding noise amplified by the recurrence (the old bound, 0.5, failed on about
      one length draw in 20), while the fp32 path is at least 0.8 away in the largest difference;
    * against fp32 (the same tolerance as against float64);
    * zeros at padded positions."""
    if "avx512_bf16" not in cpu_kernel_paths():
        pytest.skip("this CPU has no AVX512-BF16")
    C = dispatch._C
    prob = make_problem(*case, seed=43) if kind == "shape" else ragged_problem(case, E=50, H=100)
    with forced_cpu_kernel_path("avx512_bf16"):
        _, acts, _ = C.bilstm_forward(*prob[:5], "bf16")
        assert acts.dim() == 4, "the bf16 lanes layout is not in use"
        ours = run_op(bilstm, *prob, precision="bf16", backend="cpu")
        assert C.last_cpu_kernel_paths()["bilstm"] == "avx512_bf16"
        C.set_lanes(False)
        try:
            _, acts_g, _ = C.bilstm_forward(*prob[:5], "bf16")
            assert acts_g.dim() == 5, "set_lanes(False) must run the general path"
            general = run_op(bilstm, *prob, precision="bf16", backend="cpu")
        finally:
            C.set_lanes(True)
    fp32 = run_op(bilstm, *prob, backend="cpu")
    exact = run_op(reference_bilstm, *[p.double() for p in prob[:1]], prob[1], *[p.double() for p in prob[2:]])
    torch_bf16 = run_op(reference_bilstm, *prob, precision="bf16")
    for name, o, g, f, e, t in zip(NAMES, ours, general, fp32, exact, torch_bf16):
        err_torch = (t.double() - e).abs().max().item()
        floor = 1e-6 * e.abs().max().item()
        err = (o.double() - e).abs().max().item()
        assert err <= 2 * err_torch + floor, f"{name} ({case}): bf16 lanes error {err:.3g} vs PyTorch bf16 {err_torch:.3g}"
        to_fp32 = (o - f).abs().max().item()
        assert to_fp32 <= 2 * err_torch + floor, f"{name} ({case}): bf16 lanes vs fp32 {to_fp32:.3g}"
        to_general = (o - g).abs().max().item()
        assert to_general <= 0.75 * err_torch + floor, (
            f"{name} ({case}): bf16 lanes vs general bf16 path {to_general:.3g} (PyTorch bf16 error {err_torch:.3g})")
        rms_general, rms_fp32 = rms(o - g), rms(f - g)
        assert rms_general <= 0.25 * rms_fp32, (
            f"{name} ({case}): RMS of bf16 lanes vs general bf16 path {rms_general:.3g}, fp32 vs general {rms_fp32:.3g}")
    T = prob[0].shape[2]
    pad = torch.arange(T)[None, None, :] >= prob[1][:, :, None]
    assert torch.all(ours[0][pad] == 0) and torch.all(ours[1][pad] == 0), "padded positions must stay zero"


@needs_c
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("lanes", [True, False], ids=["lanes", "general"])
def test_no_read_of_memory_the_call_did_not_write(precision, lanes):
    """Every workspace and saved-activation block filled with NaN when handed out (_C.set_scratch_poison) changes
    nothing, bit for bit, over a sequence of calls whose raggedness differs from call to call (each call reuses
    the blocks of the one before, as in training). A kernel reading an element that no step of the same call
    wrote (a masked lane of h or dgates pairs at a step where it is dead, a padding lane, a skipped column)
    would read NaN here instead of whatever an earlier call left."""
    C = dispatch._C
    path = "avx512_bf16" if precision == "bf16" else "avx512"
    if path not in cpu_kernel_paths():
        pytest.skip(f"this CPU cannot run the {path} kernels")
    probs = [ragged_problem(c, E=50, H=100) for c in RAGGED] + [make_problem(2, 17, 9, 7, 3, seed=43)]
    probs += probs[::-1]
    with forced_cpu_kernel_path(path):
        C.set_lanes(lanes)
        try:
            clean = [run_op(bilstm, *p, precision=precision, backend="cpu") for p in probs]
            C.set_scratch_poison(True)
            if lanes:  # the switch works: a run's saved gate activations of lane vectors it never computed are NaN
                _, acts, _ = C.bilstm_forward(*ragged_problem("one-live-row", E=50, H=100)[:5], precision)
                assert acts.isnan().any(), "set_scratch_poison(True) did not reach the saved blocks"
            poisoned = [run_op(bilstm, *p, precision=precision, backend="cpu") for p in probs]
        finally:
            C.set_scratch_poison(False)
            C.set_lanes(True)
    for i, (a, b) in enumerate(zip(poisoned, clean)):
        for name, x, y in zip(NAMES, a, b):
            assert torch.equal(x, y), f"{name} of call {i} ({precision}, lanes={lanes}) changed when workspaces held NaN"


@needs_c
def test_set_lanes_off_runs_the_general_fp32_path():
    """With the lanes kernels off, the fp32 call runs the general path (5-D saved tensors) and agrees."""
    if not any(p in cpu_kernel_paths() for p in ("avx512", "avx512_bf16")):
        pytest.skip("this CPU has no AVX-512")
    C = dispatch._C
    prob = ragged_problem("runs-of-different-lengths")
    lanes = run_op(bilstm, *prob, backend="cpu")
    C.set_lanes(False)
    try:
        assert not C.lanes_enabled()
        _, acts, _ = C.bilstm_forward(*prob[:5], "fp32")
        assert acts.dim() == 5
        general = run_op(bilstm, *prob, backend="cpu")
    finally:
        C.set_lanes(True)
    assert C.lanes_enabled()
    for name, a, g in zip(NAMES, lanes, general):
        assert_close_f32(a, g, f"{name}: lanes vs general path")


def test_module_conversion_round_trip():
    gen = torch.Generator().manual_seed(23)
    lstms = [torch.nn.LSTM(6, 5, bidirectional=True, batch_first=True) for _ in range(3)]
    mod = BiLSTM.from_torch(lstms)
    assert (mod.K, mod.input_size, mod.hidden_size) == (3, 6, 5)
    x = torch.randn(3, 4, 7, 6, generator=gen)
    lengths = make_lengths(3, 4, 7, gen)
    y = mod(x, lengths)
    for k, lstm in enumerate(lstms):
        packed = pack_padded_sequence(x[k], lengths[k], batch_first=True, enforce_sorted=False)
        yk, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=7)
        assert_close_f32(y[k].detach(), yk.detach(), f"model {k} from_torch")
        back = mod.to_torch(k)
        yb, _ = pad_packed_sequence(back(packed)[0], batch_first=True, total_length=7)
        assert_close_f32(yb.detach(), yk.detach(), f"model {k} to_torch")


def test_module_init_matches_torch_lstm_scale():
    mod = BiLSTM(2, 10, 64)
    bound = 1 / 64 ** 0.5
    assert mod.w_ih.abs().max() <= bound and mod.w_hh.abs().max() <= bound
    assert mod.bias.abs().max() <= 2 * bound
    assert mod.w_ih.std() > 0.5 * bound / 3 ** 0.5  # not a constant
    assert not torch.equal(mod.w_hh[0], mod.w_hh[1])  # models are independent


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=needs_c)])
def test_errors_name_the_argument(backend):
    K, B, T, E, H = 2, 3, 4, 5, 6
    x, lengths, w_ih, w_hh, bias, _ = make_problem(K, B, T, E, H)
    f = lambda *a: bilstm(*a, backend=backend)  # noqa: E731
    with pytest.raises(ValueError, match=r"w_ih must have shape \[K, 2, 4H, E\] = \[2, 2, 24, 5\].*got \[2, 2, 24, 4\]"):
        f(x, lengths, w_ih[..., :4], w_hh, bias)
    with pytest.raises(ValueError, match=r"bias must have shape \[K, 2, 4H\].*got \[2, 24\]"):
        f(x, lengths, w_ih, w_hh, bias[:, 0])
    with pytest.raises(ValueError, match=r"x must have shape \[K, B, T, E\]; got \[3, 4, 5\]"):
        f(x[0], lengths, w_ih, w_hh, bias)
    with pytest.raises(ValueError, match=r"lengths must have shape \[K, B\] = \[2, 3\]; got \[3\]"):
        f(x, lengths[0], w_ih, w_hh, bias)
    with pytest.raises(TypeError, match=r"w_hh must have the dtype of x \(torch.float32\); got torch.float64"):
        f(x, lengths, w_ih, w_hh.double(), bias)
    with pytest.raises(TypeError, match=r"x must be float32 or float64; got torch.int64"):
        f(x.long(), lengths, w_ih, w_hh, bias)
    with pytest.raises(ValueError, match=r"bias must be on the device of x \(cpu\); got meta"):
        f(x, lengths, w_ih, w_hh, bias.to("meta"))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T\] = \[1, 4\]; got values in \[0, 4\]"):
        f(x, torch.zeros_like(lengths).index_fill_(1, torch.tensor([1]), 4), w_ih, w_hh, bias)
    with pytest.raises(ValueError, match=r"precision must be one of"):
        bilstm(x, lengths, w_ih, w_hh, bias, precision="fp16", backend=backend)


@needs_c
def test_c_kernel_checks_its_arguments_too():
    """Called directly, the compiled op names the argument (it is reachable without the Python checks)."""
    C = dispatch._C
    x, lengths, w_ih, w_hh, bias, _ = make_problem(2, 3, 4, 5, 6)
    with pytest.raises(RuntimeError, match=r"w_ih must have shape \[K, 2, 4H, E\] = \[2, 2, 24, 5\]; got \[2, 2, 24, 4\]"):
        C.bilstm_forward(x, lengths, w_ih[..., :4].contiguous(), w_hh, bias, "fp32")
    with pytest.raises(RuntimeError, match=r"lengths must lie in \[1, T\]"):
        C.bilstm_forward(x, lengths * 0, w_ih, w_hh, bias, "fp32")

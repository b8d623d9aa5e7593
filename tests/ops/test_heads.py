"""mtlfast.ops.heads: heads + cross-entropy + head update, batch assembly and dropout masks of K runs in one call.

Oracles:

- heads: the engine's former per-run step (``_heads_loss_and_grads`` + ``_release_and_update_heads``, copied
  below verbatim but for names), and, independently, autograd (``F.cross_entropy`` over the real tokens, or
  over all ``positions`` with target 0 and output 0 beyond them) with ``torch.optim.Adadelta`` in float64;
  random ragged cases (label counts, slots, lengths, a run without a real token), both protocols;
- batches: the data layer's ``make_batch`` per run, padded by hand;
- dropout: the reference (bit for bit), its statistics (keep rate, scale) and its keying.

Tolerances: rtol 1e-5 / atol 1e-6 against the float32 oracle, rtol 1e-4 / atol 1e-6 against float64 autograd.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtlfast import ops
from mtlfast.ops.dispatch import _C

PAD = -100
needs_c = pytest.mark.skipif(_C is None or not hasattr(_C, "heads_step_"), reason="mtlfast._C without the heads ops")
BACKENDS = ["reference", pytest.param("c", marks=needs_c)]
HEAD_BACKENDS = BACKENDS + ["batched"]  # heads_step_ also has the batched (GPU) path


# ---------------------------------------------------------------------------------------------------------
# The engine's former step (oracle)

@torch.no_grad()
def old_heads_loss_and_grads(y, head_w, head_b, slots, n_lab, tags, valid, positions=0):
    K = y.shape[0]
    dy = torch.zeros_like(y)
    grads, losses = [], []
    for k in range(K):
        s, n = int(slots[k]), int(n_lab[k])
        mask = valid[k]
        yk = y[k][mask]
        N = yk.shape[0]
        if N == 0 and positions == 0:
            losses.append(0.0)
            continue
        w, b = head_w[k, s, :n], head_b[k, s, :n]
        logp = torch.log_softmax(torch.addmm(b, yk, w.t()), dim=1)
        tk = tags[k][mask]
        rows = torch.arange(N)
        denom = positions if positions else N
        loss = -logp[rows, tk].sum()
        d = logp.exp_()
        d[rows, tk] -= 1.0
        d.mul_(1.0 / denom)
        db = d.sum(dim=0)
        if positions:
            P = positions - N
            lb = torch.log_softmax(b, dim=0)
            loss = loss - P * lb[0]
            pb = lb.exp()
            pb[0] -= 1.0
            db += pb * (P / denom)
        losses.append(float(loss / denom))
        grads.append((k, s, n, d.t() @ yk, db))
        dy[k][mask] = d @ w
    return losses, dy, grads


@torch.no_grad()
def old_update_heads(st, head_grads, kw):
    hw, hb, hws, hbs, hwa, hba = (st[n] for n in ("head_w", "head_b", "w_sq", "b_sq", "w_acc", "b_acc"))
    for k, s, n, g_w, g_b in head_grads:
        ops.reference_adadelta_([hw[k, s, :n], hb[k, s, :n]], [g_w, g_b], [hws[k, s, :n], hbs[k, s, :n]],
                                [hwa[k, s, :n], hba[k, s, :n]], **kw)


def _case(seed, K=6, S=2, L=9, D=6, B=4, T=7, empty_run=True):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(K, B, T, D, generator=g)
    n_lab = torch.randint(1, L + 1, (K,), generator=g)
    n_lab[0] = L
    n_lab[1] = 1
    slots = torch.randint(0, S, (K,), generator=g)
    lengths = torch.randint(1, T + 1, (K, B), generator=g)
    tags = torch.full((K, B, T), PAD, dtype=torch.int64)
    for k in range(K):
        for b in range(B):
            ln = int(lengths[k, b])
            tags[k, b, :ln] = torch.randint(0, int(n_lab[k]), (ln,), generator=g)
    if empty_run:
        tags[2] = PAD  # a run whose batch holds no real token
    y = y * (tags != PAD)[..., None]  # the bi-LSTM's output is 0 at padding
    st = {
        "head_w": torch.randn(K, S, L, D, generator=g) * 0.5,
        "head_b": torch.randn(K, S, L, generator=g) * 0.5,
        "w_sq": torch.rand(K, S, L, D, generator=g) * 0.1,
        "b_sq": torch.rand(K, S, L, generator=g) * 0.1,
        "w_acc": torch.rand(K, S, L, D, generator=g) * 0.1,
        "b_acc": torch.rand(K, S, L, generator=g) * 0.1,
    }
    return y, st, slots, n_lab, tags


KW = dict(lr=0.7, rho=0.9, eps=1e-6)


def _run_op(backend, y, st, slots, n_lab, tags, positions):
    st = {k: v.clone() for k, v in st.items()}
    losses, dy = ops.heads_step_(y, st["head_w"], st["head_b"], st["w_sq"], st["b_sq"], st["w_acc"], st["b_acc"],
                                 slots, n_lab, tags, positions=positions, backend=backend, **KW)
    return losses, dy, st


@pytest.mark.parametrize("backend", HEAD_BACKENDS)
@pytest.mark.parametrize("positions", [0, 4 * 9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_heads_step_equals_former_engine_step(backend, positions, seed):
    y, st, slots, n_lab, tags = _case(seed)
    losses, dy, new = _run_op(backend, y, st, slots, n_lab, tags, positions)
    old = {k: v.clone() for k, v in st.items()}
    o_losses, o_dy, grads = old_heads_loss_and_grads(y, old["head_w"], old["head_b"], slots, n_lab, tags,
                                                     tags != PAD, positions)
    old_update_heads(old, grads, KW)
    assert losses.shape == (y.shape[0],) and losses.dtype == torch.float32
    np.testing.assert_allclose(losses.tolist(), o_losses, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dy, o_dy, rtol=1e-5, atol=1e-6)
    for name in st:
        torch.testing.assert_close(new[name], old[name], rtol=1e-5, atol=1e-6)
    # only the drawn slot's first n rows moved, exactly nothing else (run 2 without tokens: only with positions)
    for k in range(y.shape[0]):
        s, n = int(slots[k]), int(n_lab[k])
        moved = torch.zeros(st["head_w"].shape[1:3], dtype=torch.bool)
        if positions or k != 2:
            moved[s, :n] = True
        for name in st:
            a, b = new[name][k], st[name][k]
            assert torch.equal(a[~moved], b[~moved]), (name, k)
            # the drawn block moved (its state decays even where the gradient is 0, as with one label)
            if moved.any() and (name in ("w_sq", "b_sq") or (name == "head_b" and n > 1)):
                assert not torch.equal(a[moved], b[moved]), (name, k)


@pytest.mark.parametrize("backend", HEAD_BACKENDS)
@pytest.mark.parametrize("positions", [0, 4 * 9])
def test_heads_step_equals_autograd_and_torch_optim(backend, positions):
    y, st, slots, n_lab, tags = _case(5)
    losses, dy, new = _run_op(backend, y, st, slots, n_lab, tags, positions)
    K, B, T, D = y.shape
    for k in range(K):
        s, n = int(slots[k]), int(n_lab[k])
        valid = tags[k] != PAD
        N = int(valid.sum())
        if N == 0 and positions == 0:
            assert float(losses[k]) == 0.0 and float(dy[k].abs().max()) == 0.0
            continue
        yk = y[k].double().clone().requires_grad_(True)
        W = st["head_w"][k, s, :n].double().clone().requires_grad_(True)
        bb = st["head_b"][k, s, :n].double().clone().requires_grad_(True)
        if positions:
            # all `positions` positions: the real tokens, then P positions with output 0 and target 0
            P = positions - N
            ys = torch.cat([yk[valid], yk.new_zeros(P, D)])
            target = torch.cat([tags[k][valid], torch.zeros(P, dtype=torch.int64)])
        else:
            ys, target = yk[valid], tags[k][valid]
        loss = F.cross_entropy(ys @ W.t() + bb, target)
        opt = torch.optim.Adadelta([W, bb], **KW)
        opt.state[W] = {"step": torch.tensor(0.0), "square_avg": st["w_sq"][k, s, :n].double().clone(),
                        "acc_delta": st["w_acc"][k, s, :n].double().clone()}
        opt.state[bb] = {"step": torch.tensor(0.0), "square_avg": st["b_sq"][k, s, :n].double().clone(),
                         "acc_delta": st["b_acc"][k, s, :n].double().clone()}
        loss.backward()
        opt.step()
        np.testing.assert_allclose(float(losses[k]), float(loss.detach()), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(dy[k].double(), yk.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(new["head_w"][k, s, :n].double(), W.detach(), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(new["head_b"][k, s, :n].double(), bb.detach(), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(new["w_sq"][k, s, :n].double(), opt.state[W]["square_avg"], rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(new["b_acc"][k, s, :n].double(), opt.state[bb]["acc_delta"], rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------
# bf16 products

from mtlfast.ops import dispatch  # noqa: E402

HAS_NATIVE_BF16 = _C is not None and "avx512_bf16" in dispatch.cpu_kernel_paths()


def _bf16_case(seed, positions):
    """Real-sized products: label counts like fnt's 716 and ccg's 265 and small ones, D = 200, odd sizes."""
    y, st, slots, n_lab, tags = _case(seed, K=5, S=2, L=716, D=200, B=8, T=30)
    n_lab = torch.tensor([716, 265, 17, 3, 101])
    g = torch.Generator().manual_seed(seed + 100)
    for k in range(5):
        real = tags[k] != PAD
        tags[k][real] = torch.randint(0, int(n_lab[k]), (int(real.sum()),), generator=g)
    return y, st, slots, n_lab, tags, positions


def _run_prec(backend, precision, y, st, slots, n_lab, tags, positions):
    st = {k: v.clone() for k, v in st.items()}
    losses, dy = ops.heads_step_(y, st["head_w"], st["head_b"], st["w_sq"], st["b_sq"], st["w_acc"], st["b_acc"],
                                 slots, n_lab, tags, positions=positions, backend=backend, precision=precision, **KW)
    return losses, dy, st


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("backend", HEAD_BACKENDS)
@pytest.mark.parametrize("positions", [0, 8 * 30])
def test_heads_step_bf16_near_fp32(backend, positions):
    """bf16 products stay within bf16's error of the fp32 op (2^-8 relative per operand) and differ from it
    where bf16 actually runs (the reference always rounds; the compiled op on AVX512-BF16 CPUs)."""
    case = _bf16_case(3, positions)
    f_l, f_dy, f_st = _run_prec(backend, "fp32", *case)
    b_l, b_dy, b_st = _run_prec(backend, "bf16", *case)
    y, st, slots, n_lab = case[:4]
    assert _rel(b_l, f_l) < 1e-2
    assert _rel(b_dy, f_dy) < 3e-2
    for name in ("head_w", "head_b"):
        step_f = f_st[name] - st[name]
        step_b = b_st[name] - st[name]
        assert _rel(step_b, step_f) < 5e-2, name
    if backend == "reference" or HAS_NATIVE_BF16:
        assert not torch.equal(b_dy, f_dy)


@needs_c
@pytest.mark.skipif(not HAS_NATIVE_BF16, reason="CPU without AVX512-BF16 (the compiled op runs fp32 products there)")
@pytest.mark.parametrize("positions", [0, 8 * 30])
@pytest.mark.parametrize("seed", [0, 1])
def test_heads_step_native_bf16_equals_rounded_reference(positions, seed):
    """The native vdpbf16ps products against the reference's rounded operands with float32 products: the same
    arithmetic but for the accumulation order (and, through it, an operand rounded to the neighbouring bf16
    value now and then), so far closer than to fp32."""
    case = _bf16_case(seed, positions)
    c_l, c_dy, c_st = _run_prec("c", "bf16", *case)
    r_l, r_dy, r_st = _run_prec("reference", "bf16", *case)
    f_l, f_dy, f_st = _run_prec("reference", "fp32", *case)
    st = case[1]
    np.testing.assert_allclose(c_l.numpy(), r_l.numpy(), rtol=1e-5, atol=1e-6)
    assert _rel(c_dy, r_dy) < 2e-3 and _rel(c_dy, r_dy) < _rel(f_dy, r_dy) / 5
    for name in ("head_w", "head_b", "w_sq", "w_acc"):
        err = _rel(c_st[name] - st[name], r_st[name] - st[name])
        assert err < 2e-3 and err < _rel(f_st[name] - st[name], r_st[name] - st[name]) / 5, name
    # the parts that stay fp32: state outside the drawn rows is untouched, exactly as in fp32
    for k in range(5):
        s, n = int(case[2][k]), int(case[3][k])
        keep = torch.ones(st["head_w"].shape[1:3], dtype=torch.bool)
        keep[s, :n] = False
        for name in st:
            assert torch.equal(c_st[name][k][keep], st[name][k][keep])


@needs_c
@pytest.mark.parametrize("path", [p for p in ("portable", "avx2", "avx512") if p in dispatch.cpu_kernel_paths()])
def test_heads_step_bf16_without_native_bf16_is_fp32(path):
    """On a kernel build without AVX512-BF16 the compiled op's bf16 runs the fp32 products, bit for bit."""
    case = _bf16_case(4, 8 * 30)
    with dispatch.forced_cpu_kernel_path(path):
        f = _run_prec("c", "fp32", *case)
        b = _run_prec("c", "bf16", *case)
    assert torch.equal(f[0], b[0]) and torch.equal(f[1], b[1])
    for name in f[2]:
        assert torch.equal(f[2][name], b[2][name]), name


@needs_c
@pytest.mark.parametrize("path", dispatch.cpu_kernel_paths())
@pytest.mark.parametrize("positions", [0, 8 * 30])
def test_heads_step_every_kernel_build_equals_former_step(path, positions):
    """Each build of the compiled op's fused softmax / cross-entropy pass (portable, AVX2, AVX-512), on real-sized
    label sets (716, 265, ...; rows longer than a vector, ragged tails), against the engine's former step."""
    y, st, slots, n_lab, tags, _ = _bf16_case(5, positions)
    with dispatch.forced_cpu_kernel_path(path):
        losses, dy, new = _run_prec("c", "fp32", y, st, slots, n_lab, tags, positions)
    old = {k: v.clone() for k, v in st.items()}
    o_losses, o_dy, grads = old_heads_loss_and_grads(y, old["head_w"], old["head_b"], slots, n_lab, tags,
                                                     tags != PAD, positions)
    old_update_heads(old, grads, KW)
    np.testing.assert_allclose(losses.tolist(), o_losses, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dy, o_dy, rtol=1e-5, atol=1e-6)
    for name in st:
        torch.testing.assert_close(new[name], old[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", HEAD_BACKENDS)
def test_heads_step_refuses_unknown_precision(backend):
    y, st, slots, n_lab, tags = _case(0)
    with pytest.raises(ValueError, match="precision must be one of"):
        _run_prec(backend, "fp16", y, st, slots, n_lab, tags, 0)


@needs_c
def test_heads_step_refuses_bad_input():
    y, st, slots, n_lab, tags = _case(0)
    bad = tags.clone()
    bad[0, 0, 0] = int(n_lab[0])  # a tag outside the run's labels
    with pytest.raises(RuntimeError, match="outside its"):
        _run_op("c", y, st, slots, n_lab, bad, 0)
    with pytest.raises(RuntimeError, match="real tokens"):
        _run_op("c", y, st, slots, n_lab, tags, 3)  # fewer positions than real tokens
    with pytest.raises(RuntimeError, match="slots must lie"):
        _run_op("c", y, st, slots + 5, n_lab, tags, 0)


# ---------------------------------------------------------------------------------------------------------
# Batches

def _splits(seed, K):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(K):
        n = int(rng.integers(3, 12))
        lengths = rng.integers(1, 40, size=n)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        tokens = rng.integers(1, 100, size=offsets[-1]).astype(np.int32)
        tags = rng.integers(0, 7, size=offsets[-1]).astype(np.int32)
        out.append((tokens, tags, offsets))
    return out, rng


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("max_len", [0, 30, 5])
def test_make_batches_equals_make_batch_per_run(backend, max_len):
    from mtlfast.data.encode import EncodedSplit, make_batch

    K, B = 4, 6
    splits, rng = _splits(max_len, K)
    idx = np.stack([rng.integers(0, len(o) - 1, size=B) for _, _, o in splits])
    tok, tag, ln = ops.make_batches([torch.from_numpy(s[0]) for s in splits], [torch.from_numpy(s[1]) for s in splits],
                                    [torch.from_numpy(s[2]) for s in splits], idx, max_len, backend=backend)
    T = tok.shape[2]
    per = [make_batch(EncodedSplit(tokens=t, tags=g, offsets=o), idx[k], max_len or None)
           for k, (t, g, o) in enumerate(splits)]
    assert T == max(p[0].shape[1] for p in per)
    for k, (pt, pg, pl) in enumerate(per):
        t = pt.shape[1]
        assert np.array_equal(tok[k, :, :t].numpy(), pt) and not tok[k, :, t:].any()
        assert np.array_equal(tag[k, :, :t].numpy(), pg) and (tag[k, :, t:] == PAD).all()
        assert np.array_equal(ln[k].numpy(), pl)


@needs_c
def test_make_batches_refuses_bad_index():
    splits, _ = _splits(0, 2)
    idx = np.zeros((2, 3), dtype=np.int64)
    idx[1, 2] = len(splits[1][2]) - 1  # one past the last sentence
    with pytest.raises(RuntimeError, match="sentence indices must be in"):
        ops.make_batches([torch.from_numpy(s[0]) for s in splits], [torch.from_numpy(s[1]) for s in splits],
                         [torch.from_numpy(s[2]) for s in splits], idx, 30, backend="c")


# ---------------------------------------------------------------------------------------------------------
# Dropout

@needs_c
def test_dropout_compiled_equals_reference_bit_for_bit():
    seeds = [0, 2**63 - 1, 123456789012345]
    steps = [0, 7, 2**40 + 3]
    a = ops.dropout_masks(seeds, steps, 5, 11, 13, 30, 0.3, backend="c")
    b = ops.dropout_masks(seeds, steps, 5, 11, 13, 30, 0.3, backend="reference")
    assert a.shape == (3, 5, 11, 13) and a.dtype == torch.float32
    assert torch.equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_statistics(backend, p):
    m = ops.dropout_masks([11, 12, 13], [0, 1, 2], 32, 30, 200, 30, p, backend=backend)
    scale = np.float32(1.0 / (1.0 - p))
    vals = set(np.unique(m.numpy()).tolist())
    assert vals == {0.0, float(scale)}
    n = m.numel()
    keep = float((m > 0).float().mean())
    assert abs(keep - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)  # 5 sigma
    assert abs(float(m.mean()) - 1.0) < 5 * np.sqrt(p * (1 - p) / n) / (1 - p)  # E[mask] = 1
    # per run, per time step and per feature the keep rate is the same (no structure along any axis)
    kept = (m > 0).float()
    for dims, count in (((1, 2, 3), 32 * 30 * 200), ((0, 1, 3), 3 * 32 * 200), ((0, 1, 2), 3 * 32 * 30)):
        rates = kept.mean(dim=dims)
        assert float((rates - (1 - p)).abs().max()) < 6 * np.sqrt(p * (1 - p) / count)
    # neighbouring elements are independent: P(both kept) ~ (1 - p)^2
    both = float((kept[..., 1:] * kept[..., :-1]).mean())
    assert abs(both - (1 - p) ** 2) < 0.01


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_keyed_by_seed_step_position_only(backend):
    alone = ops.dropout_masks([42], [9], 4, 6, 8, 30, 0.3, backend=backend)
    array = ops.dropout_masks([7, 42, 8], [1, 9, 100], 4, 20, 8, 30, 0.3, backend=backend)  # longer T
    assert torch.equal(array[1, :, :6], alone[0])
    assert not torch.equal(array[0, :, :6], alone[0])
    other_step = ops.dropout_masks([42], [10], 4, 6, 8, 30, 0.3, backend=backend)
    other_seed = ops.dropout_masks([43], [9], 4, 6, 8, 30, 0.3, backend=backend)
    assert not torch.equal(other_step, alone) and not torch.equal(other_seed, alone)
    with pytest.raises(ValueError, match="p must lie"):
        ops.dropout_masks([1], [1], 2, 2, 2, 30, 1.0, backend=backend)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("positions", [0, 4 * 9])
def test_heads_step_on_gpu_equals_reference(precision, positions):
    """On a GPU (backend auto = the batched op) the same losses, dy and heads as the reference on the CPU."""
    y, st, slots, n_lab, tags = _case(3)
    ref = {k: v.clone() for k, v in st.items()}
    r_losses, r_dy = ops.heads_step_(y, *(ref[n] for n in ("head_w", "head_b", "w_sq", "b_sq", "w_acc", "b_acc")),
                                     slots, n_lab, tags, positions=positions, backend="reference",
                                     precision=precision, **KW)
    gpu = {k: v.cuda() for k, v in st.items()}
    losses, dy = ops.heads_step_(y.cuda(), *(gpu[n] for n in ("head_w", "head_b", "w_sq", "b_sq", "w_acc", "b_acc")),
                                 slots.cuda(), n_lab.cuda(), tags.cuda(), positions=positions, precision=precision,
                                 **KW)
    torch.testing.assert_close(losses.cpu(), r_losses, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dy.cpu(), r_dy, rtol=1e-4, atol=1e-5)
    for name in st:
        torch.testing.assert_close(gpu[name].cpu(), ref[name], rtol=1e-4, atol=1e-5)

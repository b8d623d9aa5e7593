"""Fused Adadelta (dense, masked, lazy rows) and the sparse embedding backward.

Oracles: the pure-PyTorch references in mtlfast.ops.adadelta and torch.optim.Adadelta itself.
Tolerances (written down once):
* float64: rtol 1e-12, atol 1e-14 -- the compiled kernels follow torch's operation order, so only the lazy
  rho**k (one multiplication instead of k) and libm differences remain.
* float32, one step, compiled vs reference: rtol 2e-6, atol 1e-7 (a few ulps: sqrt/div rounding of the
  vector units vs ATen's kernels).
* float32, many steps vs torch.optim.Adadelta: rtol 1e-5, atol 1e-7 (rounding differences accumulate).
"""

import pytest
import torch

import mtlfast.ops.adadelta as O
from mtlfast.ops.dispatch import _C, cpu_kernel_paths, forced_cpu_kernel_path

HP = dict(lr=0.1, rho=0.95, eps=1e-8)
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-14), torch.float32: dict(rtol=1e-5, atol=1e-7)}
ONE_STEP_F32 = dict(rtol=2e-6, atol=1e-7)

needs_c = pytest.mark.skipif(not O.has_fused_adadelta(), reason="mtlfast._C with the fused optimiser ops not built")


def _paths():
    """The Adadelta kernel builds this CPU runs (avx512_bf16 runs the same Adadelta kernel as avx512)."""
    if not O.has_fused_adadelta():
        return []
    return [p for p in cpu_kernel_paths() if p in ("portable", "avx2", "avx512")]


@pytest.fixture(params=_paths() or [None])
def cpu_path(request):
    if request.param is None:
        pytest.skip("mtlfast._C not built")
    with forced_cpu_kernel_path(request.param):
        yield request.param
        assert _C.last_cpu_kernel_paths()["adadelta"] == request.param  # the op ran the forced build


def _state(shapes, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for shape in shapes:
        out.append(
            [
                torch.randn(shape, generator=g, dtype=dtype),
                torch.randn(shape, generator=g, dtype=dtype),
                torch.rand(shape, generator=g, dtype=dtype) * 0.1,
                torch.rand(shape, generator=g, dtype=dtype) * 0.01,
            ]
        )
    return [list(x) for x in zip(*out)]  # params, grads, sq, acc


def _clone(lists):
    return [[t.clone() for t in l] for l in lists]


SHAPES = [(0,), (1,), (15,), (16,), (17,), (33, 7), (4, 3, 5, 2), (70001,)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_equals_reference_one_step(cpu_path, dtype):
    a = _state(SHAPES, dtype, 0)
    b = _clone(a)
    O.adadelta_(*a, **HP, backend="c")
    O.reference_adadelta_(*b, **HP)
    tol = TOL[torch.float64] if dtype == torch.float64 else ONE_STEP_F32
    for x, y in zip(a[0] + a[2] + a[3], b[0] + b[2] + b[3]):
        torch.testing.assert_close(x, y, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_matches_torch_optim_over_steps(dtype):
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(6, 5, bidirectional=True, batch_first=True).to(dtype)
    ref = [p.detach().clone().requires_grad_() for p in lstm.parameters()]
    ours = [p.detach().clone() for p in lstm.parameters()]
    sq = [torch.zeros_like(p) for p in ours]
    acc = [torch.zeros_like(p) for p in ours]
    opt = torch.optim.Adadelta(ref, **HP)
    for step in range(25):
        grads = [torch.randn_like(p) * (step + 1) for p in ours]
        for p, g in zip(ref, grads):
            p.grad = g.clone()
        opt.step()
        O.adadelta_(ours, grads, sq, acc, **HP)
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q.detach(), **TOL[dtype])
    for s, q in zip(sq, ref):
        torch.testing.assert_close(s, opt.state[q]["square_avg"], **TOL[dtype])


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_slot_mask_matches_torch_optim_skipping_none_grads(backend):
    """Heads stacked [K, S, L, D]: only (k, slot[k]) gets a gradient each step; torch.optim skips the rest."""
    K, S, L, D = 3, 4, 5, 7
    torch.manual_seed(2)
    heads = torch.randn(K, S, L, D)
    sq, acc = torch.zeros_like(heads), torch.zeros_like(heads)
    ref = [[heads[k, s].clone().requires_grad_() for s in range(S)] for k in range(K)]
    opt = torch.optim.Adadelta([p for row in ref for p in row], **HP)
    for step in range(12):
        slots = torch.randint(-1, S, (K,))  # -1: run k drew nothing (e.g. left the array)
        grads = torch.randn(K, S, L, D) * 3  # garbage outside the drawn slots: must be ignored
        for k in range(K):
            for s in range(S):
                ref[k][s].grad = grads[k, s].clone() if int(slots[k]) == s else None
        opt.step()
        O.adadelta_([heads], [grads], [sq], [acc], **HP, mask=O.slot_mask(slots, S), backend=backend)
    for k in range(K):
        for s in range(S):
            torch.testing.assert_close(heads[k, s], ref[k][s].detach(), **TOL[torch.float32])
            st = opt.state[ref[k][s]]
            if st:
                torch.testing.assert_close(sq[k, s], st["square_avg"], **TOL[torch.float32])
            else:
                assert torch.all(sq[k, s] == 0) and torch.all(acc[k, s] == 0)


@needs_c
def test_run_mask_and_mask_list_equal_reference():
    a = _state([(5, 3, 4), (5, 6)], torch.float32, 3)
    b = _clone(a)
    masks = [torch.tensor([True, False, True, True, False]), None]
    O.adadelta_(*a, **HP, mask=masks, backend="c")
    O.reference_adadelta_(*b, **HP, mask=masks)
    for x, y in zip(a[0] + a[2] + a[3], b[0] + b[2] + b[3]):
        torch.testing.assert_close(x, y, **ONE_STEP_F32)
    assert torch.equal(a[0][0][1], _state([(5, 3, 4)], torch.float32, 3)[0][0][1])  # skipped block untouched


def _dense_embedding_run(V, E, steps, dtype, seed, K=None):
    """Sparse steps through LazyEmbeddingAdadelta vs dense torch.optim.Adadelta on nn.Embedding."""
    g = torch.Generator().manual_seed(seed)
    shape = (V, E) if K is None else (K, V, E)
    init = torch.randn(shape, generator=g, dtype=dtype)
    table = init.clone()
    lazy = O.LazyEmbeddingAdadelta(table, **HP, ignore_id=0)
    embs = [torch.nn.Embedding(V, E, padding_idx=0).to(dtype) for _ in range(K or 1)]
    for k, emb in enumerate(embs):
        emb.weight.data.copy_(init if K is None else init[k])
    opts = [torch.optim.Adadelta(emb.parameters(), **HP) for emb in embs]
    for step in range(steps):
        n_tok = 0 if step == 3 else 12  # step 3: an all-zero gradient step
        ids = torch.randint(0, V // 2 if step < 6 else V, (K or 1, n_tok), generator=g)  # late rows: long gaps
        gout = torch.randn(K or 1, n_tok, E, generator=g, dtype=dtype)
        for k, (emb, opt) in enumerate(zip(embs, opts)):
            opt.zero_grad()
            emb(ids[k]).backward(gout[k])
            if emb.weight.grad is None:
                emb.weight.grad = torch.zeros_like(emb.weight)
            opt.step()
        lazy.step(ids if K is not None else ids[0], gout if K is not None else gout[0])
        for k, emb in enumerate(embs):
            torch.testing.assert_close(table if K is None else table[k], emb.weight.detach(), **TOL[dtype])
    lazy.flush()
    for k, (emb, opt) in enumerate(zip(embs, opts)):
        st = opt.state[emb.weight]
        torch.testing.assert_close(lazy.sq if K is None else lazy.sq[k], st["square_avg"], **TOL[dtype])
        torch.testing.assert_close(lazy.acc if K is None else lazy.acc[k], st["acc_delta"], **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("K", [None, 3])
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_lazy_rows_equal_dense_torch_adadelta(dtype, K, backend, monkeypatch):
    if backend == "reference":
        monkeypatch.setattr(O, "has_fused_adadelta", lambda: False)
    _dense_embedding_run(V=40, E=5, steps=15, dtype=dtype, seed=4, K=K)


@needs_c
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_fused_equals_reference(dtype):
    g = torch.Generator().manual_seed(5)
    K, V, E, N = 3, 30, 19, 8
    table = torch.randn(K, V, E, generator=g, dtype=dtype)
    sq = torch.rand(K, V, E, generator=g, dtype=dtype) * 0.1
    acc = torch.rand(K, V, E, generator=g, dtype=dtype) * 0.01
    last = torch.randint(0, 9, (K, V), generator=g)
    ids = torch.stack([torch.randperm(V, generator=g)[:N] for _ in range(K)])
    ids[1, 5:] = -1
    grads = torch.randn(K, N, E, generator=g, dtype=dtype)
    a = [table.clone(), sq.clone(), acc.clone(), last.clone()]
    O.adadelta_rows_(a[0], grads, ids, a[1], a[2], a[3], 10, **HP, backend="c")
    O.reference_adadelta_rows_(table, grads, ids, sq, acc, last, 10, **HP)
    tol = TOL[torch.float64] if dtype == torch.float64 else ONE_STEP_F32
    for x, y in zip(a, [table, sq, acc, last]):
        torch.testing.assert_close(x, y, **tol)
    O.adadelta_rows_flush_(a[1], a[2], a[3], 12, rho=0.95, backend="c")
    O.reference_adadelta_rows_flush_(sq, acc, last, 12, rho=0.95)
    for x, y in zip(a[1:], [sq, acc, last]):
        torch.testing.assert_close(x, y, **tol)
    assert torch.all(a[3] == 12)


@needs_c
@pytest.mark.parametrize("batched", [False, True])
def test_embedding_grad_rows_equals_reference_and_index_add(batched):
    g = torch.Generator().manual_seed(6)
    K, N, E, V = 4, 50, 9, 20
    ids = torch.randint(0, V, (K, N), generator=g)
    ids[2] = 3  # one run sees a single distinct id
    gout = torch.randn(K, N, E, generator=g)
    if not batched:
        ids, gout = ids[0], gout[0]
    r_c, g_c = O.embedding_grad_rows(ids, gout, V, ignore_id=0, backend="c")
    r_r, g_r = O.reference_embedding_grad_rows(ids, gout, V, ignore_id=0)
    assert torch.equal(r_c, r_r)
    torch.testing.assert_close(g_c, g_r)
    ids2, gout2, r2, g2 = (x.unsqueeze(0) if not batched else x for x in (ids, gout, r_c, g_c))
    for k in range(ids2.shape[0]):
        keep = ids2[k] != 0
        dense = torch.zeros(V, E).index_add_(0, ids2[k][keep], gout2[k][keep])
        valid = r2[k] >= 0
        assert 0 not in r2[k][valid].tolist()
        assert torch.equal(torch.sort(r2[k][valid]).values, torch.unique(ids2[k][keep]))
        torch.testing.assert_close(g2[k][valid], dense[r2[k][valid]])
        assert torch.all(g2[k][~valid] == 0)


@needs_c
def test_errors_name_the_argument():
    p = [torch.zeros(4, 3)]
    with pytest.raises(RuntimeError, match=r"grads\[0\] must have shape \[4, 3\]"):
        _C.adadelta_(p, [torch.zeros(4, 2)], [torch.zeros(4, 3)], [torch.zeros(4, 3)], [], 0.1, 0.95, 1e-8)
    with pytest.raises(RuntimeError, match=r"masks\[0\] must have a shape that is a prefix"):
        O.adadelta_(p, [torch.zeros(4, 3)], [torch.zeros(4, 3)], [torch.zeros(4, 3)], mask=torch.ones(3, dtype=torch.bool))
    t = torch.zeros(5, 2)
    with pytest.raises(RuntimeError, match=r"row_ids must lie in \[0, 5\)"):
        O.adadelta_rows_(t, torch.zeros(1, 2), torch.tensor([7]), t.clone(), t.clone(), torch.zeros(5, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="backend must be"):
        O.adadelta_(p, p, p, p, backend="gpu")


def test_non_contiguous_falls_back_to_reference():
    base = torch.randn(6, 4)
    p = base.t()  # not contiguous
    g = torch.randn(4, 6)
    s, a = torch.zeros(4, 6), torch.zeros(4, 6)
    expect = p.clone()
    O.reference_adadelta_([expect], [g], [s.clone()], [a.clone()], **HP)
    O.adadelta_([p], [g], [s], [a], **HP)
    torch.testing.assert_close(p, expect)
    torch.testing.assert_close(base.t(), expect)


def test_fused_adadelta_optimizer_matches_torch():
    torch.manual_seed(7)
    m1 = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3), torch.nn.Linear(3, 2))
    m2 = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3), torch.nn.Linear(3, 2))
    m2.load_state_dict(m1.state_dict())
    o1 = torch.optim.Adadelta(m1.parameters(), **HP)
    o2 = O.FusedAdadelta(m2.parameters(), **HP)
    x = torch.randn(8, 5)
    for _ in range(10):
        for m, o in ((m1, o1), (m2, o2)):
            o.zero_grad(set_to_none=True)
            m[:3](x).sum().backward()  # the last Linear never gets a gradient: skipped by both
            o.step()
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, **TOL[torch.float32])


def test_lazy_state_dict_round_trip():
    table = torch.randn(10, 3)
    lazy = O.LazyEmbeddingAdadelta(table)
    lazy.step(torch.tensor([1, 2, 2]), torch.randn(3, 3))
    lazy.step(torch.tensor([5]), torch.randn(1, 3))
    st = lazy.state_dict()
    other = O.LazyEmbeddingAdadelta(table.clone())
    other.load_state_dict(st)
    for o in (lazy, other):
        o.step(torch.tensor([1, 5]), torch.ones(2, 3))
    torch.testing.assert_close(lazy.table, other.table)
    torch.testing.assert_close(lazy.sq, other.sq)


@needs_c
def test_non_contiguous_grads_keep_fused_path(monkeypatch):
    p, s, a = torch.randn(4, 6), torch.zeros(4, 6), torch.zeros(4, 6)
    g = torch.randn(6, 4).t()  # a view: only read, so the fused op still runs on a contiguous copy
    expect = [p.clone(), g.contiguous(), s.clone(), a.clone()]
    O.reference_adadelta_(*expect, **HP)
    monkeypatch.setattr(O, "reference_adadelta_", None)  # the fallback must not be taken
    O.adadelta_([p], [g], [s], [a], **HP)
    torch.testing.assert_close(p, expect[0], **ONE_STEP_F32)


# ---------------------------------------------------------------------------------------------------------
# bench/reference_protocol.py: the plain-PyTorch baseline every speed claim uses (smoke test + metric oracle)


def _reference_protocol():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "reference_protocol.py"
    spec = importlib.util.spec_from_file_location("reference_protocol", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reference_protocol_metric_matches_sklearn():
    sklearn = pytest.importorskip("sklearn.metrics")
    R = _reference_protocol()
    import numpy as np

    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    f1, acc = R.f1_accuracy(gold, pred, outside=2)
    assert f1 == pytest.approx(sklearn.f1_score(gold, pred, labels=[0, 1, 3], average="micro"))
    assert acc == pytest.approx(sklearn.accuracy_score(gold, pred))
    assert R.f1_accuracy(gold, pred, outside=None) == (acc, acc)


def test_reference_protocol_trains_two_tasks(tmp_path):
    R = _reference_protocol()
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran"]
    g = torch.Generator().manual_seed(0)
    for name, labels in (("t1", ["O", "B-X", "I-X"]), ("t2", ["N", "V", "D"])):
        d = tmp_path / name
        d.mkdir()
        for split in ("train", "test"):
            lines = []
            for _ in range(40):
                n = int(torch.randint(1, 12, (1,), generator=g))
                for _ in range(n):
                    w = words[int(torch.randint(0, len(words), (1,), generator=g))]
                    lines.append(f"{w}\t{labels[len(w) % 3]}")
                lines.append("")
            (d / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    glove = tmp_path / "glove.txt"
    glove.write_text("".join(f"{w} " + " ".join(["0.1"] * 6) + "\n" for w in words[:5]))
    res = R.train([tmp_path / "t1", tmp_path / "t2"], steps=30, seed=0, glove_path=str(glove), threads=1,
                  warmup_steps=5)
    assert set(res["tasks"]) == {"t1", "t2"}
    for s in res["tasks"].values():
        assert 0.0 <= s["f1"] <= 1.0 and 0.0 <= s["accuracy"] <= 1.0
    assert res["ms_per_step"] > 0 and len(res["loss_curve"]) >= 3
    again = R.train([tmp_path / "t1", tmp_path / "t2"], steps=30, seed=0, glove_path=str(glove), threads=1,
                    warmup_steps=5)
    assert again["loss_curve"] == res["loss_curve"]  # seeded: same numbers


@needs_c
def test_parallel_chunks_cross_segment_boundaries():
    """Enough elements for several parallel tasks (128k elements each), with task boundaries inside tensors and
    inside masked runs of blocks."""
    shapes = [(100003,), (7, 30011), (5, 3, 17, 1001)]
    a = _state(shapes, torch.float32, 8)
    b = _clone(a)
    masks = [None, torch.tensor([1, 0, 1, 1, 0, 1, 1], dtype=torch.bool),
             torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0], [1, 0, 1], [1, 1, 1]], dtype=torch.bool)]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        O.adadelta_(*a, **HP, mask=masks, backend="c")
    finally:
        torch.set_num_threads(threads)
    O.reference_adadelta_(*b, **HP, mask=masks)
    for x, y in zip(a[0] + a[2] + a[3], b[0] + b[2] + b[3]):
        torch.testing.assert_close(x, y, **ONE_STEP_F32)


def _rows_problem(K=3, V=20, E=4, N=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(K, V, E, generator=g)
    state = [table, torch.rand(K, V, E, generator=g) * 0.1, torch.rand(K, V, E, generator=g) * 0.01,
             torch.randint(0, 3, (K, V), generator=g)]
    ids = torch.randint(0, V, (K, N), generator=g)
    ids[:, -2:] = -1  # padding
    ids[1] = 5  # one run sees one distinct id
    return state, ids, torch.randn(K, N, E, generator=g)


@pytest.mark.parametrize("batched", [False, True])
def test_reference_row_ops_make_every_tensor_on_the_input_device(batched):
    """The references are the update path off the CPU, so every tensor they make must follow the inputs'
    device. Run them on CPU inputs with torch's default device set to 'meta': a factory call that does not
    name the inputs' device makes a meta tensor there, and the op then fails or returns a meta result."""
    state, ids, gout = _rows_problem()
    if not batched:
        state, ids, gout = [x[0] for x in state], ids[0], gout[0]
    expect = [x.clone() for x in state]
    O.reference_embedding_rows_update_(*expect, ids, gout, 4, **HP)
    got = [x.clone() for x in state]
    with torch.device("meta"):
        assert torch.empty(1).device.type == "meta"  # the check is live
        rows, grads = O.reference_embedding_grad_rows(ids, gout, state[0].shape[-2])
        O.reference_embedding_rows_update_(*got, ids, gout, 4, **HP)
        O.reference_adadelta_rows_flush_(got[1], got[2], got[3], 6, rho=HP["rho"])
    assert rows.device.type == grads.device.type == "cpu"
    O.reference_adadelta_rows_flush_(expect[1], expect[2], expect[3], 6, rho=HP["rho"])
    for x, y in zip(got, expect):
        assert x.device.type == "cpu"
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU"))])
def test_embedding_rows_update_reference_on_device_equals_per_row_oracle(device):
    """The device-generic update (the path on any device without a compiled op) against an oracle written
    row by row in float64: sum each row's gradient, decay its state by rho per missed step, Adadelta."""
    (table, sq, acc, last), ids, gout = _rows_problem(seed=3)
    lr, rho, eps = HP["lr"], HP["rho"], HP["eps"]
    step = 5
    exp = [x.double().clone() for x in (table, sq, acc)]
    exp_last = last.clone()
    for k in range(ids.shape[0]):
        for v in set(ids[k].tolist()) - {-1}:
            gsum = gout[k][ids[k] == v].double().sum(0)
            decay = rho ** max(step - 1 - int(last[k, v]), 0)
            s = exp[1][k, v] * decay * rho + (1 - rho) * gsum**2
            upd = torch.sqrt(exp[2][k, v] * decay + eps) / torch.sqrt(s + eps) * gsum
            exp[2][k, v] = exp[2][k, v] * decay * rho + (1 - rho) * upd**2
            exp[1][k, v] = s
            exp[0][k, v] -= lr * upd
            exp_last[k, v] = step
    got = [x.to(device) for x in (table, sq, acc, last)]
    O.embedding_rows_update_(*got, ids.to(device), gout.to(device), step, **HP, backend="reference")
    for x, y in zip(got[:3], exp):
        torch.testing.assert_close(x.cpu().double(), y, rtol=1e-5, atol=1e-7)
    assert torch.equal(got[3].cpu(), exp_last)

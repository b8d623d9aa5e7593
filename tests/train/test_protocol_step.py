"""The engine's training step against an independent PyTorch reference, for both protocols.

The reference is written from the protocol's semantics (README "Original vs clean"), with autograd and
``torch.optim.Adadelta`` state, in float64, and shares no code with the engine:

- original: a TensorFlow-layout ``BasicLSTMCell`` (one [E+H, 4H] matrix per direction, gates i, j, f, o,
  ``forget_bias`` 1.0 added as a constant, sequences of each length run forward and reversed), the loss as
  ``F.cross_entropy`` over all ``batch_size x max_len`` positions with target PAD (0) at padding, one
  ``torch.optim.Adadelta`` per task over the bi-LSTM and that task's head, and TensorFlow's
  ``SparseApplyAdadelta`` for the embedding written as a plain loop over the batch's ids in time-major order
  (padding included: a zero gradient there), with one state per task;
- clean: ``torch.nn.LSTM`` (packed sequences), the engine's dropout mask applied to its outputs,
  ``F.cross_entropy`` over the real tokens, one ``torch.optim.Adadelta`` over everything with the embedding
  table as a dense parameter (untouched rows decay).

Dropout: the clean test uses dropout 0.3 and applies, in the reference, the very mask the engine drew (the
engine's step batch is wrapped to record it); the original protocol draws no mask. Batches: the engine's draw
(task slot, sentence indices) is recorded and the reference builds its batch from it with the data layer's
``make_batch``, independently of the engine's one-call assembly of the K batches.

Each test trains an array of four runs (two single, two pair) for several steps through the engine's own
step function and the reference one run at a time on the same batches, then compares every parameter and
every optimiser accumulator. A larger learning rate than the paper's (lr 1.0) makes the parameters move
enough for the comparison to see the gradients' size, not only their sign (Adadelta's first steps are
nearly sign-only); the accumulators of squared gradients are compared as well, which see the scale directly.
Tolerance: rtol 2e-4, atol 1e-6 (float32 engine against a float64 reference over several steps).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtlfast import ops
from mtlfast.train import RunSpec, TrainSettings, prepare_inputs, run_id_for
from mtlfast.train import engine
from mtlfast.train.model import ModelArray

RTOL, ATOL = 2e-4, 1e-6
STEPS = 5
LR, RHO, EPS = 1.0, 0.9, 1e-6


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory):
    from mtlfast.data.synthetic import generate_suite

    root = tmp_path_factory.mktemp("suite")
    generate_suite(root, seed=0)
    return root


TASKS = ["coarse", "entity", "keep"]
RUNS = [("coarse",), ("entity", "keep"), ("keep",), ("coarse", "entity")]


def _engine_run(inputs, settings, runs=RUNS, steps=STEPS):
    """Train ``runs`` as one array through the engine's step; return (initial states, final states, the
    batches each run drew, its task slots, its losses)."""
    specs = [RunSpec(run_id_for(t, 3), t, 3, 1000) for t in runs]
    started = [engine._start_run(s, inputs, settings) for s in specs]
    objs = [r for r, _ in started]
    init = [{k: v.clone() for k, v in st.items()} for _, st in started]
    arr = ModelArray([st for _, st in started], [0] * len(specs), "cpu")
    drawn = {s.run_id: [] for s in specs}
    draws, masks = [], []
    original_draw, original_step_batch = engine._draw, engine._step_batch

    def recording_draw(run, st):
        out = original_draw(run, st)
        draws.append((run.spec.run_id, out))
        return out

    def recording_step_batch(arr_, runs_, inp, st, dropout, lap=engine._no_lap):
        sb = original_step_batch(arr_, runs_, inp, st, dropout, lap)
        for k, r in enumerate(runs_):
            t = int(sb.lengths[k].max())
            masks.append((r.spec.run_id, None if sb.drop is None else sb.drop[k, :, :t].clone()))
        return sb

    step = engine._array_step_original if settings.protocol == "original" else engine._array_step
    losses = {s.run_id: [] for s in specs}
    engine._draw, engine._step_batch = recording_draw, recording_step_batch
    try:
        for _ in range(steps):
            ls, _slots = step(arr, objs, inputs, settings)
            assert isinstance(ls, torch.Tensor) and ls.shape == (len(specs),)
            for s, l in zip(specs, ls.tolist()):
                losses[s.run_id].append(l)
    finally:
        engine._draw, engine._step_batch = original_draw, original_step_batch
    from mtlfast.data import make_batch

    for (rid, (slot, idx)), (rid2, mask) in zip(draws, masks):
        assert rid == rid2
        task = next(s.tasks for s in specs if s.run_id == rid)[slot]
        tok, tag, ln = make_batch(inputs.suite.tasks[task].splits["train"], idx, settings.max_len)
        drawn[rid].append((slot, np.asarray(tok), np.asarray(tag), np.asarray(ln), mask))
    final = [arr.run_state(k, steps) for k in range(len(specs))]
    if settings.protocol == "clean":  # bring the lazily decayed embedding rows to the current step
        for st in final:
            missed = (steps - st["emb.last"]).to(torch.float64)
            f = (RHO ** missed).to(torch.float32)[:, None]
            st["emb.sq"] = st["emb.sq"] * f
            st["emb.ad"] = st["emb.ad"] * f
    return specs, init, final, drawn, losses


# ---------------------------------------------------------------------------------------------------------
# original protocol: TensorFlow-layout reference

def _to_tf(w_ih, w_hh, bias, forget_bias):
    """Engine layout (gates i, f, g, o; w_ih [4H, E], w_hh [4H, H]; forget bias folded into bias) -> a TF
    BasicLSTMCell's (matrix [E+H, 4H] with gates i, j, f, o; bias without the forget bias)."""
    H = w_hh.shape[1]
    W = torch.cat([w_ih, w_hh], dim=1)  # [4H, E+H]
    blocks = W.split(H, dim=0)
    M = torch.cat([blocks[0], blocks[2], blocks[1], blocks[3]], dim=0).t().contiguous()
    b = bias.split(H)
    b_tf = torch.cat([b[0], b[2], b[1] - forget_bias, b[3]])
    return M, b_tf


def _from_tf(M, b_tf, E, forget_bias):
    H = M.shape[1] // 4
    W = M.t()
    i, j, f, o = W.split(H, dim=0)
    W = torch.cat([i, f, j, o], dim=0)
    bi, bj, bf, bo = b_tf.split(H)
    return W[:, :E], W[:, E:], torch.cat([bi, bf + forget_bias, bj, bo])


def _tf_cell(x, h, c, M, b, forget_bias=1.0):
    z = torch.cat([x, h], dim=-1) @ M + b
    i, j, f, o = z.chunk(4, dim=-1)
    c = c * torch.sigmoid(f + forget_bias) + torch.sigmoid(i) * torch.tanh(j)
    return torch.tanh(c) * torch.sigmoid(o), c


def _tf_birnn(x, lengths, Ms, bs):
    """TF's bidirectional_rnn with sequence_length: outputs 0 at t >= length; the backward direction runs
    over each sequence's own reversed prefix."""
    B, T, _ = x.shape
    H = Ms[0].shape[1] // 4
    rows = []
    for bi in range(B):
        L = int(lengths[bi])
        outs = []
        for d in (0, 1):
            seq = x[bi, :L] if d == 0 else x[bi, :L].flip(0)
            h = x.new_zeros(H)
            c = x.new_zeros(H)
            ys = []
            for t in range(L):
                h, c = _tf_cell(seq[t], h, c, Ms[d], bs[d])
                ys.append(h)
            y = torch.stack(ys)
            if d == 1:
                y = y.flip(0)
            outs.append(torch.cat([y, x.new_zeros(T - L, H)]))
        rows.append(torch.cat(outs, dim=-1))
    return torch.stack(rows)


def _tf_sparse_adadelta(table, sq, ad, ids, grads, lr, rho, eps):
    """TensorFlow's SparseApplyAdadelta kernel: one entry after the other (duplicates updated repeatedly)."""
    for i in range(ids.shape[0]):
        r = int(ids[i])
        g = grads[i]
        sq[r] = sq[r] * rho + g * g * (1 - rho)
        u = (ad[r] + eps).sqrt() * (sq[r] + eps).rsqrt() * g
        ad[r] = ad[r] * rho + u * u * (1 - rho)
        table[r] -= u * lr


class OriginalReference:
    """One run of the original model, from its semantics (float64)."""

    def __init__(self, state, tasks, n_labels, settings):
        d = torch.float64
        self.E = state["emb"].shape[1]
        self.emb = state["emb"].to(d).clone()
        self.Ms, self.bs = [], []
        for k in (0, 1):
            M, b = _to_tf(state["w_ih"][k].to(d), state["w_hh"][k].to(d), state["bias"][k].to(d), 1.0)
            self.Ms.append(M.requires_grad_(True))
            self.bs.append(b.requires_grad_(True))
        self.W = [state["head_w"][s, : n_labels[s]].to(d).clone().requires_grad_(True) for s in range(len(tasks))]
        self.b = [state["head_b"][s, : n_labels[s]].to(d).clone().requires_grad_(True) for s in range(len(tasks))]
        # one Adadelta per task (the original builds its optimiser inside the task loop)
        self.opt = [torch.optim.Adadelta(self.Ms + self.bs + [self.W[s], self.b[s]], lr=settings.lr,
                                         rho=settings.rho, eps=settings.eps) for s in range(len(tasks))]
        self.emb_sq = [torch.zeros_like(self.emb) for _ in tasks]
        self.emb_ad = [torch.zeros_like(self.emb) for _ in tasks]
        self.settings = settings

    def step(self, slot, tokens, tags, lengths):
        st = self.settings
        B, T0 = tokens.shape
        T = st.max_len
        tok = np.zeros((B, T), dtype=np.int64)
        tag = np.zeros((B, T), dtype=np.int64)  # target PAD (0) at padding
        tok[:, :T0] = np.where(tags >= 0, tokens, 0)
        tag[:, :T0] = np.where(tags >= 0, tags, 0)
        tok_t = torch.from_numpy(tok)
        x = self.emb[tok_t].clone().requires_grad_(True)
        y = _tf_birnn(x, lengths, self.Ms, self.bs)
        logits = y @ self.W[slot].t() + self.b[slot]
        loss = F.cross_entropy(logits.reshape(B * T, -1), torch.from_numpy(tag).reshape(-1))  # mean over B*T
        self.opt[slot].zero_grad(set_to_none=True)
        loss.backward()
        self.opt[slot].step()
        loss = loss.detach()
        ids = tok_t.t().reshape(-1)  # the original feeds [timesteps, batch]
        grads = x.grad.transpose(0, 1).reshape(B * T, -1)
        with torch.no_grad():
            _tf_sparse_adadelta(self.emb, self.emb_sq[slot], self.emb_ad[slot], ids, grads, st.lr, st.rho, st.eps)
        return float(loss)

    def compare(self, st_final, n_labels):
        f = lambda t: t.to(torch.float64)  # noqa: E731
        torch.testing.assert_close(f(st_final["emb"]), self.emb, rtol=RTOL, atol=ATOL)
        for k in (0, 1):
            w_ih, w_hh, bias = _from_tf(self.Ms[k].detach(), self.bs[k].detach(), self.E, 1.0)
            torch.testing.assert_close(f(st_final["w_ih"][k]), w_ih, rtol=RTOL, atol=ATOL)
            torch.testing.assert_close(f(st_final["w_hh"][k]), w_hh, rtol=RTOL, atol=ATOL)
            torch.testing.assert_close(f(st_final["bias"][k]), bias, rtol=RTOL, atol=ATOL)
        for s in range(len(self.W)):
            n = n_labels[s]
            torch.testing.assert_close(f(st_final["head_w"][s, :n]), self.W[s].detach(), rtol=RTOL, atol=ATOL)
            torch.testing.assert_close(f(st_final["head_b"][s, :n]), self.b[s].detach(), rtol=RTOL, atol=ATOL)
            # per-task optimiser state of the shared layers
            opt_state = self.opt[s].state
            for key, name in (("square_avg", "sq"), ("acc_delta", "ad")):
                torch.testing.assert_close(f(st_final[f"emb.{name}"][s]), (self.emb_sq if name == "sq"
                                                                           else self.emb_ad)[s],
                                           rtol=RTOL, atol=ATOL)
                for k in (0, 1):
                    if self.Ms[k] not in opt_state:  # this task was never drawn
                        assert float(st_final[f"w_ih.{name}"][s].abs().max()) == 0.0
                        continue
                    w_ih, w_hh, bias = _from_tf(opt_state[self.Ms[k]][key], opt_state[self.bs[k]][key], self.E, 0.0)
                    torch.testing.assert_close(f(st_final[f"w_ih.{name}"][s, k]), w_ih, rtol=RTOL, atol=ATOL)
                    torch.testing.assert_close(f(st_final[f"w_hh.{name}"][s, k]), w_hh, rtol=RTOL, atol=ATOL)
                    torch.testing.assert_close(f(st_final[f"bias.{name}"][s, k]), bias, rtol=RTOL, atol=ATOL)
                if self.W[s] in opt_state:
                    torch.testing.assert_close(f(st_final[f"head_w.{name}"][s, :n]), opt_state[self.W[s]][key],
                                               rtol=RTOL, atol=ATOL)
                    torch.testing.assert_close(f(st_final[f"head_b.{name}"][s, :n]), opt_state[self.b[s]][key],
                                               rtol=RTOL, atol=ATOL)


def _settings(protocol, dropout=0.0):
    return TrainSettings(hidden=6, batch_size=5, max_len=15, dropout=dropout, lr=LR, rho=RHO, eps=EPS,
                         protocol=protocol, eval_splits=("test",))


def test_original_step_equals_reference_in_mixed_array(suite_dir):
    inputs = prepare_inputs([suite_dir], task_names=TASKS, emb_dim=7, protocol="original")
    settings = _settings("original", dropout=0.1)  # the configured dropout never reaches the heads
    specs, init, final, drawn, losses = _engine_run(inputs, settings)
    seen_pair_both = False
    for spec, st0, st1 in zip(specs, init, final):
        n_labels = [inputs.n_labels(t) for t in spec.tasks]
        ref = OriginalReference(st0, spec.tasks, n_labels, settings)
        ref_losses = []
        for slot, tok, tag, ln, mask in drawn[spec.run_id]:
            assert mask is None
            ref_losses.append(ref.step(slot, tok, tag, ln))
        np.testing.assert_allclose(losses[spec.run_id], ref_losses, rtol=1e-5)
        ref.compare(st1, n_labels)
        if len(spec.tasks) == 2 and len({d[0] for d in drawn[spec.run_id]}) == 2:
            seen_pair_both = True
            # one optimiser per task: both tasks' accumulators of the shared layers moved, and differ
            assert not torch.equal(st1["w_hh.sq"][0], st1["w_hh.sq"][1])
            assert float(st1["w_hh.sq"][0].abs().max()) > 0 and float(st1["w_hh.sq"][1].abs().max()) > 0
    assert seen_pair_both, "no pair run drew both of its tasks: the per-task optimiser state was not exercised"
    # batches were cut to max_len and some sentence lost its EOS, some kept it, and padding occurred
    all_tags = [tag for runs in drawn.values() for _, _, tag, _, _ in runs]
    assert any((t == -100).any() for t in all_tags)
    assert any(((t > 0) & (t != 3)).all(axis=1).any() for t in all_tags), "no cut sentence (EOS lost)"


# ---------------------------------------------------------------------------------------------------------
# clean protocol: torch.nn.LSTM reference

class CleanReference:
    def __init__(self, state, tasks, n_labels, settings):
        d = torch.float64
        E = state["emb"].shape[1]
        H = state["w_hh"].shape[2]
        self.emb = torch.nn.Parameter(state["emb"].to(d).clone())
        self.lstm = torch.nn.LSTM(E, H, batch_first=True, bidirectional=True).to(d)
        with torch.no_grad():
            for k, sfx in ((0, ""), (1, "_reverse")):
                getattr(self.lstm, "weight_ih_l0" + sfx).copy_(state["w_ih"][k])
                getattr(self.lstm, "weight_hh_l0" + sfx).copy_(state["w_hh"][k])
                getattr(self.lstm, "bias_ih_l0" + sfx).copy_(state["bias"][k])
                getattr(self.lstm, "bias_hh_l0" + sfx).zero_()
                getattr(self.lstm, "bias_hh_l0" + sfx).requires_grad_(False)  # one bias, as the engine's
        self.W = [torch.nn.Parameter(state["head_w"][s, : n_labels[s]].to(d).clone()) for s in range(len(tasks))]
        self.b = [torch.nn.Parameter(state["head_b"][s, : n_labels[s]].to(d).clone()) for s in range(len(tasks))]
        params = [self.emb] + [p for p in self.lstm.parameters() if p.requires_grad] + self.W + self.b
        self.opt = torch.optim.Adadelta(params, lr=settings.lr, rho=settings.rho, eps=settings.eps)

    def step(self, slot, tokens, tags, lengths, mask):
        tok = torch.from_numpy(np.asarray(tokens))
        tag = torch.from_numpy(np.asarray(tags))
        x = self.emb[tok]
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=True,
                                                         enforce_sorted=False)
        out, _ = self.lstm(packed)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=tok.shape[1])
        if mask is not None:
            y = y * mask.to(y.dtype)
        valid = tag != -100
        logits = y[valid] @ self.W[slot].t() + self.b[slot]
        loss = F.cross_entropy(logits, tag[valid])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def compare(self, st, n_labels):
        f = lambda t: t.to(torch.float64)  # noqa: E731
        state = self.opt.state
        torch.testing.assert_close(f(st["emb"]), self.emb.detach(), rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(f(st["emb.sq"]), state[self.emb]["square_avg"], rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(f(st["emb.ad"]), state[self.emb]["acc_delta"], rtol=RTOL, atol=ATOL)
        for k, sfx in ((0, ""), (1, "_reverse")):
            for name, attr in (("w_ih", "weight_ih_l0"), ("w_hh", "weight_hh_l0"), ("bias", "bias_ih_l0")):
                p = getattr(self.lstm, attr + sfx)
                torch.testing.assert_close(f(st[name][k]), p.detach(), rtol=RTOL, atol=ATOL)
                torch.testing.assert_close(f(st[name + ".sq"][k]), state[p]["square_avg"], rtol=RTOL, atol=ATOL)
                torch.testing.assert_close(f(st[name + ".ad"][k]), state[p]["acc_delta"], rtol=RTOL, atol=ATOL)
        for s in range(len(self.W)):
            n = n_labels[s]
            torch.testing.assert_close(f(st["head_w"][s, :n]), self.W[s].detach(), rtol=RTOL, atol=ATOL)
            torch.testing.assert_close(f(st["head_b"][s, :n]), self.b[s].detach(), rtol=RTOL, atol=ATOL)
            if self.W[s] in state:
                torch.testing.assert_close(f(st["head_w.sq"][s, :n]), state[self.W[s]]["square_avg"], rtol=RTOL,
                                           atol=ATOL)
                torch.testing.assert_close(f(st["head_b.sq"][s, :n]), state[self.b[s]]["square_avg"], rtol=RTOL,
                                           atol=ATOL)


def test_clean_step_equals_reference_in_mixed_array(suite_dir):
    inputs = prepare_inputs([suite_dir], task_names=TASKS, emb_dim=7, protocol="clean")
    settings = _settings("clean", dropout=0.3)
    specs, init, final, drawn, losses = _engine_run(inputs, settings)
    for spec, st0, st1 in zip(specs, init, final):
        n_labels = [inputs.n_labels(t) for t in spec.tasks]
        ref = CleanReference(st0, spec.tasks, n_labels, settings)
        ref_losses = []
        for slot, tok, tag, ln, mask in drawn[spec.run_id]:
            assert mask is not None and (mask == 0).any()  # the engine's own dropout mask, replayed
            ref_losses.append(ref.step(slot, tok, tag, ln, mask))
        np.testing.assert_allclose(losses[spec.run_id], ref_losses, rtol=1e-5)
        ref.compare(st1, n_labels)


def test_sparse_adadelta_occurrences_compiled_equals_generic():
    """The compiled per-occurrence op (all K runs in one call), the per-run device-generic rounds and the batched
    rounds of all runs at once (the GPU's path; on the GPU too where there is one) give the same numbers
    (duplicates included), and all equal the plain loop of the reference above."""
    g = torch.Generator().manual_seed(1)
    K, S, V, E, N = 2, 2, 9, 3, 20
    table = torch.randn(K, V, E, generator=g)
    sq = torch.rand(K, S, V, E, generator=g)
    ad = torch.rand(K, S, V, E, generator=g)
    rows = torch.randint(0, V, (K, N), generator=g)
    rows[:, :6] = 4  # a row drawn many times
    rows[0, -3:] = -1
    grads = torch.randn(K, N, E, generator=g)
    slots = torch.tensor([1, 0])
    out = []
    for backend in ("c", "reference", "batched"):
        t, s, a = table.clone(), sq.clone(), ad.clone()
        ops.sparse_adadelta_occurrences_(t, s, a, slots, rows, grads, lr=0.5, rho=0.9, eps=1e-6, backend=backend)
        out.append((t, s, a))
    if torch.cuda.is_available():  # the GPU's path (auto = batched there)
        t, s, a = table.cuda(), sq.cuda(), ad.cuda()
        ops.sparse_adadelta_occurrences_(t, s, a, slots.cuda(), rows.cuda(), grads.cuda(), lr=0.5, rho=0.9,
                                         eps=1e-6)
        out.append((t.cpu(), s.cpu(), a.cpu()))
    ref_t, ref_s, ref_a = table.double().clone(), sq.double().clone(), ad.double().clone()
    for k in range(K):
        keep = rows[k] >= 0
        _tf_sparse_adadelta(ref_t[k], ref_s[k, slots[k]], ref_a[k, slots[k]], rows[k][keep],
                            grads[k][keep].double(), 0.5, 0.9, 1e-6)
    for t, s, a in out:
        torch.testing.assert_close(t.double(), ref_t, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(s.double(), ref_s, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.double(), ref_a, rtol=1e-5, atol=1e-6)
    # the summed-gradient update (TensorFlow >= 1.0 deduplicates) would differ on the repeated row
    assert not torch.allclose(out[0][0][1, 4], table[1, 4])


def test_sparse_adadelta_occurrences_batch_major_grads():
    """grads given batch-major [K, B, T, E] with rows in time-major order (entry t B + b is grads[k, b, t], the
    engine's x.grad as it is) update exactly as the same gradients transposed to [K, T B, E], on every backend."""
    g = torch.Generator().manual_seed(3)
    K, S, V, E, B, T = 3, 2, 11, 19, 4, 5  # E = 19: a vector and a masked tail in the AVX-512 row
    table = torch.randn(K, V, E, generator=g)
    sq, ad = torch.rand(K, S, V, E, generator=g), torch.rand(K, S, V, E, generator=g)
    rows = torch.randint(-1, V, (K, T * B), generator=g)
    rows[1, :5] = 7  # repeated row
    grads_bm = torch.randn(K, B, T, E, generator=g)
    grads_tm = grads_bm.transpose(1, 2).reshape(K, T * B, E).contiguous()
    slots = torch.tensor([1, 0, 1])
    for backend in ("c", "reference", "batched"):
        outs = []
        for grads in (grads_tm, grads_bm):
            t, s, a = table.clone(), sq.clone(), ad.clone()
            ops.sparse_adadelta_occurrences_(t, s, a, slots, rows, grads, lr=0.5, rho=0.9, eps=1e-6, backend=backend)
            outs.append((t, s, a))
        for x, y in zip(*outs):
            assert torch.equal(x, y), backend
        assert not torch.equal(outs[0][0], table)
    with pytest.raises(ValueError, match=r"need rows \[K, T \* B\]"):
        ops.sparse_adadelta_occurrences_(table, sq, ad, slots, rows[:, :-1], grads_bm)


def test_adadelta_slots_equals_torch_optim_per_slot():
    """The per-task optimiser of the shared layers (one call for K runs, state slot slots[k] updated in place)
    equals one torch.optim.Adadelta per (run, slot); the other slots are untouched."""
    g = torch.Generator().manual_seed(2)
    K, S = 3, 2
    params = [torch.randn(K, 4, 5, generator=g), torch.randn(K, 7, generator=g)]
    grads = [torch.randn_like(p) for p in params]
    sq = [torch.rand(K, S, *p.shape[1:], generator=g) for p in params]
    acc = [torch.rand(K, S, *p.shape[1:], generator=g) for p in params]
    slots = torch.tensor([1, 0, 1])
    out = []
    for backend in ("c", "reference"):
        st = [[t.clone() for t in x] for x in (params, sq, acc)]
        ops.adadelta_slots_(st[0], grads, st[1], st[2], slots, lr=0.5, rho=0.9, eps=1e-6, backend=backend)
        out.append(st)
    for k in range(K):
        s = int(slots[k])
        for i, p in enumerate(params):
            ref = p[k].double().clone().requires_grad_(True)
            opt = torch.optim.Adadelta([ref], lr=0.5, rho=0.9, eps=1e-6)
            opt.state[ref] = {"step": torch.tensor(0.0), "square_avg": sq[i][k, s].double().clone(),
                              "acc_delta": acc[i][k, s].double().clone()}
            ref.grad = grads[i][k].double()
            opt.step()
            for st in out:
                torch.testing.assert_close(st[0][i][k].double(), ref.detach(), rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(st[1][i][k, s].double(), opt.state[ref]["square_avg"], rtol=1e-5, atol=1e-7)
                torch.testing.assert_close(st[2][i][k, s].double(), opt.state[ref]["acc_delta"], rtol=1e-5, atol=1e-7)
                assert torch.equal(st[1][i][k, 1 - s], sq[i][k, 1 - s]) and torch.equal(st[2][i][k, 1 - s], acc[i][k, 1 - s])


@pytest.mark.parametrize("protocol", ["original", "clean"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_step_runs_heads_in_the_settings_precision(suite_dir, monkeypatch, protocol, precision):
    """The array step hands ``settings.precision`` to the heads op (bf16 products for --precision bf16)."""
    import dataclasses

    inputs = prepare_inputs([suite_dir], task_names=TASKS, emb_dim=7, protocol=protocol)
    settings = dataclasses.replace(_settings(protocol), precision=precision)
    seen = []
    real = ops.heads_step_

    def spy(*args, **kw):
        seen.append(kw.get("precision"))
        return real(*args, **kw)

    monkeypatch.setattr(ops, "heads_step_", spy)
    _engine_run(inputs, settings, steps=2)
    assert seen == [precision, precision]

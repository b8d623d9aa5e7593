"""Train a run group as one model array and report events.

:func:`train_group` is the whole engine: it takes run specs (fresh or with a checkpoint state to resume
from), trains them in lockstep, and reports loss points, scores, checkpoints and completions through a
callback. It never touches the store or the file system, so any executor (in-process, Ray) can run it and
ship the events to the driver.

One step of the array, for every active run k (each with its own numpy Generator and torch Generator):
draw one of the run's tasks uniformly; sample ``batch_size`` sentences of that task's train split (without
replacement, with replacement only when the split is smaller than a batch), cut to ``max_len`` tokens; draw
the dropout mask of the run's own batch shape. The batches are padded to a common length (exact: the bi-LSTM
masks padding) and a single ``bilstm`` call runs all K runs. Loss = masked mean cross-entropy per run; their
sum is back-propagated (runs are independent, so each run's gradient is its own). Adadelta (torch.optim
semantics) updates the shared bi-LSTM densely, the embedding rows lazily (exact rho^k decay of untouched
rows) and only the drawn task's head.

Loss points: every ``log_every`` steps of a run, for each of its tasks drawn since the previous point, the
mean of that task's batch losses over those steps (the original also logs the mean of the batch losses of
its last block of steps; its block ends one step earlier: the point labelled t covers steps t-10 .. t-1).

``settings.protocol`` chooses between two protocols (README, "Original vs clean"). The description above is
``clean``. ``original`` (:func:`_array_step_original`) follows the released TensorFlow code: no dropout on
what the heads see; one Adadelta per task (a pair run keeps per-task accumulators for the embedding and the
bi-LSTM too); loss = mean over all ``batch_size x max_len`` positions, padding included with target PAD
(at padding the bi-LSTM output is 0, so those positions only give the head bias a closed-form gradient: no
bi-LSTM work is done for them); TensorFlow's sparse Adadelta on the embedding (one update per occurrence of
a row, in the original's time-major order; absent rows untouched). Its evaluation is :func:`evaluate_original`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from mtlfast import ops
from mtlfast.metrics import score_sequences
from mtlfast.train.model import DENSE, ModelArray, init_run_state
from mtlfast.train.spec import (
    Checkpoint,
    EventCallback,
    LossPoints,
    Progress,
    RunDone,
    RunSpec,
    RunStarted,
    Scores,
    TrainingInterrupted,
    TrainSettings,
)

PAD_TAG = -100
CHECKPOINT_FORMAT = 1


class StepProfile:
    """Wall seconds of each part of the array step, summed over the steps it is passed to (``prof=`` of
    :func:`_array_step` / :func:`_array_step_original`; ``bench/bench_step.py --profile``).

    Parts: ``batch`` (sampling, batch assembly, dropout masks, transfer), ``embedding`` (lookup and row
    update), ``bilstm`` (forward and backward), ``heads`` (heads, cross-entropy, the drawn heads' update),
    ``optimiser`` (the bi-LSTM's Adadelta), ``other``. On a GPU each lap synchronises the device first."""

    PARTS = ("batch", "embedding", "bilstm", "heads", "optimiser", "other")

    def __init__(self, device="cpu"):
        self.seconds = dict.fromkeys(self.PARTS, 0.0)
        self.steps = 0
        self._sync = torch.device(device).type == "cuda"
        self._t = 0.0

    def start(self) -> None:
        if self._sync:
            torch.cuda.synchronize()
        self._t = time.perf_counter()

    def lap(self, part: str) -> None:
        if self._sync:
            torch.cuda.synchronize()
        t = time.perf_counter()
        self.seconds[part] += t - self._t
        self._t = t


def _no_lap(part: str) -> None:
    return None


@dataclass
class _Run:
    spec: RunSpec
    rng: np.random.Generator
    gen: torch.Generator
    step: int = 0
    seconds: float = 0.0
    loss_acc: dict = field(default_factory=dict)  # task -> [sum, count] since the last loss point

    def state(self, model: dict) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "run_id": self.spec.run_id,
            "tasks": list(self.spec.tasks),
            "seed": self.spec.seed,
            "step": self.step,
            "seconds": self.seconds,
            "np_rng": json.dumps(self.rng.bit_generator.state),
            "torch_rng": self.gen.get_state(),
            "loss_acc": json.dumps(self.loss_acc),
            "model": model,
        }


def _start_run(spec: RunSpec, inputs, settings: TrainSettings) -> tuple[_Run, dict]:
    rng, torch_seed = spec.rng_streams()
    gen = torch.Generator()
    gen.manual_seed(torch_seed)
    if spec.resume is None:
        model = init_run_state(spec.tasks, inputs, settings.hidden, gen, settings.slots, settings.protocol)
        return _Run(spec, rng, gen), model
    st = spec.resume
    if st.get("format") != CHECKPOINT_FORMAT or st.get("run_id") != spec.run_id:
        raise ValueError(f"checkpoint of {st.get('run_id')!r} (format {st.get('format')}) cannot resume {spec.run_id!r}")
    rng.bit_generator.state = json.loads(st["np_rng"])
    gen.set_state(st["torch_rng"])
    run = _Run(spec, rng, gen, step=int(st["step"]), seconds=float(st["seconds"]), loss_acc=json.loads(st["loss_acc"]))
    return run, st["model"]


def _sample(run: _Run, inputs, settings: TrainSettings):
    """The run's task slot and batch for its next step (advances only the run's own generators)."""
    from mtlfast.data import make_batch

    slot = int(run.rng.integers(len(run.spec.tasks)))
    split = inputs.suite.tasks[run.spec.tasks[slot]].splits["train"]
    n = split.n_sentences if hasattr(split, "n_sentences") else len(split.offsets) - 1
    B = settings.batch_size
    idx = run.rng.choice(n, size=B, replace=n < B)
    tokens, tags, lengths = make_batch(split, idx, settings.max_len)
    mask = None
    if settings.dropout > 0 and settings.protocol == "clean":
        T = tokens.shape[1]
        keep = torch.rand(B, T, 2 * settings.hidden, generator=run.gen) >= settings.dropout
        mask = keep.to(torch.float32) / (1.0 - settings.dropout)
    return slot, np.asarray(tokens), np.asarray(tags), np.asarray(lengths), mask


@dataclass
class _StepBatch:
    """One step's batches of the K runs, padded to a common length T and on the array's device."""

    tokens: torch.Tensor  # int64 [K, B, T], 0 beyond each sentence
    tags: torch.Tensor  # int64 [K, B, T], PAD_TAG beyond each sentence
    lengths: torch.Tensor  # int64 [K, B]
    slots: np.ndarray  # int64 [K]: each run's drawn task slot
    n_lab: np.ndarray  # int64 [K]: the drawn task's label count
    drop: torch.Tensor | None  # float32 [K, B, T, 2H] dropout scale (CPU), or None without dropout
    x: torch.Tensor  # [K, B, T, E] embedding rows, a leaf that requires grad
    ar: torch.Tensor  # arange(K) on the device


def _step_batch(arr: ModelArray, runs: list[_Run], inputs, settings: TrainSettings, dropout: bool,
                lap=_no_lap) -> _StepBatch:
    """Draw each run's next batch (:func:`_sample`), pad the K of them into [K, B, T] arrays, move them to the
    array's device and look the tokens up in each run's own embedding table (flat ids k * V + token).
    ``dropout``: also stack the samples' dropout masks (each sample must then carry one)."""
    K = arr.K
    dev = arr.device
    V = arr.t["emb"].shape[1]
    E = arr.t["emb"].shape[2]
    samples = [_sample(r, inputs, settings) for r in runs]
    T = max(s[1].shape[1] for s in samples)
    B = settings.batch_size
    tokens = np.zeros((K, B, T), dtype=np.int64)
    tags = np.full((K, B, T), PAD_TAG, dtype=np.int64)
    lengths = np.zeros((K, B), dtype=np.int64)
    drop = torch.zeros(K, B, T, 2 * settings.hidden) if dropout else None
    slots = np.zeros(K, dtype=np.int64)
    n_lab = np.zeros(K, dtype=np.int64)
    for k, (slot, tok, tag, ln, mask) in enumerate(samples):
        t = tok.shape[1]
        tokens[k, :, :t] = tok
        tags[k, :, :t] = tag
        lengths[k] = ln
        slots[k] = slot
        n_lab[k] = inputs.n_labels(runs[k].spec.tasks[slot])
        if drop is not None:
            drop[k, :, :t] = mask
    tokens_t = torch.from_numpy(tokens).to(dev)
    tags_t, lengths_t = torch.from_numpy(tags).to(dev), torch.from_numpy(lengths).to(dev)
    ar = torch.arange(K, device=dev)
    lap("batch")
    # Embedding lookup as a leaf, so its gradient is per position (the table's rows are updated lazily).
    flat_ids = tokens_t + (ar * V)[:, None, None]
    x = arr.t["emb"].view(K * V, E)[flat_ids].requires_grad_(True)
    lap("embedding")
    return _StepBatch(tokens_t, tags_t, lengths_t, slots, n_lab, drop, x, ar)


@torch.no_grad()
def _release_and_update_heads(arr: ModelArray, dense: list[torch.Tensor], head_grads, kw: dict) -> None:
    """After the dense layers' update: drop their gradients and autograd flag, then move each run's drawn head.

    Heads: only the drawn slot of each run moves, and only its task's n label rows (padding rows beyond n never
    enter a logit, so they need no update); the blocks are contiguous views, updated in place. ``head_grads``
    as :func:`_heads_loss_and_grads` returns them; ``kw`` the Adadelta settings."""
    for p in dense:
        p.grad = None
        p.requires_grad_(False)
    hw, hb, hws, hbs, hwa, hba = (arr.t[n] for n in ("head_w", "head_b", "head_w.sq", "head_b.sq",
                                                      "head_w.ad", "head_b.ad"))
    for k, s, n, g_w, g_b in head_grads:
        ops.adadelta_([hw[k, s, :n], hb[k, s, :n]], [g_w, g_b], [hws[k, s, :n], hbs[k, s, :n]],
                      [hwa[k, s, :n], hba[k, s, :n]], **kw)


def _array_step(arr: ModelArray, runs: list[_Run], inputs, settings: TrainSettings, prof: StepProfile | None = None
                ) -> tuple[list[float], list[int]]:
    """Advance every run of the array by one step; return each run's batch loss and drawn task slot.
    ``prof``: add the step's time per part to it."""
    K = arr.K
    dev = arr.device
    E = arr.t["emb"].shape[2]
    B = settings.batch_size
    lap = _no_lap
    if prof is not None:
        prof.start()
        lap = prof.lap
    sb = _step_batch(arr, runs, inputs, settings, dropout=settings.dropout > 0, lap=lap)
    tokens_t, tags_t, lengths_t, slots, n_lab, drop, x = (sb.tokens, sb.tags, sb.lengths, sb.slots, sb.n_lab,
                                                          sb.drop, sb.x)
    T = tokens_t.shape[2]
    dense = [arr.t[n].requires_grad_(True) for n in DENSE]
    lap("other")
    y = ops.bilstm(x, lengths_t, *dense, precision=settings.precision, backend=settings.backend)
    if drop is not None:
        y = y * drop.to(dev)
    lap("bilstm")
    valid = tags_t != PAD_TAG
    # Heads + cross-entropy per run over its own labels and real tokens only: padding every run's logits to
    # the largest label set of the suite (776 for FrameNet) made the heads cost more than the bi-LSTM.
    per_run, dy, head_grads = _heads_loss_and_grads(y.detach(), arr.t["head_w"], arr.t["head_b"], slots, n_lab,
                                                    tags_t, valid)
    lap("heads")
    y.backward(dy)
    lap("bilstm")

    kw = dict(lr=settings.lr, rho=settings.rho, eps=settings.eps)
    with torch.no_grad():
        ops.adadelta_([arr.t[n] for n in DENSE], [p.grad for p in dense], [arr.t[n + ".sq"] for n in DENSE],
                      [arr.t[n + ".ad"] for n in DENSE], **kw)
        lap("optimiser")
        _release_and_update_heads(arr, dense, head_grads, kw)
        lap("heads")
        # Embedding rows: summed gradient per distinct token of each run, lazy exact update.
        ids = torch.where(valid, tokens_t, torch.full_like(tokens_t, -1)).reshape(K, B * T)
        arr.local_step += 1
        ops.embedding_rows_update_(arr.t["emb"], arr.t["emb.sq"], arr.t["emb.ad"], arr.t["emb.last"], ids,
                                   x.grad.reshape(K, B * T, E), arr.local_step, **kw)
    lap("embedding")
    if prof is not None:
        prof.steps += 1
    return per_run, slots.tolist()


@torch.no_grad()
def _heads_loss_and_grads(y, head_w, head_b, slots, n_lab, tags, valid, positions: int = 0):
    """Mean token cross-entropy of each run's drawn head, and its gradients, without autograd.

    y [K, B, T, 2H] (after dropout); head_w [K, S, L, 2H]; head_b [K, S, L]; slots, n_lab int [K];
    tags [K, B, T]; valid bool [K, B, T]. For run k with task slot s and n labels, on its N real tokens:
    p = softmax(y W[:n]^T + b[:n]); loss = mean(-log p[tag]); dlogits = (p - onehot(tag)) / N, which gives
    dW = dlogits^T y, db = sum dlogits, dy = dlogits W. Returns (losses list[float], dy like y,
    [(k, s, n, grad W[k, s, :n] [n, 2H], grad b[k, s, :n] [n])] for the runs with at least one real token).

    ``positions > 0`` (the original protocol): the loss is the mean over ``positions`` (= batch x max_len)
    positions, of which the P = positions - N beyond the real tokens have y = 0 (logits = b) and target
    class 0 (PAD): loss = (sum of the N real tokens' losses - P log softmax(b)[0]) / positions, and those
    positions add P (softmax(b) - onehot(0)) / positions to grad b, nothing else.
    """
    K = y.shape[0]
    dy = torch.zeros_like(y)
    grads = []
    losses = []
    for k in range(K):
        s, n = int(slots[k]), int(n_lab[k])
        mask = valid[k]
        yk = y[k][mask]  # [N, 2H]
        N = yk.shape[0]
        if N == 0 and positions == 0:
            losses.append(0.0)
            continue
        w, b = head_w[k, s, :n], head_b[k, s, :n]
        logp = torch.log_softmax(torch.addmm(b, yk, w.t()), dim=1)
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
                raise ValueError(f"original loss over {positions} positions, but the batch holds {N} real tokens")
            lb = torch.log_softmax(b, dim=0)
            loss = loss - P * lb[0]
            pb = lb.exp()
            pb[0] -= 1.0
            db += pb * (P / denom)
        losses.append(float(loss / denom))
        grads.append((k, s, n, d.t() @ yk, db))
        dy[k][mask] = d @ w
    return losses, dy, grads


def _array_step_original(arr: ModelArray, runs: list[_Run], inputs, settings: TrainSettings,
                         prof: StepProfile | None = None) -> tuple[list[float], list[int]]:
    """One step of every run under the original protocol (module docstring); returns losses and task slots."""
    K = arr.K
    dev = arr.device
    E = arr.t["emb"].shape[2]
    B = settings.batch_size
    lap = _no_lap
    if prof is not None:
        prof.start()
        lap = prof.lap
    sb = _step_batch(arr, runs, inputs, settings, dropout=False, lap=lap)
    tokens_t, tags_t, lengths_t, slots, n_lab, x, ar = sb.tokens, sb.tags, sb.lengths, sb.slots, sb.n_lab, sb.x, sb.ar
    T = tokens_t.shape[2]
    slots_t = torch.from_numpy(slots).to(dev)
    dense = [arr.t[n].requires_grad_(True) for n in DENSE]
    lap("other")
    y = ops.bilstm(x, lengths_t, *dense, precision=settings.precision, backend=settings.backend)
    lap("bilstm")
    valid = tags_t != PAD_TAG
    # The loss is a mean over all batch_size x max_len positions of the original's fixed-size batch.
    per_run, dy, head_grads = _heads_loss_and_grads(y.detach(), arr.t["head_w"], arr.t["head_b"], slots, n_lab,
                                                    tags_t, valid, positions=B * settings.max_len)
    lap("heads")
    y.backward(dy)
    lap("bilstm")

    kw = dict(lr=settings.lr, rho=settings.rho, eps=settings.eps)
    with torch.no_grad():
        # One Adadelta per task: the drawn task's accumulators of the shared layers ([K, S, ...]) move.
        sel = [(arr.t[n + ".sq"][ar, slots_t], arr.t[n + ".ad"][ar, slots_t]) for n in DENSE]
        ops.adadelta_([arr.t[n] for n in DENSE], [p.grad for p in dense], [a for a, _ in sel], [b for _, b in sel],
                      **kw)
        for n, (a, b) in zip(DENSE, sel):
            arr.t[n + ".sq"][ar, slots_t] = a
            arr.t[n + ".ad"][ar, slots_t] = b
        lap("optimiser")
        _release_and_update_heads(arr, dense, head_grads, kw)
        lap("heads")
        # Embedding: TensorFlow's sparse Adadelta, one update per occurrence in time-major order (the original
        # feeds [timesteps, batch] ids); padding positions carry a zero gradient and a row (PAD) that never
        # reaches an output, so they are left out.
        rows = torch.where(valid, tokens_t, torch.full_like(tokens_t, -1)).transpose(1, 2).reshape(K, T * B)
        grads = x.grad.transpose(1, 2).reshape(K, T * B, E)
        arr.local_step += 1
        sparse_adadelta_occurrences_(arr.t["emb"], arr.t["emb.sq"], arr.t["emb.ad"], slots_t, rows, grads, **kw)
    lap("embedding")
    if prof is not None:
        prof.steps += 1
    return per_run, slots.tolist()


def sparse_adadelta_occurrences_(table, sq, acc, slots, rows, grads, *, lr, rho, eps, force_generic=False):
    """TensorFlow's ``SparseApplyAdadelta`` for each run of a model array, in place.

    table [K, V, E]; sq, acc [K, S, V, E] (per-task state; run k uses slot ``slots[k]``); rows int64 [K, N]
    (-1: skip); grads [K, N, E]. Entry i of run k updates row ``rows[k, i]`` with ``grads[k, i]``, one entry
    after the other (a row that occurs twice is updated twice, each time from the state the previous entry
    left). CPU: the compiled loop of :mod:`mtlfast.data._fast`; elsewhere (or ``force_generic``) the same
    arithmetic in rounds (the j-th occurrences of all rows at once).
    """
    from mtlfast.data.encode import _fast

    K = table.shape[0]
    if table.device.type == "cpu" and _fast is not None and not force_generic and table.dtype == torch.float32:
        rows_np = rows.contiguous().numpy()
        grads_np = grads.contiguous().numpy()
        for k in range(K):
            s = int(slots[k])
            _fast.sparse_adadelta_occurrences(table[k].numpy(), sq[k, s].numpy(), acc[k, s].numpy(), rows_np[k],
                                              grads_np[k], float(lr), float(rho), float(eps))
        return
    for k in range(K):
        s = int(slots[k])
        t, a2, u2 = table[k], sq[k, s], acc[k, s]
        r = rows[k]
        keep = r >= 0
        r, g = r[keep], grads[k][keep]
        if r.numel() == 0:
            continue
        # occurrence rank of each entry within its row, in entry order
        order = torch.argsort(r, stable=True)
        rs = r[order]
        start = torch.ones_like(rs, dtype=torch.bool)
        start[1:] = rs[1:] != rs[:-1]
        idx = torch.arange(rs.numel(), device=rs.device)
        first = torch.cummax(torch.where(start, idx, torch.zeros_like(idx)), 0).values
        rank = torch.empty_like(idx)
        rank[order] = idx - first
        for j in range(int(rank.max()) + 1):
            m = rank == j
            rr, gg = r[m], g[m]
            a = a2[rr] * rho + gg * gg * (1 - rho)
            u = (u2[rr] + eps).sqrt() / (a + eps).sqrt() * gg
            a2[rr] = a
            u2[rr] = u2[rr] * rho + u * u * (1 - rho)
            t[rr] = t[rr] - lr * u


@torch.no_grad()
def predict(params: dict, split, slot: int, n_labels: int, settings: TrainSettings) -> np.ndarray:
    """Predicted label ids [N] of every token of ``split`` by one run (``params``: [1, ...] views), whole
    sentences in length-sorted batches."""
    from mtlfast.data import make_batch

    offsets = np.asarray(split.offsets)
    lengths_all = np.diff(offsets)
    order = np.argsort(lengths_all, kind="stable")
    pred = np.zeros(int(offsets[-1]), dtype=np.int64)
    emb = params["emb"][0]
    dev = emb.device
    W = params["head_w"][:, slot, :n_labels]  # [1, n, 2H]
    b = params["head_b"][:, slot, :n_labels]
    for a in range(0, len(order), settings.eval_batch_size):
        idx = order[a : a + settings.eval_batch_size]
        tokens, _, lengths = make_batch(split, idx)
        tokens = torch.as_tensor(np.asarray(tokens), device=dev)
        lengths_t = torch.as_tensor(np.asarray(lengths), device=dev)
        x = emb[tokens][None]
        y = ops.bilstm(x, lengths_t[None], params["w_ih"], params["w_hh"], params["bias"],
                       precision=settings.precision, backend=settings.backend)
        logits = torch.einsum("kbth,klh->kbtl", y, W) + b[:, None, None, :]
        best = logits[0].argmax(-1).cpu().numpy()  # [b, T]
        T = best.shape[1]
        ln = np.asarray(lengths)
        inside = np.arange(T)[None, :] < ln[:, None]
        pos = offsets[idx][:, None] + np.arange(T)[None, :]
        pred[pos[inside]] = best[inside]
    return pred


def evaluate(params: dict, tasks, inputs, settings: TrainSettings) -> list[tuple[str, str, str, float]]:
    """Scores of one run on the dev (if present) and test splits of each of its tasks."""
    if settings.protocol == "original":
        return evaluate_original(params, tasks, inputs, settings)
    rows = []
    for slot, name, task, split_name, split in _eval_splits(tasks, inputs, settings):
        pred = predict(params, split, slot, len(task.labels), settings)
        scores = score_sequences(np.asarray(split.tags), pred, np.asarray(split.offsets), task.labels,
                                 task.outside_id)
        rows += [(name, split_name, metric, float(v)) for metric, v in scores.items()]
    return rows


def _eval_splits(tasks, inputs, settings: TrainSettings):
    """``(slot, task name, encoded task, split name, split)`` for each of a run's tasks and each of
    ``settings.eval_splits`` that the task has, in that order."""
    for slot, name in enumerate(tasks):
        task = inputs.suite.tasks[name]
        for split_name in settings.eval_splits:
            split = task.splits.get(split_name)
            if split is not None:
                yield slot, name, task, split_name, split


@torch.no_grad()
def predict_original(params: dict, split, slot: int, n_labels: int, settings: TrainSettings):
    """The original's evaluation pass over a framed split (``[GO] words [EOS]``): sentences in file order in
    batches of ``batch_size``, the last partial batch dropped (one batch when the split is smaller), each cut
    to ``max_len`` positions. Returns (gold, pred) label ids of the scored positions: 1 .. len-2 of each
    sentence (GO, EOS and the positions cut away excluded), argmax over all classes (specials included)."""
    from mtlfast.data import make_batch

    n = split.n_sentences if hasattr(split, "n_sentences") else len(split.offsets) - 1
    B = settings.batch_size
    batches = max(n // B, 1)
    emb = params["emb"][0]
    dev = emb.device
    W = params["head_w"][:, slot, :n_labels]
    b = params["head_b"][:, slot, :n_labels]
    gold, pred = [], []
    for i in range(batches):
        idx = np.arange(i * B, min((i + 1) * B, n), dtype=np.int64)
        tokens, tags, lengths = make_batch(split, idx, settings.max_len)
        tokens_t = torch.as_tensor(np.asarray(tokens), device=dev)
        lengths_np = np.asarray(lengths)
        y = ops.bilstm(emb[tokens_t][None], torch.as_tensor(lengths_np, device=dev)[None], params["w_ih"],
                       params["w_hh"], params["bias"], precision=settings.precision, backend=settings.backend)
        logits = torch.einsum("kbth,klh->kbtl", y, W) + b[:, None, None, :]
        best = logits[0].argmax(-1).cpu().numpy()
        T = best.shape[1]
        pos = np.arange(T)[None, :]
        inside = (pos >= 1) & (pos < lengths_np[:, None] - 1)
        gold.append(np.asarray(tags)[inside])
        pred.append(best[inside])
    return np.concatenate(gold), np.concatenate(pred)


def original_scores(gold: np.ndarray, pred: np.ndarray, outside_id: int) -> dict[str, float]:
    """The original's scores: scikit-learn micro-F1 (and precision, recall) over the positive classes, i.e.
    the training labels (ids > 3) except ``o``, and accuracy over all scored positions."""
    gold = np.asarray(gold)
    pred = np.asarray(pred)
    pos_g = (gold > 3) & (gold != outside_id)
    pos_p = (pred > 3) & (pred != outside_id)
    tp = int(np.count_nonzero((gold == pred) & pos_g))
    n_p, n_g = int(np.count_nonzero(pos_p)), int(np.count_nonzero(pos_g))
    return {
        "f1_micro_no_o": 2.0 * tp / (n_p + n_g) if n_p + n_g else 0.0,
        "precision": tp / n_p if n_p else 0.0,
        "recall": tp / n_g if n_g else 0.0,
        "accuracy": float(np.count_nonzero(gold == pred)) / gold.size if gold.size else 0.0,
    }


def evaluate_original(params: dict, tasks, inputs, settings: TrainSettings) -> list[tuple[str, str, str, float]]:
    """Scores of one run under the original protocol (:func:`predict_original`, :func:`original_scores`)."""
    rows = []
    for slot, name, task, split_name, split in _eval_splits(tasks, inputs, settings):
        gold, pred = predict_original(params, split, slot, len(task.labels), settings)
        scores = original_scores(gold, pred, task.outside_id)
        rows += [(name, split_name, metric, float(v)) for metric, v in scores.items()]
    return rows


def train_group(specs: list[RunSpec], inputs, settings: TrainSettings, on_event: EventCallback,
                should_stop=lambda: False) -> None:
    """Train ``specs`` together as one model array until every run reaches its budget.

    Events, per run: :class:`RunStarted`; :class:`LossPoints` every ``log_every`` steps; :class:`Scores` every
    ``eval_every`` steps and at the end; :class:`Checkpoint` every ``checkpoint_every`` steps (never at the
    final step); :class:`RunDone`. :class:`Progress` after every array step. When ``should_stop()`` turns
    True, a checkpoint of every active run is emitted and :class:`TrainingInterrupted` raised.
    """
    if not specs:
        return
    runs, states = [], []
    for spec in specs:
        run, state = _start_run(spec, inputs, settings)
        runs.append(run)
        states.append(state)
        on_event(RunStarted(spec.run_id, run.step))
    arr = ModelArray(states, [r.step for r in runs], settings.device)
    del states
    _finish(arr, runs, inputs, settings, on_event)  # runs resumed at their final step (none normally)
    while runs:
        if should_stop():
            for k, run in enumerate(runs):
                on_event(Checkpoint(run.spec.run_id, run.step, run.state(arr.run_state(k, run.step))))
            raise TrainingInterrupted(f"stopped with {len(runs)} run(s) active; all checkpointed")
        t0 = time.perf_counter()
        step_fn = _array_step_original if settings.protocol == "original" else _array_step
        losses, slots = step_fn(arr, runs, inputs, settings)
        dt = time.perf_counter() - t0
        on_event(Progress(len(runs)))
        for run, loss, slot in zip(runs, losses, slots):
            run.step += 1
            run.seconds += dt
            acc = run.loss_acc.setdefault(run.spec.tasks[slot], [0.0, 0])
            acc[0] += loss
            acc[1] += 1
        for k, run in enumerate(runs):
            step = run.step
            if step % settings.log_every == 0:
                points = [(t, a[0] / a[1]) for t, a in sorted(run.loss_acc.items(), key=lambda kv: run.spec.tasks.index(kv[0])) if a[1]]
                run.loss_acc = {}
                if points:
                    on_event(LossPoints(run.spec.run_id, step, points))
            if step < run.spec.steps:
                if settings.eval_every and step % settings.eval_every == 0:
                    on_event(Scores(run.spec.run_id, step, evaluate(arr.view(k), run.spec.tasks, inputs, settings)))
                if settings.checkpoint_every and step % settings.checkpoint_every == 0:
                    on_event(Checkpoint(run.spec.run_id, step, run.state(arr.run_state(k, run.step))))
        _finish(arr, runs, inputs, settings, on_event)


def _finish(arr: ModelArray, runs: list[_Run], inputs, settings: TrainSettings, on_event) -> None:
    """Final scores and completion of runs at their budget; they leave the array (in place on ``runs``)."""
    keep = []
    for k, run in enumerate(runs):
        if run.step >= run.spec.steps:
            on_event(Scores(run.spec.run_id, run.step, evaluate(arr.view(k), run.spec.tasks, inputs, settings)))
            on_event(RunDone(run.spec.run_id, run.step, run.seconds))
        else:
            keep.append(k)
    if len(keep) < len(runs):
        if keep:
            arr.keep(keep)
        runs[:] = [runs[k] for k in keep]

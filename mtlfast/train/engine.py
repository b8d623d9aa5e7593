"""Train a run group as one model array and report events.

:func:`train_group` is the whole engine: it takes run specs (fresh or with a checkpoint state to resume
from), trains them in lockstep, and reports loss points, scores, checkpoints and completions through a
callback. It never touches the store or the file system, so any executor (in-process, Ray) can run it and
ship the events to the driver.

One step of the array, for every active run k (each with its own numpy Generator): draw one of the run's
tasks uniformly; sample ``batch_size`` sentences of that task's train split (without replacement, with
replacement only when the split is smaller than a batch), cut to ``max_len`` tokens. The rest is one call
over all K runs each (:mod:`mtlfast.ops.heads`, no torch op per run): the batches, padded to a common length
(exact: the bi-LSTM masks padding); the dropout masks, a counter-based hash of (run seed, run step,
position), so a run's mask is the same alone, in any array and after a resume; a single ``bilstm`` call;
the heads, ragged by label count, with the masked mean cross-entropy per run, its gradient and the drawn
heads' update. Runs are independent, so each run's gradient is its own. Adadelta (torch.optim semantics)
updates the shared bi-LSTM densely, the embedding rows lazily (exact rho^k decay of untouched rows) and only
the drawn task's head. The step returns the K losses as a tensor; :func:`train_group` reads them once per
``log_every`` steps (and before a checkpoint or a run's end), not every step.

Loss points: every ``log_every`` steps of a run, for each of its tasks drawn since the previous point, the
mean of that task's batch losses over those steps (the original also logs the mean of the batch losses of
its last block of steps; its block ends one step earlier: the point labelled t covers steps t-10 .. t-1).

``settings.protocol`` chooses between two protocols (README, "Original vs clean"). The description above is
``clean``. ``original`` (:func:`_array_step_original`) follows the released TensorFlow code: no dropout on
what the heads see; one Adadelta per task (a pair run keeps per-task accumulators for the embedding and the
bi-LSTM too); loss = mean over all ``batch_size x max_len`` positions, padding included with target PAD
(at padding the bi-LSTM output is 0, so those positions only give the head bias a closed-form gradient: no
bi-LSTM work is done for them); TensorFlow's sparse Adadelta on the embedding (one update per occurrence of
a row, in the original's time-major order; absent rows untouched; :func:`mtlfast.ops.sparse_adadelta_occurrences_`).
Its evaluation is :func:`evaluate_original`.

Checkpoints: format 2 (the counter-based dropout). A format-1 checkpoint (dropout drawn from the run's torch
Generator) is refused where it would change the numbers (the clean protocol with dropout) and accepted where
dropout never reaches the loss (the original protocol, or dropout 0).
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
#: 2: clean-protocol dropout from a counter-based hash of (seed, step, position) instead of the run's torch
#: Generator (format 1).
CHECKPOINT_FORMAT = 2


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


def _laps(prof: "StepProfile | None"):
    """The step's ``lap(part)``: ``prof``'s clock, started now, or a no-op without a profile."""
    if prof is None:
        return _no_lap
    prof.start()
    return prof.lap


@dataclass
class _Run:
    spec: RunSpec
    rng: np.random.Generator
    gen: torch.Generator
    step: int = 0
    seconds: float = 0.0
    loss_acc: dict = field(default_factory=dict)  # task -> [sum, count] since the last loss point
    drop_seed: int = 0  # key of the run's dropout masks (with its step)
    data: list = field(default_factory=list)  # per task slot: (tokens, tags, offsets) CPU tensors of its train split
    n_sent: list = field(default_factory=list)  # per task slot: sentences in its train split
    n_labels: list = field(default_factory=list)  # per task slot: the task's label count

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


def _train_data(run: _Run, inputs) -> None:
    """Each task slot's train split as CPU tensors (views of the encoded arrays), its size and label count."""
    for name in run.spec.tasks:
        split = inputs.suite.tasks[name].splits["train"]
        arrays = (np.ascontiguousarray(split.tokens, dtype=np.int32), np.ascontiguousarray(split.tags, dtype=np.int32),
                  np.ascontiguousarray(split.offsets, dtype=np.int64))
        run.data.append(tuple(torch.from_numpy(a) for a in arrays))
        run.n_sent.append(len(arrays[2]) - 1)
        run.n_labels.append(inputs.n_labels(name))


def _start_run(spec: RunSpec, inputs, settings: TrainSettings) -> tuple[_Run, dict]:
    rng, torch_seed = spec.rng_streams()
    gen = torch.Generator()
    gen.manual_seed(torch_seed)
    if spec.resume is None:
        model = init_run_state(spec.tasks, inputs, settings.hidden, gen, settings.slots, settings.protocol)
        run = _Run(spec, rng, gen, drop_seed=torch_seed)
        _train_data(run, inputs)
        return run, model
    st = spec.resume
    if st.get("run_id") != spec.run_id:
        raise ValueError(f"checkpoint of {st.get('run_id')!r} cannot resume {spec.run_id!r}")
    fmt = st.get("format")
    dropout_used = settings.protocol == "clean" and settings.dropout > 0
    if fmt != CHECKPOINT_FORMAT and not (fmt == 1 and not dropout_used):
        raise ValueError(
            f"checkpoint of {spec.run_id!r} has format {fmt}; this mtlfast reads format {CHECKPOINT_FORMAT}"
            + (" (and format 1 only where dropout never reaches the loss)" if fmt == 1 else "")
            + ". Format 1 drew the clean protocol's dropout masks from the run's torch Generator; format 2 draws "
            "them from a counter keyed by (seed, step, position), so the run cannot continue with the same "
            "numbers. Retrain the run from step 0 (a sweep in a new --out folder, or remove the run's "
            "checkpoint), or finish it with the mtlfast version that wrote the checkpoint.")
    rng.bit_generator.state = json.loads(st["np_rng"])
    gen.set_state(st["torch_rng"])
    run = _Run(spec, rng, gen, step=int(st["step"]), seconds=float(st["seconds"]), loss_acc=json.loads(st["loss_acc"]),
               drop_seed=torch_seed)
    _train_data(run, inputs)
    return run, st["model"]


def _draw(run: _Run, settings: TrainSettings) -> tuple[int, np.ndarray]:
    """The run's task slot and sentence indices for its next step (advances only the run's own generator)."""
    slot = int(run.rng.integers(len(run.spec.tasks)))
    n = run.n_sent[slot]
    B = settings.batch_size
    return slot, run.rng.choice(n, size=B, replace=n < B)


@dataclass
class _StepBatch:
    """One step's batches of the K runs, padded to a common length T and on the array's device."""

    tokens: torch.Tensor  # int64 [K, B, T], 0 beyond each sentence
    tags: torch.Tensor  # int64 [K, B, T], PAD_TAG beyond each sentence
    lengths: torch.Tensor  # int64 [K, B]
    slots: np.ndarray  # int64 [K]: each run's drawn task slot
    n_lab: np.ndarray  # int64 [K]: the drawn task's label count
    drop: torch.Tensor | None  # float32 [K, B, T, 2H] dropout scale (on the device), or None without dropout
    x: torch.Tensor  # [K, B, T, E] embedding rows, a leaf that requires grad
    ar: torch.Tensor  # arange(K) on the device


def _step_batch(arr: ModelArray, runs: list[_Run], inputs, settings: TrainSettings, dropout: bool,
                lap=_no_lap) -> _StepBatch:
    """Draw each run's next batch (:func:`_draw`), assemble the K of them as [K, B, T] tensors in one call
    (:func:`mtlfast.ops.make_batches`), move them to the array's device and look the tokens up in each run's
    own embedding table (flat ids k * V + token). ``dropout``: also make the K runs' dropout masks
    (:func:`mtlfast.ops.dropout_masks`, keyed by each run's seed and current step) on the device."""
    K = arr.K
    dev = arr.device
    V = arr.t["emb"].shape[1]
    E = arr.t["emb"].shape[2]
    B = settings.batch_size
    draws = [_draw(r, settings) for r in runs]
    slots = np.fromiter((s for s, _ in draws), dtype=np.int64, count=K)
    data = [r.data[s] for r, (s, _) in zip(runs, draws)]
    tokens, tags, lengths = ops.make_batches([d[0] for d in data], [d[1] for d in data], [d[2] for d in data],
                                             np.stack([i for _, i in draws]), settings.max_len, PAD_TAG)
    n_lab = np.fromiter((r.n_labels[s] for r, (s, _) in zip(runs, draws)), dtype=np.int64, count=K)
    drop = None
    if dropout:
        drop = ops.dropout_masks([r.drop_seed for r in runs], [r.step for r in runs], B, tokens.shape[2],
                                 2 * settings.hidden, settings.max_len, settings.dropout, device=dev)
    tokens_t, tags_t, lengths_t = tokens.to(dev), tags.to(dev), lengths.to(dev)
    ar = torch.arange(K, device=dev)
    lap("batch")
    # Embedding lookup as a leaf, so its gradient is per position (the table's rows are updated lazily).
    flat_ids = tokens_t + (ar * V)[:, None, None]
    x = arr.t["emb"].view(K * V, E)[flat_ids].requires_grad_(True)
    lap("embedding")
    return _StepBatch(tokens_t, tags_t, lengths_t, slots, n_lab, drop, x, ar)


def _heads(arr: ModelArray, y: torch.Tensor, sb: _StepBatch, settings: TrainSettings, positions: int = 0):
    """Heads, cross-entropy and the drawn heads' Adadelta update of the K runs (:func:`mtlfast.ops.heads_step_`,
    one call): returns (losses [K] tensor, dy). Only the drawn slot of each run moves, and only its task's n
    label rows (padding rows beyond n never enter a logit). ``settings.precision`` "bf16": the heads' products
    take bf16 operands with fp32 accumulation (natively on AVX512-BF16 CPUs, fp32 products elsewhere)."""
    t = arr.t
    return ops.heads_step_(y.detach(), t["head_w"], t["head_b"], t["head_w.sq"], t["head_b.sq"], t["head_w.ad"],
                           t["head_b.ad"], sb.slots, sb.n_lab, sb.tags, positions=positions, ignore_tag=PAD_TAG,
                           lr=settings.lr, rho=settings.rho, eps=settings.eps, precision=settings.precision)


def _release(dense: list[torch.Tensor]) -> None:
    """After the dense layers' update: drop their gradients and autograd flag."""
    for p in dense:
        p.grad = None
        p.requires_grad_(False)


def _array_step(arr: ModelArray, runs: list[_Run], inputs, settings: TrainSettings, prof: StepProfile | None = None
                ) -> tuple[torch.Tensor, list[int]]:
    """Advance every run of the array by one step; return the runs' batch losses (a [K] tensor on the array's
    device, not read back) and drawn task slots. ``prof``: add the step's time per part to it."""
    K = arr.K
    E = arr.t["emb"].shape[2]
    B = settings.batch_size
    lap = _laps(prof)
    sb = _step_batch(arr, runs, inputs, settings, dropout=settings.dropout > 0, lap=lap)
    tokens_t, tags_t, lengths_t, slots, drop, x = sb.tokens, sb.tags, sb.lengths, sb.slots, sb.drop, sb.x
    T = tokens_t.shape[2]
    dense = [arr.t[n].requires_grad_(True) for n in DENSE]
    lap("other")
    y = ops.bilstm(x, lengths_t, *dense, precision=settings.precision, backend=settings.backend)
    if drop is not None:
        y = y * drop
    lap("bilstm")
    valid = tags_t != PAD_TAG
    # Heads + cross-entropy per run over its own labels and real tokens only: padding every run's logits to
    # the largest label set of the suite (776 for FrameNet) made the heads cost more than the bi-LSTM.
    per_run, dy = _heads(arr, y, sb, settings)
    lap("heads")
    y.backward(dy)
    lap("bilstm")

    kw = dict(lr=settings.lr, rho=settings.rho, eps=settings.eps)
    with torch.no_grad():
        ops.adadelta_([arr.t[n] for n in DENSE], [p.grad for p in dense], [arr.t[n + ".sq"] for n in DENSE],
                      [arr.t[n + ".ad"] for n in DENSE], **kw)
        _release(dense)
        lap("optimiser")
        # Embedding rows: summed gradient per distinct token of each run, lazy exact update.
        ids = torch.where(valid, tokens_t, torch.full_like(tokens_t, -1)).reshape(K, B * T)
        arr.local_step += 1
        ops.embedding_rows_update_(arr.t["emb"], arr.t["emb.sq"], arr.t["emb.ad"], arr.t["emb.last"], ids,
                                   x.grad.reshape(K, B * T, E), arr.local_step, **kw)
    lap("embedding")
    if prof is not None:
        prof.steps += 1
    return per_run, slots.tolist()


def _array_step_original(arr: ModelArray, runs: list[_Run], inputs, settings: TrainSettings,
                         prof: StepProfile | None = None) -> tuple[torch.Tensor, list[int]]:
    """One step of every run under the original protocol (module docstring); returns losses and task slots."""
    K = arr.K
    dev = arr.device
    B = settings.batch_size
    lap = _laps(prof)
    sb = _step_batch(arr, runs, inputs, settings, dropout=False, lap=lap)
    tokens_t, tags_t, lengths_t, slots, x = sb.tokens, sb.tags, sb.lengths, sb.slots, sb.x
    T = tokens_t.shape[2]
    slots_t = torch.from_numpy(slots).to(dev)
    dense = [arr.t[n].requires_grad_(True) for n in DENSE]
    lap("other")
    y = ops.bilstm(x, lengths_t, *dense, precision=settings.precision, backend=settings.backend)
    lap("bilstm")
    valid = tags_t != PAD_TAG
    # The loss is a mean over all batch_size x max_len positions of the original's fixed-size batch.
    per_run, dy = _heads(arr, y, sb, settings, positions=B * settings.max_len)
    lap("heads")
    y.backward(dy)
    lap("bilstm")

    kw = dict(lr=settings.lr, rho=settings.rho, eps=settings.eps)
    with torch.no_grad():
        # One Adadelta per task: the drawn task's accumulators of the shared layers ([K, S, ...]) move.
        ops.adadelta_slots_([arr.t[n] for n in DENSE], [p.grad for p in dense], [arr.t[n + ".sq"] for n in DENSE],
                            [arr.t[n + ".ad"] for n in DENSE], slots_t, **kw)
        _release(dense)
        lap("optimiser")
        # Embedding: TensorFlow's sparse Adadelta, one update per occurrence in time-major order (the original
        # feeds [timesteps, batch] ids); padding positions carry a zero gradient and a row (PAD) that never
        # reaches an output, so they are left out.
        rows = torch.where(valid, tokens_t, torch.full_like(tokens_t, -1)).transpose(1, 2).reshape(K, T * B)
        grads = x.grad  # [K, B, T, E], read in the rows' time-major order (no transposed copy)
        arr.local_step += 1
        ops.sparse_adadelta_occurrences_(arr.t["emb"], arr.t["emb.sq"], arr.t["emb.ad"], slots_t, rows, grads, **kw)
    lap("embedding")
    if prof is not None:
        prof.steps += 1
    return per_run, slots.tolist()


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
    ``eval_every`` steps and at the end; :class:`Checkpoint` every ``checkpoint_every`` steps and, for every
    active run at once, when ``checkpoint_seconds`` of wall time have passed since the array's last checkpoints
    (never at a run's final step); :class:`RunDone`. The time-based checkpoints are spaced at least 19 times
    as long as writing the last ones took (``on_event``'s time), so that they cost at most about 5 % of the
    time however large the array. :class:`Progress` after every array step. When ``should_stop()`` turns
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
    # The steps' loss tensors and task slots since the last read, for the runs now in the array: read (one
    # device-to-host copy) only when some run needs its losses (a loss point, a checkpoint, its end).
    pending: list[tuple[torch.Tensor, list[int]]] = []

    def read_losses() -> None:
        if not pending:
            return
        values = torch.stack([l for l, _ in pending]).tolist()
        for row, (_, slots) in zip(values, pending):
            for run, loss, slot in zip(runs, row, slots):
                acc = run.loss_acc.setdefault(run.spec.tasks[slot], [0.0, 0])
                acc[0] += loss
                acc[1] += 1
        pending.clear()

    ck = settings.checkpoint_every
    ck_s = settings.checkpoint_seconds
    last_ck, ck_cost = time.perf_counter(), 0.0  # when the last checkpoints were written; how long that took
    while runs:
        if should_stop():
            read_losses()
            for k, run in enumerate(runs):
                on_event(Checkpoint(run.spec.run_id, run.step, run.state(arr.run_state(k, run.step))))
            raise TrainingInterrupted(f"stopped with {len(runs)} run(s) active; all checkpointed")
        t0 = time.perf_counter()
        step_fn = _array_step_original if settings.protocol == "original" else _array_step
        losses, slots = step_fn(arr, runs, inputs, settings)
        pending.append((losses, slots))
        dt = time.perf_counter() - t0
        on_event(Progress(len(runs)))
        for run in runs:
            run.step += 1
            run.seconds += dt
        by_time = ck_s > 0 and time.perf_counter() - last_ck >= max(ck_s, 19.0 * ck_cost)
        if by_time or any(run.step % settings.log_every == 0 or run.step >= run.spec.steps
                          or (ck and run.step % ck == 0) for run in runs):
            read_losses()
        cost, n_ck = 0.0, 0
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
                if by_time or (ck and step % ck == 0):
                    t = time.perf_counter()
                    on_event(Checkpoint(run.spec.run_id, step, run.state(arr.run_state(k, run.step))))
                    cost += time.perf_counter() - t
                    n_ck += 1
        if n_ck:  # the cost of checkpointing the whole array, from the runs written now
            last_ck, ck_cost = time.perf_counter(), cost * len(runs) / n_ck
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

"""The protocol of Bingel & Søgaard (EACL 2017) in plain PyTorch, written as a careful user would.

This is the baseline every mtlfast speed claim is measured against, so it deliberately imports nothing from
mtlfast: its own TSV reader, vocabulary, GloVe loader, batching, model, optimiser loop and metric.

Model and training (../shared/DESIGN.md):
  * nn.Embedding initialised from GloVe (lower-cased lookup; words without a vector drawn from
    Normal(0, std of the GloVe vectors); row 0 = padding, zero, no gradient), trainable;
  * nn.LSTM(bidirectional=True, batch_first=True, hidden 100) on right-padded batches (not packed: packing is
    ~3x slower; padding the reverse direction reads pad embeddings first, which is what such a user gets);
  * dropout 0.1 on the bi-LSTM outputs; one nn.Linear head per task (Xavier-uniform weights, zero bias);
  * cross-entropy averaged over real tokens (padding ignored);
  * torch.optim.Adadelta(lr=0.1, rho=0.95, eps=1e-8) (the original's TensorFlow settings);
  * each step: draw a task uniformly, sample 32 sentences of its train split uniformly (without replacement
    within the batch), cut to 30 tokens, one update (heads of other tasks get no gradient and are skipped);
  * evaluation on whole test sentences (length-sorted padded batches): token micro-F1 over all labels except
    ``O`` (= accuracy when a task has no ``O``) and accuracy.
  * training loss: every 10 steps, for each task drawn since the previous point, the mean of its batch losses.

``--original`` (:func:`train_original`) runs instead what the authors' released TensorFlow code does (the
README's "Original vs clean"), again with nothing from mtlfast:
  * words and labels lower-cased (whitespace inside a token joined with ``_``); every sentence
    ``[GO] w1 … wn [EOS]``, padded or cut to 30 positions; ids PAD 0, GO 1, OOV 2, EOS 3, then every row of
    the GloVe file (the whole file is the trainable table, as in the original); a word without a vector is
    the one shared OOV row; GO/OOV/EOS rows drawn from Normal(0, std of GloVe), PAD zero;
  * labels: the four specials, then the training labels in order of first occurrence; a test label never
    seen in training is OOV;
  * two unidirectional nn.LSTMs (the backward one on each sequence reversed within its own length), one
    trainable bias each (bias_hh frozen at 0), weights U(±sqrt(3/(E+H))) (TF 0.12's uniform_unit_scaling),
    forget-gate bias 1.0 (BasicLSTMCell's forget_bias); outputs 0 past a sequence's length; no dropout;
  * heads: Xavier-uniform weights and bias (the original's xavier_init(1, n) for the bias);
  * loss: cross-entropy averaged over all 32 x 30 positions, target PAD at padding;
  * one torch.optim.Adadelta per task (bi-LSTM + its head), and per task a TensorFlow SparseApplyAdadelta
    state for the embedding: one update per id occurrence, in time-major order (the original feeds
    [timesteps, batch]), applied here in rounds of k-th occurrences; padding occurrences (zero gradient,
    PAD row) are skipped, which changes nothing but the PAD row's accumulators;
  * evaluation: test sentences in file order, batches of 32, the last partial batch dropped, positions
    1 .. len-2 of each (cut) sentence, argmax over all classes, micro-F1 over the training labels except the
    specials and ``o``, and accuracy.

Library use::

    from reference_protocol import train
    res = train(["../shared/data/pos"], steps=2000, seed=0, glove_path="…/glove.6B.50d.trimmed.txt", threads=2)
    res["tasks"]["pos"]["f1"], res["ms_per_step"]

Command line::

    python bench/reference_protocol.py --data ../shared/data --tasks pos --steps 2000 \\
        --glove ../shared/data/embeddings/glove.6B.50d.trimmed.txt --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, UNK = "<pad>", "<unk>"
IGNORE = -100


# ---------------------------------------------------------------------------------------------------------
# Data


def read_tsv(path: Path) -> list[tuple[list[str], list[str]]]:
    """Sentences of a ``token<TAB>label`` file with a blank line after each sentence."""
    sents, toks, tags = [], [], []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                if toks:
                    sents.append((toks, tags))
                    toks, tags = [], []
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise ValueError(f"{path} line {n}: expected 'token<TAB>label', got {len(parts)} fields")
            toks.append(parts[0])
            tags.append(parts[1])
    if toks:
        sents.append((toks, tags))
    return sents


def load_task(task_dir: Path) -> dict:
    task_dir = Path(task_dir)
    splits = {name: read_tsv(task_dir / f"{name}.tsv") for name in ("train", "test")}
    labels = sorted({t for split in splits.values() for _, tags in split for t in tags})
    return {"name": task_dir.name, "splits": splits, "labels": labels}


def build_vocab(tasks: list[dict]) -> dict[str, int]:
    """Lower-cased words of every split of every task, most frequent first; 0 = <pad>, 1 = <unk>."""
    counts: dict[str, int] = {}
    for t in tasks:
        for split in t["splits"].values():
            for toks, _ in split:
                for w in toks:
                    w = w.lower()
                    counts[w] = counts.get(w, 0) + 1
    words = sorted((w for w in counts if w not in (PAD, UNK)), key=lambda w: (-counts[w], w))
    return {w: i for i, w in enumerate([PAD, UNK] + words)}


def embedding_init(vocab: dict[str, int], glove_path: str | None, dim: int, seed: int) -> np.ndarray:
    """GloVe rows where the (lower-cased) word has a vector, Normal(0, std of GloVe) elsewhere, row 0 zero."""
    found: dict[int, np.ndarray] = {}
    if glove_path:
        with open(glove_path, encoding="utf-8") as fh:
            for line in fh:
                word, rest = line.rstrip("\n").split(" ", 1)
                i = vocab.get(word)
                if i is not None and i > 1:
                    found[i] = np.asarray(rest.split(" "), dtype=np.float32)
    if found:
        dim = len(next(iter(found.values())))
        std = float(np.stack(list(found.values())).std())
    else:
        std = 0.1
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0.0, std, size=(len(vocab), dim)).astype(np.float32)
    for i, v in found.items():
        matrix[i] = v
    matrix[0] = 0.0
    return matrix


def encode(split, vocab: dict[str, int], label_ids: dict[str, int]):
    out = []
    for toks, tags in split:
        out.append((np.array([vocab.get(w.lower(), 1) for w in toks], dtype=np.int64),
                    np.array([label_ids[t] for t in tags], dtype=np.int64)))
    return out


def pad_batch(sents, max_len: int | None = None):
    cut = [(w[:max_len], t[:max_len]) if max_len else (w, t) for w, t in sents]
    T = max(len(w) for w, _ in cut)
    tokens = np.zeros((len(cut), T), dtype=np.int64)
    tags = np.full((len(cut), T), IGNORE, dtype=np.int64)
    for b, (w, t) in enumerate(cut):
        tokens[b, : len(w)] = w
        tags[b, : len(t)] = t
    return torch.from_numpy(tokens), torch.from_numpy(tags)


# ---------------------------------------------------------------------------------------------------------
# Model


class Tagger(nn.Module):
    def __init__(self, emb: np.ndarray, hidden: int, n_labels: list[int], dropout: float):
        super().__init__()
        self.emb = nn.Embedding.from_pretrained(torch.from_numpy(emb), freeze=False, padding_idx=0)
        self.lstm = nn.LSTM(emb.shape[1], hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.heads = nn.ModuleList(nn.Linear(2 * hidden, n) for n in n_labels)
        for h in self.heads:
            nn.init.xavier_uniform_(h.weight)
            nn.init.zeros_(h.bias)

    def forward(self, tokens: torch.Tensor, task: int) -> torch.Tensor:
        states, _ = self.lstm(self.emb(tokens))
        return self.heads[task](self.drop(states))


def f1_accuracy(gold: np.ndarray, pred: np.ndarray, outside: int | None) -> tuple[float, float]:
    """Token micro-F1 over every label except the outside label, and accuracy."""
    correct = gold == pred
    acc = float(correct.mean()) if gold.size else 0.0
    if outside is None:
        return acc, acc
    tp = int((correct & (gold != outside)).sum())
    pred_pos = int((pred != outside).sum())
    gold_pos = int((gold != outside).sum())
    p = tp / pred_pos if pred_pos else 0.0
    r = tp / gold_pos if gold_pos else 0.0
    return (2 * p * r / (p + r) if p + r else 0.0), acc


@torch.no_grad()
def evaluate(model: Tagger, data, task: int, outside: int | None, batch_size: int = 256):
    model.eval()
    order = sorted(range(len(data)), key=lambda i: len(data[i][0]))
    golds, preds = [], []
    for s in range(0, len(order), batch_size):
        chunk = [data[i] for i in order[s : s + batch_size]]
        tokens, tags = pad_batch(chunk)
        pred = model(tokens, task).argmax(-1)
        real = tags != IGNORE
        golds.append(tags[real].numpy())
        preds.append(pred[real].numpy())
    model.train()
    return f1_accuracy(np.concatenate(golds), np.concatenate(preds), outside)


# ---------------------------------------------------------------------------------------------------------
# Training


def _one_step(model, opt, enc, n_tasks, rng, batch_size, max_len):
    k = rng.randrange(n_tasks)
    train_data = enc[k]["train"]
    n = len(train_data)
    idx = rng.sample(range(n), batch_size) if n >= batch_size else [rng.randrange(n) for _ in range(batch_size)]
    tokens, tags = pad_batch([train_data[i] for i in idx], max_len)
    logits = model(tokens, k)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tags.reshape(-1), ignore_index=IGNORE)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return k, loss


def _profile(model, opt, enc, tasks, rng, batch_size, max_len, steps) -> dict:
    """Self time per op over ``steps`` training steps (ms per step; the profiler measures wall time, so on a
    loaded machine read the shares, not the absolute values)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with record_function("## step"):
                _one_step(model, opt, enc, len(tasks), rng, batch_size, max_len)
    rows = []
    for evt in prof.key_averages():
        rows.append((evt.key, evt.self_cpu_time_total / 1e3 / steps, evt.count / steps))
    rows.sort(key=lambda r: -r[1])
    step_total = sum(r[1] for r in rows)
    print(f"profile over {steps} steps: self time per op, ms per step (sum {step_total:.2f}); top 20:")
    for key, ms, cnt in rows[:20]:
        print(f"  {key[:48]:48s} {ms:8.3f} ms  {cnt:6.1f} calls/step")
    # the optimizer step's own ops are children of Optimizer.step#...: group them by the profiler's tree
    opt_ms = sum(e.cpu_time_total for e in prof.events() if e.name.startswith("Optimizer.step")) / 1e3 / steps
    print(f"  optimizer.step total (incl. children) {opt_ms:.3f} ms/step = {100 * opt_ms / step_total:.0f} % of the step")
    return {"self_cpu_ms_per_step": {k: ms for k, ms, _ in rows}, "optimizer_step_ms": opt_ms,
            "sum_ms": step_total}


def train(
    task_dirs,
    steps: int = 2000,
    seed: int = 0,
    glove_path: str | None = None,
    threads: int = 2,
    *,
    batch_size: int = 32,
    max_len: int = 30,
    hidden: int = 100,
    dropout: float = 0.1,
    lr: float = 0.1,
    rho: float = 0.95,
    eps: float = 1e-8,
    log_every: int = 10,
    warmup_steps: int = 20,
    evaluate_test: bool = True,
    verbose: bool = False,
    profile_steps: int = 0,
) -> dict:
    """Train one model on the given tasks (one head each) and score it on every task's test split.

    Returns ``dict(tasks={name: dict(f1=, accuracy=, n_test_tokens=)}, ms_per_step=, ms_per_step_all=,
    loss_curve=[(step, task, mean loss)], steps=, threads=, seed=, setup_s=, train_s=, eval_s=, vocab_size=)``.
    ``ms_per_step`` is the mean wall time of a training step (batch sampling and padding in Python, forward,
    backward, optimiser) after ``warmup_steps`` steps; ``ms_per_step_all`` includes the warm-up;
    ``cpu_ms_per_step`` is the process CPU time per step (with threads=1 a load-independent estimate of the
    wall time on an idle core; with more threads it also counts OpenMP spin-waiting).
    """
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    tasks = [load_task(Path(d)) for d in task_dirs]
    vocab = build_vocab(tasks)
    emb = embedding_init(vocab, glove_path, 100, seed)
    enc = []
    for t in tasks:
        label_ids = {l: i for i, l in enumerate(t["labels"])}
        enc.append({
            "train": encode(t["splits"]["train"], vocab, label_ids),
            "test": encode(t["splits"]["test"], vocab, label_ids),
            "outside": label_ids.get("O"),
        })
    model = Tagger(emb, hidden, [len(t["labels"]) for t in tasks], dropout)
    opt = torch.optim.Adadelta(model.parameters(), lr=lr, rho=rho, eps=eps)
    setup_s = time.perf_counter() - t0

    curve: list[tuple[int, str, float]] = []
    pending: dict[int, list[float]] = {}
    t_start = time.perf_counter()
    t_warm, c_warm = t_start, time.process_time()
    for step in range(1, steps + 1):
        if step == warmup_steps + 1:
            t_warm, c_warm = time.perf_counter(), time.process_time()
        k, loss = _one_step(model, opt, enc, len(tasks), rng, batch_size, max_len)
        pending.setdefault(k, []).append(loss.item())
        if step % log_every == 0:
            for kk in sorted(pending):
                curve.append((step, tasks[kk]["name"], float(np.mean(pending[kk]))))
            pending.clear()
            if verbose and step % (log_every * 50) == 0:
                print(f"step {step}: " + ", ".join(f"{t} {l:.4f}" for s, t, l in curve[-len(tasks):] if s == step),
                      file=sys.stderr)
    t_end, c_end = time.perf_counter(), time.process_time()
    profile = _profile(model, opt, enc, tasks, rng, batch_size, max_len, profile_steps) if profile_steps else None
    train_s = t_end - t_start
    timed = steps - warmup_steps
    ms_per_step = (t_end - t_warm) / timed * 1e3 if timed > 0 else train_s / max(steps, 1) * 1e3
    cpu_ms_per_step = (c_end - c_warm) / timed * 1e3 if timed > 0 else float("nan")

    scores = {}
    t1 = time.perf_counter()
    if evaluate_test:
        for k, t in enumerate(tasks):
            f1, acc = evaluate(model, enc[k]["test"], k, enc[k]["outside"])
            scores[t["name"]] = {"f1": f1, "accuracy": acc,
                                 "n_test_tokens": int(sum(len(w) for w, _ in enc[k]["test"]))}
    eval_s = time.perf_counter() - t1
    return {
        "tasks": scores,
        "ms_per_step": ms_per_step,
        "ms_per_step_all": train_s / max(steps, 1) * 1e3,
        "cpu_ms_per_step": cpu_ms_per_step,
        "load_avg_1min": os.getloadavg()[0],
        "loss_curve": curve,
        "steps": steps,
        "threads": threads,
        "seed": seed,
        "setup_s": setup_s,
        "train_s": train_s,
        "eval_s": eval_s,
        "vocab_size": len(vocab),
        "profile": profile,
        "torch": torch.__version__,
    }


# ---------------------------------------------------------------------------------------------------------
# The original protocol (--original)

O_PAD, O_GO, O_OOV, O_EOS = 0, 1, 2, 3


def _oform(s: str) -> str:
    return "_".join(s.lower().split())


def _read_glove_all(glove_path: str | None):
    words, vecs = [], []
    if glove_path:
        with open(glove_path, encoding="utf-8") as fh:
            for line in fh:
                word, rest = line.rstrip("\n").split(" ", 1)
                words.append(word)
                vecs.append(np.asarray(rest.split(" "), dtype=np.float32))
    return words, (np.stack(vecs) if vecs else None)


def _frame(split, w2id, l2id, T):
    """Sentences as [GO] ids [EOS], padded/cut to T; returns (tokens [N, T], tags [N, T], lengths [N])."""
    n = len(split)
    tok = np.zeros((n, T), dtype=np.int64)
    tag = np.zeros((n, T), dtype=np.int64)
    lens = np.zeros(n, dtype=np.int64)
    for i, (ws, ls) in enumerate(split):
        a = [O_GO] + [w2id.get(_oform(w), O_OOV) for w in ws] + [O_EOS]
        b = [O_GO] + [l2id.get(_oform(l), O_OOV) for l in ls] + [O_EOS]
        L = min(len(a), T)
        tok[i, :L] = a[:L]
        tag[i, :L] = b[:L]
        lens[i] = L
    return tok, tag, lens


class OriginalTagger(nn.Module):
    def __init__(self, E: int, hidden: int, n_labels: list[int]):
        super().__init__()
        self.fw = nn.LSTM(E, hidden, batch_first=True)
        self.bw = nn.LSTM(E, hidden, batch_first=True)
        k = (3.0 / (E + hidden)) ** 0.5
        for lstm in (self.fw, self.bw):
            nn.init.uniform_(lstm.weight_ih_l0, -k, k)
            nn.init.uniform_(lstm.weight_hh_l0, -k, k)
            with torch.no_grad():
                lstm.bias_ih_l0.zero_()
                lstm.bias_ih_l0[hidden : 2 * hidden] = 1.0  # forget gate (torch order i, f, g, o)
                lstm.bias_hh_l0.zero_()
            lstm.bias_hh_l0.requires_grad_(False)
        self.heads = nn.ModuleList(nn.Linear(2 * hidden, n) for n in n_labels)
        for h, n in zip(self.heads, n_labels):
            nn.init.xavier_uniform_(h.weight)
            b = (6.0 / (1 + n)) ** 0.5
            nn.init.uniform_(h.bias, -b, b)

    def forward(self, x, lengths, task):
        B, T, _ = x.shape
        ar = torch.arange(T)[None, :]
        inside = ar < lengths[:, None]
        rev = torch.where(inside, lengths[:, None] - 1 - ar, ar)  # reverse each sequence within its length
        idx = rev[:, :, None].expand_as(x)
        yf, _ = self.fw(x)
        yb, _ = self.bw(torch.gather(x, 1, idx))
        yb = torch.gather(yb, 1, rev[:, :, None].expand(B, T, yb.shape[-1]))
        y = torch.cat([yf, yb], dim=-1) * inside[:, :, None]
        return self.heads[task](y)


def _tf_sparse_adadelta_rounds(table, sq, ad, ids, grads, lr, rho, eps):
    """SparseApplyAdadelta entry by entry, computed as rounds: the k-th occurrences of all rows at once."""
    rank = np.zeros(len(ids), dtype=np.int64)
    seen: dict[int, int] = {}
    for i, r in enumerate(ids.tolist()):
        rank[i] = seen.get(r, 0)
        seen[r] = rank[i] + 1
    ids_t = torch.from_numpy(ids)
    rank_t = torch.from_numpy(rank)
    for k in range(int(rank.max()) + 1 if len(rank) else 0):
        m = rank_t == k
        r, g = ids_t[m], grads[m]
        a = sq[r] * rho + g * g * (1 - rho)
        u = (ad[r] + eps).sqrt() / (a + eps).sqrt() * g
        sq[r] = a
        ad[r] = ad[r] * rho + u * u * (1 - rho)
        table[r] -= lr * u


def train_original(task_dirs, steps: int = 2000, seed: int = 0, glove_path: str | None = None, threads: int = 2, *,
                   batch_size: int = 32, max_len: int = 30, hidden: int = 100, lr: float = 0.1, rho: float = 0.95,
                   eps: float = 1e-8, log_every: int = 10, evaluate_test: bool = True, verbose: bool = False) -> dict:
    """The original protocol (module docstring), one model over ``task_dirs``; same result dict as train()."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    tasks = [load_task(Path(d)) for d in task_dirs]
    words, vecs = _read_glove_all(glove_path)
    w2id: dict[str, int] = {}
    if words:
        for i, w in enumerate(words):
            w2id[w.split("_")[0]] = i + 4  # as the original's loader; a later duplicate wins
        E = vecs.shape[1]
        std = float(vecs.std())
    else:  # no vectors: the training words get rows
        for t in tasks:
            for ws, _ in t["splits"]["train"]:
                for w in ws:
                    w2id.setdefault(_oform(w), len(w2id) + 4)
        E, std = 100, 0.1
    V = max(w2id.values(), default=3) + 1
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(V, E, generator=g) * std
    table[O_PAD] = 0.0
    if words:
        table[4:] = torch.from_numpy(vecs)
    enc = []
    for t in tasks:
        l2id = {"<pad>": 0, "<go>": 1, "<oov>": 2, "<eos>": 3}
        for _, ls in t["splits"]["train"]:
            for l in ls:
                l2id.setdefault(_oform(l), len(l2id))
        enc.append({"train": _frame(t["splits"]["train"], w2id, l2id, max_len),
                    "test": _frame(t["splits"]["test"], w2id, l2id, max_len),
                    "outside": l2id.get("o"), "n": len(l2id)})
    model = OriginalTagger(E, hidden, [e["n"] for e in enc])
    shared = [p for p in list(model.fw.parameters()) + list(model.bw.parameters()) if p.requires_grad]
    opts = [torch.optim.Adadelta(shared + list(model.heads[k].parameters()), lr=lr, rho=rho, eps=eps)
            for k in range(len(tasks))]
    emb_state = [(torch.zeros(V, E), torch.zeros(V, E)) for _ in tasks]
    setup_s = time.perf_counter() - t0

    curve, pending = [], {}
    t_start = time.perf_counter()
    for step in range(1, steps + 1):
        k = rng.randrange(len(tasks))
        tok, tag, lens = enc[k]["train"]
        n = len(tok)
        idx = rng.sample(range(n), batch_size) if n >= batch_size else [rng.randrange(n) for _ in range(batch_size)]
        tokens = torch.from_numpy(tok[idx])
        tags = torch.from_numpy(tag[idx])
        lengths = torch.from_numpy(lens[idx])
        x = table[tokens].requires_grad_(True)
        logits = model(x, lengths, k)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tags.reshape(-1))  # all B x T positions
        opts[k].zero_grad(set_to_none=True)
        loss.backward()
        opts[k].step()
        with torch.no_grad():
            inside = (torch.arange(max_len)[None, :] < lengths[:, None]).t().reshape(-1)  # time-major
            ids = tokens.t().reshape(-1)[inside].numpy()
            grads = x.grad.transpose(0, 1).reshape(-1, E)[inside]
            _tf_sparse_adadelta_rounds(table, *emb_state[k], ids, grads, lr, rho, eps)
        pending.setdefault(k, []).append(loss.item())
        if step % log_every == 0:
            for kk in sorted(pending):
                curve.append((step, tasks[kk]["name"], float(np.mean(pending[kk]))))
            pending.clear()
            if verbose and step % (log_every * 50) == 0:
                print(f"step {step}: " + ", ".join(f"{t} {l:.4f}" for s, t, l in curve[-len(tasks):] if s == step),
                      file=sys.stderr)
    train_s = time.perf_counter() - t_start

    scores = {}
    t1 = time.perf_counter()
    if evaluate_test:
        with torch.no_grad():
            for k, t in enumerate(tasks):
                tok, tag, lens = enc[k]["test"]
                nb = max(len(tok) // batch_size, 1)
                golds, preds = [], []
                for bi in range(nb):
                    sl = slice(bi * batch_size, (bi + 1) * batch_size)
                    lengths = torch.from_numpy(lens[sl])
                    pred = model(table[torch.from_numpy(tok[sl])], lengths, k).argmax(-1).numpy()
                    pos = np.arange(max_len)[None, :]
                    keep = (pos >= 1) & (pos < lens[sl][:, None] - 1)
                    golds.append(tag[sl][keep])
                    preds.append(pred[keep])
                gold, pred = np.concatenate(golds), np.concatenate(preds)
                out = enc[k]["outside"]
                pos_g = (gold > 3) & (gold != (out if out is not None else -1))
                pos_p = (pred > 3) & (pred != (out if out is not None else -1))
                tp = int(((gold == pred) & pos_g).sum())
                denom = int(pos_g.sum()) + int(pos_p.sum())
                scores[t["name"]] = {"f1": 2 * tp / denom if denom else 0.0,
                                     "accuracy": float((gold == pred).mean()) if gold.size else 0.0,
                                     "n_test_tokens": int(gold.size)}
    eval_s = time.perf_counter() - t1
    return {"tasks": scores, "ms_per_step": train_s / max(steps, 1) * 1e3,
            "ms_per_step_all": train_s / max(steps, 1) * 1e3, "cpu_ms_per_step": float("nan"),
            "load_avg_1min": os.getloadavg()[0], "loss_curve": curve, "steps": steps, "threads": threads,
            "seed": seed, "setup_s": setup_s, "train_s": train_s, "eval_s": eval_s, "vocab_size": V,
            "profile": None, "torch": torch.__version__, "protocol": "original"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Plain-PyTorch reference of the protocol (baseline for mtlfast).")
    ap.add_argument("--data", default="../shared/data", help="folder holding the task folders")
    ap.add_argument("--tasks", default="pos", help="comma-separated task folder names, e.g. pos or pos,chu")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--glove", default=None, help="GloVe text file (word v1 … vd); default: random init, d = 100")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=30, help="training sentences cut to this many tokens")
    ap.add_argument("--no-eval", action="store_true", help="time training only")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after training, profile N more training steps with torch.profiler and print where the "
                         "time goes (self time per op, top 20, and the optimizer step's share)")
    ap.add_argument("--json", default=None, help="write the full result (with loss curve) to this file")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--original", action="store_true",
                    help="the original protocol (what the authors' released code does; module docstring)")
    args = ap.parse_args(argv)
    data = Path(args.data)
    dirs = [data / t.strip() for t in args.tasks.split(",") if t.strip()]
    for d in dirs:
        if not (d / "train.tsv").exists():
            ap.error(f"task folder {d} has no train.tsv")
    if args.glove and not Path(args.glove).exists():
        ap.error(f"--glove {args.glove}: no such file")
    if args.original:
        if args.profile:
            ap.error("--profile is not available with --original")
        res = train_original(dirs, args.steps, args.seed, args.glove, args.threads, batch_size=args.batch_size,
                             max_len=args.max_len, evaluate_test=not args.no_eval, verbose=args.verbose)
    else:
        res = train(dirs, args.steps, args.seed, args.glove, args.threads, batch_size=args.batch_size,
                    max_len=args.max_len, evaluate_test=not args.no_eval, verbose=args.verbose,
                    profile_steps=args.profile)
    print(f"reference protocol{' (original)' if args.original else ''}: tasks {args.tasks}, {args.steps} steps, seed {args.seed}, threads {args.threads}, "
          f"torch {torch.__version__}")
    print(f"  ms/step {res['ms_per_step']:.2f} (after 20 warm-up steps; {res['ms_per_step_all']:.2f} incl.), "
          f"setup {res['setup_s']:.1f} s, train {res['train_s']:.1f} s, eval {res['eval_s']:.1f} s")
    print(f"  cpu ms/step {res['cpu_ms_per_step']:.2f}; load average {res['load_avg_1min']:.1f} on {os.cpu_count()} cpus")
    for name, s in res["tasks"].items():
        print(f"  {name}: test F1 (micro, no O) {s['f1']:.4f}  accuracy {s['accuracy']:.4f}  "
              f"({s['n_test_tokens']} tokens)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

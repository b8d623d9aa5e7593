"""Fused Adadelta vs torch.optim.Adadelta, side by side in one process run.

Cases (defaults follow the protocol: 50-d or 100-d table of ~20k words, bi-LSTM H = 100, batch 32 x 25 tokens):
  dense      : one optimiser step over a 20k x 100 embedding table + bi-LSTM (E = 100) + head parameters,
               torch.optim.Adadelta (for-loop and foreach) vs mtlfast.ops.adadelta_ (one fused pass).
  lazy_rows  : the embedding table's part of a step: dense grad (embedding backward) + dense Adadelta of the
               whole table vs mtlfast's sparse backward + exact lazy update of the touched rows only.
  emb_bwd    : embedding backward alone: torch's embedding_dense_backward (autograd of F.embedding),
               torch.unique + index_add_, vs mtlfast.ops.embedding_grad_rows.
  array      : a model array of K runs: tables [K, V, E] updated lazily, heads [K, S, L, 2H] with a slot mask,
               vs K separate torch.optim.Adadelta steps (dense) on the same tensors.

Prints medians (ms) and ratios and writes bench/out/bench_optim.csv with the configuration and machine.
Never asserts a time. Example:  python bench/bench_optim.py --threads 2
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import mtlfast.ops.adadelta as O  # noqa: E402
from mtlfast.ops.dispatch import _C, cpu_features  # noqa: E402

HP = dict(lr=0.1, rho=0.95, eps=1e-8)


def machine() -> str:
    model = cpu_features()["model"]
    path = _C.cpu_kernel_path() if O.has_fused_adadelta() else "no _C"
    return f"{model}; {os.cpu_count()} cpus; torch {torch.__version__}; threads {torch.get_num_threads()}; kernel {path}"


CLOCK = time.perf_counter


def bench(fn, repeat: int, warmup: int = 3) -> float:
    """Median ms per call on CLOCK (wall time, or process CPU time with --clock cpu)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return statistics.median(times) * 1e3


def lstm_shapes(E, H, n_heads, n_labels):
    shapes = []
    for _ in range(2):  # directions, as torch.nn.LSTM stores them
        shapes += [(4 * H, E), (4 * H, H), (4 * H,), (4 * H,)]
    for _ in range(n_heads):
        shapes += [(n_labels, 2 * H), (n_labels,)]
    return shapes


def case_dense(args, rows):
    V, E, H = args.vocab, args.dim, 100
    shapes = [(V, E)] + lstm_shapes(E, H, 2, 50)
    params = [torch.nn.Parameter(torch.randn(s) * 0.1) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p)
    n = sum(p.numel() for p in params)
    opt_loop = torch.optim.Adadelta(params, **HP, foreach=False)
    opt_each = torch.optim.Adadelta(params, **HP, foreach=True)
    ps = [p.data for p in params]
    gs = [p.grad for p in params]
    sq = [torch.zeros_like(p) for p in ps]
    acc = [torch.zeros_like(p) for p in ps]
    t_loop = bench(opt_loop.step, args.repeat)
    t_each = bench(opt_each.step, args.repeat)
    t_fused = bench(lambda: O.adadelta_(ps, gs, sq, acc, **HP), args.repeat)
    t_ref = bench(lambda: O.reference_adadelta_(ps, gs, sq, acc, **HP), args.repeat)
    cfg = f"table {V}x{E} + biLSTM(E={E},H={H}) + 2 heads; {n / 1e6:.2f} M params"
    print(f"\n[dense] {cfg}")
    print(f"  torch.optim.Adadelta (for-loop) {t_loop:8.3f} ms")
    print(f"  torch.optim.Adadelta (foreach)  {t_each:8.3f} ms")
    print(f"  mtlfast reference_adadelta_     {t_ref:8.3f} ms")
    print(f"  mtlfast adadelta_ (fused)       {t_fused:8.3f} ms   ratio vs for-loop {t_loop / t_fused:5.2f}x, "
          f"vs foreach {t_each / t_fused:5.2f}x")
    gbs = n * 4 * 7 / (t_fused * 1e-3) / 1e9
    print(f"  fused pass moves 7 x 4 B per element: {gbs:5.1f} GB/s")
    for name, t in (("torch_loop", t_loop), ("torch_foreach", t_each), ("reference", t_ref), ("fused", t_fused)):
        rows.append(dict(case="dense", config=cfg, impl=name, ms=round(t, 4)))


def batch_ids(V, B, T, gen):
    # Zipf-like token ids (frequent words small ids), as real text
    u = torch.rand(B * T, generator=gen)
    return (torch.exp(u * torch.log(torch.tensor(float(V)))) - 1).long().clamp_(0, V - 1)


def case_lazy_rows(args, rows):
    V, E, B, T = args.vocab, args.dim, 32, 25
    gen = torch.Generator().manual_seed(0)
    ids = batch_ids(V, B, T, gen)
    gout = torch.randn(B * T, E)
    # torch: F.embedding backward gives a dense [V, E] grad, then dense Adadelta over the table
    weight = torch.nn.Parameter(torch.randn(V, E) * 0.1)
    opt = torch.optim.Adadelta([weight], **HP)

    def torch_step():
        opt.zero_grad(set_to_none=True)
        F.embedding(ids, weight).backward(gout)
        opt.step()

    table = torch.randn(V, E) * 0.1
    lazy = O.LazyEmbeddingAdadelta(table, **HP)
    t_torch = bench(torch_step, args.repeat)
    t_lazy = bench(lambda: lazy.step(ids, gout), args.repeat)
    n_unique = int(torch.unique(ids).numel())
    cfg = f"table {V}x{E}; batch {B}x{T} tokens ({n_unique} distinct)"
    print(f"\n[lazy_rows] {cfg}")
    print(f"  torch: embedding backward (dense grad) + Adadelta  {t_torch:8.3f} ms")
    print(f"  mtlfast: embedding_grad_rows + adadelta_rows_      {t_lazy:8.3f} ms   ratio {t_torch / t_lazy:6.1f}x")
    rows.append(dict(case="lazy_rows", config=cfg, impl="torch_dense", ms=round(t_torch, 4)))
    rows.append(dict(case="lazy_rows", config=cfg, impl="mtlfast_lazy", ms=round(t_lazy, 4)))


def case_emb_bwd(args, rows):
    V, E, B, T = args.vocab, args.dim, 32, 25
    gen = torch.Generator().manual_seed(1)
    ids = batch_ids(V, B, T, gen)
    gout = torch.randn(B * T, E)

    def dense():
        return torch.ops.aten.embedding_dense_backward(gout, ids, V, -1, False)

    def unique_index_add():
        u, inv = torch.unique(ids, return_inverse=True)
        return u, torch.zeros(u.numel(), E).index_add_(0, inv, gout)

    def ours():
        return O.embedding_grad_rows(ids, gout, V)

    res = {name: bench(fn, args.repeat) for name, fn in
           (("embedding_dense_backward", dense), ("unique+index_add_", unique_index_add), ("embedding_grad_rows", ours))}
    cfg = f"V {V}, E {E}, {B * T} tokens"
    print(f"\n[emb_bwd] {cfg}")
    for name, t in res.items():
        print(f"  {name:28s} {t:8.3f} ms   ratio vs ours {t / res['embedding_grad_rows']:6.1f}x")
        rows.append(dict(case="emb_bwd", config=cfg, impl=name, ms=round(t, 4)))


def case_array(args, rows):
    K, V, E, B, T, H, S, L = args.K, args.vocab, args.dim, 32, 25, 100, 2, 50
    gen = torch.Generator().manual_seed(2)
    ids = torch.stack([batch_ids(V, B, T, gen) for _ in range(K)])
    gout = torch.randn(K, B * T, E)
    table = torch.randn(K, V, E) * 0.1
    heads = torch.randn(K, S, L, 2 * H) * 0.1
    head_grad = torch.randn_like(heads)
    head_sq, head_acc = torch.zeros_like(heads), torch.zeros_like(heads)
    slots = torch.randint(0, S, (K,), generator=gen)
    lstm = [torch.randn((K,) + s) * 0.1 for s in [(2, 4 * H, E), (2, 4 * H, H), (2, 4 * H)]]
    lstm_g = [torch.randn_like(p) for p in lstm]
    lstm_sq = [torch.zeros_like(p) for p in lstm]
    lstm_acc = [torch.zeros_like(p) for p in lstm]
    lazy = O.LazyEmbeddingAdadelta(table, **HP)
    mask = O.slot_mask(slots, S)

    def ours():
        lazy.step(ids, gout)
        O.adadelta_(lstm, lstm_g, lstm_sq, lstm_acc, **HP)
        O.adadelta_([heads], [head_grad], [head_sq], [head_acc], **HP, mask=mask)

    # torch: K ordinary models, each: dense embedding grad + torch.optim.Adadelta over its parameters
    models = []
    for k in range(K):
        w = torch.nn.Parameter(table[k].clone())
        ps = [torch.nn.Parameter(p[k].clone()) for p in lstm]
        hs = [torch.nn.Parameter(heads[k, s].clone()) for s in range(S)]
        for p, g in zip(ps, lstm_g):
            p.grad = g[k].clone()
        opt = torch.optim.Adadelta([w] + ps + hs, **HP)
        models.append((w, ps, hs, opt))

    def torch_steps():
        for k, (w, ps, hs, opt) in enumerate(models):
            w.grad = None
            F.embedding(ids[k], w).backward(gout[k])
            for s, h in enumerate(hs):
                h.grad = head_grad[k, s] if s == int(slots[k]) else None
            opt.step()

    repeat = max(3, args.repeat // 4)
    t_torch = bench(torch_steps, repeat, warmup=1)
    t_ours = bench(ours, repeat, warmup=1)
    cfg = f"K {K}; tables {V}x{E}; biLSTM E={E} H={H}; heads [K,{S},{L},{2 * H}]"
    print(f"\n[array] {cfg}")
    print(f"  torch: K x (embedding bwd + torch.optim.Adadelta)   {t_torch:8.3f} ms")
    print(f"  mtlfast: lazy rows + fused dense + masked heads     {t_ours:8.3f} ms   ratio {t_torch / t_ours:6.1f}x")
    rows.append(dict(case="array", config=cfg, impl="torch_K_models", ms=round(t_torch, 4)))
    rows.append(dict(case="array", config=cfg, impl="mtlfast", ms=round(t_ours, 4)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch / OpenMP threads (default 2)")
    ap.add_argument("--vocab", type=int, default=20000, help="embedding rows (default 20000)")
    ap.add_argument("--dim", type=int, default=100, help="embedding dim (default 100, as NOTES.md; protocol uses 50)")
    ap.add_argument("--K", type=int, default=10, help="runs in the model-array case (default 10)")
    ap.add_argument("--repeat", type=int, default=30, help="timed repetitions per measurement (median reported)")
    ap.add_argument("--cases", default="dense,lazy_rows,emb_bwd,array", help="comma-separated subset")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall time (default) or process CPU time (with --threads 1 on a loaded machine)")
    ap.add_argument("--csv", default=str(HERE / "out" / "bench_optim.csv"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if not O.has_fused_adadelta():
        print("warning: mtlfast._C lacks the fused ops; 'mtlfast' rows measure the pure-PyTorch fallback")
    desc = machine() + f"; clock {args.clock}; load {os.getloadavg()[0]:.1f}"
    print(f"machine: {desc}")
    rows: list[dict] = []
    cases = dict(dense=case_dense, lazy_rows=case_lazy_rows, emb_bwd=case_emb_bwd, array=case_array)
    for name in args.cases.split(","):
        cases[name.strip()](args, rows)
    out = Path(args.csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["case", "config", "impl", "ms", "threads", "machine"])
        w.writeheader()
        for r in rows:
            w.writerow(dict(r, threads=args.threads, machine=desc))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

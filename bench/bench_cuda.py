"""Fused CUDA bi-LSTM (csrc/cuda) vs torch.nn.LSTM (cuDNN), side by side in one process run, on one GPU.

Cases (protocol shapes: B = 32 sentences cut to T = 30 tokens, E = 100, H = 100):
  per_model : K = 1: one bi-LSTM forward + backward, fused (precision fp32 and bf16) vs nn.LSTM(bidirectional)
              on the padded batch (cuDNN's fastest path; packing would be slower still).
  array     : K = 55 models (the paper's 10 single + 45 pair runs in lockstep): one fused call over the array
              vs a Python loop of 55 nn.LSTM calls.
  graph     : the fused array step (forward + backward + fused Adadelta of the bi-LSTM weights) captured once in a
              CUDA graph and replayed.
  projection: the paper-scale sweep (10 x 25,000 + 45 x 50,000 steps) run as one K = 55 array for 50,000 steps
              (an upper bound: the 10 single runs leave the array after 25,000), bi-LSTM part only, from the
              graph-replay time.

Prints medians (ms) and ratios and writes bench/out/bench_cuda.csv with the configuration and the GPU.
Never asserts a time. Without a GPU or without the CUDA kernels in mtlfast._C it exits with a message.
Example:  python bench/bench_cuda.py --repeat 50
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mtlfast.ops import dispatch  # noqa: E402

HP = dict(lr=0.1, rho=0.95, eps=1e-8)


def gpu_ready() -> str | None:
    if not torch.cuda.is_available():
        return "bench_cuda.py: no CUDA device visible to torch (torch.cuda.is_available() is False); nothing to measure"
    if not dispatch.has_cuda_kernels():
        return ("bench_cuda.py: mtlfast._C was built without its CUDA kernels; rebuild on this machine with a CUDA "
                "build of torch and nvcc: pip install --no-build-isolation -e .")
    return None


def cuda_time(fn, repeat: int, warmup: int = 5) -> float:
    """Median milliseconds of fn() measured with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def problem(K, B, T, E, H, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(T // 3, T + 1, (K, B), generator=gen)
    bound = 1.0 / H ** 0.5
    x = torch.randn(K, B, T, E, generator=gen)
    w_ih = (torch.rand(K, 2, 4 * H, E, generator=gen) * 2 - 1) * bound
    w_hh = (torch.rand(K, 2, 4 * H, H, generator=gen) * 2 - 1) * bound
    bias = (torch.rand(K, 2, 4 * H, generator=gen) * 2 - 1) * bound
    dy = torch.randn(K, B, T, 2 * H, generator=gen)
    return [t.cuda() for t in (x, lengths, w_ih, w_hh, bias, dy)]


def fused_step(C, x, lengths, w_ih, w_hh, bias, dy, precision):
    y, *saved = C.bilstm_forward_cuda(x, lengths, w_ih, w_hh, bias, precision, True)
    return C.bilstm_backward_cuda(dy, lengths, w_ih, w_hh, *saved, precision)


def cudnn_models(K, E, H):
    mods = [torch.nn.LSTM(E, H, batch_first=True, bidirectional=True).cuda() for _ in range(K)]
    return mods


def cudnn_step(mods, x, dy):
    for k, m in enumerate(mods):
        xk = x[k].detach().requires_grad_(True)
        y, _ = m(xk)
        torch.autograd.backward(y, dy[k])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=30, help="padded sentence length T")
    ap.add_argument("--input", type=int, default=100, help="embedding size E")
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--array", type=int, default=55, help="models K in the array case")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--out", default=str(HERE / "out" / "bench_cuda.csv"))
    args = ap.parse_args(argv)
    msg = gpu_ready()
    if msg:
        print(msg, file=sys.stderr)
        return 2
    C = dispatch.require_cuda()
    torch.backends.cudnn.benchmark = True
    gpu = torch.cuda.get_device_name()
    B, T, E, H = args.batch, args.tokens, args.input, args.hidden
    rows = []

    def record(case, K, impl, ms, base_ms=None):
        ratio = (base_ms / ms) if base_ms else None
        rows.append(dict(case=case, K=K, impl=impl, ms=round(ms, 4), speedup_vs_cudnn=ratio and round(ratio, 2),
                         B=B, T=T, E=E, H=H, gpu=gpu, torch=torch.__version__, cuda=torch.version.cuda))
        tail = f"  ({ratio:.2f}x cuDNN)" if ratio else ""
        print(f"{case:10s} K={K:<3d} {impl:28s} {ms:9.3f} ms{tail}")

    print(f"# {gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}); B={B} T={T} E={E} H={H}")
    for case, K in (("per_model", 1), ("array", args.array)):
        x, lengths, w_ih, w_hh, bias, dy = problem(K, B, T, E, H)
        mods = cudnn_models(K, E, H)
        base = cuda_time(lambda: cudnn_step(mods, x, dy), args.repeat)
        record(case, K, "nn.LSTM cuDNN fwd+bwd", base)
        for precision in ("fp32", "bf16"):
            for placement in ("smem", "l2"):  # where the recurrent kernels keep W_hh
                os.environ["MTLFAST_CUDA_WHH"] = placement
                plan = C.bilstm_cuda_plan(K, B, H, precision, True)
                if not plan["fits"]:
                    continue
                ms = cuda_time(lambda: fused_step(C, x, lengths, w_ih, w_hh, bias, dy, precision), args.repeat)
                record(case, K, f"fused {precision} fwd+bwd (W_hh {placement}, {plan['rows_per_block']} rows)",
                       ms, base)
            os.environ.pop("MTLFAST_CUDA_WHH", None)

    # The array step in a CUDA graph: forward, backward and the fused Adadelta of the bi-LSTM weights.
    K = args.array
    x, lengths, w_ih, w_hh, bias, dy = problem(K, B, T, E, H, seed=1)
    params = [w_ih, w_hh, bias]
    sq = [torch.zeros_like(p) for p in params]
    acc = [torch.zeros_like(p) for p in params]
    graph_ms = {}
    for precision in ("fp32", "bf16"):
        def step():
            _, dw_ih, dw_hh, dbias = fused_step(C, x, lengths, *params, dy, precision)
            C.adadelta_cuda_(params, [dw_ih, dw_hh, dbias], sq, acc, [None] * 3, HP["lr"], HP["rho"], HP["eps"])

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        eager = cuda_time(step, args.repeat)
        replay = cuda_time(graph.replay, args.repeat)
        record("graph", K, f"fused {precision} step eager", eager)
        record("graph", K, f"fused {precision} step graph", replay)
        graph_ms[precision] = replay

    steps = 50_000
    for precision, ms in graph_ms.items():
        seconds = ms * steps / 1e3
        print(f"projection: paper-scale sweep bi-LSTM part, K={K} array x {steps} steps, {precision}: "
              f"{seconds:.0f} s ({seconds / 60:.1f} min) on {gpu}")
        rows.append(dict(case="projection", K=K, impl=f"fused {precision} sweep seconds (bi-LSTM + Adadelta)",
                         ms=round(seconds * 1e3, 1), speedup_vs_cudnn=None, B=B, T=T, E=E, H=H, gpu=gpu,
                         torch=torch.__version__, cuda=torch.version.cuda))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

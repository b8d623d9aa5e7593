"""``python -m mtlfast.info [--json]``: versions, compiled backends, CPU features, threads and GPU."""

from __future__ import annotations

import platform
import sys


def collect() -> dict:
    import numpy
    import torch

    import mtlfast
    from mtlfast.ops import dispatch
    from mtlfast.ops.dispatch import cpu_count, cpu_features

    info = {
        "mtlfast": mtlfast.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "numpy": numpy.__version__,
    }
    for mod in ("numba", "sklearn", "scipy", "Cython", "pybind11"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            info[mod] = "not installed"
    b = dispatch.backends()
    info["_C"] = "built" if b["_C"] else f"missing ({b['error']})"
    if b["_C"]:
        c = dispatch.require_c()
        info["_C backends"] = ", ".join(getattr(c, "BACKENDS", ["cpu"]))
        if hasattr(c, "cpu_kernel_paths"):
            info["_C cpu kernel paths"] = ", ".join(c.cpu_kernel_paths())
        if hasattr(c, "cpu_kernel_path"):
            info["_C cpu kernel in use"] = c.cpu_kernel_path() + " (set MTLFAST_CPU_PATH to force one)"
    info["cuda kernels"] = "built" if b["cuda_kernels"] else "not built"
    feats = cpu_features()
    info["cpu"] = feats["model"]
    info["cpu features"] = " ".join(
        f"{k}={'yes' if feats[k] else 'no'}"
        for k in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
    )
    info["torch cpu capability"] = feats["torch_capability"]
    info["cores available"] = cpu_count()
    info["torch threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        info["gpu"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    else:
        info["gpu"] = "none"
    return info


PROG = "python -m mtlfast.info"


def build_parser():
    from mtlfast.cli import Parser

    p = Parser(prog=PROG, description="Print the versions of mtlfast and its dependencies, which compiled backends "
                                      "are built and in use (mtlfast._C, CUDA kernels), the CPU's features, the "
                                      "torch threads and the GPUs: what to paste into a bug report.")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of aligned lines")
    return p


def main(argv=None) -> int:
    from mtlfast.cli import run_main

    def body():
        args = build_parser().parse_args(argv)
        info = collect()
        if args.json:
            import json

            print(json.dumps(info, indent=1, default=str))
            return 0
        width = max(len(k) for k in info)
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
        return 0

    return run_main(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())

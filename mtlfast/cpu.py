"""CPU features found at run time, used to pick kernel paths (and shown by ``python -m mtlfast.info``).

The compiled kernels do their own run-time dispatch; this module is the Python view of the same facts, read
from ``/proc/cpuinfo`` (Linux) and cross-checked with what torch's own dispatcher reports.
"""

from __future__ import annotations

import functools
import os
import platform

_FLAGS = {
    "avx2": "avx2",
    "fma": "fma",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512_bf16": "avx512_bf16",
    "amx_tile": "amx_tile",
    "amx_bf16": "amx_bf16",
}


@functools.lru_cache(maxsize=None)
def cpu_features() -> dict:
    """Return ``{feature: bool}`` for AVX2, FMA, AVX-512 (F, BW, BF16) and AMX (tile, BF16)."""
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                elif line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                if flags and model:
                    pass
    except OSError:
        pass
    out = {name: flag in flags for name, flag in _FLAGS.items()}
    out["model"] = model
    try:
        import torch

        out["torch_capability"] = torch.backends.cpu.get_cpu_capability()
    except Exception:  # pragma: no cover
        out["torch_capability"] = "unknown"
    return out


def has_bf16_matmul() -> bool:
    """True when bf16 matrix products run on dedicated units (AMX-BF16 or AVX512-BF16)."""
    f = cpu_features()
    return bool(f["amx_bf16"] or f["avx512_bf16"])


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1

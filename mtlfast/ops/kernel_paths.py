"""Which build of the CPU element-wise kernels runs (AVX-512, AVX2, portable), and a switch to force one.

The compiled kernels pick the best build this CPU supports; forcing another is for tests and benchmarks.
``avx512_bf16`` is ``avx512`` plus native bf16 dot products for ``precision="bf16"``; every other build computes
bf16 products by rounding the operands to bf16 and multiplying in fp32 (the same numbers, no speed-up).
The environment variable ``MTLFAST_CPU_PATH`` (``auto``, ``portable``, ``avx2``, ``avx512``, ``avx512_bf16``) is applied when
this module is imported.
"""

from __future__ import annotations

import contextlib
import os

from mtlfast import _backend

__all__ = ["cpu_kernel_paths", "cpu_kernel_path", "set_cpu_kernel_path", "forced_cpu_kernel_path"]


def cpu_kernel_paths() -> list[str]:
    """Element-wise kernel builds this CPU can run, best last (empty without ``mtlfast._C``)."""
    return list(_backend._C.cpu_kernel_paths()) if _backend.has_c() else []


def cpu_kernel_path() -> str | None:
    """The build in use, or None without ``mtlfast._C``."""
    return _backend._C.cpu_kernel_path() if _backend.has_c() else None


def set_cpu_kernel_path(name: str) -> None:
    """Force a build: ``"portable"``, ``"avx2"``, ``"avx512"``, ``"avx512_bf16"``, or ``"auto"`` for run-time selection."""
    _backend.require_c().set_cpu_kernel_path(name)


@contextlib.contextmanager
def forced_cpu_kernel_path(name: str):
    """Context manager: run the block with the element-wise kernel build ``name``, then restore ``auto``."""
    set_cpu_kernel_path(name)
    try:
        yield
    finally:
        set_cpu_kernel_path("auto")


_env = os.environ.get("MTLFAST_CPU_PATH")
if _env and _backend.has_c():
    set_cpu_kernel_path(_env)

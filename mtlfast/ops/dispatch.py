"""Which implementation of every op runs: compiled module, CPU features, kernel builds, and their overrides.

One place for the facts the ops decide on (shown by ``python -m mtlfast.info`` and the sweep's banner):

- **The compiled module.** ``mtlfast._C`` is the torch extension built by ``setup.py``. It may be missing
  (source checkout without a build), built without CUDA (the usual case on CPU machines), or fully featured.
  It is imported once, here, without compiling anything. Code that needs a feature calls :func:`require_c` /
  :func:`require_cuda`, which raise a message saying what is missing and how to get it.
- **CPU features** found at run time (``/proc/cpuinfo`` and torch's own dispatcher): :func:`cpu_features`.
- **CPU kernel build.** The compiled bi-LSTM and Adadelta kernels share one run-time ISA probe and one
  choice of build: ``portable``, ``avx2``, ``avx512`` (AVX-512 F+VL+BW+DQ) or ``avx512_bf16`` (``avx512``
  plus native bf16 dot products for ``precision="bf16"``: the bi-LSTM's bf16 lanes kernels, ``vdpbf16ps``; every
  other build computes bf16 products by rounding the operands to bf16 and multiplying in fp32: the same numbers,
  no speed-up). ``_C.set_lanes(False)`` turns the AVX-512 lanes kernels off (the general path then runs every
  call; for tests and benchmarks). They pick the best
  build this CPU supports; :func:`set_cpu_kernel_path` forces another (tests, benchmarks), and the environment
  variable ``MTLFAST_CPU_PATH`` (``auto`` or a build name) does the same when this module is imported.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import platform

__all__ = [
    "has_c",
    "has_cuda_kernels",
    "has_fused_adadelta",
    "require_c",
    "require_cuda",
    "backends",
    "describe",
    "cpu_features",
    "has_bf16_matmul",
    "cpu_count",
    "cpu_kernel_paths",
    "cpu_kernel_path",
    "set_cpu_kernel_path",
    "forced_cpu_kernel_path",
    "CPU_PATH_ENV",
]

#: Environment variable that forces the CPU kernel build when this module is imported.
CPU_PATH_ENV = "MTLFAST_CPU_PATH"

# ---------------------------------------------------------------------------------------------------------
# The compiled module

_C = None
_C_ERROR: str | None = None
try:  # importing torch first gives _C the symbols it links against
    import torch  # noqa: F401

    _C = importlib.import_module("mtlfast._C")
except Exception as exc:  # pragma: no cover - depends on the build
    _C_ERROR = f"{type(exc).__name__}: {exc}"


def has_c() -> bool:
    return _C is not None


def has_cuda_kernels() -> bool:
    return _C is not None and bool(getattr(_C, "WITH_CUDA", False))


def has_fused_adadelta() -> bool:
    """True when the compiled fused Adadelta ops are available."""
    return _C is not None and hasattr(_C, "adadelta_")


def require_c():
    """Return the compiled module or raise a helpful error."""
    if _C is None:
        raise RuntimeError(
            "mtlfast._C (the compiled kernels) is not available: "
            f"{_C_ERROR}. Build it with `pip install -r requirements-build.txt && "
            "pip install --no-build-isolation -e .`, or pass backend='reference' to use the pure-PyTorch path."
        )
    return _C


def require_cuda():
    c = require_c()
    if not has_cuda_kernels():
        raise RuntimeError(
            "mtlfast._C was built without CUDA kernels (CPU build of torch or no nvcc at build time). "
            "Rebuild on a machine with a CUDA build of torch and nvcc, or use device='cpu'."
        )
    return c


def backends() -> dict:
    """What is available: {'_C': bool, 'cuda_kernels': bool, 'error': str | None}."""
    return {"_C": has_c(), "cuda_kernels": has_cuda_kernels(), "error": _C_ERROR}


def describe() -> str:
    """One line naming the kernels that run (the sweep prints it in its banner)."""
    if _C is None:
        return "kernels: pure-PyTorch references (mtlfast._C not built); Adadelta: reference"
    opt = "fused" if has_fused_adadelta() else "reference"
    return f"kernels: compiled mtlfast._C (CPU build {cpu_kernel_path()}); Adadelta: {opt}"


# ---------------------------------------------------------------------------------------------------------
# CPU features

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
    """Return ``{feature: bool}`` for AVX2, FMA, AVX-512 (F, BW, BF16) and AMX (tile, BF16), plus the CPU
    ``model`` and torch's own ``torch_capability``. Read from ``/proc/cpuinfo`` (all False elsewhere)."""
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                elif line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
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


# ---------------------------------------------------------------------------------------------------------
# CPU kernel build (one choice for the bi-LSTM and the Adadelta kernels)


def cpu_kernel_paths() -> list[str]:
    """Kernel builds this CPU can run, best last (empty without ``mtlfast._C``)."""
    return list(_C.cpu_kernel_paths()) if _C is not None else []


def cpu_kernel_path() -> str | None:
    """The build in use, or None without ``mtlfast._C``."""
    return _C.cpu_kernel_path() if _C is not None else None


def set_cpu_kernel_path(name: str) -> None:
    """Force a build: ``"portable"``, ``"avx2"``, ``"avx512"``, ``"avx512_bf16"``, or ``"auto"`` for run-time
    selection. Raises ValueError for an unknown name or a build this CPU cannot run."""
    require_c().set_cpu_kernel_path(name)


@contextlib.contextmanager
def forced_cpu_kernel_path(name: str):
    """Context manager: run the block with the kernel build ``name``, then restore the default (``auto``, or
    what ``MTLFAST_CPU_PATH`` asked for)."""
    set_cpu_kernel_path(name)
    try:
        yield
    finally:
        set_cpu_kernel_path(_default_path)


_default_path = os.environ.get(CPU_PATH_ENV) or "auto"
if _default_path != "auto" and _C is not None:
    try:
        set_cpu_kernel_path(_default_path)
    except (ValueError, RuntimeError) as exc:
        raise RuntimeError(f"{CPU_PATH_ENV}={_default_path!r}: {exc}") from None

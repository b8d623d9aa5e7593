"""Which compiled backends are available, decided once at import without compiling anything.

``mtlfast._C`` is the torch extension built by ``setup.py``. It may be missing (source checkout without a
build), built without CUDA (the usual case on CPU machines), or fully featured. Code that needs a feature
calls :func:`require_c` / :func:`require_cuda`, which raise a message saying what is missing and how to get it.
"""

from __future__ import annotations

import importlib

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

"""mtlfast: which auxiliary tasks help which main tasks in multi-task learning, measured fast.

Reproduces and extends Bingel & Søgaard (EACL 2017). Importing the package never compiles anything, never
fails because a compiled backend is missing, and does not import torch (so ``python -m mtlfast.data`` and
``python -m mtlfast.stats`` start quickly); see :mod:`mtlfast.ops.dispatch` and ``python -m mtlfast.info``.
"""

__version__ = "0.1.0"


def backends() -> dict:
    """What the compiled module offers: ``{'_C': bool, 'cuda_kernels': bool, 'error': str | None}``."""
    from mtlfast.ops.dispatch import backends as _backends

    return _backends()

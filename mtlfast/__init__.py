"""mtlfast: which auxiliary tasks help which main tasks in multi-task learning, measured fast.

Reproduces and extends Bingel & Søgaard (EACL 2017). Importing the package never compiles anything and
never fails because a compiled backend is missing; see :mod:`mtlfast._backend` and ``python -m mtlfast.info``.
"""

__version__ = "0.1.0"

from mtlfast._backend import backends  # noqa: E402,F401

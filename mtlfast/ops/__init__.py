"""Fused kernels with their pure-PyTorch references (see :mod:`mtlfast.ops.bilstm`)."""

from mtlfast.ops.bilstm import BACKENDS, PRECISIONS, bilstm, reference_bilstm  # noqa: F401
from mtlfast.ops.kernel_paths import cpu_kernel_path, cpu_kernel_paths, set_cpu_kernel_path  # noqa: F401

"""Executors: where the run groups of a sweep are trained; the driver (``mtlfast.sweep``) alone writes the store.

=====================================  ==========================================================================
:mod:`mtlfast.executors.base`          :class:`Executor` (the interface) and :class:`InputsSpec`
:mod:`mtlfast.executors.inprocess`     :class:`InProcessExecutor`, the default
:mod:`mtlfast.executors.ray`           ``RayExecutor`` over a Ray cluster (optional extra; imported only by
                                       :func:`make_executor` when asked for, so ``import mtlfast.executors``
                                       never imports Ray)
=====================================  ==========================================================================

``base`` imports no executor; ``inprocess`` and ``ray`` import ``base`` only: no import circle.
"""

from __future__ import annotations

from mtlfast.executors.base import Executor, InputsSpec
from mtlfast.executors.inprocess import InProcessExecutor

__all__ = ["Executor", "InputsSpec", "InProcessExecutor", "make_executor", "EXECUTORS"]

#: Names accepted by :func:`make_executor` (and ``--executor``).
EXECUTORS = ("inprocess", "ray")


def make_executor(name: str, inputs_spec: InputsSpec, inputs=None, **options) -> Executor:
    """``options`` go to the executor (Ray: address, max_retries, threads, device, resume_state)."""
    if name == "inprocess":
        return InProcessExecutor(inputs_spec, inputs)
    if name == "ray":
        from mtlfast.executors.ray import RayExecutor  # imports Ray only now: it is an optional extra

        return RayExecutor(inputs_spec, inputs, **options)
    raise ValueError(f"unknown executor {name!r} (available: inprocess, ray)")

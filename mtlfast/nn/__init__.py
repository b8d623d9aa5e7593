"""Modules over the fused ops (see :mod:`mtlfast.nn.bilstm`)."""

from mtlfast.nn.bilstm import BiLSTM  # noqa: F401

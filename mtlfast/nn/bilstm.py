"""``BiLSTM``: parameters of K independent bidirectional LSTMs (a model array) over the fused op."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from mtlfast.ops.bilstm import BACKENDS, PRECISIONS, bilstm

__all__ = ["BiLSTM"]


class BiLSTM(nn.Module):
    """K independent single-layer bidirectional LSTMs, run as one fused call.

    Parameters
    ----------
    K : int
        Models in the array (K = 1 is the ordinary single model).
    input_size : int
        E, features per input position.
    hidden_size : int
        H, hidden units per direction; the output has 2H features.
    precision : {"fp32", "bf16"}
        Matrix-product precision handed to :func:`mtlfast.ops.bilstm` (parameters always stay fp32).
    backend : {"auto", "cpu", "reference"}
        Kernel choice handed to :func:`mtlfast.ops.bilstm`.

    Attributes
    ----------
    w_ih : Parameter [K, 2, 4H, E]
    w_hh : Parameter [K, 2, 4H, H]
    bias : Parameter [K, 2, 4H]
        Gate order i, f, g, o; direction 0 forward, 1 backward; ``bias`` = ``b_ih + b_hh`` of ``torch.nn.LSTM``.

    Notes
    -----
    Initialisation follows ``torch.nn.LSTM`` for every model independently: weights uniform in
    ``[-1/sqrt(H), 1/sqrt(H)]``, and the bias the sum of two such draws (the distribution of ``b_ih + b_hh``).
    """

    def __init__(self, K: int, input_size: int, hidden_size: int, *, precision: str = "fp32",
                 backend: str = "auto", device=None, dtype=None):
        super().__init__()
        for name, v in (("K", K), ("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"BiLSTM: {name} must be a positive int; got {v!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"BiLSTM: precision must be one of {PRECISIONS}; got {precision!r}")
        if backend not in BACKENDS:
            raise ValueError(f"BiLSTM: backend must be one of {BACKENDS}; got {backend!r}")
        self.K, self.input_size, self.hidden_size = K, input_size, hidden_size
        self.precision, self.backend = precision, backend
        kw = {"device": device, "dtype": dtype}
        H, E = hidden_size, input_size
        self.w_ih = nn.Parameter(torch.empty(K, 2, 4 * H, E, **kw))
        self.w_hh = nn.Parameter(torch.empty(K, 2, 4 * H, H, **kw))
        self.bias = nn.Parameter(torch.empty(K, 2, 4 * H, **kw))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw fresh parameters as ``torch.nn.LSTM`` would, independently for every model."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for p in (self.w_ih, self.w_hh):
                p.uniform_(-bound, bound, generator=generator)
            b1 = torch.empty_like(self.bias).uniform_(-bound, bound, generator=generator)
            b2 = torch.empty_like(self.bias).uniform_(-bound, bound, generator=generator)
            self.bias.copy_(b1 + b2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Run all K models: ``x`` [K, B, T, E], ``lengths`` [K, B] -> [K, B, T, 2H] (0 at padded positions)."""
        return bilstm(x, lengths, self.w_ih, self.w_hh, self.bias, precision=self.precision, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"K={self.K}, input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"precision={self.precision!r}, backend={self.backend!r}")

    # -- conversion to and from torch.nn.LSTM -------------------------------------------------------------
    @staticmethod
    def _check_torch_lstm(lstm: nn.LSTM, where: str) -> None:
        if not isinstance(lstm, nn.LSTM):
            raise TypeError(f"BiLSTM: {where} must be a torch.nn.LSTM; got {type(lstm).__name__}")
        if not lstm.bidirectional or lstm.num_layers != 1 or getattr(lstm, "proj_size", 0):
            raise ValueError(
                f"BiLSTM: {where} must be LSTM(bidirectional=True, num_layers=1, proj_size=0); got "
                f"bidirectional={lstm.bidirectional}, num_layers={lstm.num_layers}, "
                f"proj_size={getattr(lstm, 'proj_size', 0)}"
            )

    @classmethod
    def from_torch(cls, lstms: nn.LSTM | Sequence[nn.LSTM], **kwargs) -> "BiLSTM":
        """Build a model array holding copies of the given ``torch.nn.LSTM(bidirectional=True)`` weights.

        Parameters
        ----------
        lstms : nn.LSTM or sequence of nn.LSTM
            One per model of the array, all with the same sizes.
        **kwargs
            ``precision`` / ``backend`` for the new module.
        """
        if isinstance(lstms, nn.LSTM):
            lstms = [lstms]
        lstms = list(lstms)
        if not lstms:
            raise ValueError("BiLSTM.from_torch: need at least one torch.nn.LSTM; got an empty sequence")
        first = lstms[0]
        cls._check_torch_lstm(first, "lstms[0]")
        p = first.weight_ih_l0
        mod = cls(len(lstms), first.input_size, first.hidden_size, device=p.device, dtype=p.dtype, **kwargs)
        for k, lstm in enumerate(lstms):
            mod.load_torch(k, lstm)
        return mod

    def load_torch(self, k: int, lstm: nn.LSTM) -> None:
        """Copy the weights of one ``torch.nn.LSTM(bidirectional=True)`` into model ``k`` of the array."""
        self._check_torch_lstm(lstm, f"lstms[{k}]")
        if (lstm.input_size, lstm.hidden_size) != (self.input_size, self.hidden_size):
            raise ValueError(
                f"BiLSTM: lstms[{k}] must have input_size={self.input_size}, hidden_size={self.hidden_size}; got "
                f"input_size={lstm.input_size}, hidden_size={lstm.hidden_size}"
            )
        if not 0 <= k < self.K:
            raise IndexError(f"BiLSTM: model index k must lie in [0, {self.K}); got {k}")
        with torch.no_grad():
            for d, suffix in enumerate(("l0", "l0_reverse")):
                self.w_ih[k, d].copy_(getattr(lstm, f"weight_ih_{suffix}"))
                self.w_hh[k, d].copy_(getattr(lstm, f"weight_hh_{suffix}"))
                if lstm.bias:
                    self.bias[k, d].copy_(getattr(lstm, f"bias_ih_{suffix}") + getattr(lstm, f"bias_hh_{suffix}"))
                else:
                    self.bias[k, d].zero_()

    def to_torch(self, k: int = 0, *, batch_first: bool = True) -> nn.LSTM:
        """Model ``k`` as a ``torch.nn.LSTM(bidirectional=True)`` (the whole bias in ``bias_ih``, ``bias_hh`` = 0)."""
        if not 0 <= k < self.K:
            raise IndexError(f"BiLSTM: model index k must lie in [0, {self.K}); got {k}")
        lstm = nn.LSTM(self.input_size, self.hidden_size, bidirectional=True, batch_first=batch_first,
                       device=self.w_ih.device, dtype=self.w_ih.dtype)
        with torch.no_grad():
            for d, suffix in enumerate(("l0", "l0_reverse")):
                getattr(lstm, f"weight_ih_{suffix}").copy_(self.w_ih[k, d])
                getattr(lstm, f"weight_hh_{suffix}").copy_(self.w_hh[k, d])
                getattr(lstm, f"bias_ih_{suffix}").copy_(self.bias[k, d])
                getattr(lstm, f"bias_hh_{suffix}").zero_()
        return lstm

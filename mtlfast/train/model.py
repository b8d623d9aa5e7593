"""The tagger as a model array: K runs' parameters and Adadelta state stacked on a leading K dimension.

Per run: a trainable embedding table [V, E] over the suite's shared vocabulary, one bi-LSTM layer
(``mtlfast.ops`` layout: w_ih [2, 4H, E], w_hh [2, 4H, H], bias [2, 4H]; gate order i, f, g, o) and S = 2 task
slots, each a linear output layer on the concatenated states (head_w [S, L, 2H], head_b [S, L]; labels beyond
the slot's task's count are masked out of the softmax). In the array every tensor gets a leading K.

A run's state is a dict of CPU tensors (``RUN_TENSORS`` + optimiser state) whose head has the run's own label
count L_run; the array pads heads to the largest L of its runs. Initialisation uses only the run's own torch
Generator, in a fixed order, so a run starts from the same numbers alone or inside any array.
"""

from __future__ import annotations

import math

import numpy as np
import torch

DENSE = ("w_ih", "w_hh", "bias")  # updated every step
HEADS = ("head_w", "head_b")  # only the drawn slot is updated
PARAMS = ("emb",) + DENSE + HEADS
SHARED = ("emb",) + DENSE  # shared by a run's tasks (per-task optimiser state in the original protocol)


def init_run_state(tasks, inputs, hidden: int, gen: torch.Generator, slots: int = 2, protocol: str = "clean") -> dict:
    """Fresh parameters and zero Adadelta state of one run, drawn from ``gen`` in a fixed order:
    embedding rows without a pretrained vector, then w_ih, w_hh, b_ih + b_hh (uniform ±1/sqrt(H), as
    ``torch.nn.LSTM``), then each task's head (Xavier-uniform over [n_labels, 2H], bias 0).

    ``protocol="original"`` (TensorFlow 0.12, the original code's version): each direction's LSTM weights
    are one [E+H, 4H] matrix drawn from ``uniform_unit_scaling_initializer(factor=1.0)`` (TF 0.12's default
    for ``get_variable`` without an initializer), i.e. U(±sqrt(3 / (E + H))), here split into w_ih and w_hh;
    the LSTM bias starts at 0 with ``BasicLSTMCell``'s ``forget_bias=1.0`` folded into the forget gate's
    bias (rows H:2H start at 1.0; the gradient is the same); each head's bias is the original's
    ``xavier_init(1, n)``: U(±sqrt(6 / (1 + n))). The Adadelta state of the embedding and the bi-LSTM has a
    leading [slots] dimension: one optimiser per task, as the original builds one per task; no ``emb.last``
    (TensorFlow's sparse Adadelta never touches the rows of a batch's absent words).
    """
    if protocol not in ("clean", "original"):
        raise ValueError(f"protocol: expected 'original' or 'clean', got {protocol!r}")
    V, E = inputs.emb_init.shape
    H = hidden
    emb = torch.from_numpy(inputs.emb_init.copy())
    redraw = torch.from_numpy(~inputs.has_vector)
    redraw[0] = False  # <pad> stays 0
    n = int(redraw.sum())
    if n:
        emb[redraw] = torch.randn(n, E, generator=gen) * inputs.emb_scale
    if protocol == "original":
        k = math.sqrt(3.0 / (E + H))
        w_ih = torch.empty(2, 4 * H, E).uniform_(-k, k, generator=gen)
        w_hh = torch.empty(2, 4 * H, H).uniform_(-k, k, generator=gen)
        b_ih = torch.zeros(2, 4 * H)
        b_ih[:, H : 2 * H] = 1.0  # forget_bias (gate order i, f, g, o)
        b_hh = torch.zeros(2, 4 * H)
    else:
        k = 1.0 / math.sqrt(H)
        w_ih = torch.empty(2, 4 * H, E).uniform_(-k, k, generator=gen)
        w_hh = torch.empty(2, 4 * H, H).uniform_(-k, k, generator=gen)
        b_ih = torch.empty(2, 4 * H).uniform_(-k, k, generator=gen)
        b_hh = torch.empty(2, 4 * H).uniform_(-k, k, generator=gen)
    L = max(inputs.n_labels(t) for t in tasks)
    head_w = torch.zeros(slots, L, 2 * H)
    head_b = torch.zeros(slots, L)
    for s, t in enumerate(tasks):
        nl = inputs.n_labels(t)
        bound = math.sqrt(6.0 / (nl + 2 * H))
        head_w[s, :nl] = torch.empty(nl, 2 * H).uniform_(-bound, bound, generator=gen)
        if protocol == "original":
            bb = math.sqrt(6.0 / (1 + nl))
            head_b[s, :nl] = torch.empty(nl).uniform_(-bb, bb, generator=gen)
    state = {"emb": emb, "w_ih": w_ih, "w_hh": w_hh, "bias": b_ih + b_hh, "head_w": head_w, "head_b": head_b}
    for name in PARAMS:
        shape = state[name].shape
        if protocol == "original" and name in SHARED:
            shape = (slots,) + tuple(shape)  # one optimiser per task
        state[name + ".sq"] = torch.zeros(shape)
        state[name + ".ad"] = torch.zeros(shape)
    if protocol == "clean":
        state["emb.last"] = torch.zeros(V, dtype=torch.int64)
    return state


def _pad_head(t: torch.Tensor, L: int) -> torch.Tensor:
    if t.shape[1] == L:
        return t
    pad = [0, 0] * (t.dim() - 2) + [0, L - t.shape[1]]
    return torch.nn.functional.pad(t, pad)


class ModelArray:
    """Stacked parameters and optimiser state of K runs on one device."""

    def __init__(self, states: list[dict], run_steps: list[int], device: str | torch.device = "cpu"):
        """``states``: per-run states (``init_run_state`` or a checkpoint's ``model``); ``run_steps``: the
        step each run is at.

        ``emb.last`` (the step at which each embedding row was last updated) is kept in the array's own step
        counter ``local_step`` (0 at creation, +1 per array step): run k's step = ``local_step + offset[k]``.
        """
        self.device = torch.device(device)
        self.local_step = 0
        self.offset = [int(s) for s in run_steps]
        self.L = max(s["head_w"].shape[1] for s in states)
        self.run_L = [s["head_w"].shape[1] for s in states]
        self.t: dict[str, torch.Tensor] = {}
        for name in states[0]:
            parts = [s[name] for s in states]
            if name.startswith("head_"):
                parts = [_pad_head(p, self.L) for p in parts]
            if name == "emb.last":
                parts = [p - off for p, off in zip(parts, self.offset)]
            self.t[name] = torch.stack(parts).to(self.device).contiguous()
        self.S = self.t["head_w"].shape[1]

    @property
    def K(self) -> int:
        return self.t["emb"].shape[0]

    def keep(self, rows: list[int]) -> None:
        """Compact the array to the runs at ``rows`` (runs that reached their budget leave)."""
        idx = torch.as_tensor(rows, dtype=torch.int64, device=self.device)
        for name in self.t:
            self.t[name] = self.t[name].index_select(0, idx).contiguous()
        self.run_L = [self.run_L[i] for i in rows]
        self.offset = [self.offset[i] for i in rows]

    def run_state(self, k: int, run_step: int) -> dict:
        """A CPU copy of run ``k``'s parameters and optimiser state (heads cut to its own label count,
        ``emb.last`` in the run's own step count)."""
        assert run_step == self.local_step + self.offset[k], "run and array step counters disagree"
        out = {}
        for name, t in self.t.items():
            v = t[k]
            if name.startswith("head_"):
                v = v[:, : self.run_L[k]]
            v = v.detach().to("cpu", copy=True).contiguous()
            if name == "emb.last":
                v = v + self.offset[k]
            out[name] = v
        return out

    def view(self, k: int) -> dict:
        """Run ``k``'s parameters as [1, ...] views (for evaluation)."""
        return {name: self.t[name][k : k + 1] for name in PARAMS}

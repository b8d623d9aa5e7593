"""Scores for sequence labelling, each named for exactly what it measures.

``f1_micro_no_o``
    Token-level micro-averaged F1 over every label except the outside label ``O`` (the original work's
    evaluation). A token counts as a true positive when gold == predicted and gold is not ``O``; predicted
    positives are tokens predicted as anything but ``O``, gold positives tokens whose gold label is not ``O``:
    ``F1 = 2·TP / (pred_pos + gold_pos)``. This equals
    ``sklearn.metrics.f1_score(gold, pred, labels=[l for l in labels if l != "O"], average="micro")``.
    For a task without an ``O`` label it equals accuracy.
``accuracy``
    Fraction of tokens whose predicted label equals the gold label.
``span_f1``
    Span-level (chunk) F1 with the chunk rules of the CoNLL-2000 ``conlleval`` script (also seqeval's default
    mode): a chunk starts at ``B-x``, and at ``I-x`` after ``O`` or after a chunk of another type; a predicted
    chunk is correct when its start, end and type equal a gold chunk's. Reported only for BIO tasks (labels are
    ``O`` or ``B-x`` / ``I-x``). Tested against a Python port of ``conlleval``.

An undefined ratio (no positives at all) scores 0, as scikit-learn's ``zero_division=0``.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

METRICS = ("f1_micro_no_o", "accuracy", "span_f1")
OUTSIDE = "O"
_BIO = re.compile(r"^[BI]-.+$")


def is_bio(labels: Sequence[str]) -> bool:
    """True when every label is ``O`` or ``B-x`` / ``I-x`` and at least one ``B-x`` occurs."""
    labels = list(labels)
    return bool(labels) and all(l == OUTSIDE or _BIO.match(l) for l in labels) and any(
        l.startswith("B-") for l in labels
    )


def f1_micro_no_o(gold: np.ndarray, pred: np.ndarray, outside_id: int = -1) -> float:
    """Token micro-F1 over all labels except ``outside_id`` (integer label ids; ``-1``: the task has no ``O``)."""
    gold = np.asarray(gold)
    pred = np.asarray(pred)
    if gold.shape != pred.shape:
        raise ValueError(f"f1_micro_no_o: gold and pred must have the same shape; got {gold.shape} and {pred.shape}")
    if outside_id < 0:
        return accuracy(gold, pred)
    tp = int(np.count_nonzero((gold == pred) & (gold != outside_id)))
    denominator = int(np.count_nonzero(pred != outside_id)) + int(np.count_nonzero(gold != outside_id))
    return 2.0 * tp / denominator if denominator else 0.0


def accuracy(gold: np.ndarray, pred: np.ndarray) -> float:
    gold = np.asarray(gold)
    pred = np.asarray(pred)
    if gold.shape != pred.shape:
        raise ValueError(f"accuracy: gold and pred must have the same shape; got {gold.shape} and {pred.shape}")
    return float(np.count_nonzero(gold == pred)) / gold.size if gold.size else 0.0


def _chunks(seq: Sequence[str]) -> set[tuple[int, int, str]]:
    """The (start, end, type) chunks of one sentence of BIO labels, by conlleval's start/end rules."""
    out = set()
    start, kind = -1, ""
    for i, label in enumerate(seq):
        if label == OUTSIDE:
            prefix, typ = OUTSIDE, ""
        else:
            prefix, _, typ = label.partition("-")
        begins = prefix == "B" or (prefix == "I" and (start < 0 or typ != kind))
        if start >= 0 and (prefix == OUTSIDE or begins):
            out.add((start, i, kind))
            start = -1
        if begins:
            start, kind = i, typ
    if start >= 0:
        out.add((start, len(seq), kind))
    return out


def span_counts(gold_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]) -> tuple[int, int, int]:
    """(correct, predicted, gold) chunk counts over sentences of BIO string labels."""
    if len(gold_seqs) != len(pred_seqs):
        raise ValueError(f"span_counts: {len(gold_seqs)} gold sentences but {len(pred_seqs)} predicted")
    correct = predicted = gold = 0
    for g, p in zip(gold_seqs, pred_seqs):
        if len(g) != len(p):
            raise ValueError(f"span_counts: a sentence has {len(g)} gold labels but {len(p)} predicted")
        cg, cp = _chunks(g), _chunks(p)
        correct += len(cg & cp)
        predicted += len(cp)
        gold += len(cg)
    return correct, predicted, gold


def span_f1(gold_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]) -> float:
    """Span (chunk) F1 over sentences of BIO string labels: ``2·correct / (predicted + gold)``, 0 when undefined."""
    correct, predicted, gold = span_counts(gold_seqs, pred_seqs)
    return 2.0 * correct / (predicted + gold) if predicted + gold else 0.0


def score_sequences(
    gold: np.ndarray, pred: np.ndarray, offsets: np.ndarray, labels: Sequence[str], outside_id: int = -1
) -> dict[str, float]:
    """All scores for one task split.

    Parameters
    ----------
    gold, pred : int arrays [N]
        Label ids of every token of the split, sentences concatenated.
    offsets : int array [n + 1]
        Sentence ``i`` is ``gold[offsets[i]:offsets[i + 1]]``.
    labels : sequence of str
        Label names by id.
    outside_id : int
        Id of ``O``, or -1.

    Returns
    -------
    dict with ``f1_micro_no_o``, ``accuracy`` and, for BIO label sets, ``span_f1``.
    """
    out = {"f1_micro_no_o": f1_micro_no_o(gold, pred, outside_id), "accuracy": accuracy(gold, pred)}
    if is_bio(labels):
        names = np.asarray(list(labels), dtype=object)
        gold_s = names[np.asarray(gold)]
        pred_s = names[np.asarray(pred)]
        bounds = list(zip(offsets[:-1], offsets[1:]))
        out["span_f1"] = span_f1([gold_s[a:b] for a, b in bounds], [pred_s[a:b] for a, b in bounds])
    return out


def relative_gain(f1_pair: float, f1_single: float) -> float:
    """Gain(main, aux) = (F1_pair(main) / F1_single(main) - 1) * 100, in percent; NaN when F1_single is 0.

    With several seeds a sweep reports the mean of the per-seed gains (pair and single run of the same seed).
    """
    return (f1_pair / f1_single - 1.0) * 100.0 if f1_single > 0 else math.nan

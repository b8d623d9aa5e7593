"""mtlfast.metrics against scikit-learn and conlleval (a Python port of the CoNLL-2000 script) on generated predictions."""

import math

import numpy as np
import pytest
from conlleval import evaluate as conlleval_evaluate
from sklearn.metrics import accuracy_score, f1_score

from mtlfast.metrics import accuracy, f1_micro_no_o, is_bio, score_sequences, span_counts

BIO = ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]
PLAIN = ["DET", "NOUN", "O", "VERB"]
NO_O = ["A", "B", "C"]


def _sentences(rng, labels, n=60, noise=0.3):
    lengths = rng.integers(1, 15, size=n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    gold = rng.integers(0, len(labels), size=offsets[-1])
    pred = np.where(rng.random(offsets[-1]) < noise, rng.integers(0, len(labels), size=offsets[-1]), gold)
    return gold, pred, offsets


def _conlleval_chunks(gold_sents, pred_sents):
    """conlleval's overall chunk counts, fed its own line format (token gold pred, blank line between sentences)."""
    lines = []
    for g, p in zip(gold_sents, pred_sents):
        lines += [f"w {a} {b}" for a, b in zip(g, p)] + [""]
    return conlleval_evaluate(lines)["overall"]["chunks"]["stats"]


@pytest.mark.parametrize("labels", [BIO, PLAIN, NO_O], ids=["bio", "plain", "no-O"])
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("noise", [0.0, 0.3, 1.0])
def test_against_sklearn_and_conlleval(labels, seed, noise):
    rng = np.random.default_rng(seed)
    gold, pred, offsets = _sentences(rng, labels, noise=noise)
    outside = labels.index("O") if "O" in labels else -1
    got = score_sequences(gold, pred, offsets, labels, outside)
    names = np.array(labels, dtype=object)
    g, p = names[gold], names[pred]
    expected_f1 = f1_score(g, p, labels=[l for l in labels if l != "O"], average="micro", zero_division=0)
    assert got["f1_micro_no_o"] == pytest.approx(expected_f1, abs=1e-12)
    assert got["accuracy"] == pytest.approx(accuracy_score(g, p), abs=1e-12)
    if labels is BIO:
        sents = list(zip(offsets[:-1], offsets[1:]))
        chunks = _conlleval_chunks([g[a:b] for a, b in sents], [p[a:b] for a, b in sents])
        correct, predicted, gold_n = chunks["correct"], chunks["pred"], chunks["gold"]
        assert span_counts([g[a:b] for a, b in sents], [p[a:b] for a, b in sents]) == (correct, predicted, gold_n)
        expected_span = 2 * correct / (predicted + gold_n) if predicted + gold_n else 0.0
        assert got["span_f1"] == pytest.approx(expected_span, abs=1e-12)
    else:
        assert "span_f1" not in got


def test_edge_cases():
    o = 0
    # Nothing but O in gold and prediction: no positives at all -> 0, as sklearn's zero_division=0.
    assert f1_micro_no_o(np.zeros(5, int), np.zeros(5, int), o) == 0.0
    assert f1_micro_no_o(np.array([1, 2]), np.array([1, 2]), o) == 1.0
    assert f1_micro_no_o(np.array([1, 2]), np.array([1, 2]), -1) == 1.0
    assert accuracy(np.array([], int), np.array([], int)) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        f1_micro_no_o(np.zeros(3, int), np.zeros(4, int), 0)


def test_is_bio():
    assert is_bio(BIO)
    assert is_bio(["B-KEY", "I-KEY", "O"])
    assert not is_bio(PLAIN)
    assert not is_bio(["O", "B", "I", "o", "b", "i"])  # mwe's positional tags are not BIO chunks
    assert not is_bio(["O"])


def test_relative_gain_formula():
    from mtlfast.metrics import relative_gain

    # (F1_pair / F1_single - 1) * 100, worked by hand: 0.9 / 0.8 = 1.125 -> +12.5 %; 0.6 / 0.8 = 0.75 -> -25 %.
    assert relative_gain(0.9, 0.8) == pytest.approx(12.5)
    assert relative_gain(0.6, 0.8) == pytest.approx(-25.0)
    assert math.isnan(relative_gain(0.5, 0.0))


@pytest.mark.parametrize("gold, pred", [
    (["B-A", "I-A", "O", "I-B", "I-B", "B-B"], ["B-A", "I-A", "O", "B-B", "I-B", "I-B"]),
    (["I-A", "I-A", "I-B", "O"], ["B-A", "I-A", "B-B", "O"]),  # I-x opening a chunk, type change inside
    (["B-A", "B-A", "I-A"], ["B-A", "I-A", "I-A"]),
    (["O", "O"], ["B-A", "O"]),
])
def test_span_counts_hand_cases_against_conlleval(gold, pred):
    stats = _conlleval_chunks([gold], [pred])
    assert span_counts([gold], [pred]) == (stats["correct"], stats["pred"], stats["gold"])

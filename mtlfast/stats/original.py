"""The seven data features the way the original analysis computed them (``experiments.ipynb`` of Bingel &
Søgaard 2017, with ``dio.py``): the **original** protocol. :mod:`mtlfast.stats` (``task_features``) is the
**clean** protocol; README, "Original vs clean", lists the differences.

How the notebook encodes a suite (``dio.read_data(..., input_type=INDICES)`` without an input mapping)
-----------------------------------------------------------------------------------------------------
- A word or label is lower-cased, whitespace inside a token joined with ``_`` (``read_two_cols_data``;
  :func:`mtlfast.data.encode.original_form`).
- Word ids: 0 ``<PAD>``, 1 ``<GO>``, 2 ``<OOV>``, 3 ``<EOS>``, then every word of the *training* splits of
  all tasks, in order of first occurrence, task after task in suite order (the input vectoriser is fitted
  on each training file in turn with ``warm_start``). A test word never seen in any training split is 2.
- Label ids per task: the same four specials, then the task's training labels in order of first occurrence.
  A test label never seen in training is 2.
- A sentence becomes ``[GO] w1 .. wn [EOS]`` padded with PAD or cut to 30 positions (``pad_len=30``): a
  sentence of more than 28 words loses its EOS and keeps its first 29 words.

The features (``X`` = the 30-position word-id matrix of the training split, ``Y`` its label-id matrix)
--------------------------------------------------------------------------------------------------
==================  ===================================================================================
``size``            training sentences.
``n_labels``        distinct training labels (``get_num_labels() - 4``).
``tokens_per_type`` ``#ids / #distinct ids`` over the entries of ``X`` with id > 1: the notebook drops
                    PAD and GO only ("indices 0 and 1 are reserved for PAD and GO"), so every kept EOS
                    counts as a token (and EOS as one type), and words past position 29 do not count.
                    (OOV, id 2, cannot occur in ``X``: the vocabulary is fitted on the training words.)
``oov_rate``        ``100 * #{training tokens whose form is not in the embedding vocabulary} / #tokens``
                    over the whole (uncut) sentences; the notebook's vocabulary is ``emb_voc.txt``, the
                    GloVe 6B words. NaN without a vocabulary.
``label_entropy``   ``scipy.stats.entropy`` (nats) of the counts of the ids > 3 in ``Y``: the real labels
                    of the first 29 words of each sentence (``o`` included).
``frobenius_norm``  Frobenius norm of scikit-learn's ``CountVectorizer()`` (defaults: lower-casing, tokens
                    of 2+ word characters, ``(?u)\\b\\w\\w+\\b``) over the training sentences joined with
                    spaces: one-character words and punctuation do not count, ``_``-joined parts stay one
                    term. Re-implemented here with the same regular expression.
``jsd_train_test``  Jensen-Shannon divergence (nats) of two count vectors over the ids ``0 .. V-1``, the
                    notebook's ``JSD`` (``scipy.stats.entropy`` of each against the mean). ``jsd=``:

                    - ``"train_words_vs_test_words"`` (default): the counts of every entry of ``X`` and of
                      the test split's word matrix (PAD, GO, EOS and OOV included, as the notebook's
                      ``Counter(x.flat)``), ``V`` = the whole word vocabulary. What the notebook's code
                      meant to compute.
                    - ``"train_words_vs_test_labels"``: what the notebook's code computes. Its dev cell
                      overwrites the test word matrix with the test *label* matrix, so the counts of the
                      training word ids are compared with the counts of the test label ids on one id axis
                      (word id k against label id k), and ``voc_len = 10242`` is hard-coded, so word ids
                      beyond it are dropped. ``voc_len=None`` uses that 10,242 here too.
==================  ===================================================================================

The word ids depend on the suite (order and other tasks' words) only through ``V`` and, in the
``train_words_vs_test_labels`` mode, through which word gets which id; every other feature is a property of
the task alone. The encoding is this module's own (first-occurrence ids, as ``dio``'s vectoriser), not the
data layer's :func:`~mtlfast.data.encode.encode_suite_original` (which orders the words by frequency for
training, where ids do not matter): the JSD bug mode needs dio's exact ids.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from mtlfast.data.encode import original_form

__all__ = [
    "ORIGINAL_PAD_LEN",
    "ORIGINAL_VOC_LEN",
    "JSD_MODES",
    "original_word_index",
    "original_label_index",
    "padded_matrix",
    "read_vocabulary",
    "original_task_features",
    "original_suite_features",
]

ORIGINAL_PAD_LEN = 30
#: the notebook's hard-coded ``voc_len`` of its JSD cell
ORIGINAL_VOC_LEN = 10242
JSD_MODES = ("train_words_vs_test_words", "train_words_vs_test_labels")
PAD_ID, GO_ID, OOV_ID, EOS_ID = 0, 1, 2, 3
_SPECIALS = {"<PAD>": PAD_ID, "<GO>": GO_ID, "<OOV>": OOV_ID, "<EOS>": EOS_ID}
#: CountVectorizer's default token_pattern
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


def _fit(index: dict, sentences) -> dict:
    for sent in sentences:
        for item in sent:
            f = original_form(item)
            if f not in index:
                index[f] = len(index)
    return index


def original_word_index(tasks: Sequence) -> dict:
    """dio's input vocabulary of a suite: the specials, then the training words in order of first occurrence,
    task after task (``{form: id}``)."""
    index = dict(_SPECIALS)
    for t in tasks:
        _fit(index, t.train.tokens)
    return index


def original_label_index(task) -> dict:
    """dio's label vocabulary of a task: the specials, then the training labels in order of first occurrence."""
    return _fit(dict(_SPECIALS), task.train.tags)


def padded_matrix(sentences, index: dict, pad_len: int = ORIGINAL_PAD_LEN) -> np.ndarray:
    """``[GO] ids [EOS]`` of every sentence, PAD-padded or cut to ``pad_len`` positions (``int64 [n, pad_len]``).

    An item not in ``index`` (after :func:`original_form`) is OOV (2).
    """
    if pad_len < 2:
        raise ValueError(f"pad_len: expected at least 2 (GO and EOS), got {pad_len}")
    lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
    n = len(lengths)
    out = np.zeros((n, pad_len), dtype=np.int64)
    if n == 0:
        return out
    out[:, 0] = GO_ID
    ids_of = {w: index.get(original_form(w), OOV_ID) for w in {w for s in sentences for w in s}}
    flat = np.fromiter((ids_of[w] for s in sentences for w in s), dtype=np.int64, count=int(lengths.sum()))
    row = np.repeat(np.arange(n), lengths)
    pos = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths) + 1  # column of each item
    keep = pos < pad_len
    out[row[keep], pos[keep]] = flat[keep]
    eos = lengths + 1 < pad_len
    out[np.flatnonzero(eos), lengths[eos] + 1] = EOS_ID
    return out


def read_vocabulary(path) -> set:
    """The lines of a vocabulary file (e.g. ``emb_voc.txt``), stripped, as a set (the notebook's ``voc``)."""
    with open(path, encoding="utf-8") as fh:
        return {line.strip() for line in fh}


def _vocab_contains(vocab):
    if vocab is None:
        return None
    if isinstance(vocab, (str, Path)):
        vocab = read_vocabulary(vocab)
    index = getattr(vocab, "index", None)  # mtlfast.data.Embeddings: its lower-cased word index
    return index.__contains__ if isinstance(index, dict) else vocab.__contains__


def _entropy(counts) -> float:
    c = np.asarray(counts, dtype=float)
    c = c[c > 0]
    if c.size == 0:
        return math.nan
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


def _jsd(p, q) -> float:
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    if p.sum() == 0 or q.sum() == 0:
        return math.nan
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a):
        nz = a > 0
        return float((a[nz] * np.log(a[nz] / m[nz])).sum())

    return 0.5 * (kl(p) + kl(q))


def _frobenius(sentences) -> float:
    total = 0
    for sent in sentences:
        doc = " ".join(original_form(w) for w in sent).lower()
        total += sum(c * c for c in Counter(_TOKEN.findall(doc)).values())
    return math.sqrt(total)


def original_task_features(task, word_index: dict | None = None, vocabulary=None, *,
                           jsd: str = "train_words_vs_test_words", voc_len: int | None = None,
                           pad_len: int = ORIGINAL_PAD_LEN) -> dict:
    """The seven data features of ``task`` the original way (module docstring).

    Parameters
    ----------
    task : mtlfast.data.Task
        Needs ``train`` and ``test`` splits.
    word_index : dict, optional
        The suite's word ids (:func:`original_word_index`); default: those of this task alone.
    vocabulary : path, set or mtlfast.data.Embeddings, optional
        The embedding vocabulary of the OOV rate (the notebook: ``emb_voc.txt``); None gives NaN.
    jsd : str
        One of :data:`JSD_MODES`.
    voc_len : int, optional
        ``V`` of the JSD; default: the whole word vocabulary, or the notebook's 10,242 in the
        ``train_words_vs_test_labels`` mode.
    """
    if jsd not in JSD_MODES:
        raise ValueError(f"jsd: expected one of {JSD_MODES}, got {jsd!r}")
    train = task.train
    test = getattr(task, "test", None)
    if train is None or not train.tokens or sum(map(len, train.tokens)) == 0:
        raise ValueError(f"task {getattr(task, 'name', '?')!r}: the training split has no tokens")
    if word_index is None:
        word_index = original_word_index([task])
    label_index = original_label_index(task)
    X = padded_matrix(train.tokens, word_index, pad_len)
    Y = padded_matrix(train.tags, label_index, pad_len)
    words = X[X > 1]
    labels = Y[Y > 3]
    contains = _vocab_contains(vocabulary)
    n_tokens = sum(map(len, train.tokens))
    if contains is None:
        oov = math.nan
    else:
        forms = Counter(original_form(w) for s in train.tokens for w in s)
        oov = 100.0 * sum(c for f, c in forms.items() if not contains(f)) / n_tokens
    if voc_len is None:
        voc_len = ORIGINAL_VOC_LEN if jsd == "train_words_vs_test_labels" else len(word_index)
    if test is None or not test.tokens:
        div = math.nan
    else:
        test_m = (padded_matrix(test.tokens, word_index, pad_len) if jsd == "train_words_vs_test_words"
                  else padded_matrix(test.tags, label_index, pad_len))
        p = np.bincount(X.ravel(), minlength=voc_len)[:voc_len]
        q = np.bincount(test_m.ravel(), minlength=voc_len)[:voc_len]
        div = _jsd(p, q)
    return {
        "size": len(train.tokens),
        "n_labels": len(label_index) - len(_SPECIALS),
        "tokens_per_type": len(words) / len(np.unique(words)) if len(words) else math.nan,
        "oov_rate": oov,
        "label_entropy": _entropy(np.bincount(labels)) if len(labels) else math.nan,
        "frobenius_norm": _frobenius(train.tokens),
        "jsd_train_test": div,
    }


def original_suite_features(tasks: Sequence, vocabulary=None, *, jsd: str = "train_words_vs_test_words",
                            voc_len: int | None = None, pad_len: int = ORIGINAL_PAD_LEN) -> dict:
    """``{task name: features}`` for a suite, with one word vocabulary fitted on the training splits in the
    given order (as the notebook's ``read_data``). Arguments as :func:`original_task_features`."""
    tasks = list(tasks)
    if isinstance(vocabulary, (str, Path)):
        vocabulary = read_vocabulary(vocabulary)
    index = original_word_index(tasks)
    return {t.name: original_task_features(t, index, vocabulary, jsd=jsd, voc_len=voc_len, pad_len=pad_len)
            for t in tasks}

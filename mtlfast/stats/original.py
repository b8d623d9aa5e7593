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
the task alone. The ids are this module's own (first occurrence, as ``dio``'s vectoriser), not those of the
data layer's :func:`~mtlfast.data.encode.encode_suite_original` (which orders the words by frequency for
training, where ids do not matter): the JSD bug mode needs dio's exact ids. Strings are touched once per
distinct token (the data layer's compiled ``factorize``); the rest is NumPy over id arrays.
:func:`original_word_index` and :func:`padded_matrix` are the same encoding in plain Python, for inspection.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from mtlfast.data.encode import factorize, original_form

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


def _id_matrix(ids: np.ndarray, offsets: np.ndarray, pad_len: int) -> np.ndarray:
    """``[GO] ids [EOS]`` per sentence (``ids`` flat, ``offsets`` [n+1]), PAD-padded or cut: ``int64 [n, pad_len]``."""
    lengths = np.diff(offsets)
    n = len(lengths)
    out = np.zeros((n, pad_len), dtype=np.int64)
    if n == 0:
        return out
    out[:, 0] = GO_ID
    row = np.repeat(np.arange(n), lengths)
    pos = np.arange(len(ids)) - np.repeat(offsets[:-1], lengths) + 1  # column of each item
    keep = pos < pad_len
    out[row[keep], pos[keep]] = ids[keep]
    eos = lengths + 1 < pad_len
    out[np.flatnonzero(eos), lengths[eos] + 1] = EOS_ID
    return out


def _form_ids(raw_strings, n_train_raw):
    """Form id of every raw string (forms numbered in order of first appearance) and the number of forms seen
    among the first ``n_train_raw`` raw strings (the training ones): those forms get ids 4, 5, ...; the
    others are OOV."""
    form_index: dict = {}
    form_of = np.fromiter((form_index.setdefault(original_form(w), len(form_index)) for w in raw_strings),
                          dtype=np.int64, count=len(raw_strings))
    n_train_forms = int(form_of[:n_train_raw].max()) + 1 if n_train_raw else 0
    ids = np.where(form_of < n_train_forms, form_of + len(_SPECIALS), OOV_ID)
    return ids, form_of, list(form_index)


def _term_table(raw_forms):
    """Terms of CountVectorizer()'s default analyzer for every raw string: ``(ptr, flat term ids, n_terms)``.

    With words joined by single spaces, the analyzer's matches (``\\b\\w\\w+\\b``; ``\\w`` never matches a
    space) are the concatenation of each word's own matches, so the terms are found once per distinct string.
    """
    terms: dict = {}
    per = [[terms.setdefault(t, len(terms)) for t in _TOKEN.findall(f.lower())] for f in raw_forms]
    n_terms = np.fromiter((len(p) for p in per), dtype=np.int64, count=len(per))
    ptr = np.zeros(len(per) + 1, dtype=np.int64)
    np.cumsum(n_terms, out=ptr[1:])
    flat = np.fromiter((t for p in per for t in p), dtype=np.int64, count=int(ptr[-1]))
    return ptr, flat, max(len(terms), 1)


def _frobenius(codes, offsets, table) -> float:
    """Frobenius norm of the sentence x term count matrix (terms of each token from :func:`_term_table`)."""
    ptr, flat, n_terms = table
    k = np.diff(ptr)[codes]
    total = int(k.sum())
    if total == 0:
        return 0.0
    start = np.repeat(ptr[codes], k) + (np.arange(total) - np.repeat(np.cumsum(k) - k, k))
    sent = np.repeat(np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)), k)
    _, counts = np.unique(sent * n_terms + flat[start], return_counts=True)
    return math.sqrt(float((counts.astype(np.float64) ** 2).sum()))


def _check(tasks):
    for t in tasks:
        train = getattr(t, "train", None)
        if train is None or not train.tokens or sum(map(len, train.tokens)) == 0:
            raise ValueError(f"task {getattr(t, 'name', '?')!r}: the training split has no tokens")


def original_suite_features(tasks: Sequence, vocabulary=None, *, jsd: str = "train_words_vs_test_words",
                            voc_len: int | None = None, pad_len: int = ORIGINAL_PAD_LEN) -> dict:
    """``{task name: features}`` for a suite (module docstring), with one word vocabulary fitted on the training
    splits in the given order, as the notebook's ``read_data``.

    Parameters
    ----------
    tasks : sequence of mtlfast.data.Task
        Each needs a ``train`` split; the JSD needs ``test`` (NaN without one).
    vocabulary : path, set or mtlfast.data.Embeddings, optional
        The embedding vocabulary of the OOV rate (the notebook: ``emb_voc.txt``); None gives NaN.
    jsd : str
        One of :data:`JSD_MODES`.
    voc_len : int, optional
        ``V`` of the JSD; default: the whole word vocabulary, or the notebook's 10,242 in the
        ``train_words_vs_test_labels`` mode.
    pad_len : int
        Positions per sentence (the original: 30).
    """
    if jsd not in JSD_MODES:
        raise ValueError(f"jsd: expected one of {JSD_MODES}, got {jsd!r}")
    if pad_len < 2:
        raise ValueError(f"pad_len: expected at least 2 (GO and EOS), got {pad_len}")
    tasks = list(tasks)
    _check(tasks)
    contains = _vocab_contains(vocabulary)
    raw: dict = {}
    train = [factorize(t.train.tokens, raw) for t in tasks]
    n_train_raw = len(raw)
    tests = [factorize(t.test.tokens, raw) if getattr(t, "test", None) is not None else None for t in tasks]
    raw_strings = list(raw)
    word_of_raw, form_of_raw, forms = _form_ids(raw_strings, n_train_raw)
    n_words = len(_SPECIALS) + (int(form_of_raw[:n_train_raw].max()) + 1 if n_train_raw else 0)
    raw_forms = [forms[i] for i in form_of_raw]
    terms = _term_table(raw_forms)
    if contains is not None:
        has_vec = np.fromiter((contains(f) for f in raw_forms), dtype=bool, count=len(raw_forms))
    if voc_len is None:
        voc_len = ORIGINAL_VOC_LEN if jsd == "train_words_vs_test_labels" else n_words
    out = {}
    for t, (codes, offsets), test in zip(tasks, train, tests):
        labels: dict = {}
        lab_codes, lab_off = factorize(t.train.tags, labels)
        n_train_lab = len(labels)
        test_lab = factorize(t.test.tags, labels) if test is not None else None
        lab_of_raw, lab_form_of, _ = _form_ids(list(labels), n_train_lab)
        n_labels = int(lab_form_of[:n_train_lab].max()) + 1 if n_train_lab else 0
        X = _id_matrix(word_of_raw[codes], offsets, pad_len)
        Y = _id_matrix(lab_of_raw[lab_codes], lab_off, pad_len)
        words = X[X > 1]
        lab = Y[Y > 3]
        n_tokens = len(codes)
        if test is None or len(test[0]) == 0:
            div = math.nan
        else:
            tm = (_id_matrix(word_of_raw[test[0]], test[1], pad_len) if jsd == "train_words_vs_test_words"
                  else _id_matrix(lab_of_raw[test_lab[0]], test_lab[1], pad_len))
            div = _jsd(np.bincount(X.ravel(), minlength=voc_len)[:voc_len],
                       np.bincount(tm.ravel(), minlength=voc_len)[:voc_len])
        out[t.name] = {
            "size": len(t.train.tokens),
            "n_labels": n_labels,
            "tokens_per_type": len(words) / len(np.unique(words)) if len(words) else math.nan,
            "oov_rate": (100.0 * int(np.count_nonzero(~has_vec[codes])) / n_tokens if contains is not None
                         else math.nan),
            "label_entropy": _entropy(np.bincount(lab)) if len(lab) else math.nan,
            "frobenius_norm": _frobenius(codes, offsets, terms),
            "jsd_train_test": div,
        }
    return out


def original_task_features(task, vocabulary=None, *, suite: Sequence | None = None,
                           jsd: str = "train_words_vs_test_words", voc_len: int | None = None,
                           pad_len: int = ORIGINAL_PAD_LEN) -> dict:
    """The seven data features of one task the original way; ``suite``: the tasks whose training words make
    the word vocabulary, in order (default: this task alone; it must contain ``task``). Other arguments as
    :func:`original_suite_features`."""
    suite = [task] if suite is None else list(suite)
    if not any(t is task for t in suite):
        raise ValueError(f"suite: expected a list of tasks that contains task {getattr(task, 'name', '?')!r}")
    i = next(k for k, t in enumerate(suite) if t is task)
    feats = original_suite_features(suite, vocabulary, jsd=jsd, voc_len=voc_len, pad_len=pad_len)
    return feats[suite[i].name]

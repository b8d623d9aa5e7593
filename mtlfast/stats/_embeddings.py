"""Which terms have a vector: a Numba hash table over an embedding vocabulary, built once per Embeddings object
(:func:`embedding_table`), :func:`vocab_has_vector` for the data layer's vocabularies, and :func:`assemble`,
which finishes a :class:`~mtlfast.stats.features.SplitArrays` with that lookup."""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

from mtlfast.stats import _kernels as K
from mtlfast.stats._intern import intern, join_utf8
from mtlfast.stats.features import SplitArrays


class EmbeddingTable:
    """Hash table of an embedding vocabulary, built once per Embeddings object (see :func:`embedding_table`).

    The words are joined (Python) at once; the table itself (Numba, GIL released) is made on first use, in
    whichever thread asks first, so that a caller can leave it to a second thread."""

    def __init__(self, words):
        self._words = [list(words)]
        self.buf, self.n_words = join_utf8(self._words, lower=False)
        self._lock = threading.Lock()
        self._built = None

    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """``(table, type_span)`` of :func:`~mtlfast.stats._kernels.intern_tokens` over the words."""
        with self._lock:
            if self._built is None:
                _, table, span = intern(self.buf, self.n_words, self._words, distinct=True)
                self._built = (table, span)
                self._words = None  # kept only to name a word holding a newline
            return self._built

    def has_vector(self, buf: np.ndarray, spans: np.ndarray) -> np.ndarray:
        """Whether each byte span of ``buf`` is one of the words."""
        table, span = self.tables()
        return K.lookup_types(table, span, self.buf, buf, spans) >= 0


TABLES: dict[int, tuple[Any, EmbeddingTable]] = {}


def embedding_index(embeddings) -> Any:
    """The word -> row mapping of an Embeddings object (``.index``), or the object itself if it is already a
    mapping / set of words."""
    index = getattr(embeddings, "index", embeddings)
    if not hasattr(index, "__contains__") or not hasattr(index, "__iter__"):
        raise TypeError(
            "mtlfast.stats: embeddings must be an mtlfast.data.Embeddings (with .index) or a set/dict of words, "
            f"got {type(embeddings).__name__}"
        )
    return index


def embedding_table(embeddings) -> EmbeddingTable:
    """Cached per embeddings object (by identity, dropped when it is garbage-collected)."""
    key = id(embeddings)
    hit = TABLES.get(key)
    if hit is not None and hit[0]() is embeddings:
        return hit[1]
    index = embedding_index(embeddings)
    table = EmbeddingTable(index.keys() if hasattr(index, "keys") else index)
    try:
        ref = weakref.ref(embeddings, lambda _r, key=key: TABLES.pop(key, None))
    except TypeError:  # not weak-referenceable (e.g. a plain dict/set): do not cache
        return table
    TABLES[key] = (ref, table)
    return table


def vocab_has_vector(vocab, embeddings) -> np.ndarray:
    """``bool [len(vocab)]``: whether each word of an ``mtlfast.data.Vocab`` (``.itos``, lower-cased) has a
    vector in the embeddings (``.index``, or a set/dict of words). Compute once per suite and pass it to
    :func:`encoded_task_features`."""
    words = list(vocab.itos)
    stoi = getattr(vocab, "stoi", None)
    n_distinct = len(stoi) if isinstance(stoi, dict) and len(stoi) == len(words) else len(set(words))
    if n_distinct != len(words):
        raise ValueError(f"mtlfast.stats: the vocabulary holds duplicate words ({len(words)} words, {n_distinct} distinct)")
    return np.fromiter(map(embedding_index(embeddings).__contains__, words), bool, count=len(words))


def assemble(ids, n_train, n_train_terms, term_buf, term_span, offsets, label_ids, n_labels, embeddings):
    """SplitArrays from train+test term ids (train first; ``term_span``: each term's bytes in ``term_buf``)
    and training label ids."""
    has_vector = None
    if embeddings is not None:
        has_vector = embedding_table(embeddings).has_vector(term_buf, term_span[:n_train_terms])
    return split_arrays_of(ids, n_train, n_train_terms, term_span, offsets, label_ids, n_labels, has_vector)


def split_arrays_of(ids, n_train, n_train_terms, term_span, offsets, label_ids, n_labels, has_vector) -> SplitArrays:
    """SplitArrays from train+test term ids (the first ``n_train`` are the training tokens), the terms' spans
    (one per term) and the training labels, with ``has_vector`` already known (None without embeddings)."""
    return SplitArrays(
        train_terms=ids[:n_train],
        train_offsets=offsets,
        train_labels=label_ids,
        test_terms=ids[n_train:],
        n_terms=int(term_span.shape[0]),
        n_train_terms=n_train_terms,
        n_labels=n_labels,
        has_vector=has_vector,
    )

"""The seven data features from id arrays: :data:`DATA_FEATURES`, :class:`SplitArrays` and
:func:`features_from_arrays` (integer counting passes in Numba, :mod:`mtlfast.stats._kernels`). Definitions:
:mod:`mtlfast.stats`. Every string path of the package ends here."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mtlfast.stats import _kernels as K

__all__ = ["DATA_FEATURES", "SplitArrays", "features_from_arrays", "log_base"]

DATA_FEATURES = (
    "size",
    "n_labels",
    "tokens_per_type",
    "oov_rate",
    "label_entropy",
    "frobenius_norm",
    "jsd_train_test",
)


def log_base(base: float | None) -> float:
    """ln(base): the divisor that turns nats into units of ``base`` (None: nats, 1.0)."""
    if base is None:
        return 1.0
    if not (isinstance(base, (int, float)) and base > 0 and base != 1):
        raise ValueError(f"mtlfast.stats: base must be a positive number other than 1 (or None for nats), got {base!r}")
    return math.log(base)


@dataclass
class SplitArrays:
    """The training and test splits of one task as id arrays (what the Numba kernels consume).

    Attributes
    ----------
    train_terms : int32 [N_train]
        term id (lower-cased token) of every training token, ``< n_terms``. From :func:`split_arrays` the ids
        are dense and train terms come first (``0 .. n_train_terms - 1``); from the data layer they are its
        vocabulary ids.
    train_offsets : int64 [n_train_sentences + 1]
        sentence ``s`` is ``train_terms[train_offsets[s]:train_offsets[s + 1]]``.
    train_labels : int32 [N_train]
        label id of every training token (labels taken as they are).
    test_terms : int32 [N_test]
        term ids of the test tokens, in the same id space.
    n_terms, n_train_terms, n_labels : int
        size of the term id space (train + test), of the id range holding the training terms
        (``n_terms`` for data-layer arrays), of the label id space.
    has_vector : bool [n_train_terms] or None
        whether the term of each id in that range has a vector in the embeddings (None: no embeddings).
    """

    train_terms: np.ndarray
    train_offsets: np.ndarray
    train_labels: np.ndarray
    test_terms: np.ndarray
    n_terms: int
    n_train_terms: int
    n_labels: int
    has_vector: np.ndarray | None = None


def features_from_arrays(arrays: SplitArrays, base: float | None = None) -> dict[str, float]:
    """The seven features (:data:`DATA_FEATURES`) from encoded splits; see the module docstring for the
    definitions. ``base``: logarithm base of ``label_entropy`` and ``jsd_train_test`` (None = e, nats)."""
    scale = log_base(base)
    n_sentences = arrays.train_offsets.size - 1
    n_tokens = int(arrays.train_offsets[-1])
    if n_sentences == 0 or n_tokens == 0:
        raise ValueError("mtlfast.stats: the training split has no tokens; the data features are undefined")
    train_terms = np.ascontiguousarray(arrays.train_terms, np.int32)
    test_terms = np.ascontiguousarray(arrays.test_terms, np.int32)
    labels = np.ascontiguousarray(arrays.train_labels, np.int32)
    offsets = np.ascontiguousarray(arrays.train_offsets, np.int64)
    if train_terms.size != n_tokens or labels.size != n_tokens:
        raise ValueError(
            f"mtlfast.stats: train_offsets say {n_tokens} tokens, got {train_terms.size} terms and {labels.size} labels"
        )
    n_terms = int(arrays.n_terms)
    train_counts = K.count_ids(train_terms, n_terms)
    test_counts = K.count_ids(test_terms, n_terms)
    label_counts = K.count_ids(labels, int(arrays.n_labels))
    n_train_types = int(np.count_nonzero(train_counts))
    if arrays.has_vector is None:
        oov_rate = math.nan
    else:
        has_vector = np.asarray(arrays.has_vector, bool)
        oov_tokens = int(train_counts[: has_vector.size][~has_vector].sum())
        oov_rate = 100.0 * oov_tokens / n_tokens
    return {
        "size": int(n_sentences),
        "n_labels": int(np.count_nonzero(label_counts)),
        "tokens_per_type": n_tokens / n_train_types,
        "oov_rate": oov_rate,
        "label_entropy": K.entropy_nat(label_counts) / scale,
        "frobenius_norm": math.sqrt(K.frobenius_sq(train_terms, offsets, n_terms)),
        "jsd_train_test": K.jensen_shannon_nat(train_counts, test_counts) / scale,
    }

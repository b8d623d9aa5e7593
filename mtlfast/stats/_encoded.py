"""The encoded path: the data layer's encoded arrays (``mtlfast.data.EncodedTask``) are already ids, so
:func:`encoded_task_features` does no string work at all."""

from __future__ import annotations

import numpy as np

from mtlfast.stats.features import SplitArrays, features_from_arrays

_UNK_ID = 1  # mtlfast.data.UNK_ID (docs/ARCHITECTURE.md: id 0 = <pad>, id 1 = <unk>)


def encoded_task_features(encoded, has_vector: np.ndarray | None = None, *, base: float | None = None) -> dict[str, float]:
    """:func:`task_features` from the data layer's encoded arrays (``mtlfast.data.EncodedTask``), with no
    string work at all.

    The term ids must be a lower-cased vocabulary that covers the training and test tokens, as the one
    ``mtlfast.data.encode_suite`` builds from every split; a token encoded as ``<unk>`` (id 1) would merge
    distinct words, so it is an error. ``has_vector``: :func:`vocab_has_vector` (None: ``oov_rate`` is NaN).
    """
    train = encoded.splits["train"]
    test = encoded.splits.get("test")
    test_terms = test.tokens if test is not None else np.empty(0, np.int32)
    n_terms = int(max(train.tokens.max(initial=0), test_terms.max(initial=0))) + 1
    if has_vector is not None:
        n_terms = max(n_terms, len(has_vector))
    arrays = SplitArrays(
        train_terms=train.tokens,
        train_offsets=train.offsets,
        train_labels=train.tags,
        test_terms=test_terms,
        n_terms=n_terms,
        n_train_terms=n_terms,
        n_labels=max(len(encoded.labels), int(train.tags.max(initial=-1)) + 1),
        has_vector=has_vector,
    )
    unknown = int(np.count_nonzero(train.tokens == _UNK_ID)) + int(np.count_nonzero(test_terms == _UNK_ID))
    if unknown:
        raise ValueError(
            f"mtlfast.stats: task {getattr(encoded, 'name', '?')!r} has {unknown} token(s) encoded as <unk> (id "
            f"{_UNK_ID}); encode with a vocabulary that covers train and test (mtlfast.data.encode_suite does)"
        )
    return features_from_arrays(arrays, base=base)

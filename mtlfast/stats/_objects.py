"""The paths from loaded ``str`` lists to ids that use the data layer's compiled helpers
(``mtlfast.data._fast``): the parser's pools, verified by identity (:func:`pooled_arrays`), or ``factorize``,
which finds repeated token objects by identity (:func:`object_arrays`). Either way only the distinct strings
are lower-cased and interned (:func:`~mtlfast.stats._intern.intern_pool`)."""

from __future__ import annotations

import numpy as np

from mtlfast.data import _fast  # noqa: F401 - private by design: see tests/test_layers.py ALLOWED_PRIVATE
from mtlfast.stats import _intern as I
from mtlfast.stats._embeddings import embedding_table, split_arrays_of
from mtlfast.stats.features import SplitArrays


def object_arrays(train_tokens, train_tags, test_tokens, embeddings) -> SplitArrays:
    """:func:`split_arrays` through ``mtlfast.data._fast.factorize`` (see there): ids of the distinct token
    objects, then only the distinct strings are lower-cased (:func:`join_utf8` over them) and go through
    :func:`intern_pool`."""
    raw_index: dict = {}
    codes, all_offsets = _fast.factorize(train_tokens + test_tokens, raw_index)
    offsets = all_offsets[: len(train_tokens) + 1]
    n_train = int(offsets[-1])
    raw_types = [list(raw_index)]  # the distinct strings in order of first occurrence (train first)
    term_buf, _ = I.join_utf8(raw_types, lower=True, n_tokens=len(raw_index))
    n_train_raw = int(codes[:n_train].max()) + 1 if n_train else 0
    table = embedding_table(embeddings) if embeddings is not None else None
    interned = I.intern_pool(term_buf, len(raw_index), n_train_raw, table)
    if interned is None:
        raise I.newline_error(raw_index)
    lower_of_raw, term_span, n_train_terms, has_vector = interned
    label_index: dict = {}
    label_ids, label_offsets = _fast.factorize(train_tags, label_index)
    if not np.array_equal(label_offsets, offsets):
        raise I.tag_count_error(train_tokens, train_tags)
    if any(I.SEP in label for label in label_index):
        raise I.newline_error(label_index)
    ids = lower_of_raw[codes] if codes.size else codes
    return split_arrays_of(ids, n_train, n_train_terms, term_span, offsets, label_ids, len(label_index), has_vector)


def pooled_arrays(train, test, embeddings) -> SplitArrays | None:
    """:func:`split_arrays` from the pools the data layer's parser left on loaded splits (``Split.pools``:
    the distinct objects of each file, every token's position among them and the pool's lower-cased UTF-8
    text), after checking by identity that the splits still hold exactly those objects
    (``_fast.check_pool_codes``, one pass of pointer comparisons). None when there are no pools or the check fails (the splits were changed,
    or built another way): the caller then takes the general path, which also reports bad input.

    Only the distinct strings are lower-cased and interned, and their embedding lookups made, in Numba in a
    second thread while this one runs the identity checks (both are about a third of the time)."""
    train_pools = getattr(train, "pools", None)
    test_pools = getattr(test, "pools", None) if test is not None else None
    if train_pools is None or test_pools is None:
        return None
    train_tokens, train_tags, test_tokens = train.tokens, train.tags, test.tokens
    if not all_lists(train_tokens, train_tags, test_tokens):
        return None
    tok_pool, tok_codes, tag_pool, tag_codes, tok_text = train_pools
    test_pool, test_codes, test_text = test_pools[0], test_pools[1], test_pools[4]
    n_raw = len(tok_pool) + len(test_pool)  # train first, each in order of first occurrence
    term_buf = np.frombuffer((tok_text + test_text)[:-1], np.uint8)  # the parser lower-cased it
    table = embedding_table(embeddings) if embeddings is not None else None
    runner = I.Background if tok_codes.size + test_codes.size >= I.THREAD_MIN_TOKENS else I.Inline
    job = runner(I.intern_pool, term_buf, n_raw, len(tok_pool), table)
    offsets = _fast.check_pool_codes(train_tokens, tok_pool, tok_codes)
    tag_offsets = _fast.check_pool_codes(train_tags, tag_pool, tag_codes) if offsets is not None else None
    valid = (tag_offsets is not None and np.array_equal(tag_offsets, offsets)
             and _fast.check_pool_codes(test_tokens, test_pool, test_codes) is not None)
    if valid:
        # Equal labels whose bytes differed (stripped spaces) are separate pool entries: one id per value.
        label_index: dict = {}
        label_of_entry = np.fromiter((label_index.setdefault(t, len(label_index)) for t in tag_pool), np.int32,
                                     count=len(tag_pool))
        valid = not any(I.SEP in label for label in label_index)
    interned = job.result()
    if not valid or interned is None:
        return None
    lower_of_raw, term_span, n_train_terms, has_vector = interned
    return SplitArrays(
        train_terms=lower_of_raw[tok_codes],
        train_offsets=offsets,
        train_labels=label_of_entry[tag_codes],
        test_terms=lower_of_raw[len(tok_pool) + test_codes.astype(np.int64)],
        n_terms=int(term_span.shape[0]),
        n_train_terms=n_train_terms,
        n_labels=len(label_index),
        has_vector=has_vector,
    )


def all_lists(*corpora) -> bool:
    return all(type(c) is list for c in corpora)

"""The text path from strings to ids: each corpus joined into one UTF-8 buffer (C-level ``str`` calls) and
interned in Numba. Taken by anything that is not lists of ``str`` lists, and when the data layer's compiled
helpers are missing."""

from __future__ import annotations

from mtlfast.stats import _intern as I
from mtlfast.stats._embeddings import assemble
from mtlfast.stats.features import SplitArrays


def text_arrays(train_tokens, train_tags, test_tokens, embeddings) -> SplitArrays:
    """:func:`split_arrays` on joined text: Python joins, lower-cases and encodes each corpus (C-level calls),
    Numba interns the terms in a second thread while this one joins the tags."""
    lengths = list(map(len, train_tokens))
    offsets = I.offsets(lengths)
    n_train = int(offsets[-1])
    term_buf, n_all = I.join_utf8(train_tokens, test_tokens, lower=True, n_tokens=n_train + sum(map(len, test_tokens)))
    runner = I.Background if n_all >= I.THREAD_MIN_TOKENS else I.Inline
    terms_job = runner(I.intern, term_buf, n_all, (train_tokens, test_tokens))
    if list(map(len, train_tags)) != lengths:
        terms_job.result()  # its error (a newline in a token) comes first
        raise I.tag_count_error(train_tokens, train_tags)
    label_buf, n_tags = I.join_utf8(train_tags, lower=False, n_tokens=n_train)
    try:
        label_ids, _, label_span = I.intern(label_buf, n_tags, (train_tags,))
    except ValueError:
        terms_job.result()  # a newline in a token is reported first
        raise
    ids, _, term_span = terms_job.result()
    n_train_terms = int(ids[:n_train].max()) + 1 if n_train else 0
    return assemble(ids, n_train, n_train_terms, term_buf, term_span, offsets, label_ids,
                     int(label_span.shape[0]), embeddings)

"""The file path: a task folder's ``train.tsv`` / ``test.tsv`` parsed and interned in Numba straight from their
bytes (:func:`folder_features`), with no Python strings; anything the strict byte parser does not accept goes
through ``mtlfast.data.load_task`` (:func:`mtlfast.stats.folder_features`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlfast.stats import _kernels as K
from mtlfast.stats._embeddings import assemble
from mtlfast.stats.features import SplitArrays


def lower_utf8(raw: bytes) -> bytes:
    """UTF-8 bytes lower-cased as ``str.lower`` does (ASCII text: ``bytes.lower``, the same and faster)."""
    if raw.isascii():
        return raw.lower()
    return raw.decode("utf-8").lower().encode("utf-8", "surrogatepass")


def folder_arrays(folder: Path, embeddings) -> SplitArrays | None:
    """:class:`SplitArrays` parsed from ``train.tsv`` / ``test.tsv`` bytes in Numba, or None when a file is
    missing or holds anything the strict parser leaves to the data layer (see ``_kernels.tsv_spans``)."""
    try:
        raw_train = (folder / "train.tsv").read_bytes()
        raw_test = (folder / "test.tsv").read_bytes()
        # Terms come from the lower-cased text, labels from the raw bytes: lower-casing keeps the line and tab
        # structure (it never makes or removes a tab or newline), so both parse into the same sentences.
        low_train = lower_utf8(raw_train)
        low_test = lower_utf8(raw_test)
    except (OSError, UnicodeDecodeError):
        return None
    label_buf = np.frombuffer(raw_train, np.uint8)
    term_buf = np.frombuffer(low_train + low_test, np.uint8)
    train_spans, label_spans, offsets, bad = K.tsv_spans(label_buf)
    if bad or offsets.size < 2:
        return None
    low_train_buf = term_buf[: len(low_train)]
    if not K.same_layout(label_buf, low_train_buf):  # lower-casing changed byte lengths: parse again
        train_spans, _, low_offsets, bad = K.tsv_spans(low_train_buf)
        if bad or not np.array_equal(offsets, low_offsets):
            return None
    test_spans, _, test_offsets, bad_test = K.tsv_spans(term_buf[len(low_train) :])
    if bad_test or test_offsets.size < 2:
        return None
    test_spans[:, 0] += len(low_train)
    n_train = train_spans.shape[0]
    ids, _, _, term_span, _ = K.intern_spans(term_buf, np.concatenate((train_spans, test_spans)))
    label_ids, _, _, label_span, _ = K.intern_spans(label_buf, label_spans)
    train_terms = ids[:n_train]
    n_train_terms = int(train_terms.max()) + 1
    return assemble(ids, n_train, n_train_terms, term_buf, term_span, offsets, label_ids,
                     int(label_span.shape[0]), embeddings)

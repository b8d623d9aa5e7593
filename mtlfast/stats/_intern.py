"""What every string path shares: joining strings into one UTF-8 buffer (:func:`join_utf8`), interning it in
Numba (:func:`intern`, :func:`intern_pool`), the second thread that overlaps Numba with Python string work
(:class:`Background`) and the errors for bad input."""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from mtlfast.stats import _kernels as K

SEP = "\n"


def join_utf8(*corpora: Sequence[Sequence[str]], lower: bool, n_tokens: int | None = None) -> tuple[np.ndarray, int]:
    """All tokens of the corpora (lists of sentences), in order, as one newline-separated UTF-8 buffer,
    and the number of tokens.

    Lower-casing the joined text equals lower-casing every token: ``str.lower`` is per character except
    for the Greek final sigma, whose context test stops at the newline (not a case-ignorable character).
    Joining per sentence first keeps the per-token work in C. ``n_tokens``: the number of tokens when the
    caller knows it already (saves a pass over the sentences).
    """
    if n_tokens is None:
        n_tokens = sum(sum(map(len, corpus)) for corpus in corpora)
    if all(map(all, corpora)):  # no empty sentence (the usual case): join with no Python-level loop
        text = SEP.join([SEP.join(map(SEP.join, corpus)) for corpus in corpora if len(corpus)])
    else:
        text = SEP.join([SEP.join(sentence) for corpus in corpora for sentence in corpus if len(sentence)])
    if text.isascii():  # O(1) flag of the str; bytes.lower() then equals str.lower() and is much faster
        raw = text.encode("ascii")
        return np.frombuffer(raw.lower() if lower else raw, dtype=np.uint8), n_tokens
    if lower:
        text = text.lower()
    return np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8), n_tokens


class Background:
    """Run ``fn(*args)`` in a fresh thread (the Numba kernels release the GIL, so it overlaps with the string
    work of the calling thread); :meth:`result` joins and returns its value or raises its exception. A thread
    per call (about 0.1 ms) rather than a pool, so that nothing is left behind across ``fork``."""

    def __init__(self, fn, *args):
        self._value = self._error = None

        def run():
            try:
                self._value = fn(*args)
            except BaseException as exc:  # re-raised in the caller by result()
                self._error = exc

        self._thread = threading.Thread(target=run, name="mtlfast-stats", daemon=True)
        self._thread.start()

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


class Inline:
    """:class:`Background`'s interface, run at once in the calling thread (small inputs)."""

    def __init__(self, fn, *args):
        self._value = fn(*args)

    def result(self):
        return self._value


# Below this many tokens a thread costs more than the overlap saves.


# Below this many tokens a thread costs more than the overlap saves.
THREAD_MIN_TOKENS = 20_000


def intern(buf: np.ndarray, n_tokens: int, corpora, distinct: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``intern_tokens`` plus the newline check (a token holding a newline would shift every id after it).
    ``distinct``: the strings are (nearly) all different, so the table is sized for them at once."""
    ids, table, type_hash, type_span, left = K.intern_tokens(buf, n_tokens, n_tokens if distinct else 0)
    if left != 0:
        bad = next((w for corpus in corpora for s in corpus for w in s if SEP in w), None)
        raise ValueError(f"mtlfast.stats: tokens and labels must not contain a newline, got {bad!r}")
    return ids, table, type_span


def intern_pool(term_buf, n_raw, n_train_raw, table):
    """The Numba part of the paths over distinct strings (releases the GIL): ``term_buf`` holds ``n_raw``
    lower-cased distinct strings, newline-separated, the ``n_train_raw`` of the training split first. Returns
    the term id of every string, the terms' byte spans, how many ids the training terms take, and which of
    those have a vector (``table``: an :class:`_EmbeddingTable` or None); None when a string holds a newline."""
    lower_of_raw, _, _, term_span, left = K.intern_tokens(term_buf, n_raw, n_raw)
    if left != 0:
        return None
    n_train_terms = int(lower_of_raw[:n_train_raw].max()) + 1 if n_train_raw else 0
    has_vector = table.has_vector(term_buf, term_span[:n_train_terms]) if table is not None else None
    return lower_of_raw, term_span, n_train_terms, has_vector


def offsets(lengths: list[int]) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def tag_count_error(train_tokens, train_tags) -> ValueError:
    s = next(i for i, (a, b) in enumerate(zip(train_tokens, train_tags)) if len(a) != len(b))
    return ValueError(
        f"mtlfast.stats: every training token needs one tag; training sentence {s} has "
        f"{len(train_tokens[s])} tokens and {len(train_tags[s])} tags"
    )


def newline_error(strings) -> ValueError:
    bad = next((w for w in strings if SEP in w), None)
    return ValueError(f"mtlfast.stats: tokens and labels must not contain a newline, got {bad!r}")

"""The seven data features of a task (Bingel & Søgaard, EACL 2017, section 3), exact and fast (Numba).

Definitions (``train`` = the training split, ``test`` = the test split; a *term* is a token lower-cased
with :meth:`str.lower`; labels are taken as they are, case-sensitive):

==================  ===================================================================================
``size``            number of training sentences.
``n_labels``        number of distinct labels in the training split.
``tokens_per_type`` training tokens / distinct training terms. The paper's slides call this a
                    "type/token ratio"; the original code computed tokens/types, and so does this (it is
                    >= 1; its inverse is the classic type/token ratio).
``oov_rate``        percentage (0-100) of training tokens whose term has no vector in the embeddings,
                    ``100 * #{tokens w : lower(w) not in embeddings.index} / #tokens``. NaN when no
                    embeddings are given.
``label_entropy``   Shannon entropy of the training label distribution, every label counted (``O``
                    included): ``H = -sum_l p_l ln p_l``, ``p_l`` = share of training tokens labelled
                    ``l``. Nats by default (``scipy.stats.entropy``'s default); ``base=2`` gives bits.
``frobenius_norm``  Frobenius norm of the training sentence x term count matrix ``X`` (``X[s, t]`` =
                    occurrences of term ``t`` in sentence ``s``): ``sqrt(sum_s sum_t X[s, t]^2)``, computed
                    per sentence from term counts, never as a dense matrix.
``jsd_train_test``  Jensen-Shannon divergence of the train and test unigram distributions of terms
                    (``P``, ``Q`` over the union of their terms): ``1/2 KL(P||M) + 1/2 KL(Q||M)``,
                    ``M = (P+Q)/2``. Nats by default (in ``[0, ln 2]``); ``base=2`` gives bits (in
                    ``[0, 1]``). This is the divergence itself: ``scipy.spatial.distance.jensenshannon``
                    returns its square root (the JS *distance*). NaN when the test split has no tokens.
==================  ===================================================================================

The original code compared the bag of training *words* with the bag of test *labels* for the JSD (a bug:
words and labels hardly share a support, so the value says little about the two corpora); this module
compares train words with test words, as the paper describes, and does not reproduce the bug.

Why nats by default: it is what ``scipy.stats.entropy`` and ``jensenshannon`` give without a ``base``, so
numbers can be checked against them directly; the meta-classifier standardises features, so the unit only
scales the two columns. Pass ``base=2`` for bits.

Public API
----------
- :data:`DATA_FEATURES`, the seven names in their fixed order;
- :func:`task_features` (``mtlfast.data.Task`` -> dict), the contract of docs/ARCHITECTURE.md;
- :func:`folder_features`: the same straight from a task folder's bytes (what the command line uses);
- :func:`encoded_task_features` + :func:`vocab_has_vector`: the same from the data layer's encoded arrays
  (``encode_suite``), with no string work at all;
- :func:`split_arrays` / :func:`features_from_arrays` / :class:`SplitArrays`: the two halves of
  :func:`task_features` (strings -> id arrays -> features);
- :func:`reference_task_features`: the SciPy / scikit-learn way (benchmark baseline).

All paths give the same numbers (the tests hold them to 1e-9 relative of SciPy / scikit-learn; the string
paths agree with each other exactly). Command line: ``python -m mtlfast.stats PATH... [--csv]
[--embeddings FILE] [--base 2]``.

How it is fast: for loaded tasks (lists of ``str``), repeated token objects are found by identity (the data
layer's parser gives equal fields one shared object; ``mtlfast.data._fast.factorize``), so only the distinct
strings are lower-cased and interned in Numba; otherwise Python touches the strings only through C-level calls
(join, ``str.lower``, encode, or not at all for files) and one Numba pass maps every token to a dense id with a
hash table over the UTF-8 bytes. The features are then O(tokens) integer counting passes (the Frobenius norm
from per-sentence counts, never a matrix). Fastest of all is the data layer's encoded arrays
(:func:`encoded_task_features`): no string work at all. Kernels and their Numba settings:
:mod:`mtlfast.stats._kernels`.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mtlfast.stats import _kernels as K

try:  # the data layer's compiled helpers (optional): factorize by object identity
    from mtlfast.data import _fast  # type: ignore
except ImportError:  # pragma: no cover - depends on the build
    _fast = None

__all__ = [
    "DATA_FEATURES",
    "SplitArrays",
    "task_features",
    "split_arrays",
    "features_from_arrays",
    "folder_features",
    "encoded_task_features",
    "vocab_has_vector",
    "reference_task_features",
]

DATA_FEATURES = (
    "size",
    "n_labels",
    "tokens_per_type",
    "oov_rate",
    "label_entropy",
    "frobenius_norm",
    "jsd_train_test",
)

_SEP = "\n"


def _log_base(base: float | None) -> float:
    if base is None:
        return 1.0
    if not (isinstance(base, (int, float)) and base > 0 and base != 1):
        raise ValueError(f"mtlfast.stats: base must be a positive number other than 1 (or None for nats), got {base!r}")
    return math.log(base)


# ---------------------------------------------------------------------------------------------------
# Strings -> arrays (the only part that touches Python strings)
# ---------------------------------------------------------------------------------------------------


def _join_utf8(*corpora: Sequence[Sequence[str]], lower: bool, n_tokens: int | None = None) -> tuple[np.ndarray, int]:
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
        text = _SEP.join([_SEP.join(map(_SEP.join, corpus)) for corpus in corpora if len(corpus)])
    else:
        text = _SEP.join([_SEP.join(sentence) for corpus in corpora for sentence in corpus if len(sentence)])
    if text.isascii():  # O(1) flag of the str; bytes.lower() then equals str.lower() and is much faster
        raw = text.encode("ascii")
        return np.frombuffer(raw.lower() if lower else raw, dtype=np.uint8), n_tokens
    if lower:
        text = text.lower()
    return np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8), n_tokens


class _Background:
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


class _Inline:
    """:class:`_Background`'s interface, run at once in the calling thread (small inputs)."""

    def __init__(self, fn, *args):
        self._value = fn(*args)

    def result(self):
        return self._value


# Below this many tokens a thread costs more than the overlap saves.
_THREAD_MIN_TOKENS = 20_000


def _intern(buf: np.ndarray, n_tokens: int, corpora, distinct: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``intern_tokens`` plus the newline check (a token holding a newline would shift every id after it).
    ``distinct``: the strings are (nearly) all different, so the table is sized for them at once."""
    ids, table, type_hash, type_span, left = K.intern_tokens(buf, n_tokens, n_tokens if distinct else 0)
    if left != 0:
        bad = next((w for corpus in corpora for s in corpus for w in s if _SEP in w), None)
        raise ValueError(f"mtlfast.stats: tokens and labels must not contain a newline, got {bad!r}")
    return ids, table, type_span


def _offsets(lengths: list[int]) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


class _EmbeddingTable:
    """Hash table of an embedding vocabulary, built once per Embeddings object (see :func:`_embedding_table`).

    The words are joined (Python) at once; the table itself (Numba, GIL released) is made on first use, in
    whichever thread asks first, so that a caller can leave it to a second thread."""

    def __init__(self, words):
        self._words = [list(words)]
        self.buf, self.n_words = _join_utf8(self._words, lower=False)
        self._lock = threading.Lock()
        self._built = None

    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """``(table, type_span)`` of :func:`~mtlfast.stats._kernels.intern_tokens` over the words."""
        with self._lock:
            if self._built is None:
                _, table, span = _intern(self.buf, self.n_words, self._words, distinct=True)
                self._built = (table, span)
                self._words = None  # kept only to name a word holding a newline
            return self._built

    def has_vector(self, buf: np.ndarray, spans: np.ndarray) -> np.ndarray:
        """Whether each byte span of ``buf`` is one of the words."""
        table, span = self.tables()
        return K.lookup_types(table, span, self.buf, buf, spans) >= 0


_TABLES: dict[int, tuple[Any, _EmbeddingTable]] = {}


def _embedding_index(embeddings) -> Any:
    """The word -> row mapping of an Embeddings object (``.index``), or the object itself if it is already a
    mapping / set of words."""
    index = getattr(embeddings, "index", embeddings)
    if not hasattr(index, "__contains__") or not hasattr(index, "__iter__"):
        raise TypeError(
            "mtlfast.stats: embeddings must be an mtlfast.data.Embeddings (with .index) or a set/dict of words, "
            f"got {type(embeddings).__name__}"
        )
    return index


def _embedding_table(embeddings) -> _EmbeddingTable:
    """Cached per embeddings object (by identity, dropped when it is garbage-collected)."""
    key = id(embeddings)
    hit = _TABLES.get(key)
    if hit is not None and hit[0]() is embeddings:
        return hit[1]
    index = _embedding_index(embeddings)
    table = _EmbeddingTable(index.keys() if hasattr(index, "keys") else index)
    try:
        ref = weakref.ref(embeddings, lambda _r, key=key: _TABLES.pop(key, None))
    except TypeError:  # not weak-referenceable (e.g. a plain dict/set): do not cache
        return table
    _TABLES[key] = (ref, table)
    return table


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


def _assemble(ids, n_train, n_train_terms, term_buf, term_span, offsets, label_ids, n_labels, embeddings):
    """SplitArrays from train+test term ids (train first; ``term_span``: each term's bytes in ``term_buf``)
    and training label ids."""
    has_vector = None
    if embeddings is not None:
        has_vector = _embedding_table(embeddings).has_vector(term_buf, term_span[:n_train_terms])
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


def split_arrays(
    train_tokens: Sequence[Sequence[str]],
    train_tags: Sequence[Sequence[str]],
    test_tokens: Sequence[Sequence[str]],
    embeddings=None,
) -> SplitArrays:
    """Encode the strings of a task once: tokens -> term ids (lower-cased), tags -> label ids, and, with
    embeddings, which training terms have a vector.

    Lists of lists of ``str`` (what ``mtlfast.data`` loads) go through the data layer's compiled
    ``factorize``, which finds repeated token objects by identity and looks each distinct object up once;
    only the distinct strings are then lower-cased and interned (in Numba). Anything else, or a build without
    the compiled helpers, takes the text path: one UTF-8 buffer per corpus interned in Numba. Both give the
    same arrays.
    """
    n_train_sentences = len(train_tokens)
    if len(train_tags) != n_train_sentences:
        raise ValueError(
            f"mtlfast.stats: train tokens and tags must have the same number of sentences, "
            f"got {n_train_sentences} and {len(train_tags)}"
        )
    if _fast is not None and _all_lists(train_tokens, train_tags, test_tokens):
        try:
            return _object_arrays(train_tokens, train_tags, test_tokens, embeddings)
        except TypeError:  # an item that is not a str or a sentence that is not a list: the text path
            pass  # reports it (or takes it) as it always has
    return _text_arrays(train_tokens, train_tags, test_tokens, embeddings)


def _all_lists(*corpora) -> bool:
    return all(type(c) is list for c in corpora)


def _tag_count_error(train_tokens, train_tags) -> ValueError:
    s = next(i for i, (a, b) in enumerate(zip(train_tokens, train_tags)) if len(a) != len(b))
    return ValueError(
        f"mtlfast.stats: every training token needs one tag; training sentence {s} has "
        f"{len(train_tokens[s])} tokens and {len(train_tags[s])} tags"
    )


def _newline_error(strings) -> ValueError:
    bad = next((w for w in strings if _SEP in w), None)
    return ValueError(f"mtlfast.stats: tokens and labels must not contain a newline, got {bad!r}")


def _object_arrays(train_tokens, train_tags, test_tokens, embeddings) -> SplitArrays:
    """:func:`split_arrays` through ``mtlfast.data._fast.factorize`` (see there): ids of the distinct token
    objects, then only the distinct strings are lower-cased (:func:`_join_utf8` over them) and go through
    :func:`_intern_pool`."""
    raw_index: dict = {}
    codes, all_offsets = _fast.factorize(train_tokens + test_tokens, raw_index)
    offsets = all_offsets[: len(train_tokens) + 1]
    n_train = int(offsets[-1])
    raw_types = [list(raw_index)]  # the distinct strings in order of first occurrence (train first)
    term_buf, _ = _join_utf8(raw_types, lower=True, n_tokens=len(raw_index))
    n_train_raw = int(codes[:n_train].max()) + 1 if n_train else 0
    table = _embedding_table(embeddings) if embeddings is not None else None
    interned = _intern_pool(term_buf, len(raw_index), n_train_raw, table)
    if interned is None:
        raise _newline_error(raw_index)
    lower_of_raw, term_span, n_train_terms, has_vector = interned
    label_index: dict = {}
    label_ids, label_offsets = _fast.factorize(train_tags, label_index)
    if not np.array_equal(label_offsets, offsets):
        raise _tag_count_error(train_tokens, train_tags)
    if any(_SEP in label for label in label_index):
        raise _newline_error(label_index)
    ids = lower_of_raw[codes] if codes.size else codes
    return SplitArrays(
        train_terms=ids[:n_train],
        train_offsets=offsets,
        train_labels=label_ids,
        test_terms=ids[n_train:],
        n_terms=int(term_span.shape[0]),
        n_train_terms=n_train_terms,
        n_labels=len(label_index),
        has_vector=has_vector,
    )


def _pooled_arrays(train, test, embeddings) -> SplitArrays | None:
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
    if not _all_lists(train_tokens, train_tags, test_tokens):
        return None
    tok_pool, tok_codes, tag_pool, tag_codes, tok_text = train_pools
    test_pool, test_codes, test_text = test_pools[0], test_pools[1], test_pools[4]
    n_raw = len(tok_pool) + len(test_pool)  # train first, each in order of first occurrence
    term_buf = np.frombuffer((tok_text + test_text)[:-1], np.uint8)  # the parser lower-cased it
    table = _embedding_table(embeddings) if embeddings is not None else None
    runner = _Background if tok_codes.size + test_codes.size >= _THREAD_MIN_TOKENS else _Inline
    job = runner(_intern_pool, term_buf, n_raw, len(tok_pool), table)
    offsets = _fast.check_pool_codes(train_tokens, tok_pool, tok_codes)
    tag_offsets = _fast.check_pool_codes(train_tags, tag_pool, tag_codes) if offsets is not None else None
    valid = (tag_offsets is not None and np.array_equal(tag_offsets, offsets)
             and _fast.check_pool_codes(test_tokens, test_pool, test_codes) is not None)
    if valid:
        # Equal labels whose bytes differed (stripped spaces) are separate pool entries: one id per value.
        label_index: dict = {}
        label_of_entry = np.fromiter((label_index.setdefault(t, len(label_index)) for t in tag_pool), np.int32,
                                     count=len(tag_pool))
        valid = not any(_SEP in label for label in label_index)
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


def _intern_pool(term_buf, n_raw, n_train_raw, table):
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


def _text_arrays(train_tokens, train_tags, test_tokens, embeddings) -> SplitArrays:
    """:func:`split_arrays` on joined text: Python joins, lower-cases and encodes each corpus (C-level calls),
    Numba interns the terms in a second thread while this one joins the tags."""
    lengths = list(map(len, train_tokens))
    offsets = _offsets(lengths)
    n_train = int(offsets[-1])
    term_buf, n_all = _join_utf8(train_tokens, test_tokens, lower=True, n_tokens=n_train + sum(map(len, test_tokens)))
    runner = _Background if n_all >= _THREAD_MIN_TOKENS else _Inline
    terms_job = runner(_intern, term_buf, n_all, (train_tokens, test_tokens))
    if list(map(len, train_tags)) != lengths:
        terms_job.result()  # its error (a newline in a token) comes first
        raise _tag_count_error(train_tokens, train_tags)
    label_buf, n_tags = _join_utf8(train_tags, lower=False, n_tokens=n_train)
    try:
        label_ids, _, label_span = _intern(label_buf, n_tags, (train_tags,))
    except ValueError:
        terms_job.result()  # a newline in a token is reported first
        raise
    ids, _, term_span = terms_job.result()
    n_train_terms = int(ids[:n_train].max()) + 1 if n_train else 0
    return _assemble(ids, n_train, n_train_terms, term_buf, term_span, offsets, label_ids,
                     int(label_span.shape[0]), embeddings)


def features_from_arrays(arrays: SplitArrays, base: float | None = None) -> dict[str, float]:
    """The seven features (:data:`DATA_FEATURES`) from encoded splits; see the module docstring for the
    definitions. ``base``: logarithm base of ``label_entropy`` and ``jsd_train_test`` (None = e, nats)."""
    log_base = _log_base(base)
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
        "label_entropy": K.entropy_nat(label_counts) / log_base,
        "frobenius_norm": math.sqrt(K.frobenius_sq(train_terms, offsets, n_terms)),
        "jsd_train_test": K.jensen_shannon_nat(train_counts, test_counts) / log_base,
    }


def task_features(task, embeddings=None, *, base: float | None = None) -> dict[str, float]:
    """The seven data features of a task, keyed by :data:`DATA_FEATURES` (definitions: module docstring).

    Parameters
    ----------
    task : mtlfast.data.Task
        any object with ``task.train.tokens``, ``task.train.tags`` and ``task.test.tokens`` (lists of
        sentences, each a list of str); ``task.test`` may be None or empty (then ``jsd_train_test`` is NaN).
    embeddings : mtlfast.data.Embeddings, optional
        its ``.index`` (lower-cased words) decides which tokens are out of vocabulary; a set or dict of
        words also works. Without it ``oov_rate`` is NaN.
    base : float, optional
        logarithm base of ``label_entropy`` and ``jsd_train_test``; None (default) = e (nats), 2 = bits.

    Returns
    -------
    dict
        ``size`` and ``n_labels`` as int, the others as float.
    """
    train = task.train
    test = getattr(task, "test", None)
    arrays = _pooled_arrays(train, test, embeddings) if _fast is not None else None
    if arrays is None:
        test_tokens = test.tokens if test is not None else []
        arrays = split_arrays(train.tokens, train.tags, test_tokens, embeddings)
    return features_from_arrays(arrays, base=base)


# ---------------------------------------------------------------------------------------------------
# Fast paths: straight from a task folder's files, or from the data layer's encoded arrays
# ---------------------------------------------------------------------------------------------------


def _lower_utf8(raw: bytes) -> bytes:
    """UTF-8 bytes lower-cased as ``str.lower`` does (ASCII text: ``bytes.lower``, the same and faster)."""
    if raw.isascii():
        return raw.lower()
    return raw.decode("utf-8").lower().encode("utf-8", "surrogatepass")


def _folder_arrays(folder: Path, embeddings) -> SplitArrays | None:
    """:class:`SplitArrays` parsed from ``train.tsv`` / ``test.tsv`` bytes in Numba, or None when a file is
    missing or holds anything the strict parser leaves to the data layer (see ``_kernels.tsv_spans``)."""
    try:
        raw_train = (folder / "train.tsv").read_bytes()
        raw_test = (folder / "test.tsv").read_bytes()
        # Terms come from the lower-cased text, labels from the raw bytes: lower-casing keeps the line and tab
        # structure (it never makes or removes a tab or newline), so both parse into the same sentences.
        low_train = _lower_utf8(raw_train)
        low_test = _lower_utf8(raw_test)
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
    return _assemble(ids, n_train, n_train_terms, term_buf, term_span, offsets, label_ids,
                     int(label_span.shape[0]), embeddings)


def folder_features(folder, embeddings=None, *, base: float | None = None) -> dict[str, float]:
    """:func:`task_features` of the task in ``folder`` (``train.tsv``, ``test.tsv``), read in Numba from
    the bytes without making Python strings.

    Gives exactly what ``task_features(mtlfast.data.load_task(folder), embeddings)`` gives. Files the strict
    byte parser does not accept as they are (carriage returns, whitespace around fields, a missing file,
    bytes that are not UTF-8, ...) go through ``mtlfast.data.load_task``, which reads them or raises its
    ``DataError``. Only ``train.tsv`` and ``test.tsv`` are read (``dev.tsv`` is not checked).
    """
    folder = Path(folder)
    arrays = _folder_arrays(folder, embeddings)
    if arrays is None:
        from mtlfast.stats._io import load_tasks

        return task_features(load_tasks([folder])[0], embeddings, base=base)
    return features_from_arrays(arrays, base=base)


def vocab_has_vector(vocab, embeddings) -> np.ndarray:
    """``bool [len(vocab)]``: whether each word of an ``mtlfast.data.Vocab`` (``.itos``, lower-cased) has a
    vector in the embeddings (``.index``, or a set/dict of words). Compute once per suite and pass it to
    :func:`encoded_task_features`."""
    words = list(vocab.itos)
    stoi = getattr(vocab, "stoi", None)
    n_distinct = len(stoi) if isinstance(stoi, dict) and len(stoi) == len(words) else len(set(words))
    if n_distinct != len(words):
        raise ValueError(f"mtlfast.stats: the vocabulary holds duplicate words ({len(words)} words, {n_distinct} distinct)")
    return np.fromiter(map(_embedding_index(embeddings).__contains__, words), bool, count=len(words))


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


_UNK_ID = 1  # mtlfast.data.UNK_ID (docs/ARCHITECTURE.md: id 0 = <pad>, id 1 = <unk>)

from mtlfast.stats.reference import reference_task_features  # noqa: E402

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

from pathlib import Path
from typing import Sequence

from mtlfast.data import load_task

from mtlfast.stats._embeddings import vocab_has_vector
from mtlfast.stats._encoded import encoded_task_features
from mtlfast.stats._files import folder_arrays
from mtlfast.stats._text import text_arrays
from mtlfast.stats.features import DATA_FEATURES, SplitArrays, features_from_arrays
from mtlfast.stats.reference import reference_task_features
from mtlfast.stats.original import original_suite_features, original_task_features  # noqa: F401  (original protocol)

try:  # the data layer's compiled helpers (optional build): factorize by object identity, parser pools
    from mtlfast.stats import _objects
except ImportError:  # pragma: no cover - depends on the build
    _objects = None

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
    if _objects is not None and _objects.all_lists(train_tokens, train_tags, test_tokens):
        try:
            return _objects.object_arrays(train_tokens, train_tags, test_tokens, embeddings)
        except TypeError:  # an item that is not a str or a sentence that is not a list: the text path
            pass  # reports it (or takes it) as it always has
    return text_arrays(train_tokens, train_tags, test_tokens, embeddings)


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
    arrays = _objects.pooled_arrays(train, test, embeddings) if _objects is not None else None
    if arrays is None:
        test_tokens = test.tokens if test is not None else []
        arrays = split_arrays(train.tokens, train.tags, test_tokens, embeddings)
    return features_from_arrays(arrays, base=base)



def folder_features(folder, embeddings=None, *, base: float | None = None) -> dict[str, float]:
    """:func:`task_features` of the task in ``folder`` (``train.tsv``, ``test.tsv``), read in Numba from
    the bytes without making Python strings.

    Gives exactly what ``task_features(mtlfast.data.load_task(folder), embeddings)`` gives. Files the strict
    byte parser does not accept as they are (carriage returns, whitespace around fields, a missing file,
    bytes that are not UTF-8, ...) go through ``mtlfast.data.load_task``, which reads them or raises its
    ``DataError``. Only ``train.tsv`` and ``test.tsv`` are read (``dev.tsv`` is not checked).
    """
    folder = Path(folder)
    arrays = folder_arrays(folder, embeddings)
    if arrays is None:
        return task_features(load_task(folder), embeddings, base=base)
    return features_from_arrays(arrays, base=base)

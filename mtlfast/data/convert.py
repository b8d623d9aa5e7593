"""Converters from common annotation formats to the task layout (``train.tsv``/``dev.tsv``/``test.tsv``).

CoNLL-U
    Parsed with the ``conllu`` package, one sentence block at a time so errors can name the line. The label is
    any column, by name (``upos``, ``xpos``, ``lemma``, ``feats``, ``deprel``, ``misc``, ...) or 1-based number
    (4 = UPOS, 5 = XPOS). Multiword-token ranges (``1-2``) and empty nodes (``2.1``) are skipped, as the
    syntactic words carry the annotation. Every token line must have the 10 tab-separated fields.
Column files (CoNLL-2000, CoNLL-2003 style)
    Whitespace-separated columns, a blank line between sentences; ``-DOCSTART-`` lines are skipped. The token
    column (default 1) and label column (default the last, -1) are chosen by 1-based number, negative numbers
    counting from the end. Every line of a file must have as many columns as its first line.
BIO
    ``--bio check`` fails (naming the line) on an ``I-X`` that does not follow ``B-X``/``I-X``; ``--bio repair``
    turns such an ``I-X`` into ``B-X`` (the conlleval reading; this also converts IOB1 to IOB2) and reports how
    many it changed.

Tokens holding whitespace (possible in CoNLL-U) have each whitespace run replaced by ``_``, so that tokens of
the output never contain whitespace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mtlfast.data.io import DataError, _decode, write_labels, write_split

CONLLU_FIELDS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
BIO_MODES = ("none", "check", "repair")
_WS = re.compile(r"\s+")


@dataclass
class Sentences:
    """Converted sentences of one file, with the 1-based line number of every token (for BIO messages)."""

    path: Path
    tokens: list[list[str]] = field(default_factory=list)
    tags: list[list[str]] = field(default_factory=list)
    lines: list[list[int]] = field(default_factory=list)


def _read_text(path) -> tuple[Path, str]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, None, "expected an input file", "no such file") from None
    except IsADirectoryError:
        raise DataError(path, None, "expected an input file", "a directory") from None
    except OSError as exc:
        raise DataError(path, None, "expected a readable input file", f"{type(exc).__name__}: {exc.strerror}") from None
    return path, _decode(path, data)


def _clean_token(tok: str) -> str:
    return _WS.sub("_", tok.strip())


def conllu_column(column) -> str:
    """Normalise a CoNLL-U column given by name or 1-based number to its field name."""
    c = str(column).strip().lower()
    if c.isdigit():
        n = int(c)
        if not 1 <= n <= 10:
            raise DataError("--column", None, "expected a CoNLL-U column number 1..10 or a field name", repr(column))
        return CONLLU_FIELDS[n - 1]
    if c not in CONLLU_FIELDS:
        raise DataError("--column", None, f"expected a CoNLL-U field ({', '.join(CONLLU_FIELDS)}) or 1..10",
                        repr(column))
    return c


def read_conllu(path, column="upos", missing: str | None = None) -> Sentences:
    """Read a CoNLL-U file into (FORM, chosen column) sentences with the ``conllu`` package.

    ``missing``: label to use where the column is empty (``_``); by default an empty value is an error.
    """
    import conllu  # a dependency of mtlfast; imported here to keep `import mtlfast.data` light
    from conllu.exceptions import ParseException
    from conllu.serializer import serialize_field

    field_name = conllu_column(column)
    path, text = _read_text(path)
    out = Sentences(path)
    lines = text.split("\n")
    block: list[str] = []
    block_start = 1

    def flush():
        if not block:
            return
        numbered = [(block_start + i, l) for i, l in enumerate(block)]
        token_lines = [(n, l) for n, l in numbered if not l.startswith("#")]
        for n, l in token_lines:
            nf = len(l.split("\t"))
            if nf != 10:
                raise DataError(path, n, "expected a CoNLL-U token line with 10 tab-separated fields", f"{nf} field{'s' * (nf != 1)}")
        try:
            parsed = conllu.parse("\n".join(block) + "\n\n")
        except (ParseException, ValueError, KeyError, TypeError, IndexError) as exc:
            raise DataError(path, block_start, "expected a CoNLL-U sentence", f"a parse error ({exc})") from None
        toks, tags, nums = [], [], []
        for tokenlist in parsed:
            if len(tokenlist) != len(token_lines):  # pragma: no cover - guarded by the field check above
                raise DataError(path, block_start, f"expected {len(token_lines)} tokens", f"{len(tokenlist)}")
            for (n, _), tok in zip(token_lines, tokenlist):
                if not isinstance(tok["id"], int):
                    continue  # multiword range or empty node
                form = tok["form"]
                if form is None or not str(form).strip():
                    raise DataError(path, n, "expected a non-empty FORM", repr(form))
                if field_name not in tok:
                    raise DataError(path, n, f"expected a column {field_name.upper()}", f"columns {', '.join(tok)}")
                value = tok[field_name]
                value = serialize_field(value) if not isinstance(value, str) else value
                if value is None or value.strip() in ("", "_"):
                    if missing is None:
                        raise DataError(path, n, f"expected a value in column {field_name.upper()} "
                                                 f"(or pass --missing LABEL)", "'_' (empty)")
                    value = missing
                toks.append(_clean_token(str(form)))
                tags.append(_clean_token(value))
                nums.append(n)
        if toks:
            out.tokens.append(toks)
            out.tags.append(tags)
            out.lines.append(nums)

    for lineno, raw in enumerate(lines, 1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line.strip():
            flush()
            block = []
            block_start = lineno + 1
            continue
        if not block:
            block_start = lineno
        block.append(line)
    flush()
    if not out.tokens:
        raise DataError(path, None, "expected at least one CoNLL-U sentence", "none")
    return out


def read_columns(path, token_column: int = 1, label_column: int = -1) -> Sentences:
    """Read a whitespace-separated column file (CoNLL-2000 style) into (token, label) sentences.

    Columns are 1-based; negative numbers count from the end (-1 = last).
    """
    path, text = _read_text(path)
    out = Sentences(path)
    n_cols = None
    toks: list[str] = []
    tags: list[str] = []
    nums: list[int] = []

    def pick(fields, col, lineno, what):
        k = col - 1 if col > 0 else len(fields) + col
        if col == 0 or not 0 <= k < len(fields):
            raise DataError(path, lineno, f"expected a {what} column {col} (1-based; negative from the end)",
                            f"{len(fields)} columns")
        return fields[k]

    for lineno, raw in enumerate(text.split("\n"), 1):
        fields = raw.split()
        if not fields:
            if toks:
                out.tokens.append(toks)
                out.tags.append(tags)
                out.lines.append(nums)
                toks, tags, nums = [], [], []
            continue
        if fields[0] == "-DOCSTART-":
            continue
        if n_cols is None:
            n_cols = len(fields)
            pick(fields, token_column, lineno, "token")
            pick(fields, label_column, lineno, "label")
        elif len(fields) != n_cols:
            raise DataError(path, lineno, f"expected {n_cols} whitespace-separated columns (as on the first line)",
                            f"{len(fields)}")
        toks.append(pick(fields, token_column, lineno, "token"))
        tags.append(pick(fields, label_column, lineno, "label"))
        nums.append(lineno)
    if toks:
        out.tokens.append(toks)
        out.tags.append(tags)
        out.lines.append(nums)
    if not out.tokens:
        raise DataError(path, None, "expected at least one sentence of columns", "an empty file")
    return out


def bio_problems(tags: list[str]) -> list[int]:
    """Positions of ``I-X`` labels that do not continue a ``B-X``/``I-X`` of the same type."""
    bad = []
    prev = "O"
    for i, t in enumerate(tags):
        if t.startswith("I-"):
            typ = t[2:]
            if not (prev.startswith(("B-", "I-")) and prev[2:] == typ):
                bad.append(i)
        prev = t
    return bad


def apply_bio(sents: Sentences, mode: str) -> int:
    """Check or repair BIO in place. Returns the number of labels repaired (0 for ``check``/``none``)."""
    if mode not in BIO_MODES:
        raise DataError("--bio", None, f"expected one of {', '.join(BIO_MODES)}", repr(mode))
    if mode == "none":
        return 0
    fixed = 0
    for s_tags, s_lines in zip(sents.tags, sents.lines):
        for t in s_tags:
            if t != "O" and not t.startswith(("B-", "I-")):
                i = s_tags.index(t)
                raise DataError(sents.path, s_lines[i], "expected a BIO label (O, B-X or I-X)", repr(t))
        # positions are computed on the original labels: a repaired I-X -> B-X keeps the type, so a following
        # I-X of the same type stays valid and one pass suffices
        bad = bio_problems(s_tags)
        if bad and mode == "check":
            i = bad[0]
            before = s_tags[i - 1] if i else "the sentence start"
            raise DataError(sents.path, s_lines[i], f"expected {s_tags[i]!r} to follow B-{s_tags[i][2:]} or "
                                                    f"I-{s_tags[i][2:]} (BIO; --bio repair turns it into B-)",
                            f"it after {before!r}" if i else "it at the sentence start")
        for i in bad:
            s_tags[i] = "B-" + s_tags[i][2:]
            fixed += 1
    return fixed


def read_any(path, fmt: str, column=None, token_column: int = 1, missing: str | None = None) -> Sentences:
    if fmt == "conllu":
        return read_conllu(path, column if column is not None else "upos", missing=missing)
    if fmt == "columns":
        return read_columns(path, token_column, int(column) if column is not None else -1)
    raise DataError("--format", None, "expected conllu or columns", repr(fmt))


def convert_task(out_dir, fmt: str, train, test, dev=None, column=None, token_column: int = 1,
                 bio: str = "none", missing: str | None = None) -> dict:
    """Convert input files into a task folder ``out_dir`` (train/test required, dev optional).

    Returns a summary: per split (sentences, tokens) and the number of BIO repairs.
    """
    if fmt == "columns" and column is not None:
        try:
            int(column)
        except ValueError:
            raise DataError("--column", None, "expected a column number for --format columns", repr(column)) from None
    out_dir = Path(out_dir)
    summary: dict = {"splits": {}, "bio_repaired": 0}
    converted = {}
    for split, src in (("train", train), ("dev", dev), ("test", test)):
        if src is None:
            continue
        sents = read_any(src, fmt, column, token_column, missing)
        summary["bio_repaired"] += apply_bio(sents, bio)
        converted[split] = sents
    labels: set[str] = set()
    for split, sents in converted.items():
        write_split(out_dir / f"{split}.tsv", sents.tokens, sents.tags)
        for s in sents.tags:
            labels.update(s)
        summary["splits"][split] = (len(sents.tokens), sum(len(s) for s in sents.tokens))
    write_labels(out_dir / "labels.txt", labels)
    summary["labels"] = len(labels)
    return summary

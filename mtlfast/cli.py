"""One style for every command line of mtlfast (``sweep``, ``analyze``, ``predict``, ``reproduce``, ``stats``,
``data``, ``info``).

Conventions
-----------
- **Program names** are what the user typed: ``python -m mtlfast.<verb>``.
- **Folders.** ``--out DIR`` is the folder a command writes into. For ``sweep``, ``analyze`` and ``predict``
  that is the *sweep folder* (``sweep`` creates it; ``analyze`` reads it and writes its report into it;
  ``predict`` reads it), so the sweep folder has one flag everywhere: ``--out DIR``. ``reproduce --out DIR``
  is its output folder, ``data convert/generate --out DIR`` the task folder / suite they write. The old
  spellings still work where that costs nothing: ``analyze DIR`` (positional) and ``predict --sweep DIR``.
- **Meta-classifier CV options** (:func:`add_cv_options`): ``analyze`` and ``reproduce`` take the same flags
  with the same defaults (those of :class:`mtlfast.meta.analysis.MetaSettings`); ``--full`` is the heavier
  protocol (10 outer x 2 inner repetitions of the nested search, optimistic search on all ``--repeats``).
- **Errors**: one line ``<prog>: error: <what was expected, what came>`` on stderr, no traceback.
- **Exit status**: 0 done; 1 the command ran but some of its work failed (a sweep with failed runs);
  2 bad input (command line, config, data, a folder lacking what is needed); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED", "UsageError", "Parser", "error", "warn",
           "run_main", "add_out", "resolve_out", "add_cv_options", "cv_settings", "describe_error"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(ValueError):
    """Bad input of a command line (its message says what was expected): ``<prog>: error: <message>``, exit 2."""


class Parser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose errors raise :class:`UsageError` (so ``main(argv)`` returns 2 with
    one line instead of calling ``sys.exit``); ``--help`` prints the help and exits 0 as usual."""

    def error(self, message):
        raise UsageError(message)


def describe_error(exc: BaseException) -> str:
    """The one-line message of an error: ``<file>: <reason>`` for OS errors, ``str(exc)`` otherwise."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def error(prog: str, message) -> int:
    """Print ``<prog>: error: <message>`` on stderr; return :data:`EXIT_USAGE`."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def warn(prog: str, message) -> None:
    print(f"{prog}: warning: {message}", file=sys.stderr, flush=True)


def run_main(prog: str, body: Callable[[], int], bad_input: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command's ``body`` with the common error handling: :class:`UsageError` and the ``bad_input``
    exception types -> one error line, exit 2; ``KeyboardInterrupt`` -> exit 130. Anything else is a bug and
    keeps its traceback."""
    try:
        return body()
    except (UsageError, *bad_input) as exc:
        return error(prog, describe_error(exc))
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


# -------------------------------------------------------------------------------------------------- the folder
def add_out(parser: argparse.ArgumentParser, help: str, *, positional_alias: bool = False,
            old_flag: str | None = None) -> None:
    """``--out DIR`` (see the module docstring). ``positional_alias``: also accept ``DIR`` as a positional
    argument (the old spelling of ``analyze``); ``old_flag``: an old flag spelling (e.g. ``--sweep``). Both are
    hidden from the help; :func:`resolve_out` merges them."""
    parser.add_argument("--out", type=Path, metavar="DIR", help=help)
    if positional_alias:
        parser.add_argument("out_positional", type=Path, nargs="?", metavar="DIR", help=argparse.SUPPRESS)
    if old_flag:
        parser.add_argument(old_flag, dest="out_old_flag", type=Path, metavar="DIR", help=argparse.SUPPRESS)


def resolve_out(args, what: str = "the sweep folder", old_flag: str | None = None) -> Path:
    """The folder of ``--out`` or of its old spelling; :class:`UsageError` when none or two different ones."""
    given = [v for v in (getattr(args, "out", None), getattr(args, "out_positional", None),
                         getattr(args, "out_old_flag", None)) if v is not None]
    if not given:
        raise UsageError(f"expected {what}: --out DIR")
    if len(set(given)) > 1:
        old = f" ({old_flag} is the old spelling of --out)" if old_flag else ""
        raise UsageError(f"{what} given twice, as {' and '.join(map(str, given))}{old}: give it once, as --out DIR")
    return given[0]


# ------------------------------------------------------------------------------------------ meta-classifier CV
def add_cv_options(parser: argparse.ArgumentParser) -> None:
    """The CV flags of the meta-analysis, with :class:`~mtlfast.meta.analysis.MetaSettings`' defaults."""
    from mtlfast.meta.analysis import MetaSettings

    d = MetaSettings.DEFAULTS
    g = parser.add_argument_group("meta-classifier cross-validation")
    g.add_argument("--repeats", type=int, default=d["n_repeats"], metavar="N",
                   help=f"repetitions of k-fold CV (default {d['n_repeats']}, the paper's)")
    g.add_argument("--folds", type=int, default=d["n_splits"], metavar="K",
                   help=f"k of k-fold CV (default {d['n_splits']})")
    g.add_argument("--seed", type=int, default=d["random_state"], metavar="S",
                   help=f"seed of the CV splits (default {d['random_state']})")
    g.add_argument("--search", choices=["auto", "exhaustive", "greedy", "none"], default=d["search"],
                   help="best-combination search over the task-feature groups; auto: exhaustive up to 1,023 "
                        "combinations (<= 10 groups), greedy forward selection beyond. 'exhaustive' with all 14 "
                        "groups fits 16,383 combinations x 5 inner folds per outer fold (about 30-50 s per outer "
                        "fold on one busy core)")
    g.add_argument("--outer-repeats", type=int, default=d["outer_repeats"], metavar="N",
                   help=f"repetitions of the outer k-fold CV of the nested search (default {d['outer_repeats']})")
    g.add_argument("--inner-repeats", type=int, default=d["inner_repeats"], metavar="N",
                   help=f"repetitions of the inner k-fold CV of the nested search (default {d['inner_repeats']})")
    g.add_argument("--optimistic-repeats", type=int, default=d["optimistic_repeats"], metavar="N",
                   help=f"repetitions of k-fold CV for the optimistic (non-nested) search (default "
                        f"{d['optimistic_repeats']}; 0: --repeats, the paper's protocol)")
    g.add_argument("--full", action="store_true",
                   help="the heavier protocol: 10 outer x 2 inner repetitions of the nested search, optimistic "
                        "search on all --repeats (overrides the three flags above)")


def cv_settings(args) -> dict:
    """:class:`~mtlfast.meta.analysis.MetaSettings` keys from the flags of :func:`add_cv_options` (checked:
    :class:`UsageError` for a value out of range)."""
    if args.folds < 2:
        raise UsageError(f"--folds: expected at least 2 (k of k-fold CV), got {args.folds}")
    for flag, value in (("--repeats", args.repeats), ("--outer-repeats", args.outer_repeats),
                        ("--inner-repeats", args.inner_repeats)):
        if value < 1:
            raise UsageError(f"{flag}: expected a positive integer, got {value}")
    if args.optimistic_repeats < 0:
        raise UsageError(f"--optimistic-repeats: expected an integer >= 0, got {args.optimistic_repeats}")
    settings = {"n_repeats": args.repeats, "n_splits": args.folds, "random_state": args.seed,
                "search": args.search, "outer_repeats": args.outer_repeats, "inner_repeats": args.inner_repeats,
                "optimistic_repeats": args.optimistic_repeats or None}
    if args.full:
        settings.update(outer_repeats=10, inner_repeats=2, optimistic_repeats=None)
    return settings

"""``python -m mtlfast.store export|import``: carry a sweep's finished runs to another session or machine.

    python -m mtlfast.store export --out SWEEP_DIR FILE     # finished runs' records -> FILE (gzip JSON lines)
    python -m mtlfast.store import FILE --out SWEEP_DIR     # a new store in SWEEP_DIR from FILE

Then re-run the sweep's own command with ``--out SWEEP_DIR``: finished runs are kept, the others train from
scratch (no checkpoint is exported). Exit status: 0 done, 2 bad input (one error line).
"""

from __future__ import annotations

import sys

from mtlfast.cli import Parser, add_out, resolve_out, run_main
from mtlfast.store.transfer import ExportError, export_store, import_store

PROG = "python -m mtlfast.store"


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Carry a sweep's finished runs to another session or machine: export the"
               " records of its finished runs (config, runs, loss points, scores, features; no checkpoints) to one"
               " small gzip JSON-lines file, and import it into a new sweep folder. Re-running the same sweep"
               " command on the imported folder keeps the finished runs and trains the others from scratch.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    e = sub.add_parser("export", help="write the finished runs' records of --out DIR to FILE",
                       description="Write the records of the finished runs of the sweep in --out DIR to FILE"
                                   " (gzip JSON lines; safe while the sweep is running).")
    add_out(e, "the sweep folder to export (holds mtlfast.db)")
    e.add_argument("file", metavar="FILE", help="the export file to write (e.g. records.jsonl.gz)")
    i = sub.add_parser("import", help="recreate a store in --out DIR from FILE",
                       description="Recreate the sweep store of an export FILE in --out DIR (a folder without a"
                                   " store), then re-run the sweep's own command with --out DIR to resume it.")
    i.add_argument("file", metavar="FILE", help="an export file written by 'python -m mtlfast.store export'")
    add_out(i, "the new sweep folder (must not hold mtlfast.db yet)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)

    def body():
        p = build_parser()
        args = p.parse_args(argv)
        if args.command is None:
            p.error("expected a command: export or import")
        out = resolve_out(args)
        if args.command == "export":
            s = export_store(out, args.file)
            print(f"Exported {s['finished']} finished of {s['runs']} runs ({s['loss_points']:,} loss points,"
                  f" {s['scores']:,} scores, {s['features']} features) to {args.file} ({s['bytes']:,} bytes)")
        else:
            s = import_store(args.file, out)
            print(f"Imported {s['finished']} finished of {s['runs']} runs ({s['loss_points']:,} loss points,"
                  f" {s['scores']:,} scores) into {out}. Resume with the sweep's own command and --out {out}")
        return 0

    return run_main(PROG, body, (ExportError,))


if __name__ == "__main__":
    sys.exit(main())

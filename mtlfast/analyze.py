"""Turn a finished sweep into the paper's findings: ``python -m mtlfast.analyze --out DIR``.

Reads the sweep output folder (docs/ARCHITECTURE.md: ``gains.csv``, ``curves.csv``, ``features.csv``,
``runs.csv``, ``scores.csv``, ``config.json``) and writes into it:

- ``heatmap.png`` (Figure 1), ``curves.png`` (single-task learning curves);
- ``curve_features.csv`` (7 per task), ``pair_table.csv`` (the 42-column meta-learning table), ``meta.json``;
- ``report.md`` and a self-contained ``report.html`` (images embedded), with the Table 3 equivalent next to
  the paper's numbers, the coefficient table, the ablation, leave-one-task-out results and the run settings.

A **result folder** (issue 18, ``results/eacl2017-public``) holds no store and no ``curves.csv`` but the sweep's
store export ``records.jsonl.gz`` (``python -m mtlfast.store export``): the analysis then imports it into a
temporary store, recomputes ``gains.csv`` with the sweep's code and writes ``runs.csv`` and ``scores.csv`` from
it, so the committed small files regenerate the report with no training and no ``mtlfast.db``. Every folder also
gets ``table3.csv`` (Table 3 under the notebook's and mtlfast's CV, full precision), ``features.csv`` and
``curve_features.csv`` by both definitions, and, for the ten public stand-ins of the paper's tasks, the
comparison with the paper's gains (``paper_gains.csv``, from the released logs when they are at hand).

Degrades instead of failing: without ``features.csv`` the meta-classifier uses the curve features only,
without ``curves.csv`` the data features only; with a single label class, too few pairs or no features it
says so in the report. ``gains.csv`` is required (or ``scores.csv``, from which the gains are recomputed).
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path

from mtlfast.cli import EXIT_OK, Parser, add_cv_options, add_out, cv_settings, resolve_out, run_main
from mtlfast.report.files import jsonable, write_csv

__all__ = ["analyze", "AnalyzeError", "main"]

PROG = "python -m mtlfast.analyze"


class AnalyzeError(ValueError):
    """The sweep folder lacks what the analysis needs; the message says what."""


def _gains_from_scores(path):
    """Recompute gains from ``scores.csv`` (final-step ``f1_micro_no_o`` on the test split, mean over seeds)."""
    from mtlfast.meta.gains import directed_gains, task_order
    from mtlfast.meta.table import read_csv

    rows, cols = read_csv(path)
    need = {"kind", "tasks", "task", "split", "step", "metric", "value"}
    if not need <= set(cols):
        raise AnalyzeError(f"{path}: expected columns {sorted(need)}, got {cols}")
    last = {}
    for r in rows:
        if r["metric"] != "f1_micro_no_o" or r["split"] != "test":
            continue
        key = (r["kind"], r["tasks"], r.get("seed", "0"), r["task"])
        step = int(float(r["step"]))
        if key not in last or step >= last[key][0]:
            last[key] = (step, float(r["value"]))
    single, pair = {}, {}
    for (kind, tasks, seed, task), (_s, v) in last.items():
        if kind == "single" or "+" not in tasks:
            single[(task, seed)] = v
        else:
            others = [t for t in tasks.split("+") if t != task]
            if others:
                pair[(task, others[0], seed)] = v
    # As the sweep: mean of the per-seed gains (pair and single run of the same seed), seed tests with seeds > 1.
    order = task_order(r["tasks"].split("+") for r in rows)
    return [{**g, "label_source": "gain > 0"} for g in directed_gains(single, pair, order)]


RECORDS = "records.jsonl.gz"
PAPER_GAINS = "paper_gains.csv"
TABLE3 = "table3.csv"


def _resolved_steps(config):
    """The steps a sweep ran: ``--paper`` / ``--paper-logs`` override the stored ``steps_single`` / ``steps_pair``
    (config.json keeps the flags as given)."""
    from mtlfast.config import PAPER_LOG_STEPS, PAPER_STEPS

    if config.get("paper"):
        return PAPER_STEPS
    if config.get("paper_logs"):
        return PAPER_LOG_STEPS
    return config.get("steps_single"), config.get("steps_pair")


def _from_records(out, tmp):
    """A result folder without a store: import its store export (``records.jsonl.gz``, ``python -m mtlfast.store
    export``) into ``tmp`` and write the sweep's own files there (gains.csv through the sweep's gain code, runs,
    scores, curves and features through ``Store.export``). Returns the stored config (dict) or {}."""
    from mtlfast.meta.gains import store_gains, write_gains_csv
    from mtlfast.store import Store
    from mtlfast.store.transfer import ExportError, import_store

    try:
        import_store(out / RECORDS, tmp)
    except (ExportError, OSError, ValueError) as exc:
        raise AnalyzeError(f"{out / RECORDS}: cannot be read as a store export ({exc})") from None
    store = Store(tmp)
    try:
        write_gains_csv(store_gains(store), tmp / "gains.csv")
        store.export(tmp)
        cfg = store.meta("config")
    finally:
        store.close()
    return json.loads(cfg) if cfg else {}


def _write_runs(out, src, machine=None):
    """runs.csv of a result folder: every run of the store export with its status, steps reached and the wall time
    of its model array, and the machine it ran on: kept from the folder's previous runs.csv by run id, else
    ``machine`` (``--machine``), else empty."""
    from mtlfast.meta.table import read_csv
    from mtlfast.store import Store

    before = {}
    if (out / "runs.csv").exists():
        rows, cols = read_csv(out / "runs.csv")
        if "run_id" in cols and "machine" in cols:
            before = {r["run_id"]: r["machine"] for r in rows if r.get("machine")}
    store = Store(src)
    try:
        runs = store.runs()
    finally:
        store.close()
    rows = [{**{k: r[k] for k in ("run_id", "kind", "tasks", "seed", "steps", "status", "step", "seconds")},
             "machine": before.get(r["run_id"]) or (machine or "")} for r in runs]
    write_csv(out / "runs.csv", rows, ["run_id", "kind", "tasks", "seed", "steps", "status", "step", "seconds",
                                       "machine"])


def _other_data_features(protocol, config, tasks, say, notes):
    """The data features by the definition the sweep did not use, computed from the sweep's data when it is at the
    stored paths (``config.json``: ``data``, ``embeddings``); None when it is not. Clean: ``mtlfast.stats``
    (``folder_features``, as ``python -m mtlfast.stats``); original: ``mtlfast.stats.original_suite_features``."""
    from mtlfast.data import find_task_dirs, load_task

    data, emb = config.get("data") or [], config.get("embeddings")
    if not data or not all(Path(p).is_dir() for p in data) or not tasks:
        return None
    dirs = {d.name: d for p in data for d in find_task_dirs(Path(p))}
    if not set(tasks) <= set(dirs):
        notes.append(f"data at {data} lacks task(s) {sorted(set(tasks) - set(dirs))}: the other definition of the "
                     "data features is not computed")
        return None
    words = None
    if emb and Path(emb).is_file():
        with open(emb, encoding="utf-8") as fh:
            words = {line.split(" ", 1)[0] for line in fh if line.strip()}
    say(f"data features by the {'clean' if protocol == 'original' else 'original'} definition from {data}")
    if protocol == "original":
        from mtlfast.stats import folder_features

        return {t: {k: float(v) for k, v in folder_features(dirs[t], words).items()} for t in tasks}
    from mtlfast.stats import original_suite_features

    feats = original_suite_features([load_task(dirs[t]) for t in tasks], words)
    return {t: {k: float(v) for k, v in feats[t].items()} for t in tasks}


def _write_features(out, src_features, protocol, other, previous):
    """features.csv: ``task`` + the seven data features of the sweep (its protocol's definition, as the store holds
    them) + ``<other definition>_<feature>`` columns (computed now, else kept from the folder's previous
    features.csv)."""
    from mtlfast.meta.table import DATA_FEATURES

    other_name = "clean" if protocol == "original" else "original"
    other = other if other is not None else previous.get(other_name)
    rows = []
    for t, d in src_features.items():
        r = {"task": t, **d}
        if other and t in other:
            r.update({f"{other_name}_{f}": float(other[t][f]) for f in DATA_FEATURES if f in other[t]})
        rows.append(r)
    cols = ["task", *DATA_FEATURES] + ([f"{other_name}_{f}" for f in DATA_FEATURES] if other else [])
    write_csv(out / "features.csv", rows, cols)


def _paper_gains(out, tasks, notes, say):
    """The paper's directed gains in the public tasks' names: from the released logs when they are at
    ``$MTLFAST_DATA/eacl2017/logs`` (default ``../shared/data``; written to paper_gains.csv), else from the
    folder's paper_gains.csv; None when the sweep's tasks are not the paper's ten stand-ins."""
    import os

    from mtlfast.meta.analysis import PAPER_TASK_NAMES
    from mtlfast.meta.table import read_csv

    if not tasks or not set(tasks) <= set(PAPER_TASK_NAMES.values()):
        return None
    root = Path(os.environ.get("MTLFAST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    logs = root / "eacl2017" / "logs"
    if logs.is_dir():
        from mtlfast.reproduce import LogError, compute_gains, read_logs

        try:
            rows, lnotes = compute_gains(read_logs(logs), first=True)
        except (LogError, OSError) as exc:
            notes.append(f"released logs at {logs} unreadable ({exc}); no comparison with the paper's gains")
            return None
        notes.extend(lnotes)
        say(f"the paper's gains from {logs}")
        out_rows = [{"main": PAPER_TASK_NAMES[r["main"]], "aux": PAPER_TASK_NAMES[r["aux"]], "paper_main": r["main"],
                     "paper_aux": r["aux"], "gain": r["gain"]}
                    for r in rows if r["main"] in PAPER_TASK_NAMES and r["aux"] in PAPER_TASK_NAMES]
        # the derived gains only: the logs' own numbers (F1 values) stay in ../shared/data
        write_csv(out / PAPER_GAINS, out_rows, ["main", "aux", "paper_main", "paper_aux", "gain"])
        return out_rows
    if (out / PAPER_GAINS).exists():
        rows, _ = read_csv(out / PAPER_GAINS)
        return [{"main": r["main"], "aux": r["aux"], "gain": float(r["gain"])} for r in rows]
    return None


def _definition_features(by_def, want, notes):
    """The task features of definition ``want`` (data + curve), each kind falling back to the other definition
    (with a note) where the folder lacks it."""
    from mtlfast.meta.table import CURVE_FEATURES, DATA_FEATURES

    other = "clean" if want == "original" else "original"
    tasks = sorted(set(by_def[want]) | set(by_def[other]))
    out = {t: {} for t in tasks}
    for kind, names in (("data", DATA_FEATURES), ("curve", CURVE_FEATURES)):
        have = lambda d: tasks and all(any(f in by_def[d].get(t, {}) for f in names) for t in tasks)  # noqa: E731
        src = want if have(want) else other if have(other) else None
        if src is None:
            continue
        if src != want:
            notes.append(f"{want} CV: no {kind} features by the {want} definition in this folder, the {other} "
                         "definition used")
        for t in tasks:
            out[t].update({f: v for f, v in by_def[src].get(t, {}).items() if f in names})
    return {t: d for t, d in out.items() if d}


def compute_table3(folder, protocol, settings=None, search=True, gains=None):
    """Table 3 under both CV protocols from a result folder's CSV files alone (``gains.csv``, ``features.csv``,
    ``curve_features.csv``): what ``analyze`` writes to ``table3.csv`` and the report, and what a test recomputes.

    Returns ``{"rows": mtlfast.report.results.table3_rows(...), "original": original_meta(...), "clean":
    meta_analysis(...), "notes": [...], "features": {definition: task features}}``. ``search=False`` skips the
    best-combination searches (the other rows are the same: same folds)."""
    from mtlfast.meta.analysis import MetaSettings, meta_analysis
    from mtlfast.meta.original import original_meta
    from mtlfast.meta.table import pair_table, read_feature_definitions, read_gains
    from mtlfast.report.results import table3_rows

    folder = Path(folder)
    st = MetaSettings(**(settings or {}))
    if not search:
        st.update(search="none", rfe=False)
    gains = read_gains(folder / "gains.csv") if gains is None else gains
    by_def = read_feature_definitions(folder, protocol)
    notes = []
    feats = {d: _definition_features(by_def, d, notes) for d in ("original", "clean")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        clean = meta_analysis(pair_table(gains, feats["clean"]), st)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        orig = original_meta(gains, feats["original"], st["n_repeats"], st["n_splits"], st["random_state"],
                             search=st["search"] != "none", search_repeats=st["optimistic_repeats"] or st["n_repeats"],
                             outer_repeats=st["outer_repeats"]) if gains and feats["original"] else {"rows": [],
                                                                                                     "notes": []}
    return {"rows": table3_rows(orig.get("table3"), clean.get("table3")), "original": orig, "clean": clean,
            "notes": notes, "features": feats}


def analyze(out_dir, quiet=False, settings=None, protocol=None, machine=None):
    """Analyse a sweep folder and write ``heatmap.png``, ``report.md`` and ``report.html`` into it.

    The folder is either a sweep's output folder (``gains.csv``, ``curves.csv``, ... as the sweep exports them) or
    a **result folder** without a store: ``records.jsonl.gz`` (``python -m mtlfast.store export``) and no
    ``curves.csv``; the records are imported into a temporary store and ``gains.csv`` is recomputed from them
    with the sweep's own code, so the folder needs no training and no ``mtlfast.db``. Either way it writes
    ``gains.csv`` (result folder), ``features.csv`` with both definitions of the data features where it can
    (the sweep's, and the other one computed from the data at the stored paths, else kept from the folder's
    previous features.csv), ``curve_features.csv`` (both definitions), ``table3.csv`` (full precision),
    ``paper_gains.csv`` (when the released logs are at ``$MTLFAST_DATA/eacl2017/logs``), ``pair_table.csv``,
    ``meta.json``, ``original_cv.json``, ``heatmap.png``, ``curves.png``, ``report.md`` and ``report.html``.

    Parameters
    ----------
    out_dir : path
        The sweep output folder.
    quiet : bool
        No progress messages on stderr.
    settings : dict, optional
        Meta-analysis settings (:class:`mtlfast.meta.analysis.MetaSettings`), e.g. ``{"n_repeats": 100}``.
    protocol : {"original", "clean"}, optional
        The definition of the sweep's own features (default: the sweep's protocol from ``config.json``, else
        clean). Table 3 is computed under both CV protocols either way.
    machine : str, optional
        Result folders: the machine of runs.csv rows that have none yet (the others keep theirs).

    Returns
    -------
    Path of ``report.md``.
    """
    import tempfile

    from mtlfast.meta.analysis import SAME_CORPORA, compare_gains, reading_check
    from mtlfast.meta.curves import CURVE_FEATURES
    from mtlfast.meta.original import original_curve_feature_table
    from mtlfast.meta.table import (DATA_FEATURES, curve_feature_table, pair_table, read_csv, read_data_features,
                                    read_gains, read_single_curves)
    from mtlfast.report import Report, heatmap, plot_curves
    from mtlfast.report.results import (TABLE3_COLUMNS, add_gain_matrix, add_noise_section, add_paper_comparison,
                                        add_reading, add_table3)
    from mtlfast.report.sections import add_gain_summary, add_meta_sections

    say = (lambda *a: None) if quiet else (lambda *a: print("analyze:", *a, file=sys.stderr))
    out = Path(out_dir)
    if not out.is_dir():
        raise AnalyzeError(f"{out}: not a folder (expected a sweep output folder)")
    t0 = time.perf_counter()
    notes = []
    budget, predicted = None, {}
    tmpdir = None
    src = out
    stored_config = {}
    if not (out / "mtlfast.db").exists() and (out / RECORDS).exists() and not (out / "curves.csv").exists():
        tmpdir = tempfile.TemporaryDirectory(prefix="mtlfast-analyze-")
        src = Path(tmpdir.name)
        say(f"result folder: records from {out / RECORDS}")
        stored_config = _from_records(out, src)
        (out / "gains.csv").write_bytes((src / "gains.csv").read_bytes())
        _write_runs(out, src, machine)
        (out / "scores.csv").write_bytes((src / "scores.csv").read_bytes())
    try:
        if (src / "gains.csv").exists():
            gains = read_gains(src / "gains.csv")  # measured rows only
            from mtlfast.meta.budget import budget_summary
            from mtlfast.report.figures import predicted_cells

            all_rows = read_csv(src / "gains.csv")[0]  # a budgeted sweep's predicted rows too
            budget, predicted = budget_summary(all_rows), predicted_cells(all_rows)
            for g, r in zip(gains, [r for r in all_rows if (r.get("status") or "").strip().lower() != "predicted"]):
                for c in ("f1_single_all", "f1_single_sd", "n_single_seeds", "beyond_single_noise"):
                    if r.get(c) not in (None, "", "nan"):
                        g[c] = float(r[c])
        elif (src / "scores.csv").exists():
            gains = _gains_from_scores(src / "scores.csv")
            notes.append("gains.csv missing: gains recomputed from scores.csv (final-step test F1, mean over seeds)")
        else:
            raise AnalyzeError(f"{out}: neither gains.csv nor scores.csv found (run `python -m mtlfast.sweep` first)")
        config = stored_config
        if (out / "config.json").exists():
            try:
                config = json.loads((out / "config.json").read_text())
            except json.JSONDecodeError as exc:
                notes.append(f"config.json unreadable ({exc})")
        elif stored_config:
            (out / "config.json").write_text(json.dumps(stored_config, indent=2, sort_keys=True) + "\n")
        protocol = protocol or config.get("protocol") or "clean"
        if protocol not in ("original", "clean"):
            raise AnalyzeError(f"protocol: expected 'original' or 'clean', got {protocol!r}")
        other_name = "clean" if protocol == "original" else "original"

        # --- task features, both definitions, written as the folder's CSVs and read back from them -----------
        data_present = (src / "features.csv").exists()
        if data_present:
            from mtlfast.meta.table import read_prefixed_columns

            previous = read_prefixed_columns(out / "features.csv", DATA_FEATURES) if (out / "features.csv").exists() else {}
            src_feats = read_data_features(src / "features.csv")
            other = _other_data_features(protocol, config, list(src_feats), say, notes)
            _write_features(out, src_feats, protocol, other, previous)
        else:
            notes.append("features.csv missing: the meta-classifier uses the learning-curve features only")
        curves = {}
        if (src / "curves.csv").exists():
            curves = read_single_curves(src / "curves.csv")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                cf = {"original": original_curve_feature_table(curves), "clean": curve_feature_table(curves)}
            notes += sorted({str(w.message) for w in caught})
            rows = [{"task": t, **cf[protocol][t], **{f"{other_name}_{f}": cf[other_name][t][f] for f in CURVE_FEATURES}}
                    for t in sorted(cf[protocol])]
            write_csv(out / "curve_features.csv", rows,
                      ["task", *CURVE_FEATURES, *[f"{other_name}_{f}" for f in CURVE_FEATURES]])
        elif (out / "curve_features.csv").exists() and tmpdir is None:
            notes.append("curves.csv missing: curve features read from curve_features.csv")
        else:
            notes.append("curves.csv missing: no learning-curve features")
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()

    from mtlfast.meta.table import read_feature_definitions

    by_def = read_feature_definitions(out, protocol)
    task_feats = {t: d for t, d in by_def[protocol].items() if d}
    cf = {t: {f: d[f] for f in CURVE_FEATURES if f in d} for t, d in task_feats.items()}
    cf = {t: d for t, d in cf.items() if d}
    table = pair_table(gains, task_feats)
    write_csv(out / "pair_table.csv", table.to_rows(), ["main", "aux", "gain", "label", *table.columns])
    say(f"{len(gains)} gains, {len(task_feats)} tasks with features, {len(table.columns)} columns")
    t1 = time.perf_counter()
    t3 = compute_table3(out, protocol, settings, gains=gains)
    meta, orig = t3["clean"], t3["original"]
    meta_s = time.perf_counter() - t1
    say(f"meta-analysis in {meta_s:.1f} s")
    write_csv(out / TABLE3, t3["rows"], list(TABLE3_COLUMNS))
    (out / "original_cv.json").write_text(json.dumps(jsonable({"protocol": "original", **orig}), indent=1))
    tasks = list(dict.fromkeys([g["main"] for g in gains] + [g["aux"] for g in gains]))
    paper = _paper_gains(out, tasks or sorted(by_def[protocol]), notes, say)

    # --- figures ---------------------------------------------------------------------------------------
    if gains:
        heatmap(gains, out / "heatmap.png", predicted=predicted)
    if curves:
        plot_curves(curves, out / "curves.png")

    # --- report ----------------------------------------------------------------------------------------
    rep = Report("mtlfast sweep report")
    rep.paragraph(f"Sweep folder `{out.name}`. Written by `python -m mtlfast.analyze` from the folder's files "
                  f"({time.strftime('%Y-%m-%d %H:%M:%S')}); protocol of the sweep: **{protocol}**.")
    steps = _resolved_steps(config)
    if steps[0] and steps[0] < 25_000:
        rep.paragraph(f"**Short runs**: {steps[0]:,} single-task / {steps[1]:,} pair steps (the paper: 25,000 / "
                      "50,000). Gains after few steps also reflect how fast a pair learns, not only what a "
                      "converged model gains; check the single-task F1 below before reading them.")
    elif steps[0]:
        rep.paragraph(f"Steps: {steps[0]:,} single-task / {steps[1]:,} pair"
                      + (" (the paper's)." if tuple(steps) == (25_000, 50_000) else "."))
    opt = (config.get("lr"), config.get("rho"), config.get("eps"))
    if all(v is not None for v in opt):
        note = ("PyTorch's defaults, used by the no-argument demo so that few steps train the taggers"
                if tuple(opt) == (1.0, 0.9, 1e-6) else
                "the original work's settings" if tuple(opt) == (0.1, 0.95, 1e-8) else "user-set")
        rep.paragraph(f"Optimiser: Adadelta lr {opt[0]}, rho {opt[1]}, eps {opt[2]} ({note}; the original work "
                      "used lr 0.1, rho 0.95, eps 1e-8).")
    rep.heading("Gains (Figure 1)")
    if budget:
        from mtlfast.meta.budget import budget_paragraph

        rep.paragraph(budget_paragraph(budget))
    if gains:
        add_gain_summary(rep, gains)
        rep.image("heatmap.png", "Figure 1: relative gain (%) of the pair model over the single-task model; rows "
                                 "main task, columns auxiliary task; blue gain, red loss")
        add_gain_matrix(rep, gains, tasks)
        f1s = {g["main"]: g.get("f1_single") for g in gains}
        if any(v is not None for v in f1s.values()):
            rep.table(["task", "single-task F1"], [[t, f1s.get(t)] for t in tasks])
        add_noise_section(rep, gains)
        rows = []
        for g in sorted(gains, key=lambda g: -g["gain"] if g["gain"] == g["gain"] else math.inf)[:10]:  # NaN last
            rows.append([g["main"], g["aux"], g.get("f1_single"), g.get("f1_pair"), g["gain"],
                         g.get("gain_sd", float("nan")), g["label"]])
        rep.paragraph("Largest gains:")
        rep.table(["main", "aux", "F1 single", "F1 pair", "gain %", "gain sd", "label"], rows)
    else:
        rep.paragraph("No gains in this sweep yet.")
    if gains and paper:
        add_paper_comparison(rep, compare_gains(gains, paper, SAME_CORPORA), compare_gains(gains, paper),
                             "the authors' released logs (`python -m mtlfast.reproduce`: single-task F1 at "
                             "50,000 iterations, pair F1 at 100,000; 40 gains and 50 losses), kept in "
                             f"`{PAPER_GAINS}`")
    have = lambda d, names: any(f in v for v in t3["features"][d].values() for f in names)  # noqa: E731
    add_table3(rep, t3["rows"],
               "Original definitions here: " + ("data " if have("original", DATA_FEATURES) else "")
               + ("and curve " if have("original", CURVE_FEATURES) else "") + "features.",
               "Clean definitions: " + ("data " if have("clean", DATA_FEATURES) else "")
               + ("and curve " if have("clean", CURVE_FEATURES) else "") + "features."
               + (" " + "; ".join(t3["notes"]) + "." if t3["notes"] else ""))
    if meta.get("coefficients"):
        add_reading(rep, reading_check(meta["coefficients"]), meta["coefficients"][:10], "clean CV, all features")
    if orig.get("coefficients"):
        add_reading(rep, reading_check(orig["coefficients"]), orig["coefficients"][:10],
                    "the notebook's classifier fitted on all pairs, all features", explain=not meta.get("coefficients"))
    rep.heading("Single-task learning curves")
    if curves:
        rep.image("curves.png", "Single-task training-loss curves (moving average)")
    if cf:
        rep.table(["task", *CURVE_FEATURES], [[t, *[cf[t].get(f, float("nan")) for f in CURVE_FEATURES]]
                                              for t in sorted(cf)], digits=4)
    else:
        rep.paragraph("No curves (curves.csv missing).")
    for d in (protocol, other_name):
        present = [f for f in DATA_FEATURES if any(f in by_def[d].get(t, {}) for t in by_def[d])]
        if present:
            rep.heading(f"Data features, {d} definition" + (" (the sweep's)" if d == protocol else ""), 3)
            rep.table(["task", *present], [[t, *[by_def[d][t].get(f, float("nan")) for f in present]]
                                           for t in sorted(by_def[d]) if by_def[d][t]], digits=4)
    meta["notes"] = notes + meta.get("notes", [])
    from mtlfast.report.original import add_original_cv_section

    add_original_cv_section(rep, orig["rows"], "Notes: " + "; ".join(orig["notes"]) if orig["notes"] else None)
    rep.paragraph("Below: mtlfast's own meta-analysis (the clean protocol's CV) in detail.")
    add_meta_sections(rep, meta)
    rep.heading("Run settings")
    if (out / "runs.csv").exists():
        rows, _ = read_csv(out / "runs.csv")
        kinds = {}
        for r in rows:
            k = kinds.setdefault(r.get("kind", "?"), [0, 0.0, 0])
            k[0] += 1
            try:
                k[1] += float(r.get("seconds") or 0)
            except ValueError:
                pass
            k[2] += r.get("status", "done") in ("done", "finished", "ok", "complete", "completed")
        rep.table(["kind", "runs", "finished", "seconds (sum)"], [[k, v[0], v[2], v[1]] for k, v in kinds.items()],
                  digits=1)
    rep.code(json.dumps(config, indent=2, sort_keys=True) if config else "(config.json missing)")
    rep.code(json.dumps(jsonable({**meta.get("settings", {}), "meta_seconds": round(meta_s, 2),
                                   "total_seconds": round(time.perf_counter() - t0, 2)}), indent=2))
    md = rep.write(out)
    (out / "meta.json").write_text(json.dumps(jsonable(meta), indent=1))
    say(f"wrote {md} and {out / 'report.html'}")
    return md


def build_parser():
    p = Parser(prog=PROG, description="Analyse a sweep folder: gains heatmap, curve features, meta-classifier "
                                      "(Table 3), report.md and report.html, written into the sweep folder.")
    add_out(p, "the sweep folder (holds gains.csv, curves.csv, features.csv, ...); the report is written into it",
            positional_alias=True)
    add_cv_options(p)
    p.add_argument("--protocol", choices=("original", "clean"),
                   help="original: also the notebook's curve features and meta-classifier CV (original_cv.json); "
                        "default: the sweep's protocol from config.json, else clean")
    p.add_argument("--machine", metavar="TEXT",
                   help="result folders (records.jsonl.gz, no store): the machine written into runs.csv for runs "
                        "that have none yet, e.g. 'AMD EPYC (Zen 4) 2 cores, fp32'")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    return p


def main(argv=None):
    from mtlfast.meta.table import TableError

    def body():
        args = build_parser().parse_args(argv)
        out = resolve_out(args)
        print(analyze(out, quiet=args.quiet, settings=cv_settings(args), protocol=args.protocol, machine=args.machine))
        return EXIT_OK

    return run_main(PROG, body, (AnalyzeError, TableError, OSError))


if __name__ == "__main__":
    sys.exit(main())

"""The committed result of issue 18 (``results/eacl2017-public/``): its files agree with each other.

One check, :func:`check_result_folder`, runs on two folders:

- ``committed``: the repository's ``results/eacl2017-public/``; skipped, with the reason, while the sweep's pair
  runs are not all in its store export yet;
- ``synthetic``: a complete stand-in written here into ``tmp_path``: a fake sweep through the real store and gain
  writers (``tests/fakesweep.py``) with three single-task seeds, exported with ``mtlfast.store.transfer``, and
  ``python -m mtlfast.analyze`` run on the export alone (no store, no curves.csv, no training).

What is checked, with code independent of the analysis where it can be: gains.csv against the scores in the store
export (the gain formula and the seed-noise rule written out here), the gain / loss count in report.md,
features.csv against the export's features, curve_features.csv against the export's loss points, Table 3
recomputed from the committed CSVs against table3.csv (1e-9) and table3.csv against report.md, the paper's
numbers against DESIGN.md's. No test here trains.
"""

import gzip
import json
import math
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "results" / "eacl2017-public"
FAST = {"n_repeats": 4, "outer_repeats": 1, "inner_repeats": 1, "optimistic_repeats": 2, "search": "greedy"}
#: DESIGN.md, "The paper's headline numbers": (row of table3.csv, accuracy, F1)
DESIGN_TABLE3 = [("majority baseline", 0.555, None), ("always gain", None, 0.615), ("all features", 0.749, 0.669),
                 ("best data features (optimistic, not nested)", 0.665, 0.542),
                 ("best combination (optimistic, not nested)", 0.785, 0.713)]
CHEAP_ROWS = ("majority baseline", "always gain", "all features", "data features only", "curve features only")


def _read_records(path):
    meta, runs, feats, losses, scores = None, None, None, {}, {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            if "meta" in d:
                meta = d["meta"]
            elif "runs" in d:
                runs = d["runs"]
            elif "features" in d:
                feats = d["features"]
            elif "loss" in d:
                losses[(d["run_id"], d["task"])] = (d["step"], d["loss"])
            elif "scores" in d:
                scores[d["run_id"]] = d["scores"]
    return meta, runs, feats, losses, scores


def _csv(path):
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _num(v):
    return float("nan") if v in ("", "nan", None) else float(v)


def _close(a, b, tol=1e-9):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def pending_reason(folder):
    """Why the folder is not a finished result yet (None when it is)."""
    if not (folder / "records.jsonl.gz").exists():
        return f"{folder}: no records.jsonl.gz (store export) committed yet"
    _meta, runs, *_ = _read_records(folder / "records.jsonl.gz")
    pairs = [r for r in runs if r["kind"] == "pair"]
    done = [r for r in pairs if r["status"] == "done"]
    if not pairs or len(done) < len(pairs):
        return (f"{folder}: the sweep's pair results are not committed yet ({len(done)} of {len(pairs)} pair runs "
                "finished in records.jsonl.gz); run the sweep to the end, export it and run python -m mtlfast.analyze")
    missing = [n for n in ("gains.csv", "features.csv", "curve_features.csv", "table3.csv", "report.md", "meta.json")
               if not (folder / n).exists()]
    if missing:
        return f"{folder}: the pair runs are in, but {missing} are not: run python -m mtlfast.analyze --out {folder}"
    return None


def check_result_folder(folder):
    from mtlfast.analyze import compute_table3
    from mtlfast.meta.curves import CURVE_FEATURES, curve_features, curve_features_original
    from mtlfast.stats import DATA_FEATURES

    meta, runs, feats, losses, scores = _read_records(folder / "records.jsonl.gz")
    config = json.loads((folder / "config.json").read_text())
    protocol = config.get("protocol") or "clean"
    other = "clean" if protocol == "original" else "original"
    assert (folder / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (folder / "mtlfast.db").exists()

    # --- gains.csv against the scores of the export: F1 at the run's last step, test split, f1_micro_no_o ------
    final = {}
    for r in runs:
        if r["status"] != "done":
            continue
        for task, split, step, metric, value in scores[r["run_id"]]:
            if split == "test" and metric == "f1_micro_no_o" and step == r["step"]:
                final[(r["run_id"], task)] = value
    single = {}
    for r in runs:
        if r["kind"] == "single" and r["status"] == "done":
            single.setdefault(r["tasks"], {})[r["seed"]] = final[(r["run_id"], r["tasks"])]
    want = {}
    for r in runs:
        if r["kind"] != "pair" or r["status"] != "done":
            continue
        a, b = r["tasks"].split("+")
        for main, aux in ((a, b), (b, a)):
            fs = single[main][r["seed"]]
            want.setdefault((main, aux), []).append((final[(r["run_id"], main)], fs))
    gains = _csv(folder / "gains.csv")
    assert {(g["main"], g["aux"]) for g in gains} == set(want)
    for g in gains:
        vals = want[(g["main"], g["aux"])]
        gain = float(np.mean([(fp / fs - 1) * 100 for fp, fs in vals]))
        assert _close(_num(g["gain"]), gain), (g["main"], g["aux"])
        assert int(g["label"]) == int(gain > 0)
        if "beyond_single_noise" in g:
            s = list(single[g["main"]].values())
            fp = float(np.mean([v[0] for v in vals]))
            assert _close(_num(g["f1_single_sd"]), float(np.std(s, ddof=1)))
            assert int(float(g["beyond_single_noise"])) == int(abs(fp - np.mean(s)) > 2 * np.std(s, ddof=1))
    md = (folder / "report.md").read_text()
    n_gain = sum(_num(g["gain"]) > 0 for g in gains)
    assert f"**{n_gain} gains and {len(gains) - n_gain} losses**" in md
    lines = md.splitlines()  # the report's gain matrix holds every gain (2 decimals)
    k = next(i for i, ln in enumerate(lines) if ln.startswith("| main \\ aux |"))
    head = lines[k].strip("| ").split(" | ")
    matrix = {}
    for ln in lines[k + 2:]:
        if not ln.startswith("|"):
            break
        cells = ln.strip("| ").split(" | ")
        matrix.update({(cells[0], a): c for a, c in zip(head[1:], cells[1:])})
    for g in gains:
        assert matrix[(g["main"], g["aux"])] == f"{_num(g['gain']):.2f}", (g["main"], g["aux"])

    # --- runs.csv: every run of the export, with its wall time and machine --------------------------------------
    rcsv = {r["run_id"]: r for r in _csv(folder / "runs.csv")}
    assert list(rcsv) == [r["run_id"] for r in runs]
    for r in runs:
        assert rcsv[r["run_id"]]["status"] == r["status"] and _close(_num(rcsv[r["run_id"]]["seconds"]), r["seconds"])
        if r["status"] == "done":
            assert rcsv[r["run_id"]]["machine"], f"runs.csv: no machine for {r['run_id']}"

    # --- features.csv: the sweep's own definition is the export's; the other one is there too -------------------
    fcsv = {r["task"]: r for r in _csv(folder / "features.csv")}
    exported = {}
    for task, name, value in feats:
        exported.setdefault(task, {})[name] = value
    assert set(fcsv) == set(exported)
    for t, d in exported.items():
        for f in DATA_FEATURES:
            assert _close(_num(fcsv[t][f]), float(d[f]), 1e-12), (t, f)
            assert f"{other}_{f}" in fcsv[t], f"features.csv lacks the {other} definition ({other}_{f})"
            assert math.isfinite(_num(fcsv[t][f"{other}_{f}"])), (t, f)

    # --- curve_features.csv: both definitions, from the single-task runs' loss points ---------------------------
    per_task = {}
    for r in runs:
        if r["kind"] == "single" and r["status"] == "done":
            per_task.setdefault(r["tasks"], []).append(dict(zip(*losses[(r["run_id"], r["tasks"])])))
    ccsv = {r["task"]: r for r in _csv(folder / "curve_features.csv")}
    assert set(ccsv) == set(per_task)
    for t, curves in per_task.items():
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        mean = np.array([[c[s] for s in steps] for c in curves]).mean(axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            defs = {"original": curve_features_original(np.array(steps), mean), "clean": curve_features(mean)}
        for f in CURVE_FEATURES:
            assert _close(_num(ccsv[t][f]), defs[protocol][f], 1e-9), (t, f)
            assert _close(_num(ccsv[t][f"{other}_{f}"]), defs[other][f], 1e-9), (t, other, f)

    # --- Table 3: recomputed from the CSVs (the cheap rows: the searches are left out) -----------------------------
    t3 = {r["name"]: r for r in _csv(folder / "table3.csv")}
    settings = {k: v for k, v in json.loads((folder / "meta.json").read_text())["settings"].items()
                if k != "n_splits_used"}
    again = {r["name"]: r for r in compute_table3(folder, protocol, settings, search=False)["rows"]}
    for name in CHEAP_ROWS:
        assert name in t3 and name in again, name
        for k, v in again[name].items():
            if k != "name":
                assert _close(_num(t3[name][k]), v), (name, k, t3[name][k], v)
    for name, acc, f1 in DESIGN_TABLE3:
        assert _close(_num(t3[name]["paper_accuracy"]), acc if acc is not None else math.nan), name
        assert _close(_num(t3[name]["paper_f1"]), f1 if f1 is not None else math.nan), name
    # every cell of table3.csv is in the report's Table 3, as the report rounds it
    for name, r in t3.items():
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {name} | "))
        cells = line.strip("| ").split(" | ")
        for proto, col in (("original", 3), ("clean", 5)):
            acc, f1 = _num(r[f"{proto}_accuracy"]), _num(r[f"{proto}_f1"])
            assert cells[col].startswith(f"{acc:.3f}" if math.isfinite(acc) else "–"), (name, proto, cells[col])
            assert cells[col + 1].startswith(f"{f1:.3f}" if math.isfinite(f1) else "–"), (name, proto)
            sd = _num(r[f"{proto}_accuracy_sd"])
            if math.isfinite(sd) and math.isfinite(acc):
                assert cells[col] == f"{acc:.3f} ± {sd:.3f}"
    return {"gains": len(gains), "table3": t3}


def _add_single_seeds(sweep, truth, n_seeds=3):
    """Two more single-task seeds in the fake sweep's store (F1 and curves shifted a little), as --single-seeds 3."""
    from mtlfast.meta.gains import store_gains, write_gains_csv
    from mtlfast.store import PRIMARY_METRIC, Store
    from mtlfast.train import RunSpec, run_id_for

    store = Store(sweep)
    rng = np.random.default_rng(1)
    steps = 2000
    with store.tx():
        for s in range(1, n_seeds):
            specs = [RunSpec(run_id_for((t,), s), (t,), s, steps) for t in truth["tasks"]]
            store.add_runs(specs)
            for spec in specs:
                (t,) = spec.tasks
                p = truth["params"][t]
                x = np.arange(steps // 10)
                loss = p["a"] * np.log(p["c"] * x + 1) + p["b"] + rng.normal(0, 0.01, len(x))
                for i in range(len(x)):
                    store.add_losses(spec.run_id, (i + 1) * 10, [(t, float(loss[i]))])
                f1 = truth["f1_single"][t] * (1 + rng.normal(0, 0.01))
                store.add_scores(spec.run_id, steps, [(t, "test", PRIMARY_METRIC, f1)])
                store.finish_run(spec.run_id, steps, 1.0)
    write_gains_csv(store_gains(store), sweep / "gains.csv")
    store.export()
    store.close()


def write_synthetic_result(tmp_path):
    """A complete result folder as issue 18 commits it, from a fake sweep: the store export, config.json, a
    runs.csv and a features.csv holding the clean definition (as an earlier analyze with the data wrote it),
    then ``python -m mtlfast.analyze --out`` on it."""
    from fakesweep import write_fake_sweep  # tests/fakesweep.py
    from mtlfast.analyze import main
    from mtlfast.stats import DATA_FEATURES
    from mtlfast.store.transfer import export_store

    sweep, res = tmp_path / "sweep", tmp_path / "result"
    truth = write_fake_sweep(sweep, n_tasks=6)
    _add_single_seeds(sweep, truth)
    res.mkdir()
    export_store(sweep, res / "records.jsonl.gz")
    cfg = json.loads((sweep / "config.json").read_text())
    cfg.update(protocol="original", data=[str(tmp_path / "no-data-here")])
    (res / "config.json").write_text(json.dumps(cfg))
    shutil.copy(sweep / "runs.csv", res / "runs.csv")
    with open(res / "features.csv", "w") as fh:  # the clean definition, as a first analyze with the data left it
        fh.write(",".join(["task", *DATA_FEATURES, *[f"clean_{f}" for f in DATA_FEATURES]]) + "\n")
        for t, d in truth["features"].items():
            fh.write(",".join([t, *[repr(d[f]) for f in DATA_FEATURES],
                               *[repr(d[f] * 1.1 + 0.01) for f in DATA_FEATURES]]) + "\n")
    args = [str(res), "--quiet", "--machine", "fake machine", "--repeats", "4", "--outer-repeats", "1", "--inner-repeats", "1",
            "--optimistic-repeats", "2", "--search", "greedy"]
    assert main(args) == 0
    return res, truth, args


@pytest.fixture(params=["synthetic", "committed"])
def result_folder(request, tmp_path):
    if request.param == "committed":
        reason = pending_reason(COMMITTED)
        if reason:
            pytest.skip(reason)
        return COMMITTED
    return write_synthetic_result(tmp_path)[0]


def test_result_folder_is_consistent(result_folder):
    out = check_result_folder(result_folder)
    assert out["gains"] > 0


def test_synthetic_result_is_regenerated_from_the_committed_files_alone(tmp_path):
    from mtlfast.analyze import main

    res, truth, args = write_synthetic_result(tmp_path)
    assert not (res / "mtlfast.db").exists() and not (res / "curves.csv").exists()
    first = {n: (res / n).read_bytes() for n in ("gains.csv", "features.csv", "curve_features.csv", "table3.csv")}
    md1 = (res / "report.md").read_text()
    shutil.rmtree(tmp_path / "sweep")  # nothing of the sweep is needed
    for n in ("gains.csv", "curve_features.csv", "table3.csv", "report.md", "heatmap.png"):
        (res / n).unlink()
    assert main(args) == 0
    for n, data in first.items():
        assert (res / n).read_bytes() == data, n
    stamp = re.compile(r"\(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)|\"(meta|total)_seconds\": [0-9.]+")
    assert stamp.sub("", (res / "report.md").read_text()) == stamp.sub("", md1)
    # the clean definition was kept from the previous features.csv, and the clean CV used it
    feats = {r["task"]: r for r in _csv(res / "features.csv")}
    assert _close(_num(feats["task0"]["clean_size"]), truth["features"]["task0"]["size"] * 1.1 + 0.01, 1e-12)
    assert "no data features by the clean definition" not in (res / "report.md").read_text()


def test_synthetic_result_sections(tmp_path):
    res, truth, _ = write_synthetic_result(tmp_path)
    md = (res / "report.md").read_text()
    for needle in ("Table 3: the meta-classifier beside the paper's", "original CV acc.", "clean CV F1",
                   "Gains beyond the single-task seed noise", "noise floor of the gain",
                   "Coefficients beside the paper's reading", "have the expected sign",
                   "Data features, original definition (the sweep's)", "Data features, clean definition",
                   "the paper: 40 gains and 50 losses", "Short runs"):
        assert needle in md, needle
    gains = _csv(res / "gains.csv")
    beyond = sum(int(float(g["beyond_single_noise"])) for g in gains)
    assert f"**{beyond} of {len(gains)}** directed gains are beyond it" in md


def test_a_pending_result_folder_says_why(tmp_path):
    from fakesweep import write_fake_sweep  # tests/fakesweep.py
    from mtlfast.store import Store
    from mtlfast.store.transfer import export_store
    from mtlfast.train import RunSpec, run_id_for

    write_fake_sweep(tmp_path / "s", n_tasks=3)
    store = Store(tmp_path / "s")
    with store.tx():
        store.add_runs([RunSpec(run_id_for(("task0", "task1"), 1), ("task0", "task1"), 1, 4000)])
    store.close()
    (tmp_path / "r").mkdir()
    export_store(tmp_path / "s", tmp_path / "r" / "records.jsonl.gz")
    assert "3 of 4 pair runs finished" in pending_reason(tmp_path / "r")
    assert "no records.jsonl.gz" in pending_reason(tmp_path)

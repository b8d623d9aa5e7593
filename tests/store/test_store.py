"""The SQLite store: config refusal, resume bookkeeping, run-id collisions, checkpoint files, CSV export of the
records. Gains from a store (one and several seeds) are tested here too, through :mod:`mtlfast.meta.gains`."""

import csv
import math

import pytest

from mtlfast.config import SweepConfig
from mtlfast.meta.gains import store_gains, write_gains_csv
from mtlfast.store import ConfigMismatch, Store, load_checkpoint, save_checkpoint
from mtlfast.train import RunSpec, run_id_for


def spec(tasks, seed, steps=10):
    return RunSpec(run_id_for(tuple(tasks), seed), tuple(tasks), seed, steps)


def fill(store, f1, seeds=(0,)):
    """f1[(tasks, task)] = value or list per seed."""
    specs = []
    for s in seeds:
        for tasks in (("a",), ("b",), ("a", "b")):
            specs.append(spec(tasks, s))
    store.add_runs(specs)
    for sp in specs:
        store.mark_running(sp.run_id)
        for t in sp.tasks:
            v = f1[(sp.tasks, t)]
            v = v[sp.seed] if isinstance(v, (list, tuple)) else v
            store.add_scores(sp.run_id, 10, [(t, "test", "f1_micro_no_o", v), (t, "test", "accuracy", 0.5)])
            store.add_losses(sp.run_id, 10, [(t, 1.0)])
        store.finish_run(sp.run_id, 10, 1.5)


def test_config_refusal_and_resumable_fields(tmp_path):
    Store(tmp_path, SweepConfig(steps_single=5)).close()
    with pytest.raises(ConfigMismatch, match=r"steps_single: 5 \(stored\) vs 6 \(now\)"):
        Store(tmp_path, SweepConfig(steps_single=6))
    # where/how it runs may change
    Store(tmp_path, SweepConfig(steps_single=5, threads=2, array_size=3, checkpoint_every=7, out="elsewhere")).close()
    # --paper resolves to the same steps as giving them explicitly
    Store(tmp_path / "p", SweepConfig(paper=True)).close()
    Store(tmp_path / "p", SweepConfig(steps_single=25_000, steps_pair=50_000)).close()


def test_gains_one_seed_and_export(tmp_path):
    st = Store(tmp_path, SweepConfig())
    fill(st, {(("a",), "a"): 0.5, (("b",), "b"): 0.8, (("a", "b"), "a"): 0.6, (("a", "b"), "b"): 0.4})
    g = {(r["main"], r["aux"]): r for r in store_gains(st)}
    assert g[("a", "b")]["gain"] == pytest.approx(20.0) and g[("a", "b")]["label"] == 1
    assert g[("b", "a")]["gain"] == pytest.approx(-50.0) and g[("b", "a")]["label"] == 0
    assert (tmp_path / "runs.csv") in st.export() and not (tmp_path / "gains.csv").exists()  # records only
    write_gains_csv(store_gains(st), tmp_path / "gains.csv")
    with open(tmp_path / "gains.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["main", "aux", "f1_single", "f1_pair", "gain", "label"] and len(rows) == 3
    for name, header in [("runs.csv", "run_id,kind,tasks,seed,steps,status,seconds"),
                         ("scores.csv", "run_id,kind,tasks,seed,task,split,step,metric,value"),
                         ("curves.csv", "run_id,kind,tasks,seed,task,step,loss")]:
        assert (tmp_path / name).read_text().splitlines()[0] == header
    assert "a+b@0,pair,a+b,0,10,done,1.5" in (tmp_path / "runs.csv").read_text()


def test_gains_several_seeds_welch(tmp_path):
    st = Store(tmp_path, SweepConfig(seeds=3))
    fill(st, {(("a",), "a"): [0.50, 0.51, 0.49], (("b",), "b"): [0.8, 0.7, 0.9],
              (("a", "b"), "a"): [0.60, 0.61, 0.59], (("a", "b"), "b"): [0.7, 0.9, 0.8]}, seeds=(0, 1, 2))
    g = {(r["main"], r["aux"]): r for r in store_gains(st)}
    ab, ba = g[("a", "b")], g[("b", "a")]
    assert ab["n_seeds"] == 3 and ab["label_beyond_noise"] == 1 and ab["p_value"] < 0.05
    assert ab["gain"] == pytest.approx(sum((p / s - 1) * 100 for p, s in [(.6, .5), (.61, .51), (.59, .49)]) / 3)
    assert ba["label_beyond_noise"] == 0 and ba["gain_sd"] > 0
    write_gains_csv(store_gains(st), tmp_path / "gains.csv")
    assert (tmp_path / "gains.csv").read_text().splitlines()[0] == \
        "main,aux,f1_single,f1_pair,gain,label,gain_sd,n_seeds,label_beyond_noise,p_value," \
        "f1_single_all,f1_single_sd,n_single_seeds,beyond_single_noise"


def test_resume_state_drops_rows_after_checkpoint(tmp_path):
    st = Store(tmp_path, SweepConfig())
    sp = spec(("a",), 0, steps=100)
    st.add_runs([sp])
    st.mark_running(sp.run_id)
    st.add_losses(sp.run_id, 10, [("a", 2.0)])
    st.write_checkpoint(sp.run_id, 10, {"step": 10, "seconds": 1.0})
    st.add_losses(sp.run_id, 20, [("a", 1.0)])
    st.add_scores(sp.run_id, 20, [("a", "dev", "accuracy", 0.3)])
    state = st.resume_state(sp.run_id)
    assert state["step"] == 10
    assert st.db.execute("SELECT step FROM losses").fetchall() == [(10,)]
    assert st.db.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 0
    # no checkpoint: everything of the run goes
    st.checkpoint_path(sp.run_id).unlink()
    assert st.resume_state(sp.run_id) is None
    assert st.db.execute("SELECT COUNT(*) FROM losses").fetchone()[0] == 0
    # writing the same point twice never duplicates
    st.add_losses(sp.run_id, 10, [("a", 2.0)])
    st.add_losses(sp.run_id, 10, [("a", 2.5)])
    assert st.db.execute("SELECT loss FROM losses").fetchall() == [(2.5,)]
    assert not math.isnan(st.runs()[0]["seconds"])


def test_undefined_gain_is_written_as_nan(tmp_path):
    st = Store(tmp_path, SweepConfig())
    fill(st, {(("a",), "a"): 0.0, (("b",), "b"): 0.8, (("a", "b"), "a"): 0.1, (("a", "b"), "b"): 0.8})
    write_gains_csv(store_gains(st), tmp_path / "gains.csv")
    rows = (tmp_path / "gains.csv").read_text().splitlines()
    assert rows[1].startswith("a,b,0.0,0.1,nan,0")
    from mtlfast.meta.table import read_gains

    assert math.isnan(read_gains(tmp_path / "gains.csv")[0]["gain"])  # the analysis reads it


def test_a_run_id_taken_by_another_run_is_refused_not_dropped(tmp_path):
    # A task folder named "a+b" gives its single run the id of the pair run of a and b: INSERT OR IGNORE used to
    # drop one of them silently.
    st = Store(tmp_path, SweepConfig())
    st.add_runs([spec(("a", "b"), 0)])
    clash = RunSpec("a+b@0", ("a+b",), 0, 10)
    with pytest.raises(ValueError, match=r"run id 'a\+b@0' is already taken by another run"):
        st.add_runs([clash])
    assert [r["kind"] for r in st.runs()] == ["pair"]
    st.add_runs([spec(("a", "b"), 0)])  # the same run again: idempotent
    assert len(st.runs()) == 1


def test_features_csv_follows_run_order_and_data_features(tmp_path):
    from mtlfast.stats import DATA_FEATURES

    st = Store(tmp_path, SweepConfig())
    st.add_runs([spec(("zeta",), 0), spec(("alpha",), 0), spec(("zeta", "alpha"), 0)])
    st.set_features("alpha", {"size": 3.0})
    st.set_features("orphan", {"size": 1.0})  # features but no run: last
    st.set_features("zeta", {"size": 2.0, "oov_rate": float("nan")})
    st.export()
    rows = list(csv.reader(open(tmp_path / "features.csv")))
    assert rows[0] == ["task", *DATA_FEATURES]
    assert [r[0] for r in rows[1:]] == ["zeta", "alpha", "orphan"]
    assert rows[1][1] == "2.0" and rows[1][1 + DATA_FEATURES.index("oov_rate")] == ""


def test_checkpoint_files_are_written_atomically(tmp_path, monkeypatch):
    import torch

    path = tmp_path / "c" / "checkpoints" / "run.pt"
    save_checkpoint(path, {"step": 3, "w": torch.arange(4.0)})
    state = load_checkpoint(path)
    assert state["step"] == 3 and torch.equal(state["w"], torch.arange(4.0))

    def broken_save(obj, fh):  # a crash in the middle of writing the new file
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {"step": 4})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 3  # the old checkpoint is intact
    assert len(list(path.parent.iterdir())) == 2  # and the partial file is left beside it
    Store(tmp_path / "c", SweepConfig())  # opening the store clears the interrupted write's leftovers
    assert [p.name for p in path.parent.iterdir()] == ["run.pt"]


def test_a_broken_stats_import_is_not_hidden():
    """store and meta.table used to fall back to a copy of DATA_FEATURES when mtlfast.stats failed to import (and
    the sweep to an empty features.csv); now the import error surfaces."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for module in ("mtlfast.store", "mtlfast.meta.table"):
        code = (f"import sys; sys.modules['mtlfast.stats'] = None\n"
                f"try:\n    import {module}\nexcept ImportError as exc:\n    print('ImportError', exc)\n")
        done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.startswith("ImportError"), (module, done.stdout, done.stderr)

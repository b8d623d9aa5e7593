"""mtlfast.train.memory: the per-run byte estimate against the real state tensors, the available-memory readers
(on a fake /proc and /sys), and the array-size choice with its error.

The state part (parameters + optimiser state) is counted from the model's definition; the oracle here is the
``nbytes`` of the tensors that :func:`mtlfast.train.model.init_run_state` and
:class:`~mtlfast.train.model.ModelArray` really allocate (tolerance 1 %, written down: the estimate is meant to
be exact, the tolerance only keeps a future small bookkeeping tensor from failing the test).
"""

import math

import pytest
import torch

from mtlfast.train import TrainSettings, prepare_inputs
from mtlfast.train.memory import (SAFE_FRACTION, ArrayMemoryError, RunBytes, array_overhead, available_memory,
                                  fit_array, run_bytes, run_bytes_for)
from mtlfast.train.model import ModelArray, init_run_state

TOL = 0.01
TASKS = ["coarse", "entity", "keep"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    from mtlfast.data.synthetic import generate_suite

    root = tmp_path_factory.mktemp("suite")
    generate_suite(root, seed=0)
    return root


@pytest.fixture(scope="module", params=["clean", "original"])
def inputs(request, suite):
    return request.param, prepare_inputs([suite], task_names=TASKS, protocol=request.param)


def _nbytes(state: dict) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


@pytest.mark.parametrize("tasks", [("entity",), ("coarse", "keep")])
def test_one_run_state_equals_real_tensors(inputs, tasks):
    protocol, inp = inputs
    settings = TrainSettings(hidden=16, protocol=protocol)
    state = init_run_state(tasks, inp, settings.hidden, torch.Generator().manual_seed(0), settings.slots, protocol)
    est = run_bytes_for(inp, settings, tasks=tasks)  # heads padded to this run's own label count
    real = _nbytes(state)
    assert est.state == pytest.approx(real, rel=TOL)
    # the embedding part: the table and its optimiser state
    emb_real = sum(_nbytes({k: v}) for k, v in state.items() if k.startswith("emb"))
    assert est.embedding == pytest.approx(emb_real, rel=TOL)


def test_model_array_state_equals_k_runs(inputs):
    protocol, inp = inputs
    settings = TrainSettings(hidden=16, protocol=protocol)
    runs = [("entity",), ("coarse", "keep"), ("keep",)]
    states = [init_run_state(t, inp, 16, torch.Generator().manual_seed(i), 2, protocol) for i, t in enumerate(runs)]
    arr = ModelArray(states, [0, 0, 0])
    real = sum(t.numel() * t.element_size() for t in arr.t.values())
    est = run_bytes_for(inp, settings, tasks=["entity", "coarse", "keep"])  # padded to the array's largest L
    assert 3 * est.state == pytest.approx(real, rel=TOL)


def test_original_keeps_about_five_thirds_of_the_embedding_state():
    clean = run_bytes(76_000, 50, 100, 40, protocol="clean")
    orig = run_bytes(76_000, 50, 100, 40, protocol="original")
    # (1 + 2 slots x 2 accumulators) V E floats against (1 + 2) V E floats (+ the clean emb.last int64 [V])
    assert orig.embedding == 5 * 76_000 * 50 * 4
    assert clean.embedding == 3 * 76_000 * 50 * 4 + 76_000 * 8
    assert orig.embedding / clean.embedding == pytest.approx(5 / 3, abs=0.03)  # "about 1.7x" (issue 16)
    assert orig.state > clean.state and orig.peak == orig.state + max(orig.state, orig.step)


def test_step_bytes_grow_with_batch_and_length():
    a = run_bytes(1000, 50, 100, 10, batch_size=32, max_len=30)
    b = run_bytes(1000, 50, 100, 10, batch_size=64, max_len=30)
    c = run_bytes(1000, 50, 100, 10, batch_size=32, max_len=60)
    assert b.step > a.step and c.step > a.step and b.state == a.state
    # per position at least the bi-LSTM's saved gate activations of both directions (2 x 4H floats)
    assert a.step >= 32 * 30 * 8 * 100 * 4
    with pytest.raises(ValueError, match="protocol"):
        run_bytes(10, 5, 5, 2, protocol="tf")
    with pytest.raises(ValueError, match="vocab_size"):
        run_bytes(0, 5, 5, 2)


def test_overhead_covers_the_longest_evaluated_sentence(inputs):
    import numpy as np

    protocol, inp = inputs
    small = array_overhead(inp, TrainSettings(hidden=16, protocol=protocol, eval_batch_size=8))
    big = array_overhead(inp, TrainSettings(hidden=16, protocol=protocol, eval_batch_size=256))
    if protocol == "clean":  # whole sentences, eval_batch_size of them
        longest = max(int(np.diff(np.asarray(t.splits[s].offsets)).max()) for t in inp.suite.tasks.values()
                      for s in ("dev", "test") if s in t.splits)
        assert big - small >= (256 - 8) * longest * 16 * 16 * 4
    else:  # the original evaluates batch_size sentences cut to max_len
        assert big == small


# ----------------------------------------------------------------------------------------- available memory
def _fake_root(tmp_path, meminfo_kb=None, cgroup=None, files=None):
    (tmp_path / "proc" / "self").mkdir(parents=True)
    if meminfo_kb is not None:
        (tmp_path / "proc" / "meminfo").write_text(
            "".join(f"{k}: {v} kB\n" for k, v in meminfo_kb.items()))
    (tmp_path / "proc" / "self" / "cgroup").write_text(cgroup or "")
    for rel, text in (files or {}).items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_available_memory_reads_memavailable(tmp_path):
    root = _fake_root(tmp_path, {"MemTotal": 8_000_000, "MemFree": 1_000_000, "MemAvailable": 5_000_000})
    assert available_memory(root=root) == (5_000_000 * 1024, "MemAvailable")


def test_available_memory_is_capped_by_a_cgroup_v2_limit(tmp_path):
    root = _fake_root(tmp_path, {"MemAvailable": 5_000_000}, "0::/job\n",
                      {"sys/fs/cgroup/job/memory.max": str(2 << 30), "sys/fs/cgroup/job/memory.current": str(1 << 30)})
    avail, src = available_memory(root=root)
    assert avail == 1 << 30 and "memory.max" in src
    # "max": no limit, MemAvailable stands
    (root / "sys/fs/cgroup/job/memory.max").write_text("max\n")
    assert available_memory(root=root) == (5_000_000 * 1024, "MemAvailable")


def test_available_memory_is_capped_by_a_cgroup_v1_limit(tmp_path):
    root = _fake_root(tmp_path, {"MemAvailable": 5_000_000}, "4:memory:/a/b\n0::/\n",
                      {"sys/fs/cgroup/memory/a/b/memory.limit_in_bytes": str(3 << 30),
                       "sys/fs/cgroup/memory/a/b/memory.usage_in_bytes": str(1 << 30)})
    avail, src = available_memory(root=root)
    assert avail == 2 << 30 and "limit_in_bytes" in src
    # the v1 "no limit" value is not a limit
    (root / "sys/fs/cgroup/memory/a/b/memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert available_memory(root=root)[0] == 5_000_000 * 1024


def test_available_memory_of_this_machine_is_positive():
    avail, src = available_memory()
    assert avail > 0 and src


# --------------------------------------------------------------------------------------------- the array size
def test_fit_array_counts_runs_into_the_safe_fraction():
    per = RunBytes(params=100, optimiser=200, step=50, embedding=250)  # peak 600
    fit = fit_array(100, per, overhead=1000, available=10_000, source="test")
    assert fit.usable == int(10_000 * SAFE_FRACTION)
    assert fit.size == (fit.usable - 1000) // 600 == 10
    assert "10 of 100 runs fit" in fit.reason and "10 arrays" in fit.reason
    # every run fits: one array of all of them
    fit = fit_array(5, per, overhead=1000, available=10_000, source="test")
    assert fit.size == 5 and "all 5 run(s) fit in one array" in fit.reason


def test_fit_array_error_names_need_and_room_and_what_to_reduce():
    per = RunBytes(params=4_000_000, optimiser=8_000_000, step=1_000_000, embedding=11_000_000)
    with pytest.raises(ArrayMemoryError) as info:
        fit_array(10, per, overhead=2_000_000, available=20_000_000, source="MemAvailable")
    msg = str(info.value)
    assert "26.0 MB" in msg  # overhead + 2 x state
    assert "14.0 MB may be used" in msg and "70% of 20.0 MB MemAvailable" in msg
    for what in ("vocabulary", "--emb-dim", "--hidden", "--batch-size", "--protocol clean"):
        assert what in msg
    assert not math.isnan(SAFE_FRACTION)


# ------------------------------------------------------------------------------ the whole estimate, measured
_MEASURE = r'''
import json, sys
import torch
torch.set_num_threads(1)
from mtlfast.train import RunSpec, TrainSettings, prepare_inputs, run_id_for, train_group
from mtlfast.train.memory import array_overhead, run_bytes_for
suite, K, protocol = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tasks = ["coarse", "entity", "keep"]
inputs = prepare_inputs([suite], None, 1000, tasks, protocol=protocol)  # 1000-d: the state dominates
settings = TrainSettings(hidden=32, batch_size=16, protocol=protocol, eval_batch_size=64)
def status(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key))
runs = [(t,) for t in tasks] + [("coarse", "entity"), ("coarse", "keep"), ("entity", "keep")]
specs = [RunSpec(run_id_for(runs[i % 6], i // 6), runs[i % 6], i // 6, 3) for i in range(K)]
train_group([RunSpec("warm-up", ("coarse",), 99, 2)], inputs, settings, lambda e: None)
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak (VmHWM) to the current resident size
train_group(specs, inputs, settings, lambda e: None)
per = run_bytes_for(inputs, settings)
print(json.dumps({"growth": status("VmHWM") - base, "state": per.state, "peak": per.peak,
                  "overhead": array_overhead(inputs, settings)}))
'''


@pytest.mark.parametrize("protocol", ["clean", "original"])
def test_estimate_bounds_the_peak_resident_memory_of_a_real_array(suite, protocol):
    """A fresh process trains an array of 6 runs (1000-d embeddings, 3 steps and the final evaluation); the growth
    of its peak resident memory over a warmed-up baseline must lie between the 6 runs' state (they are all held
    at once) and the estimate the sweep plans with (overhead + 6 x peak per run)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak resident size")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(suite), "6", protocol], capture_output=True, text=True,
                          env=env, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    m = json.loads(done.stdout.strip().splitlines()[-1])
    assert 6 * m["state"] <= m["growth"] <= m["overhead"] + 6 * m["peak"], m

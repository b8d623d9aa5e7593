"""The training engine: a run gives the same numbers alone or inside a model array, and after a resume.

Tolerances (written down): loss points and scores of the same run must agree within rtol 1e-5 / atol 1e-6
between an array of one and an array of three runs (the only differences allowed are float reassociation in
batched kernels); a resumed run likewise.
"""

import numpy as np
import pytest
import torch

from mtlfast.train import (Checkpoint, LossPoints, RunDone, RunSpec, Scores, TrainSettings, prepare_inputs,
                           run_id_for, train_group)
from mtlfast.train import engine
from mtlfast.train.model import ModelArray

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from mtlfast.data.synthetic import generate_suite

    root = tmp_path_factory.mktemp("suite")
    generate_suite(root, seed=0)
    return prepare_inputs([root], task_names=["coarse", "entity", "keep"])


def spec(tasks, steps, seed=0):
    return RunSpec(run_id_for(tuple(tasks), seed), tuple(tasks), seed, steps)


SETTINGS = TrainSettings(hidden=16, batch_size=16, eval_every=10, checkpoint_every=10, eval_batch_size=256)


def collect(specs, inputs, settings=SETTINGS):
    events = []
    train_group(specs, inputs, settings, events.append)
    by_run = {}
    for e in events:
        d = by_run.setdefault(getattr(e, "run_id", None), {"loss": {}, "scores": {}, "ckpt": {}, "done": None})
        if isinstance(e, LossPoints):
            for t, v in e.points:
                d["loss"][(t, e.step)] = v
        elif isinstance(e, Scores):
            for t, sp, m, v in e.rows:
                d["scores"][(t, sp, e.step, m)] = v
        elif isinstance(e, Checkpoint):
            d["ckpt"][e.step] = e.state
        elif isinstance(e, RunDone):
            d["done"] = e.step
    return by_run


def assert_same(a, b):
    assert a["loss"].keys() == b["loss"].keys()
    assert a["scores"].keys() == b["scores"].keys()
    keys = sorted(a["loss"])
    np.testing.assert_allclose([a["loss"][k] for k in keys], [b["loss"][k] for k in keys], rtol=RTOL, atol=ATOL)
    keys = sorted(a["scores"])
    np.testing.assert_allclose([a["scores"][k] for k in keys], [b["scores"][k] for k in keys], rtol=RTOL, atol=ATOL)


def test_run_alone_equals_run_in_array(inputs):
    alone = collect([spec(["entity"], 20)], inputs)
    array = collect([spec(["coarse", "keep"], 30), spec(["entity"], 20), spec(["coarse"], 25)], inputs)
    rid = run_id_for(("entity",), 0)
    assert alone[rid]["done"] == array[rid]["done"] == 20
    assert len(alone[rid]["loss"]) == 2 and len(alone[rid]["scores"]) > 0
    assert_same(alone[rid], array[rid])
    # The pair run alone equals the pair run in the array, after its neighbours left (array compaction).
    pair = collect([spec(["coarse", "keep"], 30)], inputs)
    pid = run_id_for(("coarse", "keep"), 0)
    assert_same(pair[pid], array[pid])
    # Every loss point and score belongs to one of the run's tasks; dev and test both scored.
    assert {t for t, _ in array[pid]["loss"]} <= {"coarse", "keep"}
    assert {(t, sp) for t, sp, _, _ in array[pid]["scores"]} == {(t, sp) for t in ("coarse", "keep") for sp in ("dev", "test")}


def test_resume_from_checkpoint_equals_uninterrupted(inputs):
    full = collect([spec(["coarse", "keep"], 30), spec(["entity"], 20)], inputs)
    pid, eid = run_id_for(("coarse", "keep"), 0), run_id_for(("entity",), 0)
    # Resume the pair from its step-10 checkpoint, in a different array (with a fresh run beside it).
    resumed_spec = spec(["coarse", "keep"], 30)
    resumed_spec.resume = full[pid]["ckpt"][10]
    resumed = collect([spec(["coarse"], 15), resumed_spec], inputs)
    assert resumed[pid]["done"] == 30
    after = {k: v for k, v in full[pid]["loss"].items() if k[1] > 10}
    assert resumed[pid]["loss"].keys() == after.keys()
    assert_same(resumed[pid], {"loss": after, "scores": {k: v for k, v in full[pid]["scores"].items() if k[2] > 10}})
    # Checkpoint states round-trip through torch.save(weights_only) (what the store writes).
    import io

    buf = io.BytesIO()
    torch.save(full[eid]["ckpt"][10], buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert state["step"] == 10 and state["run_id"] == eid


def test_undrawn_head_untouched_and_single_slot_unused(inputs):
    settings = TrainSettings(hidden=16)
    specs = [spec(["coarse", "keep"], 5), spec(["entity"], 5)]
    runs, states = zip(*[engine._start_run(s, inputs, settings) for s in specs])
    runs = list(runs)
    init = [{k: v.clone() for k, v in s.items()} for s in states]
    arr = ModelArray(list(states), [0, 0])
    _, slots = engine._array_step(arr, runs, inputs, settings)
    for k, slot in enumerate(slots):
        other = 1 - slot
        L = init[k]["head_w"].shape[1]
        assert torch.equal(arr.t["head_w"][k, other, :L], init[k]["head_w"][other])
        assert torch.count_nonzero(arr.t["head_w.sq"][k, other]) == 0
        assert torch.count_nonzero(arr.t["head_w.sq"][k, slot]) > 0
        assert not torch.equal(arr.t["w_hh"][k], init[k]["w_hh"])
    assert slots[1] == 0  # a single-task run only ever draws slot 0


def test_rng_streams_depend_only_on_seed_and_tasks():
    a = spec(["x", "y"], 10, seed=3).rng_streams()
    b = spec(["x", "y"], 99, seed=3).rng_streams()
    c = spec(["x", "y"], 10, seed=4).rng_streams()
    assert a[1] == b[1] != c[1]
    assert a[0].integers(1 << 30) == b[0].integers(1 << 30)


def test_generic_embedding_rows_path_equals_fused():
    """The device-generic embedding update (used off-CPU) equals the fused CPU ops of mtlfast.ops."""
    from mtlfast.ops import embedding_rows_update_

    g = torch.Generator().manual_seed(0)
    K, V, E, N = 3, 20, 4, 12
    states = []
    for _ in range(2):
        t = torch.randn(K, V, E, generator=torch.Generator().manual_seed(1))
        states.append([t, torch.zeros_like(t), torch.zeros_like(t), torch.zeros(K, V, dtype=torch.int64)])
    for step in range(1, 6):
        ids = torch.randint(0, V, (K, N), generator=g)
        ids[:, -2:] = -1  # padding
        grad = torch.randn(K, N, E, generator=g)
        for st, generic in zip(states, (False, True)):
            embedding_rows_update_(*st, ids, grad, step, lr=0.1, rho=0.95, eps=1e-8,
                                   backend="reference" if generic else "auto")
    for a, b in zip(*states):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def _record_masks(run_steps, settings, inputs, resume=None):
    """Train ``run_steps`` [(tasks, steps)] with ``train_group`` and return every dropout mask the engine drew,
    by (run id, run step): the run's own [B, T_run, 2H] slice of the array's mask."""
    masks = {}
    original = engine._step_batch

    def recording(arr, runs, inp, st, dropout, lap=engine._no_lap):
        sb = original(arr, runs, inp, st, dropout, lap)
        for k, r in enumerate(runs):
            t = int(sb.lengths[k].max())
            masks[(r.spec.run_id, r.step)] = sb.drop[k, :, :t].clone()
        return sb

    specs = [spec(t, n) for t, n in run_steps]
    if resume is not None:
        specs[0].resume = resume
    events = []
    engine._step_batch = recording
    try:
        train_group(specs, inputs, settings, events.append)
    finally:
        engine._step_batch = original
    return masks, events


def test_dropout_mask_same_alone_in_array_and_after_resume(inputs):
    settings = TrainSettings(hidden=8, batch_size=4, dropout=0.3, checkpoint_every=3, eval_splits=("test",))
    eid = run_id_for(("entity",), 0)
    alone, events = _record_masks([(["entity"], 6)], settings, inputs)
    in_array, _ = _record_masks([(["coarse", "keep"], 7), (["entity"], 6), (["coarse"], 5)], settings, inputs)
    ckpt = next(e.state for e in events if isinstance(e, Checkpoint) and e.step == 3)
    resumed, _ = _record_masks([(["entity"], 6), (["keep"], 4)], settings, inputs, resume=ckpt)
    for step in range(6):
        a = alone[(eid, step)]
        assert (a == 0).any() and (a > 0).any()
        assert torch.equal(in_array[(eid, step)], a)
        if step >= 3:
            assert torch.equal(resumed[(eid, step)], a)
    assert not torch.equal(alone[(eid, 0)][:, :1], alone[(eid, 1)][:, :1])  # a new mask every step


def test_old_checkpoint_refused_where_dropout_changes_numbers(inputs):
    import dataclasses

    full = collect([spec(["entity"], 20)], inputs)
    eid = run_id_for(("entity",), 0)
    old = dict(full[eid]["ckpt"][10], format=1)
    s = spec(["entity"], 20)
    s.resume = old
    with pytest.raises(ValueError, match="has format 1") as err:
        engine._start_run(s, inputs, SETTINGS)  # clean protocol, dropout 0.1
    assert "Retrain the run from step 0" in str(err.value)
    run, _ = engine._start_run(s, inputs, dataclasses.replace(SETTINGS, dropout=0.0))  # no dropout: same numbers
    assert run.step == 10
    s.resume = dict(full[eid]["ckpt"][10], format=99)
    with pytest.raises(ValueError, match="has format 99"):
        engine._start_run(s, inputs, dataclasses.replace(SETTINGS, dropout=0.0))


def test_time_based_checkpoints_resume_exactly_and_stay_cheap(inputs, monkeypatch):
    import dataclasses
    import time as _time

    # checkpoint_seconds tiny, no step interval: every run is checkpointed together, by time; a resume from such a
    # checkpoint (at whatever step it fell) equals the uninterrupted run.
    settings = dataclasses.replace(SETTINGS, checkpoint_every=0, checkpoint_seconds=1e-9)
    full = collect([spec(["coarse", "keep"], 30), spec(["entity"], 20)], inputs, settings)
    pid, eid = run_id_for(("coarse", "keep"), 0), run_id_for(("entity",), 0)
    assert full[pid]["ckpt"] and full[eid]["ckpt"]
    assert 30 not in full[pid]["ckpt"] and 20 not in full[eid]["ckpt"]  # never at a run's final step
    shared = sorted(set(full[pid]["ckpt"]) & set(full[eid]["ckpt"]))
    assert shared == sorted(full[eid]["ckpt"])  # the entity run's checkpoints were written with the pair's
    at = shared[len(shared) // 2]
    resumed_spec = spec(["coarse", "keep"], 30)
    resumed_spec.resume = full[pid]["ckpt"][at]
    resumed = collect([resumed_spec], inputs, settings)
    after = {k: v for k, v in full[pid]["loss"].items() if k[1] > at}
    assert_same(resumed[pid], {"loss": after, "scores": {k: v for k, v in full[pid]["scores"].items() if k[2] > at}})

    # Slow checkpoints are spaced at least 19x their writing time: here each write takes >= 20 ms, so a 60-step
    # run (a few ms per step) checkpoints far less often than every step, and writing stays <= about 5% + one write.
    writes, t0 = [], _time.perf_counter()

    def slow(ev):
        if isinstance(ev, Checkpoint):
            _time.sleep(0.02)
            writes.append(_time.perf_counter())

    train_group([spec(["entity"], 60)], inputs, settings, slow)
    elapsed = _time.perf_counter() - t0
    assert 1 <= len(writes) <= 1 + elapsed / (19 * 0.02)
    assert all(b - a >= 19 * 0.02 for a, b in zip(writes, writes[1:]))
    # Off by default: no checkpoint event without a step or a time interval.
    none = collect([spec(["entity"], 12)], inputs, dataclasses.replace(SETTINGS, checkpoint_every=0))
    assert not none[eid]["ckpt"]

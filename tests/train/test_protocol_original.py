"""The original protocol's encoding, initialisation and evaluation (the training step: test_protocol_step.py).

Oracles: the rules written out from the released code (``dio.py``: lower-casing, ``[GO] … [EOS]``, one
OOV id, label ids fitted on the training file; ``experiment.py``'s ``evaluate``), scikit-learn's
``f1_score(labels=…, average="micro")`` for the F1, and the pure-NumPy twin for the Cython framing.
"""

import math

import numpy as np
import pytest
import torch

from mtlfast.data import load_suite
from mtlfast.data.encode import (ORIG_EOS_ID, ORIG_GO_ID, ORIG_OOV_ID, encode_suite_original, frame_sentences,
                                 frame_sentences_np, has_fast)
from mtlfast.train import TrainSettings, prepare_inputs
from mtlfast.train.engine import original_scores, predict_original
from mtlfast.train.model import init_run_state


def _write_task(root, name, train, test):
    d = root / name
    d.mkdir(parents=True)
    for split, sents in (("train", train), ("test", test)):
        with open(d / f"{split}.tsv", "w", encoding="utf-8") as fh:
            for sent in sents:
                for w, l in sent:
                    fh.write(f"{w}\t{l}\n")
                fh.write("\n")
    return d


@pytest.fixture()
def tiny(tmp_path):
    train = [[("The", "O"), ("Cat", "B-X"), ("sat", "O")], [("New York", "B-X"), ("zzqx", "I-X")]]
    test = [[("the", "O"), ("cat", "B-Y")], [("sat", "I-X")]]
    return _write_task(tmp_path, "t", train, test)


def test_original_encoding_rules(tiny):
    tasks = load_suite([tiny], warn=False)
    vectors = {"the", "cat", "sat"}  # "new_york" and "zzqx" have no vector
    suite = encode_suite_original(tasks, vectors)
    assert suite.framed
    itos = suite.vocab.itos
    assert itos[:4] == ["<pad>", "<go>", "<oov>", "<eos>"] and set(itos[4:]) == vectors
    t = suite.tasks["t"]
    # labels: specials, then the training labels lower-cased in order of first occurrence
    assert t.labels == ["<pad>", "<go>", "<oov>", "<eos>", "o", "b-x", "i-x"]
    assert t.outside_id == 4
    s = suite.vocab.stoi
    tr = t.splits["train"]
    assert tr.offsets.tolist() == [0, 5, 9]
    assert tr.tokens.tolist() == [ORIG_GO_ID, s["the"], s["cat"], s["sat"], ORIG_EOS_ID,
                                  ORIG_GO_ID, ORIG_OOV_ID, ORIG_OOV_ID, ORIG_EOS_ID]  # one shared OOV row
    assert tr.tags.tolist() == [1, 4, 5, 4, 3, 1, 5, 6, 3]
    te = t.splits["test"]
    assert te.tags.tolist() == [1, 4, ORIG_OOV_ID, 3, 1, 6, 3]  # unseen test label "b-y" -> OOV
    # without vectors, the training words get rows and test-only words are OOV
    suite2 = encode_suite_original(tasks, None)
    assert set(suite2.vocab.itos[4:]) == {"the", "cat", "sat", "new_york", "zzqx"}


def test_frame_sentences_compiled_equals_numpy():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 7, size=50)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = rng.integers(4, 100, size=int(offsets[-1])).astype(np.int32)
    a = frame_sentences(ids, offsets, 1, 3)
    b = frame_sentences_np(ids, offsets, 1, 3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert (np.diff(a[1]) == lengths + 2).all()
    if not has_fast():
        pytest.skip("compiled helpers not built: only the NumPy twin ran")


def test_original_init(tiny):
    with pytest.warns(Warning):  # the test split's unseen label
        inputs = prepare_inputs([tiny], emb_dim=5, protocol="original")
    H, E = 7, 5
    st = init_run_state(("t",), inputs, H, torch.Generator().manual_seed(0), protocol="original")
    k = math.sqrt(3.0 / (E + H))  # TF 0.12 uniform_unit_scaling_initializer over the [E+H, 4H] matrix
    for name in ("w_ih", "w_hh"):
        w = st[name]
        assert float(w.abs().max()) <= k and float(w.abs().max()) > 0.8 * k
    bias = st["bias"]
    assert torch.equal(bias[:, H : 2 * H], torch.ones(2, H))  # forget_bias 1.0 (gate order i, f, g, o)
    assert float(bias[:, :H].abs().max()) == 0.0 and float(bias[:, 2 * H :].abs().max()) == 0.0
    n = inputs.n_labels("t")
    hb = st["head_b"][0, :n]
    assert float(hb.abs().max()) <= math.sqrt(6.0 / (1 + n)) and float(hb.abs().max()) > 0  # Xavier head bias
    assert st["emb.sq"].shape == (2,) + tuple(st["emb"].shape)  # one optimiser state per task slot
    assert "emb.last" not in st
    assert float(st["emb"][0].abs().max()) == 0.0  # PAD
    assert float(st["emb"][1:4].abs().min()) > 0  # GO, OOV, EOS: drawn rows


def test_original_scores_equal_sklearn():
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 9, size=400)
    pred = rng.integers(0, 9, size=400)
    for outside in (5, -1):
        labels = [c for c in range(9) if c > 3 and c != outside]
        got = original_scores(gold, pred, outside)
        assert got["f1_micro_no_o"] == pytest.approx(sklearn.f1_score(gold, pred, labels=labels, average="micro"))
        assert got["precision"] == pytest.approx(sklearn.precision_score(gold, pred, labels=labels, average="micro"))
        assert got["recall"] == pytest.approx(sklearn.recall_score(gold, pred, labels=labels, average="micro"))
        assert got["accuracy"] == pytest.approx(sklearn.accuracy_score(gold, pred))


def test_original_evaluation_positions(tmp_path):
    """Batches of batch_size in file order, the remainder dropped, positions 1 .. len-2 of each sentence cut
    to max_len (so GO, EOS and the words past max_len - 2 are never scored)."""
    rng = np.random.default_rng(2)
    sents = [[(f"w{rng.integers(20)}", "X" if rng.random() < 0.5 else "O") for _ in range(rng.integers(1, 9))]
             for _ in range(11)]
    d = _write_task(tmp_path, "e", sents, sents)
    inputs = prepare_inputs([d], emb_dim=4, protocol="original")
    settings = TrainSettings(hidden=3, batch_size=4, max_len=6, protocol="original")
    st = init_run_state(("e",), inputs, 3, torch.Generator().manual_seed(0), protocol="original")
    params = {k: v[None] for k, v in st.items()}
    split = inputs.suite.tasks["e"].splits["test"]
    gold, pred = predict_original(params, split, 0, inputs.n_labels("e"), settings)
    kept = sents[: (len(sents) // 4) * 4]  # 2 full batches of 4; the last 3 sentences are dropped
    labels = inputs.suite.tasks["e"].labels
    assert [labels[g] for g in gold] == [l.lower() for s in kept for _, l in s[: settings.max_len - 2]]
    assert len(pred) == len(gold)


def test_protocol_defaults_and_refusals():
    from mtlfast.config import ConfigError, build_config

    assert build_config().protocol == "clean"  # the generated demo keeps its settings
    assert build_config(flag_values={"data": ["x"]}).protocol == "original"
    assert build_config(flag_values={"paper": True}).protocol == "original"
    assert build_config(flag_values={"paper_logs": True}).protocol == "original"
    assert build_config(flag_values={"data": ["x"], "protocol": "clean"}).protocol == "clean"
    assert build_config(flag_values={"protocol": "original"}).protocol == "original"
    with pytest.raises(ConfigError, match="--paper runs the original protocol"):
        build_config(flag_values={"paper": True, "protocol": "clean"})
    with pytest.raises(ConfigError, match="'original' or 'clean'"):
        build_config(flag_values={"protocol": "tf"})
    cfg = build_config(flag_values={"data": ["x"]})
    assert cfg.science()["protocol"] == "original"  # part of what a resume must agree on
    assert TrainSettings.from_config(cfg).protocol == "original"

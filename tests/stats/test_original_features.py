"""The original protocol's data features (mtlfast.stats.original) against the notebook's way, written out here
independently: the task files read as dio.read_two_cols_data reads them, a small dio-style vectoriser
(specials, fit in order of first occurrence, GO/EOS, pad/cut to 30), and the feature cell of experiments.ipynb
with scikit-learn's CountVectorizer, scipy.sparse.linalg.norm, scipy.stats.entropy and its JSD function."""

import math
import random
from collections import Counter

import numpy as np
import pytest
import scipy.sparse.linalg
from scipy.stats import entropy
from sklearn.feature_extraction.text import CountVectorizer

from mtlfast.data import load_suite
from mtlfast.stats.original import (ORIGINAL_VOC_LEN, original_suite_features, original_task_features,
                                    padded_matrix, original_word_index)

SPECIAL = {"<PAD>": 0, "<GO>": 1, "<OOV>": 2, "<EOS>": 3}


# ---- the oracle ------------------------------------------------------------------------------------------
def _read_two_cols(path):
    """dio.read_two_cols_data: lower-cased lines, the last field is the label, the rest joined with '_'."""
    sents, ins, outs = [], [], []
    for line in open(path, encoding="utf-8"):
        line = line.strip().lower()
        if not line:
            if ins and outs:
                sents.append((ins, outs))
            ins, outs = [], []
        else:
            w, lbl = line.rsplit(maxsplit=1)
            ins.append("_".join(w.split()))
            outs.append(lbl)
    if ins and outs:
        sents.append((ins, outs))
    return [s[0] for s in sents], [s[1] for s in sents]


def _fit(mapper, seqs):
    for seq in seqs:
        for item in seq:
            if item not in mapper:
                mapper[item] = len(mapper)
    return mapper


def _transform(mapper, seqs, pad_len=30):
    out = []
    for seq in seqs:
        ex = [mapper["<GO>"]] + [mapper.get(i, mapper["<OOV>"]) for i in seq] + [mapper["<EOS>"]]
        if len(ex) < pad_len:
            ex = ex + [mapper["<PAD>"]] * (pad_len - len(ex))
        out.append(ex[:pad_len])
    return np.array(out)


def _JSD(P, Q):
    _P = P / np.linalg.norm(P, ord=1)
    _Q = Q / np.linalg.norm(Q, ord=1)
    _M = 0.5 * (_P + _Q)
    return 0.5 * (entropy(_P, _M) + entropy(_Q, _M))


def _notebook_features(folders, voc, bug, voc_len):
    """{task: features}: the notebook's cells 2-11 for the task folders (train = 'train', dev = test.tsv)."""
    data = {}
    in_map = dict(SPECIAL)
    out_maps = {}
    for name, folder in folders.items():  # read_data: fit the input vectoriser on each training file in turn
        tr_in, tr_out = _read_two_cols(folder / "train.tsv")
        te_in, te_out = _read_two_cols(folder / "test.tsv")
        data[name] = (tr_in, tr_out, te_in, te_out)
        _fit(in_map, tr_in)
        out_maps[name] = _fit(dict(SPECIAL), tr_out)
    res = {}
    for name, (tr_in, tr_out, te_in, te_out) in data.items():
        x = _transform(in_map, tr_in)
        y = _transform(out_maps[name], tr_out)
        bow = CountVectorizer().fit_transform([" ".join(s) for s in tr_in])
        x_dev = _transform(out_maps[name], te_out) if bug else _transform(in_map, te_in)
        c, c_dev = Counter(x.flat), Counter(x_dev.flat)
        n = voc_len if voc_len else len(in_map)
        jsd = _JSD(np.array([c[i] for i in range(n)]), np.array([c_dev[i] for i in range(n)]))
        labels = [v for v in y.flat if v > 3]
        tokens = [w for w in x.flat if w > 1]
        all_words = [w for s in tr_in for w in s]
        res[name] = {
            "size": x.shape[0],
            "n_labels": len(set(out_maps[name].values())) - 4,
            "tokens_per_type": len(tokens) / len(set(tokens)),
            "oov_rate": (len([w for w in all_words if w not in voc]) / len(all_words) * 100) if voc else math.nan,
            "label_entropy": entropy([cnt for _, cnt in Counter(labels).items()]),
            "frobenius_norm": scipy.sparse.linalg.norm(bow, ord="fro"),
            "jsd_train_test": jsd,
        }
    return res


# ---- synthetic tasks -------------------------------------------------------------------------------------
def _write_task(folder, seed, labels, test_extra_label=False):
    rng = random.Random(seed)
    words = ["The", "the", "cat", "Cat", "a", "I", "sat", "on", "mat", ".", ",", "don't", "New York", "x-ray",
             "naïve", "ÉCOLE", "dog", "42", "b2b", "_", "rare%d" % seed]
    folder.mkdir(parents=True)
    for split, n in (("train", 40), ("test", 15)):
        lines = []
        for k in range(n):
            length = rng.choice([1, 3, 7, 28, 29, 30, 35]) if k % 5 == 0 else rng.randint(1, 12)
            for _ in range(length):
                w = rng.choice(words) if split == "train" else rng.choice(words + ["unseen", "Zebra"])
                lab = rng.choice(labels)
                if split == "test" and test_extra_label and rng.random() < 0.1:
                    lab = "NEW"
                lines.append(f"{w}\t{lab}")
            lines.append("")
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture()
def synthetic_suite(tmp_path):
    folders = {}
    for i, (name, labels) in enumerate((("t1", ["O", "B-X", "I-X", "o"]), ("t2", ["NN", "VB", "DT", "Nn"]),
                                        ("t3", ["KEEP", "DEL"]))):
        _write_task(tmp_path / name, i, labels, test_extra_label=(i == 1))
        folders[name] = tmp_path / name
    return folders


@pytest.mark.parametrize("bug,voc_len", [(False, None), (True, None), (True, 12), (False, 9)])
def test_original_features_equal_the_notebook_way(synthetic_suite, bug, voc_len):
    voc = {"the", "cat", "sat", "on", "a", ".", ",", "new_york", "naïve", "dog"}
    tasks = load_suite(list(synthetic_suite.values()), warn=False)
    mode = "train_words_vs_test_labels" if bug else "train_words_vs_test_words"
    got = original_suite_features(tasks, voc, jsd=mode, voc_len=voc_len)
    want = _notebook_features(synthetic_suite, voc, bug, voc_len or (ORIGINAL_VOC_LEN if bug else None))
    assert list(got) == list(want)
    for t in want:
        for k, v in want[t].items():
            assert got[t][k] == pytest.approx(v, rel=1e-12, abs=1e-15), (t, k)


def test_padded_matrix_cuts_and_keeps_eos_like_dio():
    index = {"<PAD>": 0, "<GO>": 1, "<OOV>": 2, "<EOS>": 3, "a": 4}
    sents = [["a"] * 28, ["a"] * 29, ["A", "b"], []]
    m = padded_matrix(sents, index)
    np.testing.assert_array_equal(m, _transform(index, [[w.lower() for w in s] for s in sents]))
    assert m[0, 29] == 3 and 3 not in m[1] and m[1, 29] == 4  # 28 words keep EOS; 29 words: GO + 29 words
    assert m[2, :4].tolist() == [1, 4, 2, 3]


def test_word_ids_follow_the_suite_order_and_the_single_task_default(synthetic_suite):
    tasks = load_suite(list(synthetic_suite.values()), warn=False)
    idx = original_word_index(tasks)
    assert list(idx)[:4] == ["<PAD>", "<GO>", "<OOV>", "<EOS>"]
    first = _read_two_cols(synthetic_suite["t1"] / "train.tsv")[0][0][0]
    assert idx[first] == 4
    alone = original_task_features(tasks[2])  # its own vocabulary: every feature but the JSD's V is the same
    suite = original_suite_features(tasks)["t3"]
    for k in ("size", "n_labels", "tokens_per_type", "label_entropy", "frobenius_norm"):
        assert alone[k] == suite[k]
    assert math.isnan(alone["oov_rate"])
    with pytest.raises(ValueError, match="jsd: expected one of"):
        original_task_features(tasks[0], jsd="words")


@pytest.mark.shared_data
def test_original_features_on_real_tasks_with_emb_voc(shared_data):
    names = ["key", "com", "mwe"]
    folders = {n: shared_data / n for n in names}
    voc_path = shared_data / "eacl2017" / "emb_voc.txt"
    voc = set(line.strip() for line in open(voc_path, encoding="utf-8"))
    tasks = load_suite(list(folders.values()), warn=False)
    for bug in (False, True):
        got = original_suite_features(tasks, voc_path, jsd="train_words_vs_test_labels" if bug else
                                      "train_words_vs_test_words")
        want = _notebook_features(folders, voc, bug, ORIGINAL_VOC_LEN if bug else None)
        for t in names:
            for k, v in want[t].items():
                assert got[t][k] == pytest.approx(v, rel=1e-12), (t, k, bug)


def test_sweep_with_the_original_protocol_writes_the_original_data_features(tmp_path):
    """A --data sweep (original protocol by default) stores these features in features.csv, not the clean ones."""
    from mtlfast.data.synthetic import generate_suite
    from mtlfast.meta.table import read_data_features
    from mtlfast.stats import task_features
    from mtlfast.sweep import main

    generate_suite(tmp_path / "suite", seed=0)
    names = ["coarse", "entity", "keep"]
    out = tmp_path / "out"
    assert main(["--data", str(tmp_path / "suite"), "--tasks", *names, "--steps-single", "10", "--steps-pair", "10",
                 "--eval-every", "0", "--hidden", "8", "--batch-size", "8", "--threads", "1", "--no-progress",
                 "--out", str(out)]) == 0
    got = read_data_features(out / "features.csv")
    tasks = load_suite([tmp_path / "suite" / n for n in names], warn=False)
    want = original_suite_features(tasks)
    for t in tasks:
        for k, v in want[t.name].items():
            if math.isnan(v):
                assert math.isnan(got[t.name][k])
            else:
                assert got[t.name][k] == pytest.approx(v, rel=1e-12), (t.name, k)
    clean = task_features(tasks[0])
    assert got[tasks[0].name]["tokens_per_type"] != pytest.approx(clean["tokens_per_type"], rel=1e-6)

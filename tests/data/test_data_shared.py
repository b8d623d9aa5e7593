"""The ten real tasks of ../shared/data: sizes must match MANIFEST.md (parsed from the manifest itself)."""

import re
import warnings

import numpy as np
import pytest

from mtlfast.data import encode_suite, load_suite, make_batch

pytestmark = pytest.mark.shared_data

TASKS = ("ccg", "chu", "com", "fnt", "pos", "hyp", "key", "mwe", "sem", "str")


def manifest_sizes(text: str) -> dict:
    """{task: {"train": (sentences, tokens), "dev": ..., "test": ..., "labels": n}} from the manifest table."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 10 or cells[0] not in TASKS:
            continue
        num = lambda s: int(s.replace(",", ""))
        row = {}
        for split, cell in zip(("train", "dev", "test"), cells[4:7]):
            m = re.fullmatch(r"([\d,]+) / ([\d,]+)", cell)
            row[split] = (num(m.group(1)), num(m.group(2)))
        row["labels"] = num(re.match(r"[\d,]+", cells[7]).group(0))
        out[cells[0]] = row
    return out


@pytest.fixture(scope="module")
def real(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ccg/fnt/chu/sem have dev/test labels unseen in train (warned)
        tasks = load_suite(shared_data)
    return shared_data, tasks


def test_all_ten_tasks_match_manifest(real):
    root, tasks = real
    expected = manifest_sizes((root / "MANIFEST.md").read_text(encoding="utf-8"))
    assert sorted(expected) == sorted(TASKS)
    by_name = {t.name: t for t in tasks}
    assert sorted(set(TASKS) - set(by_name)) == []
    for name in TASKS:
        t = by_name[name]
        for split in ("train", "dev", "test"):
            sp = t.splits[split]
            assert (sp.n_sentences, sp.n_tokens) == expected[name][split], (name, split)
        assert len(t.labels) == expected[name]["labels"], name
        assert list(t.labels) == (root / name / "labels.txt").read_text(encoding="utf-8").split("\n")[:-1]


def test_real_suite_encodes_and_batches(real):
    _, tasks = real
    suite = encode_suite(tasks)
    pos = suite.tasks["pos"].splits["train"]
    assert pos.n_sentences == 12544 and pos.n_tokens == 204577
    assert suite.tasks["com"].outside_id == -1 and suite.tasks["chu"].labels[suite.tasks["chu"].outside_id] == "O"
    idx = np.random.default_rng(0).integers(0, pos.n_sentences, 32)
    tok, tag, lengths = make_batch(pos, idx, max_len=30)
    assert tok.shape == (32, int(lengths.max())) and lengths.max() <= 30
    first = [w.lower() for w in tasks[[t.name for t in tasks].index("pos")].train.tokens[int(idx[0])][:30]]
    assert [suite.vocab.itos[i] for i in tok[0, : lengths[0]]] == first

"""The generated default suite: deterministic, well-formed, sized as documented, internally consistent."""

import hashlib
import time
import warnings

import pytest

from mtlfast.data import encode_suite, load_suite
from mtlfast.data import synthetic as S


def digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def suite0(tmp_path_factory):
    out = tmp_path_factory.mktemp("s0")
    start = time.perf_counter()
    paths = S.generate_suite(out, seed=0)
    return out, paths, time.perf_counter() - start


def test_same_seed_same_bytes_other_seed_differs(suite0, tmp_path):
    out, paths, _ = suite0
    again = S.generate_suite(tmp_path / "again", seed=0)
    assert [p.name for p in again] == [p.name for p in paths]
    assert digest(out) == digest(tmp_path / "again")
    S.generate_suite(tmp_path / "other", seed=1)
    assert digest(out) != digest(tmp_path / "other")


def test_layout_sizes_and_labels(suite0):
    out, paths, seconds = suite0
    assert seconds < 20
    assert (out / "README.txt").read_text().startswith("mtlfast generated default suite")
    names = sorted(n for n, _ in S.TASKS)
    assert [p.name for p in paths] == names and len(names) >= 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unseen-label warning expected... except possibly rare labels
        try:
            tasks = load_suite(out)
        except Warning:
            tasks = None
    if tasks is None:
        tasks = load_suite(out, warn=False)
    by_name = {t.name: t for t in tasks}
    expected_labels = {"fine": 22, "coarse": 7, "chunk": 6, "next": 8, "keep": 2, "entity": 3, "other": 6}
    for name, n_train in S.TASKS:
        t = by_name[name]
        assert t.train.n_sentences == n_train
        assert t.dev.n_sentences == S.N_DEV and t.test.n_sentences == S.N_TEST
        assert len(t.labels) == expected_labels[name], (name, t.labels)
        assert (out / name / "labels.txt").read_text().split() == list(t.labels)
        for sp in t.splits.values():
            assert all(S.MIN_LEN <= len(s) <= S.MAX_LEN for s in sp.tokens)
    total_train = sum(n for _, n in S.TASKS)
    assert 5000 <= total_train <= 10000  # small enough for the default sweep
    vocab = encode_suite(tasks).vocab
    assert 500 <= len(vocab) <= 5000
    # different sizes and label counts
    assert len({n for _, n in S.TASKS}) == len(S.TASKS)
    assert len(set(expected_labels.values())) >= 5


def test_views_of_the_shared_process_are_consistent(suite0):
    out, _, _ = suite0
    tasks = {t.name: t for t in load_suite(out, warn=False)}
    for tags in tasks["chunk"].train.tags:
        prev = "O"
        for t in tags:
            if t.startswith("I-"):
                assert prev[2:] == t[2:] and prev != "O"
            prev = t
    for tags in tasks["entity"].train.tags:
        assert tags[0] != "I-ENT"
        assert all(not (a == "O" and b == "I-ENT") for a, b in zip(tags, tags[1:]))
    for tags in tasks["next"].train.tags:
        assert tags[-1] == "END" and "END" not in tags[:-1]
        assert tags[-2] == "PUNCT"  # every sentence ends with punctuation
    for toks, tags in zip(tasks["fine"].train.tokens, tasks["fine"].train.tags):
        assert tags[-1].startswith("PUNCT") and toks[-1] in ".!,;"
    ent = [w for toks, tags in zip(tasks["entity"].train.tokens, tasks["entity"].train.tags)
           for w, t in zip(toks, tags) if t != "O"]
    # entities are the "proper noun" states, whose own words are capitalised (a few shared words are not)
    assert len(ent) > 50 and sum(w[0].isupper() for w in ent) > 0.8 * len(ent)
    # the unrelated task labels the same words with another partition: its vocabulary overlaps the rest
    other_words = {w.lower() for s in tasks["other"].train.tokens for w in s}
    fine_words = {w.lower() for s in tasks["fine"].train.tokens for w in s}
    assert len(other_words & fine_words) > 0.5 * len(other_words)
    keep = [t for s in tasks["keep"].train.tags for t in s]
    assert 0.3 < keep.count("KEEP") / len(keep) < 0.8

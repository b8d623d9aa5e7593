"""mtlfast.stats against independent oracles (SciPy, scikit-learn, plain Python), to 1e-9 relative.

Oracles (written here, independent of both the Numba code and ``mtlfast.stats.reference``):
entropy = ``scipy.stats.entropy``; JSD = ``scipy.spatial.distance.jensenshannon(p, q) ** 2``; Frobenius =
``CountVectorizer(analyzer=lower-cased tokens)`` + ``scipy.sparse.linalg.norm``; OOV rate and tokens/types
in plain Python. Real tasks come from the ``shared_data`` fixture (skipped when absent); edge cases and
random corpora are generated here.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.sparse.linalg import norm as sparse_norm
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy
from sklearn.feature_extraction.text import CountVectorizer

import mtlfast.stats as stats
from mtlfast.stats import DATA_FEATURES, folder_features, reference_task_features, task_features
from mtlfast.stats import _io
from mtlfast.stats.__main__ import main as stats_main

REL = 1e-9
TASKS = ("ccg", "chu", "com", "fnt", "hyp", "key", "mwe", "pos", "sem", "str")


def make_task(train_tokens, train_tags, test_tokens, name="t"):
    return SimpleNamespace(
        name=name,
        train=SimpleNamespace(tokens=train_tokens, tags=train_tags),
        test=SimpleNamespace(tokens=test_tokens, tags=[["O"] * len(s) for s in test_tokens]),
    )


def oracles(task, words=None, bases=(None,)):
    """The seven features the SciPy / scikit-learn / plain-Python way, one dict per logarithm base."""
    train, test = task.train.tokens, task.test.tokens
    n_tokens = sum(len(s) for s in train)
    terms = {w.lower() for s in train for w in s}
    labels = {}
    for s in task.train.tags:
        for t in s:
            labels[t] = labels.get(t, 0) + 1
    vec = CountVectorizer(analyzer=lambda s: [w.lower() for w in s], lowercase=False)
    matrix = vec.fit_transform(list(train) + list(test))
    p = np.asarray(matrix[: len(train)].sum(axis=0)).ravel()
    q = np.asarray(matrix[len(train):].sum(axis=0)).ravel()
    oov = math.nan
    if words is not None:
        oov = 100.0 * sum(1 for s in train for w in s if w.lower() not in words) / n_tokens
    common = {
        "size": len(train),
        "n_labels": len(labels),
        "tokens_per_type": n_tokens / len(terms),
        "oov_rate": oov,
        "frobenius_norm": sparse_norm(matrix[: len(train)]),
    }
    return [
        {
            **common,
            "label_entropy": entropy(list(labels.values()), base=base),
            "jsd_train_test": jensenshannon(p, q, base=base) ** 2 if q.sum() else math.nan,
        }
        for base in bases
    ]


def oracle(task, words=None, base=None):
    return oracles(task, words, (base,))[0]


def assert_features(got, expected, rel=REL, abs_=0.0):
    assert tuple(got) == DATA_FEATURES
    for key in DATA_FEATURES:
        assert got[key] == pytest.approx(expected[key], rel=rel, abs=abs_, nan_ok=True), key
    assert isinstance(got["size"], int) and isinstance(got["n_labels"], int)


# --------------------------------------------------------------------------------------------------
# Real data: every task of ../shared/data, with the shared GloVe vocabulary for the OOV rate
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def glove_words(shared_data):
    path = shared_data / "embeddings" / "glove.6B.50d.trimmed.txt"
    if not path.exists():
        pytest.skip(f"GloVe file not found at {path}")
    with open(path, encoding="utf-8") as handle:
        return {line.split(" ", 1)[0] for line in handle}


@pytest.fixture(scope="module")
def embeddings(glove_words):
    # The shape of mtlfast.data.Embeddings that task_features reads: an object with .index.
    return SimpleNamespace(index=dict.fromkeys(glove_words, 0))


@pytest.mark.shared_data
@pytest.mark.parametrize("name", TASKS)
def test_real_task_against_oracles(shared_data, embeddings, glove_words, name):
    folder = shared_data / name
    if not (folder / "train.tsv").exists():
        pytest.skip(f"task folder {folder} not found")
    task = _io.load_tasks([folder])[0]
    got = task_features(task, embeddings)
    expected_e, expected_2 = oracles(task, glove_words, bases=(None, 2))
    assert_features(got, expected_e)
    assert_features(task_features(task, embeddings, base=2), expected_2)
    assert 0 < got["oov_rate"] < 5  # MANIFEST: the trimmed vectors cover 96.6-99.3 % of training tokens
    # The byte-level fast path (CLI) gives exactly the same numbers as the path through the data layer.
    assert folder_features(folder, embeddings) == got


@pytest.mark.shared_data
def test_reference_matches_on_one_real_task(shared_data, embeddings):
    folder = shared_data / "mwe"
    if not (folder / "train.tsv").exists():
        pytest.skip(f"task folder {folder} not found")
    task = _io.load_tasks([folder])[0]
    assert_features(reference_task_features(task, embeddings), task_features(task, embeddings))


# --------------------------------------------------------------------------------------------------
# Generated edge cases
# --------------------------------------------------------------------------------------------------

EDGE_CASES = {
    "one_sentence": make_task([["The", "cat", "saw", "the", "Cat"]], [["D", "N", "V", "D", "N"]], [["a", "cat"]]),
    "one_token": make_task([["x"]], [["O"]], [["x"]]),
    "one_label": make_task([["a", "b"], ["b", "c", "c"]], [["O", "O"], ["O", "O", "O"]], [["c", "d"]]),
    "disjoint_vocabularies": make_task([["a", "b", "b"], ["c"]], [["X", "Y", "Y"], ["X"]], [["d", "E"], ["f"]]),
    "identical_distributions": make_task([["a", "b", "a"], ["c"]], [["X", "Y", "X"], ["Z"]], [["a", "b", "a"], ["c"]]),
    "case_folding": make_task([["The", "THE", "the"], ["tHe"]], [["B", "b", "B"], ["b"]], [["the"]]),
    "unicode": make_task(
        [["ΟΔΟΣ", "οδος", "İstanbul", "ẞ", "Straße", "naïve", "日本"], ["ΣΑΣ", "σας"]],
        [["a", "a", "b", "c", "c", "d", "e"], ["a", "a"]],
        [["istanbul", "日本", "ß"]],
    ),
    "long_repeats": make_task([["w"] * 1000, ["w", "v"] * 300], [["O"] * 1000, ["B", "I"] * 300], [["v"] * 7]),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases_against_oracles(case):
    task = EDGE_CASES[case]
    words = {"the", "a", "b", "cat", "w"}
    for base in (None, 2):
        assert_features(task_features(task, words, base=base), oracle(task, words, base=base))
        assert_features(reference_task_features(task, words, base=base), oracle(task, words, base=base))


def test_edge_values_closed_form():
    one_label = task_features(EDGE_CASES["one_label"])
    assert one_label["label_entropy"] == 0.0 and one_label["n_labels"] == 1
    assert math.isnan(one_label["oov_rate"])  # no embeddings given
    disjoint = EDGE_CASES["disjoint_vocabularies"]
    assert task_features(disjoint)["jsd_train_test"] == pytest.approx(math.log(2), rel=1e-12)
    assert task_features(disjoint, base=2)["jsd_train_test"] == pytest.approx(1.0, rel=1e-12)
    assert task_features(EDGE_CASES["identical_distributions"])["jsd_train_test"] == 0.0
    case = task_features(EDGE_CASES["case_folding"])
    assert case["tokens_per_type"] == 4.0  # one term, four tokens
    assert case["frobenius_norm"] == math.sqrt(3**2 + 1**2)  # count matrix rows [3] and [1]
    assert case["n_labels"] == 2  # labels are case-sensitive: B and b


def test_all_tokens_oov():
    task = EDGE_CASES["one_sentence"]
    assert task_features(task, {"zzz"})["oov_rate"] == 100.0
    assert task_features(task, set())["oov_rate"] == 100.0
    assert task_features(task, {"the", "cat", "saw"})["oov_rate"] == 0.0


def test_empty_test_split_gives_nan_jsd():
    task = make_task([["a", "b"]], [["X", "Y"]], [])
    got = task_features(task)
    assert math.isnan(got["jsd_train_test"])
    assert_features(got, oracle(task))
    no_test = SimpleNamespace(train=task.train, test=None)
    assert math.isnan(task_features(no_test)["jsd_train_test"])


def test_empty_sentences_are_counted_but_hold_no_tokens():
    task = make_task([["a"], [], ["a", "b"]], [["X"], [], ["X", "Y"]], [[], ["a"]])
    got = task_features(task)
    assert got["size"] == 3
    assert_features(got, oracle(task))


@pytest.mark.parametrize("seed", range(4))
def test_random_corpora_against_oracles(seed):
    rng = random.Random(seed)
    alphabet = "abcAB\u00e9\u00c9\u03a3\u03c3\u0130"
    vocab = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(60)]
    tags = ["O", "B-X", "I-X", "b-x"]

    def corpus(n):
        sents = [[rng.choice(vocab) for _ in range(rng.randint(1, 30))] for _ in range(n)]
        return sents, [[rng.choice(tags) for _ in s] for s in sents]

    train, train_tags = corpus(rng.randint(1, 200))
    test, _ = corpus(rng.randint(0, 50))
    task = make_task(train, train_tags, test)
    words = {w.lower() for w in vocab[::3]}
    for base in (None, 2, 10):
        assert_features(task_features(task, words, base=base), oracle(task, words, base=base))


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="no tokens"):
        task_features(make_task([], [], [["a"]]))
    with pytest.raises(ValueError, match="sentence 1 has 2 tokens and 1 tags"):
        task_features(make_task([["a"], ["b", "c"]], [["X"], ["Y"]], []))
    with pytest.raises(ValueError, match="newline"):
        task_features(make_task([["a\nb"]], [["X"]], []))
    with pytest.raises(ValueError, match="base"):
        task_features(EDGE_CASES["one_token"], base=1)


def _large_task(seed, n_sentences=1500, alphabet="abcABC"):
    """A corpus past ``stats._intern.THREAD_MIN_TOKENS`` tokens, so that the terms are interned in a second thread."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(3000)]
    sents = [[rng.choice(vocab) for _ in range(rng.randint(1, 40))] for _ in range(n_sentences)]
    tags = [[rng.choice(("O", "B-X", "I-X", "b-x")) for _ in s] for s in sents]
    test = [[rng.choice(vocab) for _ in range(rng.randint(1, 40))] for _ in range(n_sentences // 5)]
    assert sum(map(len, sents)) + sum(map(len, test)) >= stats._intern.THREAD_MIN_TOKENS
    return make_task(sents, tags, test), {w.lower() for w in vocab[::3]}


@pytest.fixture(params=["objects", "text"])
def string_path(request, monkeypatch):
    """Run a test through each way of turning strings into ids: ``objects`` (the data layer's compiled
    ``factorize``, the default when it is built) and ``text`` (joined UTF-8 buffers, the fallback)."""
    if request.param == "objects" and stats._objects is None:
        pytest.skip("mtlfast.data._fast is not built: only the text path exists")
    if request.param == "text":
        monkeypatch.setattr(stats, "_objects", None)
    return request.param


@pytest.mark.parametrize("alphabet", ["abcABC", "abcAB\u00e9\u00c9\u03a3\u03c3\u0130"])
def test_large_corpora_against_oracles(alphabet, string_path, monkeypatch):
    """Both string paths (ASCII and non-ASCII text; the text path threaded) against the oracles, and the text
    path equal with one thread."""
    task, words = _large_task(7, alphabet=alphabet)
    got = task_features(task, words)
    assert_features(got, oracle(task, words))
    monkeypatch.setattr(stats._intern, "THREAD_MIN_TOKENS", 10**12)
    assert task_features(task, words) == got


def _arrays_equal(a, b):
    for field in ("train_terms", "train_offsets", "train_labels", "test_terms", "has_vector"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            assert np.array_equal(x, y), field
    assert (a.n_terms, a.n_train_terms, a.n_labels) == (b.n_terms, b.n_train_terms, b.n_labels)


@pytest.mark.parametrize("seed", range(6))
def test_object_path_equals_text_path(seed, monkeypatch):
    """The identity-based path gives exactly the text path's arrays: case variants of one term, equal strings
    held by distinct objects next to shared ones, non-ASCII case mappings (final sigma, dotted I, sharp s),
    empty sentences and an empty test split, more distinct objects than the pointer table's first size."""
    if stats._objects is None:
        pytest.skip("mtlfast.data._fast is not built")
    rng = random.Random(seed)
    base = ["the", "The", "THE", "ΣΑΣ", "σας", "İstanbul", "straße", "STRASSE", "naïve", "日本", "x", ""]
    base += ["".join(rng.choice("abcXYZé") for _ in range(rng.randint(1, 6))) for _ in range(3000)]

    def word():
        w = rng.choice(base)
        return w if rng.random() < 0.5 else "".join(list(w))  # an equal str, often a distinct object

    train = [[word() for _ in range(rng.randint(0 if seed % 2 else 1, 30))] for _ in range(rng.randint(1, 300))]
    tags = [[rng.choice(["O", "B-X", "I-X", "b-x"]) for _ in s] for s in train]
    test = [[word() for _ in range(rng.randint(1, 30))] for _ in range(rng.randint(0, 80))]
    words = {w.lower() for w in base[::4]}
    objects = stats.split_arrays(train, tags, test, words)
    monkeypatch.setattr(stats, "_objects", None)
    _arrays_equal(objects, stats.split_arrays(train, tags, test, words))


def _write_tsv(path, sents, tags):
    path.write_bytes("".join("".join(f"{w}\t{t}\n" for w, t in zip(s, g)) + "\n" for s, g in zip(sents, tags)).encode())


def _loaded_task(tmp_path, seed):
    """A task written to files and read back by mtlfast.data (so its splits carry the parser's pools), with
    case variants, non-ASCII case mappings, tokens and labels with spaces around them (stripped: equal text
    from other bytes), and more distinct tokens than the tables' first sizes."""
    from mtlfast.data import load_task

    rng = random.Random(seed)
    base = ["the", "The", "THE", "ΣΑΣ", "σας", "İstanbul", "straße", "STRASSE", "naïve", "日本", " the", "the ", "x"]
    base += ["".join(rng.choice("abcXYZé") for _ in range(rng.randint(1, 6))) for _ in range(5000)]
    labels = ["O", "B-X", "I-X", "b-x", " O", "O "]

    def corpus(n):
        sents = [[rng.choice(base) for _ in range(rng.randint(1, 30))] for _ in range(n)]
        return sents, [[rng.choice(labels) for _ in s] for s in sents]

    folder = tmp_path / f"t{seed}"
    folder.mkdir()
    for split, n in (("train", rng.randint(50, 400)), ("test", rng.randint(1, 100))):
        _write_tsv(folder / f"{split}.tsv", *corpus(n))
    return load_task(folder, warn=False)


@pytest.mark.parametrize("seed", range(4))
def test_loaded_tasks_use_the_parser_pools_and_agree_with_the_text_path(tmp_path, seed, monkeypatch):
    if stats._objects is None:
        pytest.skip("mtlfast.data._fast is not built")
    task = _loaded_task(tmp_path, seed)
    assert task.train.pools is not None and task.test.pools is not None
    words = {"the", "σας", "naïve", "x"}
    pooled = stats._objects.pooled_arrays(task.train, task.test, words)
    assert pooled is not None
    for path in ("objects", "text"):
        if path == "text":
            monkeypatch.setattr(stats, "_objects", None)
        _arrays_equal(pooled, stats.split_arrays(task.train.tokens, task.train.tags, task.test.tokens, words))
    monkeypatch.undo()
    assert_features(task_features(task, words), oracle(task, words))


def test_changed_splits_are_not_read_from_the_pools(tmp_path):
    """Tokens replaced in place (same length), a label changed, a sentence appended: the pools no longer
    describe the split, the identity check sees it, and the features are those of the changed data."""
    if stats._objects is None:
        pytest.skip("mtlfast.data._fast is not built")
    task = _loaded_task(tmp_path, 9)
    before = task_features(task)
    first = task.train.tokens[0]
    first[:] = ["zzz-new-word"] * len(first)  # in place, same length: only the objects differ
    assert stats._objects.pooled_arrays(task.train, task.test, None) is None
    after = task_features(task)
    assert after != before and after == task_features(make_task(task.train.tokens, task.train.tags, task.test.tokens))
    task.train.tags[1][0] = "NEW-LABEL"
    assert task_features(task)["n_labels"] == after["n_labels"] + 1
    task.test.tokens.append(["another", "sentence"])
    assert stats._objects.pooled_arrays(task.train, task.test, None) is None
    assert_features(task_features(task), oracle(task))


def test_object_path_hands_odd_items_to_the_text_path():
    """Tuples as sentences and non-str tokens leave the compiled path; results and errors are the text path's."""
    task = EDGE_CASES["one_sentence"]
    as_tuples = make_task([tuple(s) for s in task.train.tokens], task.train.tags, task.test.tokens)
    assert task_features(as_tuples) == task_features(task)
    with pytest.raises(TypeError):
        task_features(make_task([["a", 3]], [["X", "Y"]], []))


def test_bad_large_input_is_reported_in_order(string_path):
    task, _ = _large_task(3)
    bad_token = make_task(task.train.tokens + [["a\nb"]], task.train.tags + [["X"]], task.test.tokens)
    with pytest.raises(ValueError, match=r"tokens and labels must not contain a newline, got 'a\\nb'"):
        task_features(bad_token)
    bad_both = make_task(task.train.tokens + [["a\nb"]], task.train.tags + [["X", "Y"]], task.test.tokens)
    with pytest.raises(ValueError, match="newline"):  # the token error first, as with one thread
        task_features(bad_both)
    bad_tag = make_task(task.train.tokens + [["ab"]], task.train.tags + [["X\nY"]], task.test.tokens)
    with pytest.raises(ValueError, match=r"newline, got 'X\\nY'"):
        task_features(bad_tag)
    bad_count = make_task(task.train.tokens + [["a", "b"]], task.train.tags + [["X"]], task.test.tokens)
    with pytest.raises(ValueError, match="1 tags"):
        task_features(bad_count)


class _Embeddings:
    def __init__(self, words):
        self.index = {w: i for i, w in enumerate(words)}


def test_embedding_table_is_cached_per_object():
    emb = _Embeddings(["the", "cat"])
    task = EDGE_CASES["one_sentence"]
    first = task_features(task, emb)
    assert stats._embeddings.embedding_table(emb) is stats._embeddings.embedding_table(emb)
    assert task_features(task, emb) == first
    assert first["oov_rate"] == pytest.approx(20.0)  # "saw" is the only OOV token of five


def test_oov_rate_is_one_unit_in_data_and_stats(tmp_path):
    """mtlfast.data.oov_rate and the oov_rate feature are both percentages (the paper's and the original's
    unit), and both NaN without embeddings."""
    from mtlfast.data import load_task, oov_rate

    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "train.tsv").write_text("The\tA\ncat\tB\nsaw\tA\n\nZebra\tA\n")
    (folder / "test.tsv").write_text("the\tA\n")
    task = load_task(folder)
    emb = _Embeddings(["the", "cat"])
    assert oov_rate(task, emb) == pytest.approx(50.0)
    assert task_features(task, emb)["oov_rate"] == pytest.approx(50.0)
    assert folder_features(folder, emb)["oov_rate"] == pytest.approx(50.0)
    assert math.isnan(oov_rate(task, None)) and math.isnan(task_features(task)["oov_rate"])


def test_features_from_arrays_matches_task_features():
    task = EDGE_CASES["unicode"]
    arrays = stats.split_arrays(task.train.tokens, task.train.tags, task.test.tokens, {"ß", "istanbul"})
    # Terms in order of first occurrence; "İstanbul".lower() is "i\u0307stanbul" (dotted i), not "istanbul".
    terms = ["οδος", "i\u0307stanbul", "ß", "straße", "naïve", "日本", "σας"]
    assert arrays.n_train_terms == len(terms) and arrays.n_labels == 5 and arrays.n_terms == len(terms) + 1
    assert arrays.train_terms.tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 6]
    assert arrays.has_vector.tolist() == [t == "ß" for t in terms]
    got = stats.features_from_arrays(arrays)
    assert got == task_features(task, {"ß", "istanbul"})


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _write_task(folder: Path, train, test):
    folder.mkdir(parents=True)
    for split, sents in (("train", train), ("dev", test), ("test", test)):
        text = "".join("".join(f"{w}\t{t}\n" for w, t in s) + "\n" for s in sents)
        (folder / f"{split}.tsv").write_text(text, encoding="utf-8")
    labels = sorted({t for s in train + test for _, t in s})
    (folder / "labels.txt").write_text("".join(f"{t}\n" for t in labels), encoding="utf-8")


def test_cli_table_and_csv(tmp_path, capsys):
    _write_task(tmp_path / "suite" / "alpha", [[("The", "B"), ("cat", "I")], [("sat", "O")]], [[("the", "O")]])
    _write_task(tmp_path / "suite" / "beta", [[("a", "O")]], [[("b", "O")]])
    glove = tmp_path / "glove.txt"
    glove.write_text("the 0.1 0.2\ncat 0.3 0.4\n", encoding="utf-8")

    assert stats_main([str(tmp_path / "suite"), "--embeddings", str(glove)]) == 0
    table = capsys.readouterr().out
    assert "alpha" in table and "beta" in table and "frobenius_norm" in table

    assert stats_main([str(tmp_path / "suite" / "alpha"), "--csv", "--base", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split(",") == ["task", *DATA_FEATURES]
    row = dict(zip(lines[0].split(","), lines[1].split(",")))
    assert row["task"] == "alpha" and row["size"] == "2" and row["oov_rate"] == "nan"
    assert float(row["label_entropy"]) == pytest.approx(math.log2(3))

    assert stats_main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# Fast paths: byte-level reading of a task folder, and the data layer's encoded arrays
# --------------------------------------------------------------------------------------------------

_ODD_FILES = {
    "plain": "The\tB\ncat\tI\n\nSat\tO\n",
    "no_final_newline": "The\tB\ncat\tI\n\nSat\tO",
    "bom": "\ufeffThe\tB\ncat\tI\n\nSat\tO\n",
    "crlf": "The\tB\r\ncat\tI\r\n\r\nSat\tO\r\n",
    "spaces_around_fields": " The \tB\ncat\t I\n\nSat\tO\n",
    "unicode_space_around_field": "The\u00a0\tB\ncat\tI\u3000\n\nSat\tO\n",
    "blank_line_with_spaces": "The\tB\ncat\tI\n  \nSat\tO\n",
    "several_blank_lines": "\n\nThe\tB\ncat\tI\n\n\n\nSat\tO\n\n",
    "non_ascii": "Straße\tB\nİstanbul\tI\n\nΟΔΟΣ\tO\n",
}


@pytest.mark.parametrize("case", sorted(_ODD_FILES))
def test_folder_features_equals_data_layer_path(tmp_path, case):
    folder = tmp_path / case
    folder.mkdir()
    for split in ("train", "dev", "test"):
        (folder / f"{split}.tsv").write_bytes(_ODD_FILES[case].encode("utf-8"))
    words = _Embeddings(["the", "sat", "straße"])
    expected = task_features(_io.load_tasks([folder])[0], words)
    assert folder_features(folder, words) == expected
    assert folder_features(folder, words, base=2) == task_features(_io.load_tasks([folder])[0], words, base=2)


def test_folder_features_bad_file_raises_data_layer_error(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "train.tsv").write_text("a\tB\tC\n", encoding="utf-8")
    (folder / "test.tsv").write_text("a\tB\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1"):
        folder_features(folder)


def test_encoded_task_features_match(tmp_path):
    data = pytest.importorskip("mtlfast.data")
    tasks = []
    for name, case in (("a", "unicode"), ("b", "disjoint_vocabularies"), ("c", "long_repeats")):
        t = EDGE_CASES[case]
        _write_task(tmp_path / name, [list(zip(s, g)) for s, g in zip(t.train.tokens, t.train.tags)],
                    [[(w, "O") for w in s] for s in t.test.tokens])
        tasks.append(data.load_task(tmp_path / name, warn=False))
    suite = data.encode_suite(tasks)
    words = {"ß", "w", "a"}
    has_vector = stats.vocab_has_vector(suite.vocab, words)
    for task in tasks:
        got = stats.encoded_task_features(suite.tasks[task.name], has_vector)
        assert_features(got, task_features(task, words))
        assert_features(stats.encoded_task_features(suite.tasks[task.name], base=2), oracle(task, None, base=2))

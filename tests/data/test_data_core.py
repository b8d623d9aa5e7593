"""mtlfast.data core: reading tasks, vocabulary, encoding, batches, the compiled/pure-Python twins."""

import warnings

import numpy as np
import pytest

from mtlfast.data import (
    PAD_TAG,
    DataError,
    DataWarning,
    Vocab,
    encode_suite,
    load_suite,
    load_task,
    make_batch,
)
from mtlfast.data import encode as E
from mtlfast.data import io as IO
from mtlfast.data.synthetic import generate_suite

HAS_FAST = E._fast is not None


def write(path, text, newline="\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def make_task(root, name, train, test, dev=None):
    folder = root / name
    write(folder / "train.tsv", train)
    write(folder / "test.tsv", test)
    if dev is not None:
        write(folder / "dev.tsv", dev)
    return folder


@pytest.fixture(params=["compiled", "python"])
def path_kind(request, monkeypatch):
    """Run a test once with the Cython helpers and once with the pure Python/NumPy path."""
    if request.param == "compiled":
        if not HAS_FAST:
            pytest.skip("mtlfast.data._fast not built (MTLFAST_ONLY=cython python setup.py build_ext --inplace)")
    else:
        monkeypatch.setattr(E, "_fast", None)
        monkeypatch.setattr(IO, "_fast", None)
    return request.param


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate_suite(out, seed=0)
    return out


def test_load_task_basic(tmp_path, path_kind):
    folder = make_task(
        tmp_path, "toy",
        train="The\tDT\ncat\tNN\n\nDogs\tNNS\nbark\tVBP\n.\t.\n",
        dev="A\tDT\ndog\tNN\n",
        test="\n\nCats\tNNS\n\n\nsleep\tVBP\n",
    )
    t = load_task(folder)
    assert t.name == "toy"
    assert t.train.tokens == [["The", "cat"], ["Dogs", "bark", "."]]
    assert t.train.tags == [["DT", "NN"], ["NNS", "VBP", "."]]
    assert t.dev.tokens == [["A", "dog"]]
    assert t.test.tokens == [["Cats"], ["sleep"]]  # several blank lines = one boundary
    assert t.train.n_sentences == 2 and t.train.n_tokens == 5
    assert t.labels == (".", "DT", "NN", "NNS", "VBP")
    assert t.outside_label is None and not t.is_bio
    assert list(t.splits) == ["train", "dev", "test"]


def test_dev_is_optional_and_outside_label(tmp_path, path_kind):
    folder = make_task(tmp_path, "ner", train="Kim\tB-PER\nLee\tI-PER\nsaw\tO\n", test="Lee\tB-PER\nLee\tI-PER\n")
    t = load_task(folder)
    assert t.dev is None and list(t.splits) == ["train", "test"]
    assert t.outside_label == "O" and t.is_bio
    assert t.labels == ("B-PER", "I-PER", "O")


def test_crlf_bom_and_spaces_accepted(tmp_path, path_kind):
    text = "The\tDT\ncat\tNN\n\nsat \t VBD\n"
    a = make_task(tmp_path / "a", "t", train=text, test=text)
    b = tmp_path / "b" / "t"
    write(b / "train.tsv", text, newline="\r\n")
    (b / "test.tsv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    ta, tb = load_task(a), load_task(b)
    assert ta.train.tokens == tb.train.tokens == tb.test.tokens == [["The", "cat"], ["sat"]]
    assert ta.train.tags == tb.train.tags == [["DT", "NN"], ["VBD"]]


def test_unseen_test_labels_warn_once(tmp_path):
    folder = make_task(tmp_path, "t", train="a\tX\n", test="a\tX\nb\tY\nc\tY\n\nd\tZ\n")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        t = load_task(folder)
    msgs = [str(w.message) for w in rec if issubclass(w.category, DataWarning)]
    assert len(msgs) == 1
    assert "test.tsv" in msgs[0] and "'Y' (2x)" in msgs[0] and "'Z' (1x)" in msgs[0]
    assert "first at line 2" in msgs[0] and "scored" in msgs[0] and "never be predicted correctly" in msgs[0]
    assert t.labels == ("X", "Y", "Z")  # scored: they keep label ids


def test_suite_folder_skips_non_task_folders(tmp_path):
    make_task(tmp_path, "b", train="x\tA\n", test="x\tA\n")
    make_task(tmp_path, "a", train="y\tB\n", test="y\tB\n")
    (tmp_path / "embeddings").mkdir()
    (tmp_path / "embeddings" / "vectors.txt").write_text("x 0.1\n")
    tasks = load_suite(tmp_path)
    assert [t.name for t in tasks] == ["a", "b"]
    assert [t.name for t in load_suite([tmp_path / "b"])] == ["b"]
    with pytest.raises(DataError, match="unique task names"):
        load_suite([tmp_path / "a", tmp_path / "a"])


def _oracle_batch(sentences_tok, sentences_tag, idx, max_len):
    """Plain Python padding, the oracle for make_batch."""
    rows = [(sentences_tok[i][:max_len] if max_len else sentences_tok[i],
             sentences_tag[i][:max_len] if max_len else sentences_tag[i]) for i in idx]
    T = max(len(r[0]) for r in rows)
    tok = [list(r[0]) + [0] * (T - len(r[0])) for r in rows]
    tag = [list(r[1]) + [PAD_TAG] * (T - len(r[1])) for r in rows]
    return tok, tag, [len(r[0]) for r in rows]


def test_encode_and_batches_against_plain_python(synth_dir, path_kind):
    tasks = load_suite(synth_dir)
    suite = encode_suite(tasks)
    v = suite.vocab
    assert v.itos[:2] == ["<pad>", "<unk>"] and v.stoi["<pad>"] == 0 and v.stoi["<unk>"] == 1
    # oracle vocabulary: lower-cased words of all splits, most frequent first, ties alphabetical
    counts = {}
    for t in tasks:
        for sp in t.splits.values():
            for sent in sp.tokens:
                for w in sent:
                    counts[w.lower()] = counts.get(w.lower(), 0) + 1
    assert v.itos[2:] == sorted(counts, key=lambda w: (-counts[w], w))
    assert Vocab.build(tasks).itos == v.itos
    rng = np.random.default_rng(1)
    for t in tasks:
        et = suite.tasks[t.name]
        assert et.labels == sorted(t.labels)
        assert et.outside_id == (et.labels.index("O") if "O" in et.labels else -1)
        for name, sp in t.splits.items():
            es = et.splits[name]
            assert es.tokens.dtype == np.int32 and es.tags.dtype == np.int32 and es.offsets.dtype == np.int64
            assert es.n_sentences == sp.n_sentences and es.n_tokens == sp.n_tokens
            tok_ids = [[v.stoi[w.lower()] for w in s] for s in sp.tokens]
            tag_ids = [[et.labels.index(l) for l in s] for s in sp.tags]
            assert es.tokens.tolist() == [i for s in tok_ids for i in s]
            assert es.tags.tolist() == [i for s in tag_ids for i in s]
            for max_len in (None, 5, 30):
                idx = rng.integers(0, sp.n_sentences, size=17)
                idx[3] = idx[4]  # repeats allowed
                btok, btag, blen = make_batch(es, idx, max_len)
                otok, otag, olen = _oracle_batch(tok_ids, tag_ids, idx, max_len)
                assert btok.dtype == btag.dtype == blen.dtype == np.int64
                assert btok.tolist() == otok and btag.tolist() == otag and blen.tolist() == olen


def test_compiled_and_python_paths_identical(synth_dir, monkeypatch):
    if not HAS_FAST:
        pytest.skip("mtlfast.data._fast not built")
    tasks_c = load_suite(synth_dir)
    enc_c = encode_suite(tasks_c)
    monkeypatch.setattr(E, "_fast", None)
    monkeypatch.setattr(IO, "_fast", None)
    tasks_p = load_suite(synth_dir)
    enc_p = encode_suite(tasks_p)
    assert enc_c.vocab.itos == enc_p.vocab.itos
    for tc, tp in zip(tasks_c, tasks_p):
        for name in tc.splits:
            assert tc.splits[name].tokens == tp.splits[name].tokens
            assert tc.splits[name].tags == tp.splits[name].tags
            a, b = enc_c.tasks[tc.name].splits[name], enc_p.tasks[tp.name].splits[name]
            for x, y in ((a.tokens, b.tokens), (a.tags, b.tags), (a.offsets, b.offsets)):
                assert x.dtype == y.dtype and np.array_equal(x, y)
    # the kernels themselves, on the same input
    import mtlfast.data._fast as F

    es = enc_c.tasks["fine"].splits["train"]
    rng = np.random.default_rng(0)
    for B, ml in ((1, 0), (32, 30), (64, 3), (0, 0)):
        idx = rng.integers(0, es.n_sentences, size=B).astype(np.int64)
        r1 = F.make_batch(es.tokens, es.tags, es.offsets, idx, ml)
        r2 = E.make_batch_np(es.tokens, es.tags, es.offsets, idx, ml)
        for x, y in zip(r1, r2):
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
    words = [w for s in tasks_c[0].train.tokens for w in s] + ["ZZZ-unknown", "The", "THE"]
    stoi = enc_c.vocab.stoi
    assert np.array_equal(F.encode_tokens(words, stoi, True, 1), E.encode_tokens_py(words, stoi, True, 1))
    assert np.array_equal(F.encode_tokens(words, stoi, False, -7), E.encode_tokens_py(words, stoi, False, -7))
    sents = tasks_c[0].train.tokens[:50]
    d1, d2 = {"x": 0}, {"x": 0}
    c1, o1 = F.factorize(sents, d1)
    c2, o2 = E.factorize_py(sents, d2)
    assert d1 == d2 and list(d1) == list(d2) and np.array_equal(c1, c2) and np.array_equal(o1, o2)


def test_parse_tsv_fast_path_matches_reference_on_fuzz():
    """Random texts over an alphabet of tricky characters: the compiled parser either hands over (None) or
    returns exactly what the reference parser returns; reading via read_split always equals the reference."""
    if not HAS_FAST:
        pytest.skip("mtlfast.data._fast not built")
    import mtlfast.data._fast as F

    alphabet = ["a", "B", "\t", "\n", "\n", "\n", "\r", " ", "\xa0", "é", "\u2028", "\x1c", "\ufeff", "x\ty\n"]
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(1500):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 30))))
        data = text.encode("utf-8")
        try:
            ref = IO.parse_tsv(IO._decode("f", data), "f")
        except DataError as exc:
            ref = str(exc)
        tok, tag, bad = F.parse_tsv(data)
        if tok is not None:
            assert bad == 0 and ref == (tok, tag), repr(text)
            checked += 1
        else:
            assert bad >= 1
    assert checked > 100  # the fast path did accept a good share of the inputs


def test_make_batch_rejects_bad_indices(synth_dir, path_kind):
    es = encode_suite(load_suite(synth_dir / "coarse")).tasks["coarse"].splits["dev"]
    # any integer sequence works: lists, int32, strided views
    ref = make_batch(es, np.array([4, 2, 4], dtype=np.int64), 7)
    for idx in ([4, 2, 4], np.array([4, 2, 4], dtype=np.int32), np.array([4, 0, 2, 0, 4])[::2]):
        got = make_batch(es, idx, 7)
        assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(got, ref))
    empty = make_batch(es, np.array([], dtype=np.int64))
    assert [a.shape for a in empty] == [(0, 0), (0, 0), (0,)]
    with pytest.raises(IndexError, match=r"\[0, 150\)"):
        make_batch(es, np.array([0, 150]))
    with pytest.raises(IndexError):
        make_batch(es, np.array([-1]))
    with pytest.raises(ValueError, match="1-d"):
        make_batch(es, np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="max_len"):
        make_batch(es, np.array([0]), max_len=0)


def test_vocab_is_shared_lowercased_and_includes_test_only_words(tmp_path):
    a = make_task(tmp_path, "a", train="The\tX\ncat\tX\n", test="Zebra\tX\n")
    b = make_task(tmp_path, "b", train="the\tY\nTHE\tY\ndog\tY\n", test="cat\tY\n")
    suite = encode_suite(load_suite([a, b]))
    v = suite.vocab
    assert v.itos == ["<pad>", "<unk>", "the", "cat", "dog", "zebra"]
    assert suite.tasks["a"].splits["test"].tokens.tolist() == [v.stoi["zebra"]]
    assert suite.tasks["b"].splits["train"].tokens.tolist() == [2, 2, 4]
    assert v.encode(["CAT", "never-seen"]).tolist() == [3, 1]
    # a given vocabulary is used as is: unknown words -> 1
    small = Vocab(["cat"])
    enc = encode_suite(load_suite([a]), vocab=small)
    assert enc.vocab is small and enc.tasks["a"].splits["train"].tokens.tolist() == [1, 2]


def test_import_fallback_without_compiled_module(tmp_path, monkeypatch):
    """With mtlfast.data._fast unimportable, the package still imports and works (pure Python/NumPy)."""
    import importlib
    import sys

    saved = {k: v for k, v in sys.modules.items() if k == "mtlfast.data" or k.startswith("mtlfast.data.")}
    try:
        for k in saved:
            del sys.modules[k]
        sys.modules["mtlfast.data._fast"] = None  # makes `from mtlfast.data import _fast` raise ImportError
        D = importlib.import_module("mtlfast.data")
        assert D.has_fast() is False
        folder = make_task(tmp_path, "t", train="The\tDT\ncat\tNN\n\nA\tDT\n", test="the\tDT\n")
        suite = D.encode_suite(D.load_suite([folder]))
        tok, tag, lengths = D.make_batch(suite.tasks["t"].splits["train"], np.array([1, 0]))
        assert tok.tolist() == [[3, 0], [2, 4]] and tag.tolist() == [[0, PAD_TAG], [0, 1]]
        assert lengths.tolist() == [1, 2]
    finally:
        for k in [k for k in sys.modules if k == "mtlfast.data" or k.startswith("mtlfast.data.")]:
            del sys.modules[k]
        sys.modules.update(saved)
        import mtlfast

        mtlfast.data = saved["mtlfast.data"]  # the package attribute too


def test_factorize_finds_repeats_by_identity_and_equal_strings_by_value():
    """Equal strings held by distinct objects get one code; a shared object many codes' worth of times; more
    distinct objects than the pointer table's first size (it grows); the codes equal the pure-Python ones."""
    if not HAS_FAST:
        pytest.skip("mtlfast.data._fast not built")
    import mtlfast.data._fast as F

    rng = np.random.default_rng(1)
    pool = [f"w{i}" for i in range(5000)]
    sents = []
    for _ in range(400):
        sent = []
        for _ in range(int(rng.integers(0, 40))):
            w = pool[int(rng.integers(0, len(pool)))]
            sent.append(w if rng.random() < 0.5 else "".join(list(w)))  # equal value, other object
        sents.append(sent)
    d1, d2 = {"w7": 0}, {"w7": 0}
    c1, o1 = F.factorize(sents, d1)
    c2, o2 = E.factorize_py(sents, d2)
    assert list(d1) == list(d2) and np.array_equal(c1, c2) and np.array_equal(o1, o2)
    with pytest.raises(TypeError, match="item 1 is a int"):
        F.factorize([["a", 1]], {})
    # The wrapper reruns in Python over the same index: the same codes as a run from scratch.
    d3, d4 = {}, {}
    mixed = [["a", "b"], ["b", 1, "c"]]
    c3, _ = E.factorize(mixed, d3)
    c4, _ = E.factorize_py(mixed, d4)
    assert list(d3) == list(d4) and np.array_equal(c3, c4)


def test_loaded_splits_share_one_str_per_distinct_field(tmp_path):
    if not HAS_FAST:
        pytest.skip("mtlfast.data._fast not built")
    path = tmp_path / "train.tsv"
    path.write_bytes("the\tO\ncat\tN\n\nthe\tO\n the \tO\ncaf\u00e9\tN\ncaf\u00e9\tN\n".encode())
    split = IO.read_split(path)
    assert split.tokens == [["the", "cat"], ["the", "the", "caf\u00e9", "caf\u00e9"]]
    assert split.tags == [["O", "N"], ["O", "O", "N", "N"]]
    first, second = split.tokens
    assert first[0] is second[0] and second[2] is second[3]  # same bytes, same object
    assert second[1] == "the"  # " the " (stripped) is equal in value
    assert split.tags[0][0] is split.tags[1][1]


def test_parse_tsv_coded_pools_describe_the_file():
    if not HAS_FAST:
        pytest.skip("mtlfast.data._fast not built")
    import mtlfast.data._fast as F

    data = "The\tO\ncat\tN\n\nthe\tO\n the \t O\nΣΑΣ\tN\nThe\tO\n".encode()
    tokens, tags, bad, pools = F.parse_tsv_coded(data)
    assert bad == 0 and (tokens, tags) == F.parse_tsv(data)[:2]
    tok_pool, tok_codes, tag_pool, tag_codes, text = pools
    flat_tokens = [w for s in tokens for w in s]
    flat_tags = [t for s in tags for t in s]
    assert [tok_pool[c] for c in tok_codes] == flat_tokens and [tag_pool[c] for c in tag_codes] == flat_tags
    assert all(tok_pool[c] is w for c, w in zip(tok_codes, flat_tokens))
    assert tok_pool == ["The", "cat", "the", "the", "ΣΑΣ"]  # " the " is other bytes: its own entry
    assert tag_pool == ["O", "N", "O"]
    assert text == "".join(w.lower() + "\n" for w in tok_pool).encode()
    offsets = F.check_pool_codes(tokens, tok_pool, tok_codes)
    assert offsets.tolist() == [0, 2, 6]
    assert F.check_pool_codes(tokens, tok_pool, tok_codes[::-1].copy()) is None
    assert F.check_pool_codes(tokens + [["x"]], tok_pool, tok_codes) is None
    assert F.check_pool_codes(tokens[:1], tok_pool, tok_codes) is None
    assert F.parse_tsv_coded(b"a\tb\tc\n") == (None, None, 1, None)

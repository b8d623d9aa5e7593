"""Vocabulary, encoding of a suite into flat integer arrays, and padded batch assembly.

Encoding layout (per split): ``tokens`` and ``tags`` are flat ``int32`` arrays holding every token of every
sentence back to back; ``offsets`` (``int64``, length ``n_sentences + 1``) gives sentence ``i`` as
``tokens[offsets[i]:offsets[i+1]]``.

The vocabulary is shared by all tasks of a suite: lower-cased words of *all* splits of *all* tasks, id 0 =
``<pad>``, id 1 = ``<unk>``, then words by decreasing frequency (ties alphabetical). Words that occur only in
dev/test are included on purpose: with pretrained embeddings they get their pretrained vector (the model can
use it at test time even though it never trains that row); without a vector they get a random row that no
training step touches, which behaves like an unknown word. Nothing about dev/test labels leaks through this.

Label ids are per task: the index in the task's sorted label union (``Task.labels``).

The hot loops (string -> id lookup, batch assembly) have a compiled version in :mod:`mtlfast.data._fast`
(Cython). When it is not built, the pure Python/NumPy functions here are used; both give identical results.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from typing import Iterable, Sequence

import numpy as np

from mtlfast.data.io import Split, Task, _gc_paused

try:  # compiled helpers are optional
    from mtlfast.data import _fast  # type: ignore
except ImportError:  # pragma: no cover - depends on the build
    _fast = None

PAD_ID = 0
UNK_ID = 1
PAD_WORD = "<pad>"
UNK_WORD = "<unk>"
PAD_TAG = -100  # the tag of padded positions: torch.nn.functional.cross_entropy's default ignore_index


def has_fast() -> bool:
    """Whether the compiled (Cython) helpers are available."""
    return _fast is not None


class Vocab:
    """Word vocabulary: ``itos`` (id -> word) and ``stoi`` (word -> id). Words are lower-cased.

    Id 0 is ``"<pad>"`` and id 1 is ``"<unk>"``; :meth:`encode` maps unknown words to 1.
    """

    def __init__(self, words: Iterable[str] = ()):
        self.itos: list[str] = [PAD_WORD, UNK_WORD]
        self.stoi: dict[str, int] = {PAD_WORD: PAD_ID, UNK_WORD: UNK_ID}
        for w in words:
            self.add(w)

    def add(self, word: str) -> int:
        word = word.lower()
        idx = self.stoi.get(word)
        if idx is None:
            idx = len(self.itos)
            self.stoi[word] = idx
            self.itos.append(word)
        return idx

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: str) -> bool:
        return word.lower() in self.stoi

    def __repr__(self) -> str:
        return f"Vocab({len(self)} words)"

    @classmethod
    def build(cls, tasks: Sequence[Task]) -> "Vocab":
        """The shared vocabulary of a suite: every lower-cased word of every split, most frequent first."""
        counts: Counter = Counter()
        for task in tasks:
            for split in task.splits.values():
                counts.update(map(str.lower, chain.from_iterable(split.tokens)))
        counts.pop(PAD_WORD, None)
        counts.pop(UNK_WORD, None)
        return cls(w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def encode(self, words: Sequence[str]) -> np.ndarray:
        """Ids (``int32``) of ``words`` (lower-cased; unknown -> 1)."""
        return encode_tokens(list(words), self.stoi, lower=True)


@dataclass
class EncodedSplit:
    """A split as flat arrays: ``tokens``/``tags`` ``int32 [N]``, ``offsets`` ``int64 [n_sentences + 1]``."""

    tokens: np.ndarray
    tags: np.ndarray
    offsets: np.ndarray

    @property
    def n_sentences(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        """Sentence lengths, ``int64 [n_sentences]``."""
        return np.diff(self.offsets)

    def sentence(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.tokens[a:b], self.tags[a:b]


@dataclass
class EncodedTask:
    name: str
    labels: list[str]
    outside_id: int  # id of "O", -1 if the task has none
    splits: dict[str, EncodedSplit] = field(default_factory=dict)  # "train", "dev" (if any), "test"


@dataclass
class EncodedSuite:
    vocab: Vocab
    tasks: dict[str, EncodedTask]
    #: True for the original protocol's encoding (:func:`encode_suite_original`): sentences are stored as
    #: ``[GO] words [EOS]``, labels include the special classes (ids 0-3).
    framed: bool = False


# ---------------------------------------------------------------------------------------------------------
# Pure Python / NumPy implementations (the reference; the Cython versions must give identical results)

def encode_tokens_py(flat: list, stoi: dict, lower: bool = True, default: int = UNK_ID) -> np.ndarray:
    """Ids of a flat list of words: ``stoi[w.lower()]`` (``stoi[w]`` if not ``lower``), ``default`` when absent."""
    get = stoi.get
    if lower:
        ids = [get(w.lower(), default) for w in flat]
    else:
        ids = [get(w, default) for w in flat]
    return np.array(ids, dtype=np.int32)


def make_batch_np(tokens: np.ndarray, tags: np.ndarray, offsets: np.ndarray, idx: np.ndarray, max_len: int):
    """Vectorised NumPy batch assembly (see :func:`make_batch`); ``max_len <= 0`` means no limit."""
    starts = offsets[idx]
    lengths = offsets[idx + 1] - starts
    if max_len > 0:
        lengths = np.minimum(lengths, max_len)
    T = int(lengths.max()) if len(idx) else 0
    pos = np.arange(T, dtype=np.int64)
    mask = pos[None, :] < lengths[:, None]
    flat = (starts[:, None] + pos[None, :])[mask]
    out_tok = np.zeros((len(idx), T), dtype=np.int64)
    out_tag = np.full((len(idx), T), PAD_TAG, dtype=np.int64)
    out_tok[mask] = tokens[flat]
    out_tag[mask] = tags[flat]
    return out_tok, out_tag, lengths.astype(np.int64)


def encode_tokens(flat: list, stoi: dict, lower: bool = True, default: int = UNK_ID) -> np.ndarray:
    """Ids (``int32``) of a flat list of strings; compiled when available, else :func:`encode_tokens_py`."""
    if _fast is not None:
        return _fast.encode_tokens(flat, stoi, lower, default)
    return encode_tokens_py(flat, stoi, lower, default)


def _check_idx(split: EncodedSplit, idx) -> np.ndarray:
    idx = np.asarray(idx)
    if idx.ndim != 1:
        raise ValueError(f"make_batch: idx must be a 1-d array of sentence indices; got shape {idx.shape}")
    if idx.dtype.kind not in "iu":
        if idx.size == 0:
            idx = idx.astype(np.int64)
        else:
            raise ValueError(f"make_batch: idx must hold integers; got dtype {idx.dtype}")
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    n = split.n_sentences
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"make_batch: sentence indices must be in [0, {n}); got min {idx.min()}, max {idx.max()}")
    return idx


def make_batch(split: EncodedSplit, idx, max_len: int | None = None):
    """Right-padded batch of the sentences ``idx`` of ``split``.

    Parameters
    ----------
    split : the encoded split.
    idx : ``int [B]`` sentence indices (repeats allowed).
    max_len : cut sentences to their first ``max_len`` tokens (``None``: no cut).

    Returns
    -------
    tokens : ``int64 [B, T]``, padded with 0 (``<pad>``); ``T`` = the longest (cut) length in the batch.
    tags : ``int64 [B, T]``, padded with ``PAD_TAG`` (-100).
    lengths : ``int64 [B]``, each >= 1.
    """
    ml = 0 if max_len is None else int(max_len)
    if max_len is not None and ml < 1:
        raise ValueError(f"make_batch: max_len must be >= 1 or None; got {max_len}")
    if _fast is not None:
        # the common case (int64 index array, arrays from encode_suite) goes straight to the compiled
        # loop, which also checks the index range; anything else is converted first
        if not (type(idx) is np.ndarray and idx.dtype == np.int64 and idx.ndim == 1 and idx.flags.c_contiguous):
            idx = _check_idx(split, idx)
        tokens, tags, offsets = split.tokens, split.tags, split.offsets
        if not (tokens.dtype == np.int32 and tags.dtype == np.int32 and offsets.dtype == np.int64
                and tokens.flags.c_contiguous and tags.flags.c_contiguous and offsets.flags.c_contiguous):
            tokens = np.ascontiguousarray(tokens, dtype=np.int32)
            tags = np.ascontiguousarray(tags, dtype=np.int32)
            offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        return _fast.make_batch(tokens, tags, offsets, idx, ml)
    idx = _check_idx(split, idx)
    return make_batch_np(split.tokens, split.tags, split.offsets, idx, ml)


def factorize_py(sentences: list, index: dict):
    """Codes of the strings of ``sentences`` in ``index``, adding unseen strings in order of first occurrence.

    Returns ``(codes int32 [N], offsets int64 [n + 1])``; ``index`` is updated in place.
    """
    lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
    offsets = np.zeros(len(sentences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    setdefault = index.setdefault
    codes = [setdefault(w, len(index)) for w in chain.from_iterable(sentences)]
    return np.array(codes, dtype=np.int32).reshape(-1), offsets


def factorize(sentences: list, index: dict):
    """:func:`factorize_py`, compiled when available."""
    if _fast is not None and type(sentences) is list:
        try:
            return _fast.factorize(sentences, index)
        except TypeError:  # a sentence that is not a list (raised before `index` is touched)
            pass
    return factorize_py(sentences, index)


def encode_split(split: Split, stoi: dict, label_ids: dict) -> EncodedSplit:
    """Encode one split with a word index (lower-cased lookup) and a label index (exact lookup)."""
    raw: dict = {}
    codes, offsets = factorize(split.tokens, raw)
    word_ids = np.fromiter((stoi.get(w.lower(), UNK_ID) for w in raw), dtype=np.int32, count=len(raw))
    tags = _encode_tags(split, label_ids, offsets)
    return EncodedSplit(tokens=word_ids[codes] if len(codes) else codes, tags=tags, offsets=offsets)


def _encode_tags(split: Split, label_ids: dict, offsets: np.ndarray) -> np.ndarray:
    raw: dict = {}
    codes, tag_offsets = factorize(split.tags, raw)
    if not np.array_equal(tag_offsets, offsets):
        raise ValueError(f"encode: {split.path}: tokens and tags differ in length")
    missing = [t for t in raw if t not in label_ids]
    if missing:
        raise ValueError(f"encode: {split.path}: labels {sorted(missing)[:5]} are not in the task's label set")
    ids = np.fromiter((label_ids[t] for t in raw), dtype=np.int32, count=len(raw))
    return ids[codes] if len(codes) else codes


def encode_task(task: Task, vocab: Vocab) -> EncodedTask:
    """Encode every split of ``task`` with ``vocab`` (lower-cased lookup) and the task's sorted labels."""
    labels = list(task.labels)
    label_ids = {l: i for i, l in enumerate(labels)}
    enc = EncodedTask(
        name=task.name,
        labels=labels,
        outside_id=label_ids.get(task.outside_label, -1) if task.outside_label else -1,
    )
    for name, split in task.splits.items():
        enc.splits[name] = encode_split(split, vocab.stoi, label_ids)
    return enc


def encode_suite(tasks: Sequence[Task], vocab: Vocab | None = None) -> EncodedSuite:
    """Encode tasks once into flat arrays with one shared vocabulary.

    Without ``vocab`` the vocabulary is built from all splits of all tasks (the same as :meth:`Vocab.build`),
    counting word frequencies on the integer codes of one pass over the text instead of a second pass.
    """
    with _gc_paused():  # few containers are made here, but each GC pass would walk every loaded string list
        return _encode_suite(list(tasks), vocab)


def _factorize_suite(tasks: list, form):
    """Integer-code the tokens of every split of every task with one shared raw-string table, and map each raw
    string to its normal form ``form(w)`` (numbered in order of first appearance).

    Returns ``(coded, raw_to_form, forms)``: ``coded`` a list of ``(task, split name, split, codes, offsets)``,
    ``raw_to_form`` int64 [number of raw strings], ``forms`` the distinct normal forms."""
    raw: dict = {}  # raw token string -> code, shared by every split of every task
    coded = []
    for t in tasks:
        for name, split in t.splits.items():
            codes, offsets = factorize(split.tokens, raw)
            coded.append((t, name, split, codes, offsets))
    form_index: dict = {}
    raw_to_form = np.fromiter((form_index.setdefault(form(w), len(form_index)) for w in raw), dtype=np.int64,
                              count=len(raw))
    return coded, raw_to_form, list(form_index)


def _encode_suite(tasks: list, vocab: Vocab | None) -> EncodedSuite:
    if vocab is not None:
        return EncodedSuite(vocab=vocab, tasks={t.name: encode_task(t, vocab) for t in tasks})
    coded, raw_to_lower, lower_words = _factorize_suite(tasks, str.lower)
    n_raw = len(raw_to_lower)
    raw_counts = np.zeros(n_raw, dtype=np.int64)
    for *_, codes, _ in coded:
        raw_counts += np.bincount(codes, minlength=n_raw)
    counts = np.bincount(raw_to_lower, weights=raw_counts, minlength=len(lower_words)).astype(np.int64)
    special = [i for i, w in enumerate(lower_words) if w in (PAD_WORD, UNK_WORD)]
    order = sorted((i for i in range(len(lower_words)) if i not in special),
                   key=lambda i: (-counts[i], lower_words[i]))
    vocab = Vocab(lower_words[i] for i in order)
    lower_to_id = np.fromiter((vocab.stoi[w] if w not in (PAD_WORD, UNK_WORD) else UNK_ID for w in lower_words),
                              dtype=np.int32, count=len(lower_words))
    raw_to_id = lower_to_id[raw_to_lower] if n_raw else np.zeros(0, dtype=np.int32)
    enc_tasks: dict[str, EncodedTask] = {}
    for t, name, split, codes, offsets in coded:
        if t.name not in enc_tasks:
            labels = list(t.labels)
            enc_tasks[t.name] = EncodedTask(
                name=t.name, labels=labels,
                outside_id=labels.index(t.outside_label) if t.outside_label in labels else -1,
            )
        et = enc_tasks[t.name]
        label_ids = {l: i for i, l in enumerate(et.labels)}
        et.splits[name] = EncodedSplit(tokens=raw_to_id[codes] if len(codes) else codes.astype(np.int32),
                                       tags=_encode_tags(split, label_ids, offsets), offsets=offsets)
    return EncodedSuite(vocab=vocab, tasks=enc_tasks)


# ---------------------------------------------------------------------------------------------------------
# The original protocol's encoding (Bingel & Søgaard's released code, rnn_mtl/src/dio.py), re-implemented

#: Ids of the original's special symbols, in words and in labels alike: PAD 0, GO 1, OOV 2, EOS 3.
ORIG_PAD_ID, ORIG_GO_ID, ORIG_OOV_ID, ORIG_EOS_ID = 0, 1, 2, 3
ORIGINAL_SPECIALS = ("<pad>", "<go>", "<oov>", "<eos>")


def original_form(s: str) -> str:
    """A word or label as the original reads it: lower-cased, whitespace-separated parts joined with ``_``."""
    s = s.lower()
    return "_".join(s.split()) if (" " in s or "\t" in s) else s


def frame_sentences_np(ids: np.ndarray, offsets: np.ndarray, go: int, eos: int):
    """NumPy twin of ``_fast.frame_sentences``: every sentence as ``go ids eos`` (int32 ids, int64 offsets)."""
    ids = np.asarray(ids, dtype=np.int32)
    offsets = np.asarray(offsets, dtype=np.int64)
    n = len(offsets) - 1
    new_off = offsets + 2 * np.arange(n + 1, dtype=np.int64)
    out = np.empty(len(ids) + 2 * n, dtype=np.int32)
    out[new_off[:-1]] = go
    out[new_off[1:] - 1] = eos
    sent = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
    out[np.arange(len(ids), dtype=np.int64) + 2 * sent + 1] = ids
    return out, new_off


def frame_sentences(ids: np.ndarray, offsets: np.ndarray, go: int = ORIG_GO_ID, eos: int = ORIG_EOS_ID):
    """``[GO] ids [EOS]`` around every sentence of a flat split; compiled when available."""
    if _fast is not None:
        return _fast.frame_sentences(np.ascontiguousarray(ids, dtype=np.int32),
                                     np.ascontiguousarray(offsets, dtype=np.int64), int(go), int(eos))
    return frame_sentences_np(ids, offsets, go, eos)


def encode_suite_original(tasks: Sequence[Task], vector_words=None) -> EncodedSuite:
    """Encode a suite the way the original code does (``dio.py``: ``read_two_cols_data``, ``transform``).

    - Words and labels are lower-cased; whitespace inside a token is joined with ``_``.
    - Word ids: 0 ``<pad>``, 1 ``<go>``, 2 ``<oov>``, 3 ``<eos>`` (rows of the same trainable table), then
      every word of the suite that has a pretrained vector (``vector_words``: a container of lower-cased
      words, or a callable that is given the suite's distinct word forms and returns one), most frequent
      first. Every word without a vector is id 2: one shared OOV row. Without
      ``vector_words`` (no embeddings), the words of the training splits get rows and the others are OOV.
    - Label ids per task: the same four specials, then the task's *training* labels in order of first
      occurrence (the original fits its label vectoriser on the training file). A dev/test label never seen
      in training is id 2 (OOV): it is never a positive class.
    - Every sentence is stored as ``[GO] w1 … wn [EOS]`` (labels ``[GO] l1 … ln [EOS]``); batches cut it to
      ``max_len`` positions (30), so at most 28 words keep their EOS and a longer sentence loses it.
    ``outside_id`` is the id of label ``o`` (-1 when the task has none). The suite is marked ``framed``.
    """
    with _gc_paused():
        return _encode_suite_original(list(tasks), vector_words)


def _encode_suite_original(tasks: list, vector_words) -> EncodedSuite:
    coded, raw_to_form, forms = _factorize_suite(tasks, original_form)
    counts = np.zeros(len(forms), dtype=np.int64)
    eligible = np.zeros(len(forms), dtype=bool)
    if callable(vector_words):
        vector_words = vector_words(forms)
    if vector_words is not None:
        eligible[:] = np.fromiter((f in vector_words for f in forms), dtype=bool, count=len(forms))
    for t, name, split, codes, offsets in coded:
        c = np.bincount(raw_to_form[codes], minlength=len(forms)) if len(codes) else np.zeros(len(forms), np.int64)
        counts += c
        if vector_words is None and name == "train":
            eligible |= c > 0
    for i, f in enumerate(forms):
        if f in ORIGINAL_SPECIALS:
            eligible[i] = False  # the special symbols' own rows are never a word's row
    order = sorted(np.flatnonzero(eligible).tolist(), key=lambda i: (-counts[i], forms[i]))
    vocab = Vocab()
    vocab.itos = list(ORIGINAL_SPECIALS) + [forms[i] for i in order]
    vocab.stoi = {w: i for i, w in enumerate(vocab.itos)}
    form_to_id = np.full(len(forms), ORIG_OOV_ID, dtype=np.int32)
    form_to_id[np.asarray(order, dtype=np.int64)] = np.arange(4, 4 + len(order), dtype=np.int32)
    raw_to_id = form_to_id[raw_to_form] if len(raw_to_form) else np.zeros(0, dtype=np.int32)
    enc_tasks: dict[str, EncodedTask] = {}
    for t in tasks:
        label_ids = {s: i for i, s in enumerate(ORIGINAL_SPECIALS)}
        for sent in t.train.tags:
            for lab in sent:
                f = original_form(lab)
                if f not in label_ids:
                    label_ids[f] = len(label_ids)
        labels = list(label_ids)
        enc_tasks[t.name] = EncodedTask(name=t.name, labels=labels, outside_id=label_ids.get("o", -1))
    for t, name, split, codes, offsets in coded:
        et = enc_tasks[t.name]
        label_ids = {l: i for i, l in enumerate(et.labels)}
        tag_raw: dict = {}
        tag_codes, tag_offsets = factorize(split.tags, tag_raw)
        if not np.array_equal(tag_offsets, offsets):
            raise ValueError(f"encode: {split.path}: tokens and tags differ in length")
        tag_map = np.fromiter((label_ids.get(original_form(l), ORIG_OOV_ID) for l in tag_raw), dtype=np.int32,
                              count=len(tag_raw))
        tags = tag_map[tag_codes] if len(tag_codes) else tag_codes.astype(np.int32)
        toks = raw_to_id[codes] if len(codes) else codes.astype(np.int32)
        ftok, foff = frame_sentences(toks, offsets)
        ftag, _ = frame_sentences(tags, offsets)
        et.splits[name] = EncodedSplit(tokens=ftok, tags=ftag, offsets=foff)
    return EncodedSuite(vocab=vocab, tasks=enc_tasks, framed=True)

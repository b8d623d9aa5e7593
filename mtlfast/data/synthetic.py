"""The generated default suite: seven small tagging tasks, six of them views of one hidden-Markov "grammar".

``generate_suite(out_dir, seed=0)`` writes ordinary task folders (``train.tsv``, ``dev.tsv``, ``test.tsv``,
``labels.txt``) and a ``README.txt`` describing how they were made. Same seed -> byte-identical files
(with the same NumPy release: NumPy does not promise identical random streams across versions). It needs
no download and is what ``python -m mtlfast.sweep`` runs when no data is given, so it is deliberately small
(the whole suite is about 7,500 training sentences of 8-20 tokens, about 2,100 word types).

The shared latent process
-------------------------
22 hidden states ("fine tags") grouped into 7 coarse classes: DET(2) ADJ(3) NOUN(5) VERB(5) ADV(2) ADP(3)
PUNCT(2). Transitions follow a hand-written coarse grammar (DET -> ADJ/NOUN, NOUN -> VERB/ADP/PUNCT, ...),
perturbed per fine state with seeded Dirichlet draws so fine states differ in what follows them. Every state
emits words from its own Zipf-distributed list; 15 % of the open-class words are also emitted, at a
frequent rank, by a second state (ambiguity, as "run" is a noun and a verb). Sentences have 8-20 tokens and end with a PUNCT state.

Tasks (each draws its own sentences from the process; the vocabulary is shared)
---------------------------------------------------------------------------------
========== ===================================================================== ====== =======
task       label of a token                                                      labels train
========== ===================================================================== ====== =======
fine       its hidden state (POS-like, fine-grained)                               22    1,500
coarse     the coarse class of its state (POS-like, coarse)                         7      300
chunk      BIO phrase chunks over runs of states: NP = DET/ADJ/NOUN (a DET starts   6      800
           a new NP), VP = VERB/ADV, PP = ADP; PUNCT is O
next       the coarse class of the *next* token (END at the end): a look-ahead      8    1,000
keep       KEEP for "content" states (NOUN, VERB, one ADJ state), DEL otherwise;   2    2,000
           8 % of the labels flipped (noise)
entity     B-ENT/I-ENT over runs of the two "proper noun" NOUN states, else O       3      250
other      unrelated: the state of an independent 6-state HMM whose emissions       6      600
           are a random partition of the same vocabulary
========== ===================================================================== ====== =======

Dev and test have 150 / 250 sentences per task. The related tasks differ in size and granularity so that
some pairs help (e.g. small ``coarse`` or ``entity`` with large ``fine``) and some hurt (``other`` labels the
same words with a conflicting partition).
"""

from __future__ import annotations

from bisect import bisect_right
from pathlib import Path

import numpy as np

from mtlfast.data.io import write_labels, write_split

COARSE = ("DET", "ADJ", "NOUN", "VERB", "ADV", "ADP", "PUNCT")
N_FINE = {"DET": 2, "ADJ": 3, "NOUN": 5, "VERB": 5, "ADV": 2, "ADP": 3, "PUNCT": 2}
N_WORDS = {"DET": 6, "ADJ": 110, "NOUN": 180, "VERB": 150, "ADV": 45, "ADP": 8, "PUNCT": 2}  # per fine state
# Coarse grammar: P(next coarse | coarse). Rows sum to 1 after normalisation.
GRAMMAR = {
    "DET": {"ADJ": 0.35, "NOUN": 0.65},
    "ADJ": {"ADJ": 0.15, "NOUN": 0.8, "PUNCT": 0.05},
    "NOUN": {"VERB": 0.4, "ADP": 0.25, "PUNCT": 0.15, "NOUN": 0.1, "ADV": 0.05, "DET": 0.05},
    "VERB": {"DET": 0.35, "ADP": 0.15, "ADV": 0.15, "NOUN": 0.15, "ADJ": 0.1, "PUNCT": 0.1},
    "ADV": {"VERB": 0.5, "ADJ": 0.3, "PUNCT": 0.1, "DET": 0.1},
    "ADP": {"DET": 0.6, "NOUN": 0.3, "ADJ": 0.1},
    "PUNCT": {"DET": 0.4, "NOUN": 0.3, "ADV": 0.1, "ADP": 0.1, "VERB": 0.1},
}
START = {"DET": 0.45, "NOUN": 0.3, "ADV": 0.1, "ADP": 0.1, "ADJ": 0.05}
CONTENT = {"NOUN", "VERB"}
ENTITY_STATES = ("NOUN4", "NOUN5")  # "proper nouns": capitalised words
CHUNK_OF = {"DET": "NP", "ADJ": "NP", "NOUN": "NP", "VERB": "VP", "ADV": "VP", "ADP": "PP", "PUNCT": None}
MIN_LEN, MAX_LEN = 8, 20
N_DEV, N_TEST = 150, 250
AMBIGUOUS_SHARE = 0.15
KEEP_NOISE = 0.08
OTHER_STATES = 6

# name, train sentences
TASKS = (("fine", 1500), ("coarse", 300), ("chunk", 800), ("next", 1000), ("keep", 2000), ("entity", 250),
         ("other", 600))

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "kr", "st", "tr", "pl", "sh")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ee")
_CODAS = ("", "", "n", "r", "s", "l", "k", "m", "nd", "st")


class _Grammar:
    """The shared HMM: fine states, transitions, emissions; plus the unrelated HMM over the same words."""

    def __init__(self, rng: np.random.Generator):
        self.states: list[str] = []
        self.coarse_of: list[str] = []
        for c in COARSE:
            for k in range(1, N_FINE[c] + 1):
                self.states.append(f"{c}{k}")
                self.coarse_of.append(c)
        S = len(self.states)
        by_coarse = {c: [i for i, cc in enumerate(self.coarse_of) if cc == c] for c in COARSE}
        # transitions: coarse grammar x per-state Dirichlet perturbation x Dirichlet choice of the fine state
        trans = np.zeros((S, S))
        for i, c in enumerate(self.coarse_of):
            dests = list(GRAMMAR[c])
            base = np.array([GRAMMAR[c][d] for d in dests])
            coarse_p = rng.dirichlet(base * 20.0)
            for d, p in zip(dests, coarse_p):
                fine = by_coarse[d]
                trans[i, fine] = p * rng.dirichlet(np.full(len(fine), 0.7))
        self.trans_cdf = np.cumsum(trans / trans.sum(1, keepdims=True), axis=1).tolist()
        start = np.zeros(S)
        for c, p in START.items():
            start[by_coarse[c]] = p * rng.dirichlet(np.full(len(by_coarse[c]), 1.0))
        self.start_cdf = np.cumsum(start / start.sum()).tolist()
        self.end_states = list(by_coarse["PUNCT"])
        self.end_cdf = np.cumsum(rng.dirichlet(np.ones(len(self.end_states)))).tolist()
        # vocabulary: unique pseudo-words, then each state's own list, then ambiguity
        n_total = sum(N_WORDS[c] for c in self.coarse_of)
        words = self._make_words(rng, n_total)
        self.emit_words: list[list[str]] = []
        pos = 0
        for i, c in enumerate(self.coarse_of):
            own = words[pos : pos + N_WORDS[c]]
            pos += N_WORDS[c]
            if self.states[i] in ENTITY_STATES:
                own = [w.capitalize() for w in own]
            if c == "PUNCT":
                own = [".", "!"] if self.states[i] == "PUNCT1" else [",", ";"]
            self.emit_words.append(list(own))
        open_states = [i for i, c in enumerate(self.coarse_of) if c in ("ADJ", "NOUN", "VERB", "ADV")]
        for i in open_states:
            own = list(self.emit_words[i])
            n_share = int(round(AMBIGUOUS_SHARE * len(own)))
            for w in rng.choice(own, size=n_share, replace=False):
                j = int(rng.choice([s for s in open_states if s != i]))
                # at a random rank in the first half of the other list, so the word is common in both states
                at = int(rng.integers(0, len(self.emit_words[j]) // 2 + 1))
                self.emit_words[j].insert(at, str(w))
        self.emit_cdf = []
        for ws in self.emit_words:
            p = 1.0 / np.arange(1, len(ws) + 1) ** 1.05  # Zipf over the state's list
            self.emit_cdf.append(np.cumsum(p / p.sum()).tolist())
        self.vocabulary = sorted({w for ws in self.emit_words for w in ws})
        # the unrelated process: its own chain, words partitioned at random among its states
        self.other_trans_cdf = np.cumsum(rng.dirichlet(np.full(OTHER_STATES, 0.5), size=OTHER_STATES), axis=1).tolist()
        vocab = [w for w in self.vocabulary if w.isalpha()]
        assign = rng.integers(0, OTHER_STATES, size=len(vocab))
        self.other_words = [[w for w, a in zip(vocab, assign) if a == q] for q in range(OTHER_STATES)]
        self.other_emit_cdf = []
        for ws in self.other_words:
            p = 1.0 / np.arange(1, len(ws) + 1) ** 1.05
            self.other_emit_cdf.append(np.cumsum(p / p.sum()).tolist())

    @staticmethod
    def _make_words(rng: np.random.Generator, n: int) -> list[str]:
        out: list[str] = []
        seen: set[str] = set()
        while len(out) < n:
            n_syl = int(rng.integers(1, 4))
            w = "".join(
                _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] for _ in range(n_syl)
            ) + _CODAS[rng.integers(len(_CODAS))]
            if w not in seen:
                seen.add(w)
                out.append(w)
        return out

    @staticmethod
    def _draw(cdf: list, u: float) -> int:
        """Inverse-CDF draw: the first index whose cumulative probability exceeds ``u``."""
        return min(bisect_right(cdf, u), len(cdf) - 1)

    def sentence(self, rng: np.random.Generator) -> tuple[list[str], list[int]]:
        """(words, fine state ids); the last state is a PUNCT state."""
        n = int(rng.integers(MIN_LEN, MAX_LEN + 1))
        u = rng.random(2 * n).tolist()
        states = [self._draw(self.start_cdf, u[0])]
        for t in range(1, n - 1):
            states.append(self._draw(self.trans_cdf[states[-1]], u[t]))
        states.append(int(self.end_states[self._draw(self.end_cdf, u[n - 1])]))
        words = [self.emit_words[s][self._draw(self.emit_cdf[s], u[n + t])] for t, s in enumerate(states)]
        return words, states

    def other_sentence(self, rng: np.random.Generator) -> tuple[list[str], list[str]]:
        n = int(rng.integers(MIN_LEN, MAX_LEN + 1))
        u = rng.random(2 * n).tolist()
        q = int(rng.integers(OTHER_STATES))
        words, labels = [], []
        for t in range(n):
            if t:
                q = self._draw(self.other_trans_cdf[q], u[t])
            words.append(self.other_words[q][self._draw(self.other_emit_cdf[q], u[n + t])])
            labels.append(f"Q{q + 1}")
        return words, labels


def _labels_for(task: str, g: _Grammar, states: list[int], rng: np.random.Generator) -> list[str]:
    coarse = [g.coarse_of[s] for s in states]
    if task == "fine":
        return [g.states[s] for s in states]
    if task == "coarse":
        return coarse
    if task == "next":
        return coarse[1:] + ["END"]
    if task == "keep":
        keep = [c in CONTENT or g.states[s] == "ADJ1" for s, c in zip(states, coarse)]
        flip = rng.random(len(states)) < KEEP_NOISE
        return ["KEEP" if k != f else "DEL" for k, f in zip(keep, flip)]
    if task == "chunk":
        out: list[str] = []
        prev = None
        for c in coarse:
            ch = CHUNK_OF[c]
            if ch is None:
                out.append("O")
            elif ch == prev and not (c == "DET"):
                out.append(f"I-{ch}")
            else:
                out.append(f"B-{ch}")
            prev = ch
        return out
    if task == "entity":
        out = []
        prev_ent = False
        for s in states:
            ent = g.states[s] in ENTITY_STATES
            out.append(("I-ENT" if prev_ent else "B-ENT") if ent else "O")
            prev_ent = ent
        return out
    raise ValueError(f"unknown synthetic task {task!r}")


def _readme(seed: int, sizes: dict[str, dict[str, tuple[int, int]]], n_types: int) -> str:
    lines = [
        "mtlfast generated default suite",
        "===============================",
        "",
        f"Generated by mtlfast.data.synthetic.generate_suite(out_dir, seed={seed}); the same seed gives",
        "byte-identical files. Seven tagging tasks; six are views of one hidden-Markov 'grammar' and one",
        "('other') comes from an independent process over the same words. Format: token<TAB>label, blank line",
        "between sentences, UTF-8; labels.txt lists each task's labels.",
        "",
        "How it is made (see the docstring of mtlfast/data/synthetic.py for all parameters):",
        "- 22 hidden states in 7 coarse classes (DET ADJ NOUN VERB ADV ADP PUNCT); transitions from a coarse",
        "  grammar perturbed per state; each state emits words from its own Zipf list, 15% of open-class",
        "  words are shared with a second state (ambiguity); sentences of 8-20 tokens end with punctuation.",
        "- fine: the hidden state. coarse: its class. chunk: BIO NP/VP/PP chunks over runs of classes.",
        "  next: the class of the next token (END last). keep: KEEP for content states, DEL otherwise, 8% noise.",
        "  entity: B-/I-ENT over the two capitalised 'proper noun' states. other: state of an unrelated 6-state",
        "  HMM whose emissions are a random partition of the same vocabulary.",
        "",
        f"Word types over all tasks and splits: {n_types}.",
        "",
        "task      split  sentences  tokens",
    ]
    for task, splits in sizes.items():
        for split, (ns, nt) in splits.items():
            lines.append(f"{task:<9} {split:<6} {ns:>9}  {nt:>6}")
    return "\n".join(lines) + "\n"


def generate_suite(out_dir, seed: int = 0) -> list[Path]:
    """Write the generated suite into ``out_dir`` (created if needed) and return the task folders (sorted).

    Deterministic: the same ``seed`` gives byte-identical files on every machine (NumPy's PCG64 generator).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = np.random.SeedSequence(int(seed))
    grammar_seed, *task_seeds = root.spawn(1 + len(TASKS))
    g = _Grammar(np.random.default_rng(grammar_seed))
    paths: list[Path] = []
    sizes: dict[str, dict[str, tuple[int, int]]] = {}
    types: set[str] = set()
    for (task, n_train), ts in zip(TASKS, task_seeds):
        rng = np.random.default_rng(ts)
        folder = out_dir / task
        labels: set[str] = set()
        sizes[task] = {}
        for split, n in (("train", n_train), ("dev", N_DEV), ("test", N_TEST)):
            toks, tags = [], []
            for _ in range(n):
                if task == "other":
                    words, lab = g.other_sentence(rng)
                else:
                    words, states = g.sentence(rng)
                    lab = _labels_for(task, g, states, rng)
                toks.append(words)
                tags.append(lab)
                labels.update(lab)
                types.update(w.lower() for w in words)
            write_split(folder / f"{split}.tsv", toks, tags)
            sizes[task][split] = (n, sum(len(s) for s in toks))
        write_labels(folder / "labels.txt", labels)
        paths.append(folder)
    with open(out_dir / "README.txt", "w", encoding="utf-8", newline="\n") as fh:
        fh.write(_readme(int(seed), sizes, len(types)))
    return sorted(paths)

"""Everything a run group needs from the data layer, loaded once per process (driver or remote worker)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass
class TrainInputs:
    """The encoded suite and the initial embedding table.

    ``emb_init`` [V, E] holds the pretrained vector of every word that has one; rows where ``has_vector`` is
    False are re-drawn per run from ``Normal(0, emb_scale)`` with the run's own generator, so that runs of
    different seeds differ there too (``mtlfast.data.embedding_matrix``' rule: the pretrained vectors' standard
    deviation, 0.1 without vectors).
    """

    suite: object  # mtlfast.data.EncodedSuite
    tasks: list  # mtlfast.data.Task, in suite order
    emb_init: np.ndarray  # float32 [V, E]
    has_vector: np.ndarray  # bool [V]
    emb_scale: float
    embeddings: object | None = None  # mtlfast.data.Embeddings

    @property
    def vocab_size(self) -> int:
        return int(self.emb_init.shape[0])

    @property
    def emb_dim(self) -> int:
        return int(self.emb_init.shape[1])

    def n_labels(self, task: str) -> int:
        return len(self.suite.tasks[task].labels)


def prepare_inputs(task_paths: Sequence[str | Path], embeddings: str | None = None, emb_dim: int = 100,
                   task_names: Sequence[str] | None = None, protocol: str = "clean") -> TrainInputs:
    """Load the tasks (a suite folder or task folders), keep ``task_names`` (suite order) if given, encode them
    with one shared vocabulary and build the embedding table (GloVe rows where ``embeddings`` has them).

    ``protocol="original"`` encodes the original's way (:func:`mtlfast.data.encode.encode_suite_original`:
    GO/EOS, lower-cased labels, one shared OOV row for every word without a vector); the rows of PAD, GO, OOV
    and EOS (ids 0-3) are the table's rows without a vector.
    """
    from mtlfast.data import embedding_matrix, encode_suite, find_task_dirs, load_embeddings, load_suite

    if protocol not in ("clean", "original"):
        raise ValueError(f"protocol: expected 'original' or 'clean', got {protocol!r}")

    dirs = [d for p in task_paths for d in find_task_dirs(p)]
    if task_names:
        by_name = {d.name: d for d in dirs}
        missing = [n for n in task_names if n not in by_name]
        if missing:
            raise ValueError(f"--tasks: no task named {', '.join(missing)} in the data (found: {', '.join(by_name)})")
        dirs = [d for d in dirs if d.name in set(task_names)]
    tasks = load_suite(dirs)
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"--data: two tasks have the same name: {names}")
    if protocol == "original":
        return _prepare_original(tasks, embeddings, emb_dim)
    suite = encode_suite(tasks)
    emb = None
    if embeddings:
        emb = load_embeddings(embeddings, words=suite.vocab.itos)
    matrix, has_vector = embedding_matrix(suite.vocab, emb, dim=emb_dim, seed=0)
    scale = 0.1
    if emb is not None and len(emb.vectors):
        scale = float(emb.vectors.std()) or 0.1
    return TrainInputs(suite=suite, tasks=tasks, emb_init=matrix, has_vector=np.asarray(has_vector, bool),
                       emb_scale=scale, embeddings=emb)


def _prepare_original(tasks, embeddings, emb_dim: int) -> TrainInputs:
    from mtlfast.data import load_embeddings
    from mtlfast.data.encode import encode_suite_original

    loaded = {}

    def vector_words(forms):
        loaded["emb"] = load_embeddings(embeddings, words=forms)
        return loaded["emb"].index

    suite = encode_suite_original(tasks, vector_words if embeddings else None)
    emb = loaded.get("emb")
    V = len(suite.vocab.itos)
    E = emb.dim if emb is not None else int(emb_dim)
    # Rows without a vector (the four specials; every word without embeddings) are drawn per run from
    # Normal(0, emb_scale) by init_run_state; row 0 (PAD) stays 0 (it never reaches an output).
    matrix = np.zeros((V, E), dtype=np.float32)
    has_vector = np.zeros(V, dtype=bool)
    scale = 0.1
    if emb is not None:
        rows = np.fromiter((emb.index.get(w, -1) for w in suite.vocab.itos[4:]), dtype=np.int64, count=V - 4)
        assert (rows >= 0).all(), "every non-special word of the original vocabulary has a vector"
        matrix[4:] = emb.vectors[rows]
        has_vector[4:] = True
        if len(emb.vectors):
            scale = float(emb.vectors.std()) or 0.1
    return TrainInputs(suite=suite, tasks=tasks, emb_init=matrix, has_vector=has_vector, emb_scale=scale,
                       embeddings=emb)

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
                   task_names: Sequence[str] | None = None) -> TrainInputs:
    """Load the tasks (a suite folder or task folders), keep ``task_names`` (suite order) if given, encode them
    with one shared vocabulary and build the embedding table (GloVe rows where ``embeddings`` has them)."""
    from mtlfast.data import embedding_matrix, encode_suite, find_task_dirs, load_embeddings, load_suite

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

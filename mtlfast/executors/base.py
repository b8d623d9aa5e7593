"""The executor interface: where run groups are trained. The driver (``mtlfast.sweep``) alone writes the store.

An executor receives run groups (lists of :class:`mtlfast.train.RunSpec`, each trained as one model array),
the :class:`mtlfast.train.TrainSettings`, and how to obtain the training inputs (:class:`InputsSpec`, so a
remote worker can load the suite itself), and it delivers every engine event to ``on_event`` *in the
driver's thread*. A group that fails is reported through ``on_group_error(group, reason)``; the driver marks
its runs failed and the sweep goes on. :class:`TrainingInterrupted` (the user stopped the sweep) propagates.

Implementations: :mod:`mtlfast.executors.inprocess` (default: the groups one after another in this process)
and :mod:`mtlfast.executors.ray` (ship ``InputsSpec`` + specs to a worker that calls
:func:`mtlfast.train.prepare_inputs` and :func:`mtlfast.train.train_group` with a callback that queues events,
and replay the queue into ``on_event`` on the driver). Both import this module; it imports neither.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable

from mtlfast.train import RunSpec, TrainSettings, prepare_inputs


@dataclass(frozen=True)
class InputsSpec:
    """Enough to rebuild :class:`mtlfast.train.TrainInputs` anywhere: ``prepare_inputs(**asdict(spec))``."""

    task_paths: tuple[str, ...]
    embeddings: str | None = None
    emb_dim: int = 100
    task_names: tuple[str, ...] = field(default_factory=tuple)
    protocol: str = "clean"  # "original" encodes the original's way (GO/EOS, shared OOV row)

    def load(self):
        return prepare_inputs(list(self.task_paths), self.embeddings, self.emb_dim, list(self.task_names) or None,
                              protocol=self.protocol)


class Executor(abc.ABC):
    name = "abstract"

    @abc.abstractmethod
    def run(self, groups: list[list[RunSpec]], settings: TrainSettings, on_event: Callable,
            should_stop: Callable[[], bool], on_group_error: Callable[[list[RunSpec], str], None]) -> None:
        """Train every group; deliver events in the caller's thread."""

    def close(self) -> None:  # pragma: no cover - nothing to release in-process
        pass

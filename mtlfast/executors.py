"""Executors: where run groups are trained. The driver (``mtlfast.sweep``) alone writes the store.

An executor receives run groups (lists of :class:`mtlfast.train.RunSpec`, each trained as one model array),
the :class:`mtlfast.train.TrainSettings`, and how to obtain the training inputs (:class:`InputsSpec`, so a
remote worker can load the suite itself), and it delivers every engine event to ``on_event`` *in the
driver's thread*. A group that fails is reported through ``on_group_error(group, reason)``; the driver marks
its runs failed and the sweep goes on. :class:`TrainingInterrupted` (the user stopped the sweep) propagates.

``InProcessExecutor`` (default) trains the groups one after another in this process. A distributed executor
(Ray, issue 9) implements the same :class:`Executor` interface: ship ``InputsSpec`` + specs to a worker that
calls :func:`mtlfast.train.prepare_inputs` and :func:`mtlfast.train.train_group` with a callback that queues
events, and replay the queue into ``on_event`` on the driver.
"""

from __future__ import annotations

import abc
import traceback
from dataclasses import dataclass, field
from typing import Callable

from mtlfast.train import RunSpec, TrainingInterrupted, TrainSettings, prepare_inputs, train_group


@dataclass(frozen=True)
class InputsSpec:
    """Enough to rebuild :class:`mtlfast.train.TrainInputs` anywhere: ``prepare_inputs(**asdict(spec))``."""

    task_paths: tuple[str, ...]
    embeddings: str | None = None
    emb_dim: int = 100
    task_names: tuple[str, ...] = field(default_factory=tuple)

    def load(self):
        return prepare_inputs(list(self.task_paths), self.embeddings, self.emb_dim, list(self.task_names) or None)


class Executor(abc.ABC):
    name = "abstract"

    @abc.abstractmethod
    def run(self, groups: list[list[RunSpec]], settings: TrainSettings, on_event: Callable,
            should_stop: Callable[[], bool], on_group_error: Callable[[list[RunSpec], str], None]) -> None:
        """Train every group; deliver events in the caller's thread."""

    def close(self) -> None:  # pragma: no cover - nothing to release in-process
        pass


class InProcessExecutor(Executor):
    """Train the groups one after another in this process (one model array at a time)."""

    name = "inprocess"

    def __init__(self, inputs_spec: InputsSpec, inputs=None):
        self.inputs_spec = inputs_spec
        self._inputs = inputs

    @property
    def inputs(self):
        if self._inputs is None:
            self._inputs = self.inputs_spec.load()
        return self._inputs

    def run(self, groups, settings, on_event, should_stop, on_group_error) -> None:
        for group in groups:
            if should_stop():
                raise TrainingInterrupted("stopped before starting a group")
            try:
                train_group(group, self.inputs, settings, on_event, should_stop)
            except (TrainingInterrupted, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - one failed group must not stop the sweep
                on_group_error(group, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")


def make_executor(name: str, inputs_spec: InputsSpec, inputs=None, **options) -> Executor:
    """``options`` go to the executor (Ray: address, max_retries, threads, device, resume_state)."""
    if name == "inprocess":
        return InProcessExecutor(inputs_spec, inputs)
    if name == "ray":
        from mtlfast.executors_ray import RayExecutor  # imports Ray only now: it is an optional extra

        return RayExecutor(inputs_spec, inputs, **options)
    raise ValueError(f"unknown executor {name!r} (available: inprocess, ray)")

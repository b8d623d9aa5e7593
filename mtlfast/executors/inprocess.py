"""The default executor: train the run groups one after another in this process."""

from __future__ import annotations

import traceback

from mtlfast.executors.base import Executor, InputsSpec
from mtlfast.train import TrainingInterrupted, train_group

__all__ = ["InProcessExecutor"]


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

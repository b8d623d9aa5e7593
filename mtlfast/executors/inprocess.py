"""The default executor: train the run groups one after another in this process."""

from __future__ import annotations

import traceback

from mtlfast.executors.base import Executor, InputsSpec
from mtlfast.train import RunStarted, TrainingInterrupted, train_group

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
        """``groups``: any iterable of run groups (the sweep passes a generator that loads each group's
        checkpoints only when the group is taken). A run's checkpoint state (``spec.resume``) is let go once the
        engine has started the run from it (:class:`RunStarted`): the array holds the run's own copy, so the
        checkpoint would otherwise stay in memory beside it until the group ends."""
        for group in groups:
            if should_stop():
                raise TrainingInterrupted("stopped before starting a group")
            by_id = {s.run_id: s for s in group}

            def events(ev, by_id=by_id):
                if isinstance(ev, RunStarted) and ev.run_id in by_id:
                    by_id[ev.run_id].resume = None
                on_event(ev)

            try:
                train_group(group, self.inputs, settings, events, should_stop)
            except (TrainingInterrupted, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - one failed group must not stop the sweep
                on_group_error(group, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")

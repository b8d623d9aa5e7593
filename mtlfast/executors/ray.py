"""Ray executor: spread the run groups of a sweep over a Ray cluster; the driver alone writes the store.

Each run group (one model array) becomes one Ray task, :func:`train_group_task`, that asks for ``threads``
CPUs (1 when ``--threads`` is 0) and one GPU with ``--device cuda``. The task loads the training inputs itself
(:class:`mtlfast.executors.base.InputsSpec`: the data must be at the same path on every node, e.g. a shared file
system; loaded once per worker process), runs :func:`mtlfast.train.train_group` in a thread and *streams* the
engine's events back as they come (a Ray generator task: one chunk every ``flush_s`` seconds, and at once
when a run starts, is checkpointed or finishes). The driver replays the chunks into ``on_event`` in its own thread,
so the SQLite store is written by the driver process only, exactly as with the in-process executor.

Failures
--------
* A worker that dies (process killed, node lost, out of memory: any Ray system error) loses only the events
  it had not shipped yet. The group's unfinished runs are retried, at most ``max_retries`` times, each from
  the last checkpoint the driver stored (``resume_state``: :meth:`mtlfast.store.Store.resume_state`, which also
  deletes the run's rows beyond that checkpoint; they are produced again). Runs the group had finished stay
  finished. After the last retry the runs are reported through ``on_group_error`` (marked failed with the
  reason) and the rest of the sweep goes on.
* An exception raised by the training code itself (bad data, a bug) is not retried: it would fail again. The
  group's unfinished runs are reported failed at once, as the in-process executor does.
* Ctrl-C (``should_stop``): running groups are told to stop through a named Ray actor that they poll five times
  a second; they emit a checkpoint of every active run, which the driver stores, before
  :class:`mtlfast.train.TrainingInterrupted` is raised. Groups that had not started are cancelled.

Ray is optional (``pip install 'mtlfast[ray]'``): this module imports it only when an executor is created.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import site
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from mtlfast.config import ConfigError
from mtlfast.executors.base import Executor, InputsSpec
from mtlfast.train import Checkpoint, Progress, RunDone, RunSpec, RunStarted, TrainingInterrupted, TrainSettings

RAY_MISSING = "--executor ray needs Ray, which is not installed here: pip install 'mtlfast[ray]'"
#: Seconds between chunks of events shipped by a worker (checkpoints and finished runs go at once).
FLUSH_SECONDS = 0.5
#: Seconds between two looks of a worker at the stop flag.
STOP_POLL_SECONDS = 0.2


def import_ray():
    """Return the ``ray`` module, or raise :class:`ConfigError` with the install command."""
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _export_source_path() -> None:
    """Let local Ray workers import this copy of mtlfast when it runs from a source checkout (not installed):
    workers inherit the driver's environment, not its ``sys.path``."""
    root = str(Path(__file__).resolve().parent.parent)
    installed = {str(Path(p).resolve()) for p in site.getsitepackages() + [site.getusersitepackages()]}
    if root in installed:
        return
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root] + parts)


def init_local_ray(num_cpus: int | None = None, **kwargs):
    """Start a local Ray instance (``num_cpus``: default all available cores, no dashboard) whose workers can
    import mtlfast; return the ``ray`` module."""
    import logging

    ray = import_ray()
    _export_source_path()
    # address="local": a new instance even where `ray start` left a cluster running (or its address file).
    ray.init(address="local", num_cpus=num_cpus or available_cores(), include_dashboard=False,
             logging_level=logging.WARNING, **kwargs)
    return ray


# ------------------------------------------------------------------------------------------------------------
# Worker side.

_INPUTS: dict = {}  # InputsSpec -> TrainInputs, one suite per worker process (workers are reused)
_END = object()
INTERRUPTED = "interrupted"  # last chunk of a group stopped on request


def _worker_inputs(spec: InputsSpec):
    inputs = _INPUTS.get(spec)
    if inputs is None:
        for p in spec.task_paths:
            if not os.path.exists(p):
                import socket

                raise FileNotFoundError(f"{p}: not found on Ray node {socket.gethostname()}; the data must be at the"
                                        " same path on every node of the cluster (a shared file system)")
        _INPUTS.clear()
        inputs = _INPUTS[spec] = spec.load()
    return inputs


def _compact(events: list) -> list:
    """The chunk to ship: events in order, the many Progress events summed into one at the end."""
    steps = sum(e.run_steps for e in events if isinstance(e, Progress))
    out = [e for e in events if not isinstance(e, Progress)]
    if steps:
        out.append(Progress(steps))
    return out


def train_group_task(specs: list[RunSpec], settings: TrainSettings, inputs_spec: InputsSpec, threads: int,
                     stop_name: str | None, flush_s: float = FLUSH_SECONDS):
    """Ray generator task: train ``specs`` as one model array and yield the engine's events in chunks (lists).

    The last chunk is ``[INTERRUPTED]`` when the driver asked the group to stop (after the checkpoints). An
    exception of the engine is raised after the events that preceded it have been shipped.
    """
    import torch

    torch.set_num_threads(max(1, threads))
    inputs = _worker_inputs(inputs_spec)
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    outcome: dict = {}

    def train():
        try:
            from mtlfast.train import train_group

            train_group(specs, inputs, settings, events.put, stop.is_set)
        except TrainingInterrupted:
            outcome["interrupted"] = True
        except BaseException as exc:  # noqa: BLE001 - re-raised in the task's thread below
            outcome["error"] = exc
        finally:
            events.put(_END)

    trainer = threading.Thread(target=train, name="mtlfast-train-group", daemon=True)
    trainer.start()
    buf: list = []
    last_flush = last_poll = time.monotonic()
    while True:
        try:
            ev = events.get(timeout=0.1)
        except queue.Empty:
            ev = None
        if ev is _END:
            break
        if ev is not None:
            buf.append(ev)
        now = time.monotonic()
        if stop_name and not stop.is_set() and now - last_poll >= STOP_POLL_SECONDS:
            last_poll = now
            if _stop_requested(stop_name):
                stop.set()
        if buf and (isinstance(ev, (RunStarted, Checkpoint, RunDone)) or now - last_flush >= flush_s):
            yield _compact(buf)
            buf, last_flush = [], now
    trainer.join()
    if buf:
        yield _compact(buf)
    if "error" in outcome:
        raise outcome["error"]
    if outcome.get("interrupted"):
        yield [INTERRUPTED]


def _stop_requested(name: str) -> bool:
    import ray

    try:
        ray.get_actor(name)
    except ValueError:
        return False
    return True


class _StopFlag:
    """A named actor whose existence means: stop and checkpoint (workers only look it up by name)."""

    def ping(self) -> bool:
        return True


# ------------------------------------------------------------------------------------------------------------
# Driver side.


@dataclasses.dataclass
class _Job:
    """One run group across its attempts."""

    specs: list[RunSpec]  # unfinished runs of the group (what the next attempt trains)
    initial: dict[str, int]  # run_id -> step the sweep started it from
    attempt: int = 0
    start: dict[str, int] = dataclasses.field(default_factory=dict)  # run_id -> step of this attempt's start
    done: dict[str, int] = dataclasses.field(default_factory=dict)  # run_id -> final step
    checkpoints: dict[str, dict] = dataclasses.field(default_factory=dict)  # last state seen (fallback resume)
    position: int = 0  # run-steps trained beyond ``initial`` as of the latest event
    shown: int = 0  # run-steps already shown on the progress bar (never shown twice after a retry)
    started: bool = False  # a chunk came back from the current attempt
    interrupted: bool = False

    def remaining(self) -> list[RunSpec]:
        return [s for s in self.specs if s.run_id not in self.done]


def _step_of(state: dict | None) -> int:
    return int(state["step"]) if state is not None else 0


class RayExecutor(Executor):
    """Train the run groups as Ray tasks on a cluster (``address``) or on a local Ray instance.

    Parameters
    ----------
    inputs_spec : InputsSpec
        How workers load the suite (paths must exist on every node).
    address : str or None
        A running cluster (``HOST:6379``, ``auto``, ``ray://…``); None starts a local instance with all
        available cores. An already initialised Ray (e.g. a test fixture) is used as it is.
    max_retries : int
        Attempts after the first for a group whose worker died.
    threads : int
        CPUs requested per group (and torch threads in the worker); 0 means 1.
    device : str
        ``cpu``, or ``cuda``/``cuda:N``: one GPU per group (Ray chooses which; the worker sees it as ``cuda``).
    resume_state : callable or None
        ``run_id -> checkpoint state or None``, read from the driver's store (:meth:`Store.resume_state`)
        before a retry. Without it, the last checkpoint event the executor saw is used.
    log : callable or None
        Where notices go (default: stderr, above the progress bar).
    """

    name = "ray"

    def __init__(self, inputs_spec: InputsSpec, inputs=None, *, address: str | None = None, max_retries: int = 2,
                 threads: int = 0, device: str = "cpu", resume_state: Callable[[str], dict | None] | None = None,
                 log: Callable[[str], None] | None = None, flush_s: float = FLUSH_SECONDS):
        if max_retries < 0:
            raise ConfigError(f"--max-retries: expected an integer >= 0, got {max_retries!r}")
        self.inputs_spec = inputs_spec
        self.address = address
        self.max_retries = int(max_retries)
        self.num_cpus = max(1, int(threads or 1))
        self.num_gpus = 1 if str(device).startswith("cuda") else 0
        self.resume_state = resume_state
        self.flush_s = flush_s
        self._log = log or _log
        self.retries = 0  # attempts made after a worker died, over the whole sweep (for reports and tests)
        self._active: dict = {}
        self._stop_actor = None
        ray = self.ray = import_ray()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            try:
                if address:
                    import logging

                    ray.init(address=address, logging_level=logging.WARNING)
                else:
                    init_local_ray()
            except Exception as exc:  # noqa: BLE001 - one clear line instead of Ray's traceback
                where = f"--address {address}" if address else "a local Ray instance"
                hint = ""
                if address and os.environ.get("RAY_AUTH_MODE") is None:
                    hint = (" (a cluster with token authentication, Ray's default, also needs RAY_AUTH_MODE=token"
                            " and the head's ~/.ray/auth_token on this machine)")
                raise ConfigError(f"--executor ray: cannot start or reach {where}: {type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''}{hint}") from None
        self._check_resources()

    def _check_resources(self) -> None:
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        total = self.ray.cluster_resources()
        where = (f"cluster at {self.address}" if self.address else "new local instance" if self._owns_ray
                 else "the Ray already initialised in this process")
        self._log(f"Ray: {where}, {len(nodes)}"
                  f" node(s), {total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs; each model array asks"
                  f" for {self.num_cpus} CPU(s)" + (f" and {self.num_gpus} GPU" if self.num_gpus else ""))
        most_cpus = max((r.get("CPU", 0) for r in nodes), default=0)
        gpus = sum(r.get("GPU", 0) for r in nodes)
        if self.num_gpus and not gpus:
            raise ConfigError("--device cuda: the Ray cluster has no GPU (start the workers on GPU machines,"
                              " or use --device cpu)")
        if self.num_cpus > most_cpus:
            msg = (f"--threads {self.num_cpus}: no Ray node has that many CPUs (the largest has {most_cpus:g});"
                   " lower --threads")
            if self._owns_ray and not self.address:
                raise ConfigError(msg)
            self._log(f"warning: {msg}; the groups wait until such a node joins")

    # --------------------------------------------------------------------------------------------------------
    def run(self, groups, settings: TrainSettings, on_event, should_stop, on_group_error) -> None:
        ray = self.ray
        if not groups:
            return
        if self.num_gpus:  # Ray sets CUDA_VISIBLE_DEVICES to the GPU it gave the worker
            settings = dataclasses.replace(settings, device="cuda")
        stop_name = f"mtlfast-stop-{uuid.uuid4().hex[:12]}"
        task = ray.remote(train_group_task).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                                    num_returns="streaming", max_retries=0,
                                                    retry_exceptions=False)
        cpus = ray.cluster_resources().get("CPU", 0)
        if len(groups) == 1 and len(groups[0]) > 1 and cpus >= 2 * self.num_cpus:
            self._log(f"Ray: one model array of {len(groups[0])} runs keeps one worker busy; --array-size K spreads"
                      f" the runs over several workers ({cpus:g} CPUs in the cluster)")

        def submit(job: _Job) -> None:
            job.start = {s.run_id: _step_of(s.resume) for s in job.specs}
            job.started = False
            gen = task.remote(job.specs, settings, self.inputs_spec, self.num_cpus, stop_name, self.flush_s)
            self._active[gen] = job

        for g in groups:
            specs = list(g)
            submit(_Job(specs, initial={s.run_id: _step_of(s.resume) for s in specs}))

        stopping = False
        try:
            while self._active:
                if not stopping and should_stop():
                    stopping = True
                    self._request_stop(stop_name)
                    for gen, job in list(self._active.items()):
                        if not job.started:  # nothing of it reached the store yet: nothing to checkpoint
                            ray.cancel(gen)
                            del self._active[gen]
                    continue
                ready, _ = ray.wait(list(self._active), num_returns=1, timeout=0.1)
                for gen in ready:
                    job = self._active[gen]
                    try:
                        chunk = ray.get(next(gen))
                    except StopIteration:
                        del self._active[gen]
                        left = job.remaining()
                        if left and not job.interrupted and not stopping:
                            on_group_error(left, "the Ray task ended before these runs finished")
                        continue
                    except ray.exceptions.TaskCancelledError:
                        del self._active[gen]
                        continue
                    except ray.exceptions.RayTaskError as exc:  # the training code raised: would fail again
                        del self._active[gen]
                        if job.remaining():
                            on_group_error(job.remaining(), _reason(exc))
                        continue
                    except ray.exceptions.RayError as exc:  # the worker (or its node) is gone
                        del self._active[gen]
                        if not stopping:
                            self._retry_or_fail(job, exc, submit, on_group_error)
                        continue
                    job.started = True
                    self._replay(job, chunk, on_event)
        finally:
            self._release_stop(stop_name)
        if stopping:
            raise TrainingInterrupted("stopped; every running group checkpointed its runs")

    def _replay(self, job: _Job, chunk: list, on_event) -> None:
        for ev in chunk:
            if isinstance(ev, str):  # INTERRUPTED
                job.interrupted = True
                continue
            if isinstance(ev, Progress):
                job.position += ev.run_steps
                if job.position > job.shown:
                    on_event(Progress(job.position - job.shown))
                    job.shown = job.position
                continue
            if isinstance(ev, Checkpoint) and self.resume_state is None:
                job.checkpoints[ev.run_id] = ev.state
            elif isinstance(ev, RunDone):
                job.done[ev.run_id] = ev.step
                job.checkpoints.pop(ev.run_id, None)
            elif isinstance(ev, RunStarted):
                job.start[ev.run_id] = ev.step
            on_event(ev)

    def _retry_or_fail(self, job: _Job, exc, submit, on_group_error) -> None:
        left = job.remaining()
        if not left:
            return
        job.attempt += 1
        why = _reason(exc).splitlines()[0]
        if job.attempt > self.max_retries:
            on_group_error(left, f"Ray worker lost {job.attempt} time(s), giving up after --max-retries "
                                 f"{self.max_retries}: {why}")
            return
        self.retries += 1
        for s in left:
            if self.resume_state is not None:
                s.resume = self.resume_state(s.run_id)
            else:
                s.resume = job.checkpoints.get(s.run_id, s.resume)
        job.specs = left
        # Progress bar: what survives is the finished runs and the checkpoints; redone steps are not shown again.
        job.position = (sum(step - job.initial[r] for r, step in job.done.items())
                        + sum(_step_of(s.resume) - job.initial[s.run_id] for s in left))
        at = ", ".join(f"{s.run_id} from step {_step_of(s.resume)}" for s in left)
        self._log(f"Ray worker lost ({why}); retry {job.attempt}/{self.max_retries} of {at}")
        submit(job)

    # --------------------------------------------------------------------------------------------------------
    def _request_stop(self, name: str) -> None:
        try:
            self._stop_actor = self.ray.remote(num_cpus=0)(_StopFlag).options(name=name).remote()
        except Exception as exc:  # noqa: BLE001
            self._log(f"Ray: could not signal the workers to stop ({exc}); their last checkpoints are kept")

    def _release_stop(self, name: str) -> None:
        if self._stop_actor is not None:
            try:
                self.ray.kill(self._stop_actor)
            except Exception:  # noqa: BLE001
                pass
            self._stop_actor = None

    def close(self) -> None:
        for gen in list(self._active):
            try:
                self.ray.cancel(gen, force=True)
            except Exception:  # noqa: BLE001
                pass
        self._active.clear()
        if self._owns_ray and self.ray.is_initialized():
            self.ray.shutdown()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _log(msg: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stderr)
    except Exception:  # noqa: BLE001
        print(msg, file=sys.stderr, flush=True)

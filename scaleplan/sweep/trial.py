"""The records a sweep trial crosses with: the request (grid point + sampled params), the outcome,
and the `Objective` protocol every evaluator (built-in trainer, user callable, user command) follows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from scaleplan.sweep.plan import GridPoint
from scaleplan.train.config import Checkpoint


class ObjectiveFailed(Exception):
    """The objective raised or its command failed: the trial is FAILED, the sweep stops."""


@dataclass(frozen=True)
class TrialRequest:
    """One trial to evaluate: its grid point and the searched parameter values."""

    point: GridPoint
    params: dict[str, float]

    def values(self) -> dict[str, Any]:
        """Everything a user objective receives: width, steps, batch_size, seed and the params."""
        return {**self.point.attrs(), **self.params}


@dataclass(frozen=True)
class Outcome:
    """A trial's result: loss (non-finite when diverged), N and D when known, and extra numbers."""

    loss: float
    diverged: bool
    n_params: int | None
    tokens: int | None
    extras: dict[str, float] = field(default_factory=dict)
    pruned: bool = False  # stopped at a checkpoint; `loss` is then its last intermediate held-out loss



class Objective(Protocol):
    """Evaluates trials; `population_size` > 1 lets one call train several trials together.

    Only the built-in trainer takes a `checkpoint` (the spec refuses a pruner with a user objective).
    """

    source: dict[str, str] | None  # the user's code file the objective runs and its sha256 (None: scaleplan's trainer)

    def population_size(self, point: GridPoint) -> int: ...

    def evaluate(self, requests: list[TrialRequest], checkpoint: Checkpoint | None = None) -> list[Outcome]: ...

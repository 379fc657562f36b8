"""The records that cross the train stage: `TrialConfig` (what to train) and `TrialResult`.

Pure Python (no torch) so that sweep specs can build and validate configs cheaply.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from scaleplan.errors import ScaleplanError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")

# A pruning callback: (steps done, held-out loss per member, NaN where stopped or diverged) -> stop per member.
Checkpoint = Callable[[int, list[float]], list[bool]]

# Fields that members of one population may differ in; every other field must be shared.
PER_MEMBER_FIELDS = ("lr", "seed", "weight_decay", "init_std", "output_mult", "beta0", "tau")


@dataclass(frozen=True)
class TrialConfig:
    """One training run: task, model at a width, parametrization, optimizer and budget.

    `init_std` and `output_mult` go to the parametrization; `beta0` and `tau` to the DenseAM model.
    `threads` is the torch thread count for the run (1 by default: sweeps run several workers);
    None leaves torch's setting alone. `device` is where the model trains ("cpu", "cuda", "cuda:1").
    """

    task: str = "teacher-student"
    model: str = "mlp"
    width: int = 64
    lr: float = 1e-2
    parametrization: str = "mup"
    base_width: int = 64
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    batch_size: int = 64
    steps: int = 200
    seed: int = 0
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    output_mult: float | None = None
    init_std: float | None = None
    beta0: float | None = None
    tau: float | None = None
    threads: int | None = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ScaleplanError(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ScaleplanError(f"unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        for key in ("width", "base_width", "batch_size", "steps"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ScaleplanError(f"{key} must be a positive integer, got {getattr(self, key)!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ScaleplanError(f"lr must be a positive finite number, got {self.lr!r}")
        for key in ("weight_decay", "init_std", "output_mult", "beta0", "tau"):
            value = getattr(self, key)
            if value is None and key != "weight_decay":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ScaleplanError(f"{key} must be a finite number, got {value!r}")
            if value < 0 or (value == 0 and key in ("output_mult", "beta0", "tau")):
                bound = ">= 0" if key in ("weight_decay", "init_std") else "> 0"
                raise ScaleplanError(f"{key} must be {bound}, got {value!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int):
            raise ScaleplanError(f"warmup_steps must be an integer, got {self.warmup_steps!r}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ScaleplanError(f"warmup_steps must be in [0, steps={self.steps}), got {self.warmup_steps}")
        if self.threads is not None and self.threads < 1:
            raise ScaleplanError(f"threads must be >= 1 or None, got {self.threads}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (sweep trial attributes)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialConfig:
        """Inverse of `to_dict`; unknown keys raise a ScaleplanError naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ScaleplanError(f"unknown trial config key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**data)

    def population_key(self) -> dict[str, Any]:
        """The fields that all members of one population must share."""
        return {k: v for k, v in self.to_dict().items() if k not in PER_MEMBER_FIELDS}


@dataclass(frozen=True)
class TrialResult:
    """Outcome of one trial. `loss` is the held-out loss (inf when diverged); `train_loss` is the
    mean training loss over the last tenth of the steps run; `tokens_or_samples` is D; `seconds` is
    wall time (for a population member: the population's wall time divided by its size). A `pruned`
    trial was stopped at a checkpoint: `loss` is its last intermediate held-out loss."""

    loss: float
    train_loss: float
    diverged: bool
    n_params: int
    tokens_or_samples: int
    seconds: float
    steps_run: int
    pruned: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (sweep trial attributes)."""
        return dataclasses.asdict(self)

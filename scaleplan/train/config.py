"""The records that cross the train stage: `TrialConfig` (what to train) and `TrialResult`.

Pure Python (no torch) so that sweep specs can build and validate configs cheaply.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from scaleplan.core.reference import as_betas, betas_problem, momentum_problem
from scaleplan.core.rules import undecayed_roles
from scaleplan.core.weight_decay import DECAY_CONVENTIONS, DECOUPLED_OPTIMIZERS, weight_decay_for
from scaleplan.errors import ScaleplanError, SpecError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "linear")
MEMORY_EPS = ("rule", "retrieval")  # a DenseAM memory eps: the rules' scaling, or kappa x the retrieved gradient at init
LM_SEQ_LEN = 64  # the char-level LM's default context (tasks/charlm.py uses it)
DEVICE_PATTERN = r"cpu|cuda(:[0-9]+)?"  # the devices training runs on (train.build.training_device)


def units_per_example(task: str | None, task_kwargs: dict[str, Any]) -> int:
    """Samples or tokens one training example adds to D, without building the task (no torch):
    seq_len for the char-level LM, 1 otherwise (each task's `units_per_example` agrees; tested)."""
    if task != "charlm":
        return 1
    seq_len = task_kwargs.get("seq_len", LM_SEQ_LEN)
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise SpecError(f"kwargs seq_len must be a positive integer (characters per example of the charlm task), got {seq_len!r}; "
                        f"e.g. seq_len = {LM_SEQ_LEN}")
    return seq_len

# A pruning callback: (steps done, held-out loss per member, NaN where stopped or diverged) -> stop per member.
Checkpoint = Callable[[int, list[float]], list[bool]]



def _searchable(default: float | None, bound: str) -> Any:
    """A field a sweep may search (`[search]`); population members may differ in it. `bound`: "> 0" or ">= 0"."""
    return field(default=default, metadata={"search": True, "bound": bound})


@dataclass(frozen=True)
class TrialConfig:
    """One training run: task, model at a width, parametrization, optimizer and budget.

    `init_std` and `output_mult` go to the parametrization; `beta0` and `tau` to the DenseAM model.
    `eps` is Adam's epsilon at the base width (the parametrization scales it per tensor where its rules say);
    `memory_eps="retrieval"` gives a DenseAM's memories kappa x their retrieved gradient at init instead
    (scaleplan.parametrization.memory_eps).
    Weight decay is `weight_decay` (lambda) in the AdamW convention `decay_convention`, or `wd_tau`: the
    decay timescale as a fraction of the run (tau = 1/(lr * lambda * steps) for "torch", 1/(lambda * steps)
    for "independent"), from which `effective_weight_decay` derives lambda per trial. `no_decay`: roles not decayed
    (param_groups' no_decay, e.g. ("vector", "fixed") for biases and norm gains).
    `threads` is the torch thread count for the run (1 by default: sweeps run several workers);
    None leaves torch's setting alone. `device` is where the model trains ("cpu", "cuda", "cuda:1").
    `momentum` and `nesterov` are torch.optim.SGD's (SGD only: Adam's first moment is its beta1, torch's 0.9); muP's
    SGD rules hold with momentum, which is linear in the gradient, but the optimal lr falls about as 1 - momentum.
    `betas` are Adam's and AdamW's (None: torch's default (0.9, 0.999); LLM recipes use (0.9, 0.95)).
    `clip_grad_norm` clips each step's global gradient norm (over all trained parameters) to this value, as
    torch.nn.utils.clip_grad_norm_ does; None (the default) does not clip. Searchable: a population clips
    every member by its own norm, so members with different thresholds share one.
    """

    task: str = "teacher-student"
    model: str = "mlp"
    width: int = 64
    lr: float = _searchable(1e-2, "> 0")
    parametrization: str = "mup"
    base_width: int = 64
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    batch_size: int = 64
    steps: int = 200
    seed: int = 0
    weight_decay: float = _searchable(0.0, ">= 0")
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    eps: float = 1e-8
    momentum: float = 0.0
    nesterov: bool = False
    betas: tuple[float, float] | None = None
    memory_eps: Literal["rule", "retrieval"] = "rule"
    output_mult: float | None = _searchable(None, "> 0")
    init_std: float | None = _searchable(None, ">= 0")
    beta0: float | None = _searchable(None, "> 0")
    tau: float | None = _searchable(None, "> 0")
    wd_tau: float | None = _searchable(None, "> 0")
    clip_grad_norm: float | None = _searchable(None, "> 0")
    decay_convention: Literal["torch", "independent"] = "torch"
    no_decay: tuple[str, ...] = ()
    completep: bool = False
    base_depth: int | None = None
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
        for f in dataclasses.fields(self):
            if not f.metadata.get("search"):
                continue
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ScaleplanError(f"{f.name} must be a finite number, got {value!r}")
            if value < 0 or (value == 0 and f.metadata["bound"] == "> 0"):
                raise ScaleplanError(f"{f.name} must be {f.metadata['bound']}, got {value!r}")
        if self.base_depth is not None and (isinstance(self.base_depth, bool) or not isinstance(self.base_depth, int) or self.base_depth < 1):
            raise ScaleplanError(f"base_depth must be a positive integer, got {self.base_depth!r}")
        if self.completep and self.base_depth is None:
            raise ScaleplanError("completep=True needs base_depth (the depth the lr was tuned at); without it the depth ratio is 1")
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not 0 < self.eps < 1:
            raise ScaleplanError(f"eps (Adam's epsilon) must be a number in (0, 1), got {self.eps!r}")
        problem = momentum_problem(self.momentum, self.nesterov, self.optimizer) or betas_problem(self.betas, self.optimizer)
        if problem is not None:
            raise ScaleplanError(problem)
        object.__setattr__(self, "betas", as_betas(self.betas))
        if self.memory_eps not in MEMORY_EPS:
            raise ScaleplanError(f"unknown memory_eps {self.memory_eps!r}; use one of {', '.join(MEMORY_EPS)}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int):
            raise ScaleplanError(f"warmup_steps must be an integer, got {self.warmup_steps!r}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ScaleplanError(f"warmup_steps must be in [0, steps={self.steps}), got {self.warmup_steps}")
        self._check_weight_decay()
        object.__setattr__(self, "no_decay", tuple(sorted(undecayed_roles(self.no_decay))))  # a spec's list; checked
        if self.threads is not None and self.threads < 1:
            raise ScaleplanError(f"threads must be >= 1 or None, got {self.threads}")
        if not isinstance(self.device, str) or not re.fullmatch(DEVICE_PATTERN, self.device):
            raise ScaleplanError(f"unknown device {self.device!r}: scaleplan trains on cpu, cuda or cuda:N (e.g. --device cuda:1)")

    def _check_weight_decay(self) -> None:
        if self.decay_convention not in DECAY_CONVENTIONS:
            raise ScaleplanError(f"unknown decay_convention {self.decay_convention!r}; use one of {', '.join(DECAY_CONVENTIONS)}")
        decoupled = self.optimizer in DECOUPLED_OPTIMIZERS
        if self.decay_convention == "independent" and not decoupled:
            raise ScaleplanError(f"decay_convention 'independent' is AdamW's decoupled decay; optimizer {self.optimizer!r} "
                                 "has L2 decay: use optimizer 'adamw'")
        if self.wd_tau is not None and not decoupled:
            raise ScaleplanError(f"wd_tau (the AdamW decay timescale) needs optimizer 'adamw'; {self.optimizer!r} has no "
                                 "decoupled decay")
        if self.wd_tau is not None and self.weight_decay != 0:
            raise ScaleplanError("give weight_decay or wd_tau (which sets it), not both")
        if self.wd_tau is not None and self.wd_tau * self.steps <= 1:
            raise ScaleplanError(
                f"wd_tau = {self.wd_tau:g} of a {self.steps}-step run is a decay timescale of {self.wd_tau * self.steps:g} step(s): "
                f"at the peak lr each step's decay would remove {1 / (self.wd_tau * self.steps):g}x each weight (all of it "
                f"or more: the weights vanish, flip or blow up); use wd_tau above 1/steps = {1 / self.steps:g}"
            )

    @property
    def effective_weight_decay(self) -> float:
        """The base lambda: `weight_decay`, or the one `wd_tau` gives at this lr and step count."""
        if self.wd_tau is None:
            return self.weight_decay
        return weight_decay_for(self.lr, self.wd_tau, self.steps, self.decay_convention)

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


# Declared once, on the fields themselves: what a sweep may search, and what population members may differ in.
SEARCHABLE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrialConfig) if f.metadata.get("search"))
PER_MEMBER_FIELDS: tuple[str, ...] = ("seed", *SEARCHABLE_FIELDS)


@dataclass(frozen=True)
class TrialResult:
    """Outcome of one trial. `loss` is the held-out loss (inf when diverged); `train_loss` is the
    mean training loss over the last tenth of the steps run; `tokens_or_samples` is the planned D, steps x batch
    (a diverged or pruned run's too: its grid point's D keys its cell; `steps_run` says how far it got); `seconds` is
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
    n_non_embedding: int | None = None  # N of scaling laws: without embedding tables and readout
    clipped_fraction: float | None = None  # with clip_grad_norm: the share of steps run whose gradient norm was above it

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (sweep trial attributes)."""
        return dataclasses.asdict(self)

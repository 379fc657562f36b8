"""Corrupted binary patterns for the DenseAM: classify a prototype from a noisy copy, or retrieve it.

Prototypes are random +-1 vectors; each bit of a sample is flipped with probability flip_prob,
high enough that the Bayes error is non-zero, so the held-out loss has a floor and does not saturate.
mode="denoise" is associative recall: the n_classes prototypes are the stored patterns, the target is
the clean pattern (MSE). With more patterns than bits (e.g. dim 32, 128 patterns, flip_prob 0.2) the
best linear map of the input leaves an MSE of 0.58 where the Bayes posterior mean reaches 0.18, so
a model below the linear floor is retrieving stored patterns (tests/tasks/test_tasks.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from scaleplan.errors import ScaleplanError
from scaleplan.tasks.base import Task

MODES = ("classify", "denoise")


@dataclass
class Patterns(Task):
    """mode="classify": cross-entropy over n_classes; mode="denoise": MSE to the clean prototype."""

    name: ClassVar[str] = "patterns"
    models: ClassVar[tuple[str, ...]] = ("denseam", "mlp")

    dim: int = 64
    n_classes: int = 16
    flip_prob: float = 0.35
    mode: Literal["classify", "denoise"] = "classify"
    n_eval: int = 2048
    task_seed: int = 0
    _prototypes: Tensor = field(init=False, repr=False)
    _eval: tuple[Tensor, Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ScaleplanError(f"patterns: unknown mode {self.mode!r}; use one of {', '.join(MODES)}")
        if not 0.0 <= self.flip_prob < 0.5:
            raise ScaleplanError(f"patterns: flip_prob must be in [0, 0.5), got {self.flip_prob}")
        if self.dim < 1 or self.n_classes < 2 or self.n_eval < 1:
            raise ScaleplanError("patterns: need dim >= 1, n_classes >= 2 and n_eval >= 1")
        g = torch.Generator().manual_seed(self.task_seed)
        self._prototypes = torch.randint(0, 2, (self.n_classes, self.dim), generator=g).float() * 2 - 1
        self._eval = self.sample_batch(self.n_eval, g)

    @property
    def model_kwargs(self) -> dict[str, int]:
        out_dim = self.n_classes if self.mode == "classify" else self.dim
        return {"in_dim": self.dim, "out_dim": out_dim}

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        labels = torch.randint(0, self.n_classes, (batch_size,), generator=generator)
        clean = self._prototypes[labels]
        flips = torch.rand(batch_size, self.dim, generator=generator) < self.flip_prob
        noisy = torch.where(flips, -clean, clean)
        return noisy, (labels if self.mode == "classify" else clean)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        if self.mode == "classify":
            return F.cross_entropy(output, target)
        return torch.mean((output - target) ** 2)

    def eval_set(self) -> tuple[Tensor, Tensor]:
        return self._eval

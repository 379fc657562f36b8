"""Noisy teacher-student regression: a fixed random tanh teacher plus Gaussian label noise.

The noise puts a floor (noise_std**2) under the held-out MSE, so the loss never saturates to 0
and the optimum in lr stays meaningful; fresh samples every step (online data, D = samples seen).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from scaleplan.errors import ScaleplanError
from scaleplan.tasks.base import Task


@dataclass
class TeacherStudent(Task):
    """y = teacher(x) + noise, x ~ N(0, I); teacher outputs standardized to unit variance."""

    name: ClassVar[str] = "teacher-student"
    models: ClassVar[tuple[str, ...]] = ("mlp", "denseam")

    in_dim: int = 32
    out_dim: int = 8
    teacher_width: int = 128
    noise_std: float = 0.5
    n_eval: int = 2048
    task_seed: int = 0
    _w1: Tensor = field(init=False, repr=False)
    _w2: Tensor = field(init=False, repr=False)
    _eval: tuple[Tensor, Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for key in ("in_dim", "out_dim", "teacher_width", "n_eval"):
            if getattr(self, key) < 1:
                raise ScaleplanError(f"teacher-student: {key} must be >= 1, got {getattr(self, key)}")
        if self.noise_std < 0:
            raise ScaleplanError(f"teacher-student: noise_std must be >= 0, got {self.noise_std}")
        g = torch.Generator().manual_seed(self.task_seed)
        self._w1 = torch.randn(self.in_dim, self.teacher_width, generator=g) / self.in_dim**0.5
        w2 = torch.randn(self.teacher_width, self.out_dim, generator=g)
        probe = torch.tanh(torch.randn(8192, self.in_dim, generator=g) @ self._w1) @ w2
        self._w2 = w2 / probe.std(dim=0)
        self._eval = self.sample_batch(self.n_eval, g)

    @property
    def model_kwargs(self) -> dict[str, int]:
        return {"in_dim": self.in_dim, "out_dim": self.out_dim}

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = torch.randn(batch_size, self.in_dim, generator=generator)
        noise = torch.randn(batch_size, self.out_dim, generator=generator)
        return x, self.teacher(x) + self.noise_std * noise

    def teacher(self, x: Tensor) -> Tensor:
        """The noiseless target: the best possible predictor, whose held-out MSE is noise_std**2."""
        return torch.tanh(x @ self._w1) @ self._w2

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return torch.mean((output - target) ** 2)

    def eval_set(self) -> tuple[Tensor, Tensor]:
        return self._eval

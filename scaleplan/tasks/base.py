"""The `Task` interface: offline training data, a vmappable loss and a fixed held-out set.

A task also names the model kwargs it implies (input/output dims or vocab) and how many
training units (samples or tokens) one example contributes to D.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import Field
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor

EVAL_CHUNK = 1024


class Task(ABC):
    """Base class of the built-in tasks; subclasses are dataclasses with their own kwargs."""

    name: ClassVar[str]
    models: ClassVar[tuple[str, ...]]  # model names that can train on this task
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # set by @dataclass on each subclass

    @property
    @abstractmethod
    def model_kwargs(self) -> dict[str, int]:
        """Model kwargs this task fixes: {"in_dim", "out_dim"} or {"vocab", "seq_len"}."""

    @property
    def units_per_example(self) -> int:
        """Samples or tokens one training example adds to D (seq_len for a language model)."""
        return 1

    @abstractmethod
    def sample_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """A fresh training batch (inputs, targets) drawn with `generator`."""

    @abstractmethod
    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Mean loss of one batch; pure tensor ops so that torch.func.vmap can batch it."""

    @abstractmethod
    def eval_set(self) -> tuple[Tensor, Tensor]:
        """The fixed held-out set (the same tensors on every call)."""

    def eval_loss(self, forward: Callable[[Tensor], Tensor], device: torch.device | str = "cpu") -> float:
        """Held-out loss of one model, `forward(inputs) -> outputs`, computed on `device`."""
        return float(self._held_out_mean(lambda x, y: self.loss(forward(x), y), device))

    def eval_losses(self, batched_forward: Callable[[Tensor], Tensor], device: torch.device | str = "cpu") -> Tensor:
        """Held-out loss of each of K models; `batched_forward(inputs)` returns (K, ...) outputs."""
        per_member = torch.func.vmap(self.loss, in_dims=(0, None))
        return self._held_out_mean(lambda x, y: per_member(batched_forward(x), y), device).cpu()

    def _held_out_mean(self, chunk_loss: Callable[[Tensor, Tensor], Tensor], device: torch.device | str) -> Tensor:
        x, y = self.eval_set()
        total = torch.zeros((), device=device)
        with torch.no_grad():
            for start in range(0, len(x), EVAL_CHUNK):
                xc, yc = x[start : start + EVAL_CHUNK].to(device), y[start : start + EVAL_CHUNK].to(device)
                total = total + chunk_loss(xc, yc) * len(xc)
        return total / len(x)

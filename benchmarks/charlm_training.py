"""The char-LM training loop the hand-written benchmarks share: Adam steps on sampled batches, then the held-out loss."""

from __future__ import annotations

import math
from typing import Callable

import torch

from scaleplan.tasks.base import Task


def held_out_after(forward: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer, task: Task,
                   steps: int, batch: int, seed: int) -> float:
    """Train `steps` steps of `batch` examples (batches drawn from seed 10000 + seed); the held-out loss, inf if it diverged."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    for _ in range(steps):
        inputs, targets = task.sample_batch(batch, generator)
        loss = task.loss(forward(inputs), targets)
        if not torch.isfinite(loss):
            return math.inf
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        held_out = task.eval_loss(forward)
    return held_out if math.isfinite(held_out) else math.inf

"""Divergence test, checkpoint steps and the reported training loss, shared by the single and the population loop."""

from __future__ import annotations

import torch
from torch import Tensor

# A trial has diverged when its training loss is NaN/inf or exceeds this multiple of its first loss.
DIVERGENCE_FACTOR = 100.0


def diverged(loss: Tensor, first_loss: Tensor) -> Tensor:
    """Elementwise: True where `loss` is non-finite or above DIVERGENCE_FACTOR * first_loss."""
    return ~torch.isfinite(loss) | (loss > DIVERGENCE_FACTOR * first_loss)


def tail_mean(losses: Tensor, steps_run: int) -> Tensor:
    """Mean training loss over the last tenth (at least one) of the `steps_run` recorded steps."""
    tail = max(1, steps_run // 10)
    return losses[steps_run - tail : steps_run].mean(dim=0)


def at_checkpoint(steps_done: int, every: int, steps: int) -> bool:
    """True after every `every`-th optimizer step, except the last step (the final loss is evaluated anyway)."""
    return every > 0 and steps_done % every == 0 and steps_done < steps

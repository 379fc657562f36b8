"""Learning-rate schedule shared by the single and the population loop: linear warmup, then
constant, or cosine or linear decay to zero at the last step."""

from __future__ import annotations

import math

from scaleplan.train.config import TrialConfig


def lr_factor(step: int, cfg: TrialConfig) -> float:
    """Multiplier on every group's lr at 0-based `step`."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    if cfg.schedule == "constant":
        return 1.0
    decay_steps = cfg.steps - cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, decay_steps - 1)
    if cfg.schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))

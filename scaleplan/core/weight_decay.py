"""Decoupled (AdamW) weight decay as a timescale: the two conventions and tau <-> lambda, in one place.

Decoupled decay makes the weights an exponential moving average of the updates (Wang & Aitchison
2024, "How to set AdamW's weight decay as you scale model and dataset size"):

  torch        PyTorch's AdamW:  p <- (1 - lr_t * lambda) p - lr_t * u      tau_iter = 1 / (lr * lambda)
  independent  lambda not multiplied by the lr (Loshchilov & Hutter's AdamW; Composer's DecoupledAdamW):
               p <- (1 - s_t * lambda) p - lr_t * u,  s_t = lr_t / lr the schedule factor (1 at the peak)
                                                                              tau_iter = 1 / lambda

with lr the peak lr and u the Adam update. Measured in data (Bergsma et al. 2025, "Power Lines"),
the timescale is the fraction of the run the average spans: tau = tau_iter * B / D = tau_iter / S for
S = D / B steps, i.e. tau = B / (lr * lambda * D) (torch) or B / (lambda * D) (independent).

Per tensor role (muP), the timescale of each role stays width-independent when lambda_role scales
as the inverse of lr_role (torch) or not at all (independent): see `scaleplan.core.rules`.
Pure Python: the planner turns a predicted tau into lambda with it.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

from scaleplan.errors import InputError

DecayConvention = Literal["torch", "independent"]
DECAY_CONVENTIONS: tuple[str, ...] = get_args(DecayConvention)
DECOUPLED_OPTIMIZERS = ("adamw",)  # optimizers whose decay is an EMA timescale (Adam/SGD decay is L2 in the gradient)


def check_convention(convention: str, optimizer: str | None = None) -> None:
    """One-line error for an unknown convention, or for "independent" with an optimizer other than AdamW."""
    if convention not in DECAY_CONVENTIONS:
        raise InputError(f"unknown weight-decay convention {convention!r}; use one of {', '.join(DECAY_CONVENTIONS)}")
    if convention == "independent" and optimizer is not None and optimizer not in DECOUPLED_OPTIMIZERS:
        raise InputError(
            f"independent weight decay is decoupled decay (AdamW); optimizer {optimizer!r} has L2 decay in the gradient: "
            "use optimizer 'adamw' or decay convention 'torch'"
        )


def check_weight_decay(value: float, what: str = "weight_decay") -> float:
    """`value` as a float when it is a finite number >= 0; else a one-line InputError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InputError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def timescale(lr: float, weight_decay: float, steps: float, convention: str = "torch") -> float:
    """tau = tau_iter / steps, the EMA timescale as a fraction of the run (inf without decay)."""
    check_convention(convention)
    rate = weight_decay * (lr if convention == "torch" else 1.0)
    return math.inf if rate == 0 else 1.0 / (rate * steps)


def weight_decay_for(lr: float, tau: float, steps: float, convention: str = "torch") -> float:
    """lambda giving timescale `tau` (fraction of a run of `steps` steps) at peak lr `lr`: the inverse of `timescale`."""
    check_convention(convention)
    if not (math.isfinite(tau) and tau > 0):
        raise InputError(f"the weight-decay timescale tau must be a finite number > 0 (tau <= 0 implies lambda <= 0), got {tau!r}")
    return 1.0 / (tau * steps * (lr if convention == "torch" else 1.0))

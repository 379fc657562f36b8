"""A model re-initialized after apply_parametrization: the init it set, replaced by a fresh draw of the model's own.

`model.apply(model._init_weights)`, transformers' `post_init()` or `reset_parameters()` called after applying put each
tensor back at the model's own init (SP's at this width, or HF's constant N(0, 0.02) where init_std was given); the
model still trains, worse. apply_parametrization records each tensor whose std it changed by 1.25x or more, with the
std and kurtosis of the draw it replaced; `param_groups` warns when most of them hold such a draw again (std within a
few %, the same kurtosis), which a trained or loaded tensor matches only by coincidence: training moves both within
tens of steps (uniform's kurtosis 1.8 leaves it first).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Collection

import torch
from torch import nn

from scaleplan.core.rules import Parametrization
from scaleplan.errors import ParametrizationWarning
from scaleplan.parametrization.init import INIT_ROLES, rescale_init

if TYPE_CHECKING:
    from scaleplan.parametrization.apply import ParametrizationState, TensorRecord

MOVED = math.log(1.25)  # a std changed by this much is recorded: a re-draw at the model's own std is then told apart
MIN_ENTRIES = 1024  # fewer entries estimate a std and a kurtosis too loosely to recognise a draw
SAMPLE = 1 << 20  # entries read per weight: past it the tolerances are at their floors, and a 7B model reads fast


@dataclass(frozen=True)
class OwnInit:
    """The model's own init of a tensor the parametrization rescaled (its std and kurtosis), and the std it set."""

    std: float
    kurtosis: float
    applied_std: float


def rescale_recorded(model: nn.Module, params: dict[str, nn.Parameter], tensors: dict[str, TensorRecord],
                     rules: Parametrization, init_std: float | None, only: Collection[str] | None = None) -> dict[str, OwnInit]:
    """rescale_init, returning {name: OwnInit} for the weights whose std it moved 1.25x or more (the record the
    re-initialization check compares against)."""
    own = {name: moments for name, param in params.items()
           if (only is None or name in only) and tensors[name].role in INIT_ROLES and (moments := _moments(param)) is not None}
    rescale_init(model, params, tensors, rules, init_std, only)
    recorded = {}
    for name, (std, kurtosis, _) in own.items():
        applied = _moments(params[name])
        if applied is not None and abs(math.log(applied[0] / std)) >= MOVED:
            recorded[name] = OwnInit(std, kurtosis, applied[0])
    return recorded


def warn_reinitialized(model: nn.Module, state: ParametrizationState) -> None:
    """Warn when at least two thirds of the weights apply_parametrization rescaled hold a fresh draw of the model's own
    init again: the model was re-initialized after applying, and trains without the parametrization's init."""
    recorded: dict[str, OwnInit] = getattr(state, "own_inits", {})  # (states pickled before it)
    if not recorded:
        return
    params = dict(model.named_parameters())
    back = {name: std for name, own in recorded.items() if name in params and (std := _redrawn(params[name], own)) is not None}
    if back and 3 * len(back) >= 2 * len(recorded):
        first = next(iter(back))
        warnings.warn(
            f"{len(back)} of the {len(recorded)} weight(s) apply_parametrization rescaled ({', '.join(list(back)[:3])}"
            f"{', ...' if len(back) > 3 else ''}) hold a fresh draw of the model's own init again ({first}: std "
            f"{back[first]:.3g}, it set {recorded[first].applied_std:.3g}): the model was re-initialized after "
            f"applying (model.apply(init_weights), post_init(), reset_parameters()) and would train without "
            f"{state.parametrization}'s init: initialize before apply_parametrization (on the meta device: to_empty, the "
            "model's own init, then scaleplan.initialize(model)); weights loaded from training match it only by chance",
            ParametrizationWarning,
            stacklevel=4,
        )


def _redrawn(param: torch.Tensor, own: OwnInit) -> float | None:
    """The tensor's std where it and its kurtosis are those of its own init, within a few standard errors of a fresh
    draw; None otherwise."""
    moments = _moments(param)
    if moments is None:
        return None
    std, kurtosis, n = moments
    redrawn = abs(math.log(std / own.std)) < max(0.03, 4 / math.sqrt(2 * n)) and abs(kurtosis - own.kurtosis) < max(0.1, 4 * math.sqrt(24 / n))
    return std if redrawn else None


def _moments(param: torch.Tensor) -> tuple[float, float, int] | None:
    """(std, kurtosis, count) of a weight's nonzero entries (zeros are a deliberate init) among its first SAMPLE (an init
    draws every entry alike), or None where they cannot describe a draw: a vector, fewer than MIN_ENTRIES entries, no values here (meta, a
    DTensor shard), or a constant."""
    if param.dim() < 2 or param.is_meta or type(param.detach()) is not torch.Tensor:
        return None
    with torch.no_grad():
        flat = param.detach().reshape(-1)
        values = flat[:SAMPLE]
        values = values[values != 0].double()
        if values.numel() < MIN_ENTRIES:
            return None
        centred = values - values.mean()
        variance = float(centred.square().mean())
        if variance == 0.0:
            return None
        return math.sqrt(variance), float(centred.pow(4).mean()) / variance**2, values.numel()

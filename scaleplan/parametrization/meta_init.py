"""The parametrization's init for a model parametrized on the meta device, drawn once it is materialized.

Large models are built on the meta device, sharded, then materialized (`to_empty`) and initialized in place
(torchtitan's `init_weights`, transformers' `init_empty_weights`). apply_parametrization cannot draw or rescale a
tensor that has no values yet: it records those tensors, `param_groups` refuses the model until `initialize` has
set them, and `initialize` does on the materialized weights what apply_parametrization does on drawn ones.
"""

from __future__ import annotations

import torch
from torch import nn

from scaleplan.core.rules import get_parametrization
from scaleplan.errors import ParametrizationError
from scaleplan.parametrization.apply import require_states
from scaleplan.parametrization.init import warn_kept_init
from scaleplan.parametrization.reinit_check import rescale_recorded


def initialize(model: nn.Module, base: nn.Module | None = None) -> nn.Module:
    """Draw (init_std, as applied) or rescale (the model's own fan-in init) the tensors apply_parametrization found on
    the meta device, now that `model` is materialized and initialized by its own code; `base` (the model at its base
    width) lets the kept init be checked as apply_parametrization checks it. In place; returns `model`."""
    found = [(prefix, holder, state) for prefix, holder, state in require_states(model) if state.init_pending]
    if not found:
        raise ParametrizationError(
            "nothing to initialize: every tensor had values when the model was parametrized, and its init was set then"
        )
    for prefix, holder, state in found:
        params = dict(holder.named_parameters())
        missing = [name for name in state.init_pending if name not in params]
        if missing:
            raise ParametrizationError(f"{missing[0]} was parametrized but is no longer in the model: initialize the model "
                                       "that apply_parametrization was given")
        _check_materialized({prefix + "." + name if prefix else name: (params[name], state.tensors[name].role)
                             for name in state.init_pending})
        part_base = base.get_submodule(prefix) if base is not None and prefix else base
        warn_kept_init(holder, params, state.tensors, state.init_std, part_base, only=state.init_pending)
        state.own_inits = {**state.own_inits, **rescale_recorded(
            holder, params, state.tensors, get_parametrization(state.parametrization), state.init_std, only=state.init_pending)}
        state.init_pending = ()
    return model


def _check_materialized(tensors: dict[str, tuple[nn.Parameter, str]]) -> None:
    """Refuse tensors still on the meta device or not finite, and a model whose input and hidden matrices are all zero:
    to_empty leaves memory as it finds it, and rescaling that would train from it (one zero matrix is a choice: a
    zero-initialized residual projection, a class token, LoRA's B)."""
    for name, (param, _) in tensors.items():
        if param.is_meta:
            raise ParametrizationError(
                f"{name} is still on the meta device: materialize the model first (model.to_empty(device=...) and its own "
                "init, e.g. reset_parameters()), then call initialize(model)"
            )
        with torch.no_grad():
            finite = bool(torch.isfinite(param).all())
        if not finite:
            raise ParametrizationError(f"{name} holds non-finite values: after model.to_empty(...), run the model's own "
                                       "init (reset_parameters(), your init_weights) before initialize(model)")
    matrices = {name: param for name, (param, role) in tensors.items() if role in ("input", "hidden") and param.dim() >= 2}
    with torch.no_grad():
        blank = bool(matrices) and not any(bool(param.any()) for param in matrices.values())
    if blank:
        raise ParametrizationError(
            f"every input and hidden matrix ({', '.join(list(matrices)[:3])}{', ...' if len(matrices) > 3 else ''}) is all "
            "zero: after model.to_empty(...), run the model's own init (reset_parameters(), your init_weights) before "
            "initialize(model)"
        )

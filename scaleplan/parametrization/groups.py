"""Per-tensor learning-rate / weight-decay factors and torch.optim parameter groups of a parametrized model."""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

from scaleplan.errors import ParametrizationError, ScaleplanError
from scaleplan.parametrization.apply import find_state
from scaleplan.core.rules import RoleMultipliers, get_parametrization


def tensor_multipliers(model: nn.Module, optimizer: str = "adam") -> dict[str, RoleMultipliers]:
    """{parameter name: factors} for a model parametrized by apply_parametrization.

    Names are those of the parametrized module (for vmap over stacked parameters, as
    torch.func.stack_module_state names them).
    """
    found = find_state(model)
    if found is None:
        raise ScaleplanError(
            "model has no scaleplan parametrization; call apply_parametrization(model, 'mup', base=...) first"
        )
    state = found[2]
    rules = get_parametrization(state.parametrization)
    if optimizer == "sgd" and state.parametrization == "denseam" and state.softmax_energy:
        warnings.warn(
            "SGD with the DenseAM log-sum-exp (softmax) energy is unstable across widths; use Adam",
            UserWarning,
            stacklevel=3,
        )
    return {
        name: rules.multipliers(record.role, record.m, optimizer, state.depth_ratio, state.completep, m_out=record.m_out)
        for name, record in state.tensors.items()
    }


def check_against_prediction(model: nn.Module, prediction: Any, optimizer: str) -> None:
    """Refuse a model that does not match what a law's prediction assumes (no-op for a plain float lr)."""
    ref = getattr(prediction, "parametrization", None)
    if ref is None:
        return
    found = find_state(model)
    assert found is not None  # tensor_multipliers ran first and refuses an unparametrized model
    state = found[2]
    ref.check_compatible(state.reference(optimizer), what=f"model ({type(model).__name__})")
    target = getattr(prediction, "inputs", {}).get("W")
    if target is not None and state.width is not None and abs(state.width - target) > 1e-9 * target:
        raise ParametrizationError(
            f"the prediction is for width {target:g} but the model has width {state.width}; "
            f"predict at the model's width (load_law(...).predict(width={state.width}))"
        )


def param_groups(
    model: nn.Module,
    lr: float | Any,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    eps: float = 1e-8,
) -> list[dict[str, Any]]:
    """Parameter groups for torch.optim.Adam/AdamW ("adam") or SGD ("sgd") with per-tensor lr and wd.

    `lr` is the base learning rate, or a law's prediction (`load_law(...).predict(...)`): then the
    model is checked against the law's parametrization reference (name, base width, CompleteP,
    optimizer family) and the width the prediction was made for; a mismatch is a one-line error,
    never a silently wrong lr. Groups carry an "eps" only when CompleteP scales it (Adam eps x 1/(m * m_L)).
    """
    base_lr = float(getattr(lr, "lr", lr))
    if not base_lr > 0:
        raise ScaleplanError(f"learning rate must be positive, got {base_lr}")
    _, holder, _ = find_state(model) or (None, model, None)
    factors = tensor_multipliers(holder, optimizer)
    check_against_prediction(holder, lr, optimizer)
    groups: dict[tuple[float, float, float], dict[str, Any]] = {}
    for pname, param in holder.named_parameters():
        f = factors[pname]
        group = groups.setdefault(
            (f.lr, f.weight_decay, f.eps),
            {"params": [], "names": [], "lr": base_lr * f.lr, "weight_decay": weight_decay * f.weight_decay},
        )
        if f.eps != 1.0:
            group["eps"] = eps * f.eps
        group["params"].append(param)
        group["names"].append(pname)
    return list(groups.values())

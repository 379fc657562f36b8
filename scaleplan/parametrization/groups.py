"""Per-tensor learning-rate / weight-decay factors and torch.optim parameter groups of a parametrized model."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Iterable

from torch import nn

from scaleplan.errors import ParametrizationError, ParametrizationWarning, ScaleplanError
from scaleplan.parametrization.apply import ParametrizationState, check_intact, require_states
from scaleplan.parametrization.reinit_check import warn_reinitialized
from scaleplan.parametrization.optimizer_check import BASE_KEYS, DECAY_KEY, FACTOR_KEY, MOMENTUM_KEY, OPTIMIZER_KEY, watch
from scaleplan.core.numbers import is_finite_number
from scaleplan.core.rules import RoleMultipliers, undecayed_roles
from scaleplan.core.weight_decay import DECOUPLED_OPTIMIZERS, check_convention, check_weight_decay


MEMORIES_WARNING_RATIO = 16.0  # K / K_base from which an uncalibrated lse memory eps is warned about (it broke at 32-64x)


def tensor_multipliers(model: nn.Module, optimizer: str = "adam", decay: str = "torch") -> dict[str, RoleMultipliers]:
    """{parameter name: factors} for a model parametrized by apply_parametrization.

    Names are those of the parametrized module (for vmap over stacked parameters, as
    torch.func.stack_module_state names them).
    """
    _, holder, state = require_states(model)[0]
    return _state_multipliers(holder, state, optimizer, decay)


def _state_multipliers(holder: nn.Module, state: ParametrizationState, optimizer: str, decay: str) -> dict[str, RoleMultipliers]:
    """tensor_multipliers of the parametrized module `holder`, whose state the caller has found."""
    check_intact(holder, state)
    warn_reinitialized(holder, state)
    if optimizer == "sgd" and state.parametrization == "denseam" and state.softmax_energy:
        warnings.warn(
            "SGD with the DenseAM log-sum-exp (softmax) energy: its lr curves are erratic near divergence and its transfer "
            "was measured on one task (benchmarks/results/denseam-sgd.md); the DenseAM rules are validated with Adam: use Adam",
            ParametrizationWarning,
            stacklevel=3,
        )
    calibrated = any(record.eps_value is not None for record in state.tensors.values())
    if (optimizer != "sgd" and state.parametrization == "denseam" and state.softmax_energy and not calibrated
            and state.memories_ratio >= MEMORIES_WARNING_RATIO):
        warnings.warn(
            f"a log-sum-exp DenseAM with {state.memories_ratio:g}x its base's memories under the rules' memory Adam eps: "
            "under capacity (more stored patterns than memories) Adam moves its unretrieved memories at full speed and "
            "the largest stable lr falls with K (K = 2048 from proxies at 32-256: 96% regret; README, DenseAM); there, "
            "calibrate_memory_eps(model, batches, loss) ([train] memory_eps = 'retrieval'); over capacity keep the rules' eps",
            ParametrizationWarning,
            stacklevel=3,
        )
    factors = {}
    for name, record in state.tensors.items():
        f = state.multipliers(name, optimizer, decay)
        factors[name] = dataclasses.replace(f, eps=f.eps * record.eps) if record.eps != 1.0 and optimizer != "sgd" else f
    return factors


def check_against_prediction(model: nn.Module, state: ParametrizationState, prediction: Any, optimizer: str) -> None:
    """Refuse a parametrized module (`model`, its `state`) that does not match what a law's prediction assumes (no-op
    for a plain float lr)."""
    ref = getattr(prediction, "parametrization", None)
    if ref is None:
        return
    if state.parametrization != "sp" and state.base_width is None:
        raise ParametrizationError(
            f"the model's base width is unknown, so it cannot be checked against the law's ({ref.base_width}): give the "
            "model and its base a .width attribute, or pass base_width= to apply_parametrization"
        )
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
    weight_decay: float | None = None,
    optimizer: str = "adam",
    eps: float = 1e-8,
    decay: str | None = None,
    no_decay: Iterable[str] | str = (),
) -> list[dict[str, Any]]:
    """Parameter groups for torch.optim.Adam, AdamW or SGD with per-tensor lr and weight decay.

    `lr` is the base learning rate, or a law's prediction (`load_law(...).predict(...)`): then the
    model is checked against the law's parametrization reference (name, base width, CompleteP,
    optimizer family) and the width the prediction was made for; a mismatch is a one-line error,
    never a silently wrong lr. Groups carry an "eps" only where the rules scale it (CompleteP: Adam eps x
    1/(m * m_L); a DenseAM's memories: core/rules.py memory_eps_multiplier) or calibrate_memory_eps set it.
    Each group also carries "scaleplan_lr_factor", its lr over the base lr (a schedule keeps muP's ratios by
    setting g["lr"] = lr * g["scaleplan_lr_factor"]), and "scaleplan_optimizer"; optimizer_check warns at the
    step when a schedule lost the ratios or another optimizer steps the groups.

    `weight_decay` is the base lambda (default: the prediction's, else 0) in the AdamW convention `decay`
    (default: the prediction's, else "torch"); per-role lambdas follow `scaleplan.core.rules`. Independent
    decay is handed to torch's AdamW as weight_decay = lambda_role / lr_role, so that its
    p *= 1 - lr_t * weight_decay decays by s_t * lambda_role whatever the lr. `no_decay` names roles whose tensors are
    not decayed at all, as most LLM recipes leave biases and norm gains alone: no_decay=("vector", "fixed") leaves them
    and every tensor without a width dimension (a fixed-size embedding too) undecayed.
    """
    base_lr = _base_lr(lr)
    undecayed = undecayed_roles(no_decay)
    base_wd, decay = resolve_weight_decay(lr, weight_decay, optimizer, decay)
    found = require_states(model)
    _refuse_parameters_outside(model, found)
    groups: dict[tuple[float, float, float, float | None], dict[str, Any]] = {}
    for prefix, holder, state in found:
        factors = _state_multipliers(holder, state, optimizer, decay)
        check_against_prediction(holder, state, lr, optimizer)
        for pname, param in holder.named_parameters():
            f = factors[pname]
            if state.tensors[pname].role in undecayed:
                f = dataclasses.replace(f, weight_decay=0.0)
            fixed_eps = state.tensors[pname].eps_value if optimizer != "sgd" else None  # calibrate_memory_eps's, absolute
            group_lr, group_wd = base_lr * f.lr, base_wd * f.weight_decay
            group = groups.setdefault(
                (f.lr, f.weight_decay, f.eps, fixed_eps),
                {"params": [], "names": [], "lr": group_lr, FACTOR_KEY: f.lr, OPTIMIZER_KEY: optimizer,
                 BASE_KEYS["weight_decay"]: base_wd,
                 "weight_decay": group_wd / group_lr if decay == "independent" else group_wd},
            )
            group[DECAY_KEY] = group["weight_decay"]
            if fixed_eps is not None:
                group["eps"] = fixed_eps
            elif f.eps != 1.0:
                group["eps"], group[BASE_KEYS["eps"]] = eps * f.eps, eps
            group["params"].append(param)
            group["names"].append(f"{prefix}.{pname}" if prefix else pname)
    fitted = getattr(lr, "parametrization", None)  # a law's prediction: its SGD momentum is checked at the step
    if fitted is not None and fitted.optimizer == "sgd":
        for group in groups.values():
            group[MOMENTUM_KEY] = (fitted.momentum, fitted.nesterov)
    watch()
    return list(groups.values())


def _base_lr(lr: float | Any) -> float:
    """The base lr of a number or a law's prediction; anything else (an Estimate, None, a string) is refused."""
    value = getattr(lr, "lr", lr)
    if not is_finite_number(value) or value <= 0:
        raise ScaleplanError(
            f"learning rate must be a finite positive number or a law's prediction (load_law(...).predict(...)), got {lr!r}"
        )
    return float(value)


def _refuse_parameters_outside(model: nn.Module, found: list[tuple[str, nn.Module, ParametrizationState]]) -> None:
    """Parameters of `model` in no parametrized module have no role: param_groups would leave them out of the
    optimizer, and they would never train."""
    covered = {id(p) for _, holder, _ in found for p in holder.parameters()}
    outside = [name for name, p in model.named_parameters() if id(p) not in covered]
    if outside:
        where = ", ".join(prefix or "the root" for prefix, _, _ in found)
        raise ParametrizationError(
            f"parameter(s) {', '.join(outside[:3])}{', ...' if len(outside) > 3 else ''} are outside the parametrized "
            f"module(s) ({where}): they have no role, and an optimizer built from these groups would never train them; "
            "apply_parametrization to the whole model (its base built the same way)"
        )


def resolve_weight_decay(lr: float | Any, weight_decay: float | None, optimizer: str, decay: str | None) -> tuple[float, str]:
    """(base lambda, convention): the explicit values, else the prediction's, else (0, "torch"); checked."""
    predicted = getattr(lr, "values", {}).get("weight_decay")  # a law prediction's lambda (an Estimate), if any
    if weight_decay is None and predicted is not None and optimizer not in DECOUPLED_OPTIMIZERS:
        raise ParametrizationError(
            f"the prediction's weight decay is AdamW's decoupled decay; optimizer {optimizer!r} has L2 decay: "
            "use optimizer='adamw', or pass weight_decay= explicitly"
        )
    predicted_convention = getattr(lr, "decay_convention", None)
    if decay is None:
        decay = predicted_convention or "torch"
    elif predicted is not None and weight_decay is None and decay != predicted_convention:
        raise ParametrizationError(
            f"the prediction's weight decay is in the {predicted_convention!r} convention, not {decay!r}: drop decay= "
            "or pass weight_decay= explicitly"
        )
    check_convention(decay, optimizer)
    if weight_decay is None:
        weight_decay = 0.0 if predicted is None else predicted.value
    return check_weight_decay(weight_decay), decay

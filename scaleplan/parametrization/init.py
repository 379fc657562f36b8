"""Initial weights under a parametrization: re-drawn with init_std, or the model's own (SP) init rescaled.

As mup's set_base_shapes(rescale_params=True): a fan-in (PyTorch default) init is rescaled by the ratio
of the parametrization's init factor to SP's (the readout x sqrt(m)), and every layer's bias by
sqrt(its fan-in multiplier). An init that is not fan-in scaled (HF's constant N(0, 0.02)) cannot be
rescaled into muP: without init_std, those tensors are named in a warning.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from scaleplan.core.rules import SP, Parametrization
from scaleplan.parametrization.layout import known_uses

if TYPE_CHECKING:
    from scaleplan.parametrization.apply import TensorRecord

_INIT_ROLES = ("input", "hidden", "output", "memory")  # tensors re-drawn when init_std is given


def warn_kept_init(model: nn.Module, params: dict[str, nn.Parameter], tensors: dict[str, TensorRecord], init_std: float | None,
                   base: nn.Module | None = None) -> None:
    """Without init_std, name the hidden/readout tensors whose init is not a fan-in (SP) init: a std closer
    to HF's constant initializer_range than to 1/sqrt(3 fan-in), far from any c/sqrt(fan-in), or (where the base's
    own weights are at hand and the fan-in grew 2x or more) closer to the base's std than to the base's std scaled
    by sqrt(base fan-in / fan-in), as a constant N(0, 0.02) is; rescaling those as mup does (it assumes a fan-in
    init) does not give muP."""
    if init_std is not None:
        return
    hf_std = _int_or_float(getattr(getattr(model, "config", None), "initializer_range", None))
    base_params = dict(base.named_parameters()) if base is not None else {}
    kept = []
    for name, record in tensors.items():
        param = params[name]
        if record.role not in ("hidden", "output") or param.dim() < 2 or not _drawn(param):
            continue  # a zero init (muP's zero readout) is fine at every width
        std, fan_in = _std(param), _fan_in(model, param)
        off_fan_in = abs(math.log(std * math.sqrt(3 * fan_in)))  # 0 for PyTorch's U(+-1/sqrt(fan-in))
        if off_fan_in > math.log(2.5) or (hf_std is not None and abs(math.log(std / hf_std)) < off_fan_in):
            kept.append(name)
            continue
        base_param = base_params.get(name)
        if base is not None and base_param is not None and base_param.dim() >= 2 and _drawn(base_param):
            grown = fan_in / _fan_in(base, base_param)
            ratio = math.log(std / _std(base_param))
            if grown >= 2 and abs(ratio) < abs(ratio + 0.5 * math.log(grown)):
                kept.append(name)
    if kept:
        source = f"HF's N(0, {hf_std:g})" if hf_std is not None else "an init that is not fan-in scaled"
        warnings.warn(
            f"init_std=None keeps {source} for {len(kept)} hidden/readout tensor(s) ({', '.join(kept[:3])}"
            f"{', ...' if len(kept) > 3 else ''}) and rescales it as if it were PyTorch's fan-in init; muP needs hidden "
            "std proportional to 1/sqrt(fan-in) and a width-independent readout: pass init_std= (applied at every width)",
            UserWarning,
            stacklevel=3,
        )


def _drawn(param: torch.Tensor) -> bool:
    """Whether the tensor holds drawn values to measure (not meta, not all zero)."""
    return param.device.type != "meta" and bool(param.any())


def _std(param: torch.Tensor) -> float:
    """The std of the nonzero entries (entries set to zero are a deliberate zero init)."""
    return float(param.detach()[param != 0].float().std())


def _fan_in(model: nn.Module, param: nn.Parameter) -> int:
    """A weight's fan-in from its layout (dimension 1 for a raw tensor, mup's convention) times its kernel."""
    found = known_uses(model, param)
    return int(param.shape[found[0].fan_in if found else 1]) * math.prod(param.shape[2:])


def _int_or_float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def rescale_init(
    model: nn.Module, params: dict[str, nn.Parameter], tensors: dict[str, TensorRecord], rules: Parametrization, init_std: float | None
) -> None:
    """Re-draw (init_std) or rescale (the model's SP init) weights by role; biases x sqrt(fan-in mult) as mup."""
    with torch.no_grad():
        for name, param in params.items():
            record = tensors[name]
            factor = rules.multipliers(record.role, record.m).init_std
            if init_std is not None:
                if record.role in _INIT_ROLES:  # entries the model set to zero (muP's zero readout/query) stay zero
                    param.copy_(torch.randn_like(param).mul_(init_std * factor) * (param != 0))
                    continue
            else:
                factor /= SP.multipliers(record.role, record.m).init_std
                if factor != 1.0:
                    param.mul_(factor)
        for module in model.modules():
            bias, weight = module._parameters.get("bias"), module._parameters.get("weight")
            if bias is None or weight is None or weight.dim() < 2:
                continue
            fan_in = next((u.fan_in for u in known_uses(model, weight) if u.module is module and u.kind != "embedding"), None)
            weight_name = next((n for n, p in params.items() if p is weight), None)
            if fan_in is None or weight_name is None:
                continue
            record = tensors[weight_name]
            m_in = record.m if fan_in in record.width_dims else 1.0  # m is the fan-in's multiplier where it is a width
            factor = rules.bias_init_factor(m_in) / SP.bias_init_factor(m_in)
            if factor != 1.0:
                bias.mul_(factor)

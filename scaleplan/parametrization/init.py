"""Initial weights under a parametrization: re-drawn with init_std, or the model's own (SP) init rescaled.

As mup's set_base_shapes(rescale_params=True): a fan-in (PyTorch default) init is rescaled by the ratio
of the parametrization's init factor to SP's (the readout x sqrt(m)), and every layer's bias by
sqrt(its fan-in multiplier). A recurrent layer's tensors (PyTorch: U(+-1/sqrt(hidden_size)) for all, biases and
fixed-size inputs' gate weights too) and nn.Bilinear's (U(+-1/sqrt(in1_features))) are rescaled from that init, which
mup does not know. An init that is not fan-in scaled (HF's constant N(0, 0.02)) cannot be
rescaled into muP: without init_std, those tensors are named in a warning.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, Collection

import torch
from torch import nn

from scaleplan.core.rules import SP, Parametrization
from scaleplan.errors import ParametrizationWarning
from scaleplan.parametrization.layout import RECURRENT, known_uses

if TYPE_CHECKING:
    from scaleplan.parametrization.apply import TensorRecord

INIT_ROLES = ("input", "hidden", "output", "memory")  # tensors re-drawn when init_std is given


def warn_kept_init(model: nn.Module, params: dict[str, nn.Parameter], tensors: dict[str, TensorRecord], init_std: float | None,
                   base: nn.Module | None = None, only: Collection[str] | None = None) -> None:
    """Without init_std, name the tensors whose own init rescaling cannot turn into muP's. Hidden/readout tensors whose
    init is not a fan-in (SP) init: a std closer to HF's constant initializer_range than to 1/sqrt(3 fan-in), far from
    any c/sqrt(fan-in), or (where the base's own weights are at hand and the fan-in grew 2x or more) closer to the
    base's std than to the base's std scaled by sqrt(base fan-in / fan-in), as a constant N(0, 0.02) is; rescaling those
    as mup does (it assumes a fan-in init) does not give muP. And input weights whose std shrinks as their fan-out grows
    (xavier, kaiming's mode="fan_out", torch's own init of nn.MultiheadAttention's kdim/vdim projections): muP keeps
    an input's init constant in width, and they are not rescaled."""
    if init_std is not None:
        return
    hf_std = _int_or_float(getattr(getattr(model, "config", None), "initializer_range", None))
    base_params = dict(base.named_parameters()) if base is not None else {}
    own_stds = _own_init_stds(model, params, tensors)  # a recurrent layer's and nn.Bilinear's init: rescaled from theirs
    kept, shrunk = [], []
    for name, record in tensors.items():
        param = params[name]
        if (only is not None and name not in only) or record.role not in ("input", "hidden", "output") or param.dim() < 2 \
                or not _drawn(param):
            continue  # a zero init (muP's zero readout) is fine at every width, an identity too
        base_param = base_params.get(name)
        at_base = base_param if base_param is not None and base_param.dim() >= 2 and _drawn(base_param) else None
        if record.role == "input":  # its fan-in is fixed: the fan-out (the numel's) growth is what it must not follow
            if name not in own_stds and at_base is not None and _growth(param, at_base, param.numel() / at_base.numel()) == "follows":
                shrunk.append(name)
            continue
        std, fan_in = _std(param), _fan_in(model, param, record.width_dims)
        off_fan_in = abs(math.log(std * math.sqrt(3 * fan_in)))  # 0 for PyTorch's U(+-1/sqrt(fan-in))
        if off_fan_in > math.log(2.5) or (hf_std is not None and abs(math.log(std / hf_std)) < off_fan_in):
            kept.append(name)
        elif at_base is not None:
            grown = fan_in / _fan_in(base, at_base, record.width_dims)  # type: ignore[arg-type]
            if _growth(param, at_base, grown) == "constant":
                kept.append(name)
    if kept:
        source = f"HF's N(0, {hf_std:g})" if hf_std is not None else "an init that is not fan-in scaled"
        warnings.warn(
            f"init_std=None keeps {source} for {len(kept)} hidden/readout tensor(s) ({_some(kept)}) and rescales it as if "
            "it were PyTorch's fan-in init; muP needs hidden std proportional to 1/sqrt(fan-in) and a width-independent "
            "readout: pass init_std= (applied at every width)",
            ParametrizationWarning,
            stacklevel=3,
        )
    if shrunk:
        warnings.warn(
            f"init_std=None keeps an init that shrinks as the width grows for {len(shrunk)} input tensor(s) ({_some(shrunk)}): "
            "their std is the base's / sqrt(fan-out growth) (xavier, kaiming mode='fan_out'), muP keeps an input's init "
            "constant in width: pass init_std= (applied at every width) or draw them by fan-in (PyTorch's default)",
            ParametrizationWarning,
            stacklevel=3,
        )


def _growth(param: torch.Tensor, base_param: torch.Tensor, grown: float) -> str | None:
    """For a fan that grew 2x or more, "follows" where a tensor's std is the base's / sqrt(grown) (a fan-in init does
    this for a hidden tensor's fan-in, and nothing should for an input's fan-out), "constant" where it is the base's own;
    each only when it is the nearer and three standard errors from the other (a std from n draws has a log s.e. of
    about 1/sqrt(2n): a small readout's draw alone crossed the midpoint in 11 of 1,360 builds of a fan-in init).
    None where the draws cannot tell."""
    if grown < 2:
        return None
    ratio, shrink = math.log(_std(param) / _std(base_param)), -0.5 * math.log(grown)
    se = math.sqrt(0.5 / int((param != 0).sum()) + 0.5 / int((base_param != 0).sum()))
    if ratio < shrink / 2 and ratio < -3 * se:
        return "follows"
    if ratio > shrink / 2 and ratio > shrink + 3 * se:
        return "constant"
    return None


def _some(names: list[str]) -> str:
    """The first three names, and whether there are more."""
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def _drawn(param: torch.Tensor) -> bool:
    """Whether the tensor holds drawn values to measure: not meta, and its nonzero entries spread (not all zero, not an
    identity or a constant: a structured init, which no std describes)."""
    if param.device.type == "meta":
        return False
    nonzero = param.detach()[param != 0]
    return nonzero.numel() > 1 and bool((nonzero != nonzero[0]).any())


def _std(param: torch.Tensor) -> float:
    """The std of the nonzero entries (entries set to zero are a deliberate zero init)."""
    return float(param.detach()[param != 0].float().std())


def _fan_in(model: nn.Module, param: nn.Parameter, width_dims: tuple[int, ...]) -> int:
    """The fan PyTorch's default init draws a weight by, U(+-1/sqrt(fan)): its fan-in, every dimension but its layout's
    fan-out (a kernel too), except a recurrent layer's hidden_size and nn.Bilinear's in1_features (_own_init_stds); for a
    raw tensor dimension 1 (mup's convention) times the later ones that are not widths (a stacked expert (E, d, 4d)'s
    last width is its fan-out, not a kernel)."""
    found = known_uses(model, param)
    if found and isinstance(found[0].module, RECURRENT):
        return found[0].module.hidden_size
    if found and isinstance(found[0].module, nn.Bilinear):
        return found[0].module.in1_features
    if found:
        return math.prod(size for i, size in enumerate(param.shape) if i != found[0].fan_out)
    return int(param.shape[1]) * math.prod(size for i, size in enumerate(param.shape) if i > 1 and i not in width_dims)


def _int_or_float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _own_init_stds(model: nn.Module, params: dict[str, nn.Parameter], tensors: dict[str, TensorRecord]) -> dict[str, float]:
    """{name: the model's own init std relative to the base's} for the tensors of PyTorch modules whose init is not
    fan-in scaled (mup rescales them as if it were): a recurrent layer's or cell's, all U(+-1/sqrt(hidden_size)), biases
    and a fixed-size input's gate weights too (m_hidden^-1/2, read from the first weight_hh's fan-out, gates x hidden),
    and nn.Bilinear's, U(+-1/sqrt(in1_features)), a fixed size (layout.py refuses a width there): 1."""
    names = {id(p): name for name, p in params.items()}
    stds = {}
    for module in model.modules():
        own = {local: names[id(p)] for local, p in module.named_parameters(recurse=False)}
        if isinstance(module, RECURRENT):
            hh = tensors[next(name for local, name in own.items() if local.startswith("weight_hh"))]
            m_hidden = (hh.m_out or hh.m) if hh.role == "hidden" else hh.m if hh.role == "input" else 1.0
            stds.update({name: m_hidden**-0.5 for name in own.values()})
        elif isinstance(module, nn.Bilinear):
            stds.update({name: 1.0 for name in own.values()})
    return stds


def rescale_init(
    model: nn.Module, params: dict[str, nn.Parameter], tensors: dict[str, TensorRecord], rules: Parametrization,
    init_std: float | None, only: Collection[str] | None = None,
) -> None:
    """Re-draw (init_std) or rescale (the model's SP init) weights by role; biases x sqrt(fan-in mult) as mup. Only the
    tensors named in `only`, where given (tensors on the meta device have no values to set: see meta_init)."""
    own_stds = {} if rules.keeps_model_scales else _own_init_stds(model, params, tensors)  # SP keeps them
    with torch.no_grad():
        for name, param in params.items():
            if only is not None and name not in only:
                continue
            record = tensors[name]
            factor = rules.multipliers(record.role, record.m).init_std
            if init_std is not None and record.role in INIT_ROLES:  # entries set to zero (a zero readout/query) stay zero
                param.copy_(torch.randn_like(param).mul_(init_std * factor) * (param != 0))
            elif init_std is None or name in own_stds:  # their biases too, here: they were not drawn by fan-in
                own = own_stds[name] if name in own_stds else SP.multipliers(record.role, record.m).init_std
                if factor != own:
                    param.mul_(factor / own)
        names = {id(p): name for name, p in params.items()}
        for module in model.modules():
            bias, weight = module._parameters.get("bias"), module._parameters.get("weight")
            if bias is None or weight is None or weight.dim() < 2 or (only is not None and names.get(id(bias)) not in only):
                continue
            fan_in = next((u.fan_in for u in known_uses(model, weight) if u.module is module and u.kind != "embedding"), None)
            weight_name = names.get(id(weight))
            if fan_in is None or weight_name is None or weight_name in own_stds:
                continue
            record = tensors[weight_name]
            m_in = record.m if fan_in in record.width_dims else 1.0  # m is the fan-in's multiplier where it is a width
            factor = rules.bias_init_factor(m_in) / SP.bias_init_factor(m_in)
            if factor != 1.0:
                bias.mul_(factor)

"""Apply a parametrization to a torch model: infer tensor roles, rescale init, set forward multipliers.

Roles come from comparing each parameter's shape with a base model (as mup's base shapes) or
from declarations. The result is stored on the model as a picklable `ParametrizationState`
(survives torch.save of the whole model and copy.deepcopy); forward multipliers are plain floats
on modules (and a picklable forward pre-hook on readouts), so torch.func.functional_call and vmap
over stacked parameters work unchanged.

Model protocol (optional, used by scaleplan.models): a module with `scaleplan_site = "attention"`
(and `d_head`), `"residual"`, `"temperature"` (and `features`) or `"memories"` (and `n_memories`)
gets its float `multiplier` set; a module's `scaleplan_roles`
dict declares roles for its own parameters; a root `depth` attribute feeds CompleteP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import torch
from torch import nn

from scaleplan.errors import ScaleplanError
from scaleplan.core.reference import ParametrizationRef
from scaleplan.core.rules import (
    ROLES,
    SP,
    Parametrization,
    get_parametrization,
    residual_multiplier,
)

_INIT_ROLES = ("input", "hidden", "output", "memory")  # tensors re-drawn when init_std is given


@dataclass
class TensorRecord:
    """One parameter's role and width multiplier m (its last width dimension / the base's; for a DenseAM
    memory matrix (K, N) the product N/N_base * K/K_base)."""

    role: str
    m: float
    width_dims: tuple[int, ...] = ()  # dimensions that differ from the base (empty if roles were declared)
    eps: float = 1.0  # factor on the Adam eps beyond the role's rule (a DenseAM's memories; see _memory_eps)


@dataclass
class ParametrizationState:
    """What apply_parametrization decided; stored on the model as `scaleplan_state`."""

    parametrization: str
    tensors: dict[str, TensorRecord]
    depth_ratio: float = 1.0
    completep: bool = False
    output_mult: float = 1.0
    softmax_energy: bool = False
    sites: dict[str, float] = field(default_factory=dict)  # module name -> multiplier set
    width: int | None = None  # the model's width and its base width, where known (checked against a law)
    base_width: int | None = None
    base_depth: int | None = None

    def reference(self, optimizer: str = "adam") -> ParametrizationRef:
        """This model's parametrization as a typed reference, to check against a law's (see param_groups)."""
        return ParametrizationRef(
            name=self.parametrization,
            base_width=self.base_width if self.parametrization != "sp" or self.base_width else None,
            base_depth=self.base_depth if self.completep else None,
            optimizer=optimizer,
            completep=self.completep,
        )


class ScaleInput:
    """Forward pre-hook multiplying a readout's input by a float (picklable, vmap-safe)."""

    def __init__(self, multiplier: float) -> None:
        self.multiplier = multiplier

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (args[0] * self.multiplier, *args[1:])


def find_state(model: nn.Module) -> tuple[str, nn.Module, ParametrizationState] | None:
    """The (module name, module, state) of the parametrized module inside `model`, if any."""
    for name, module in model.named_modules():
        state = module.__dict__.get("scaleplan_state")
        if isinstance(state, ParametrizationState):
            return name, module, state
    return None


def apply_parametrization(
    model: nn.Module,
    parametrization: str,
    base: nn.Module | Mapping[str, tuple[int, ...]] | None = None,
    roles: Mapping[str, str] | None = None,
    base_width: int | None = None,
    base_depth: int | None = None,
    init_std: float | None = None,
    output_mult: float = 1.0,
    completep: bool = False,
) -> nn.Module:
    """Parametrize `model` in place (and return it) relative to `base` (a model or {name: shape}).

    Without `base`, every parameter's role must be declared and `base_width` / `model.width` give m.
    init_std=None keeps the model's own init, assumed to be PyTorch's fan-in (SP) default, and
    rescales it as mup does; a float re-draws weights as N(0, (init_std * factor)^2).
    """
    rules = get_parametrization(parametrization)
    existing = find_state(model)
    if existing is not None:
        raise ScaleplanError(
            f"model is already parametrized ({existing[2].parametrization!r}); applying twice would rescale "
            "it twice: build a fresh model and apply once"
        )
    if completep and rules.name != "mup":
        raise ScaleplanError(f"completep=True needs parametrization 'mup', not {rules.name!r}")
    if output_mult <= 0:
        raise ScaleplanError(f"output_mult must be positive, got {output_mult}")

    params = dict(model.named_parameters())
    declared = _declared_roles(model, params, roles)
    tensors = _tensor_records(model, params, base, declared, base_width)
    for record in tensors.values():
        rules.rule(record.role)  # every role must be defined before anything is modified

    depth_ratio = _depth_ratio(model, base, base_depth) if completep else 1.0
    sites = _site_multipliers(model, base, tensors, rules, depth_ratio, completep)
    _memory_eps(model, base, tensors, rules)
    _rescale_init(params, tensors, rules, init_std)
    _install_readout_hooks(model, params, tensors, rules, output_mult)
    for module_name, value in sites.items():
        model.get_submodule(module_name).multiplier = value
    model.scaleplan_state = ParametrizationState(
        parametrization=rules.name,
        tensors=tensors,
        depth_ratio=depth_ratio,
        completep=completep,
        output_mult=output_mult,
        softmax_energy=any(getattr(m, "energy", None) == "lse" for m in model.modules()),
        sites=sites,
        width=_int_attr(model, "width"),
        base_width=base_width if base_width is not None else _int_attr(base, "width"),
        base_depth=(base_depth if base_depth is not None else _int_attr(base, "depth")) if completep else None,
    )
    return model


def _int_attr(obj: object, name: str) -> int | None:
    """obj.<name> when it is a positive int (a reference model's width or depth), else None."""
    value = getattr(obj, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _declared_roles(model: nn.Module, params: dict[str, nn.Parameter], roles: Mapping[str, str] | None) -> dict[str, str]:
    """Roles the model's modules declare (`scaleplan_roles`) overridden by the user's `roles`."""
    declared: dict[str, str] = {}
    for module_name, module in model.named_modules():
        for local, role in getattr(module, "scaleplan_roles", {}).items():
            declared[f"{module_name}.{local}" if module_name else local] = role
    declared.update(roles or {})
    for name, role in declared.items():
        if role not in ROLES:
            raise ScaleplanError(f"unknown role {role!r} declared for {name!r}; valid roles: {', '.join(ROLES)}")
        if name not in params:
            raise ScaleplanError(f"role declared for {name!r}, which is not a parameter of the model")
    return declared


def _tensor_records(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    base: nn.Module | Mapping[str, tuple[int, ...]] | None,
    declared: dict[str, str],
    base_width: int | None,
) -> dict[str, TensorRecord]:
    if base is None:
        return _records_from_widths(model, params, declared, base_width)
    base_shapes = _base_shapes(base)
    missing, extra = sorted(set(params) - set(base_shapes)), sorted(set(base_shapes) - set(params))
    if missing or extra:
        raise ScaleplanError(
            f"model and base have different parameters (missing in base: {missing[:5]}, extra in base: {extra[:5]}); "
            "build the base with the same architecture at the base width"
        )
    records = {}
    for name, param in params.items():
        mults = _width_mults(name, tuple(param.shape), base_shapes[name])
        inf = [i for i, mult in enumerate(mults) if mult is not None]
        role = declared.get(name) or _infer_role(model, name, param, inf)
        m = math.prod(mults[i] for i in inf) if role == "memory" else mults[inf[-1]] if inf else 1.0  # type: ignore[misc]
        records[name] = TensorRecord(role=role, m=m, width_dims=tuple(inf))
    return records


def _records_from_widths(
    model: nn.Module, params: dict[str, nn.Parameter], declared: dict[str, str], base_width: int | None
) -> dict[str, TensorRecord]:
    undeclared = [name for name in params if name not in declared]
    if undeclared:
        raise ScaleplanError(
            f"no base model given and no role declared for {undeclared[:5]}; pass base= (a model at the base "
            "width, or {name: shape}) or declare roles={name: role} for every parameter"
        )
    width = getattr(model, "width", None)
    if base_width is None or width is None:
        raise ScaleplanError("without base=, give base_width= and a model with a .width attribute (or pass base=)")
    m = _ratio("width", width, base_width)
    return {name: TensorRecord(role=role, m=1.0 if role == "fixed" else m) for name, role in declared.items()}


def _base_shapes(base: nn.Module | Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    if isinstance(base, nn.Module):
        return {name: tuple(p.shape) for name, p in base.named_parameters()}
    if isinstance(base, Mapping):
        return {name: tuple(shape) for name, shape in base.items()}
    raise ScaleplanError(f"base must be a torch model or a dict of parameter shapes, got {type(base).__name__}")


def _width_mults(name: str, shape: tuple[int, ...], base_shape: tuple[int, ...]) -> list[float | None]:
    """Per dimension: dim / base_dim where they differ (a width), None where equal (finite)."""
    if len(shape) != len(base_shape):
        raise ScaleplanError(f"{name}: shape {list(shape)} does not match the base shape {list(base_shape)}; build the base with the same architecture")
    mults: list[float | None] = []
    for dim, base_dim in zip(shape, base_shape):
        if dim < base_dim:
            raise ScaleplanError(f"{name}: base width larger than width (base shape {list(base_shape)}, shape {list(shape)}); the base must be the narrower model")
        mults.append(dim / base_dim if dim != base_dim else None)
    if sum(m is not None for m in mults) > 2:
        raise ScaleplanError(f"{name}: more than 2 width dimensions in shape {list(shape)}; declare its role with roles=")
    return mults


def _infer_role(model: nn.Module, name: str, param: nn.Parameter, inf: list[int]) -> str:
    """Role from which dimensions are widths; fan-in/fan-out from how modules use the tensor."""
    if not inf:
        return "fixed"
    if param.dim() < 2:
        return "vector"
    if len(inf) == 2:
        return "hidden"
    uses = [_use_kind(module, inf[0]) for module, _ in _uses(model, param)]
    return "input" if "input" in uses else "output"


def _use_kind(module: nn.Module, inf_dim: int) -> str:
    """'input' if the one width dim is the fan-out for this module's convention, else 'output'."""
    fan_out_dim = 1 if isinstance(module, nn.Embedding) else 0  # Linear/conv weights are (out, in, ...)
    return "input" if inf_dim == fan_out_dim else "output"


def _uses(model: nn.Module, param: nn.Parameter) -> Iterator[tuple[nn.Module, str]]:
    """Every (module, module name) that holds `param` directly (tied weights have several)."""
    for module_name, module in model.named_modules(remove_duplicate=False):
        if any(p is param for p in module._parameters.values()):
            yield module, module_name


def _depth_ratio(model: nn.Module, base: object, base_depth: int | None) -> float:
    depth = getattr(model, "depth", None)
    if base_depth is None:
        base_depth = getattr(base, "depth", None)
    if depth is None or base_depth is None:
        raise ScaleplanError("completep=True needs a model with a .depth attribute and base_depth= (or a base model with .depth)")
    return _ratio("depth", depth, base_depth)


def _ratio(what: str, value: int, base: int) -> float:
    """value / base for a model size ("width" or "depth"), refusing a base that is not in (0, value]."""
    if base <= 0 or base > value:
        raise ScaleplanError(f"base {what} {base} is larger than the model {what} {value} (or not positive); use base_{what} <= {what}")
    return value / base


def _site_multipliers(
    model: nn.Module,
    base: object,
    tensors: dict[str, TensorRecord],
    rules: Parametrization,
    depth_ratio: float,
    completep: bool,
) -> dict[str, float]:
    """Multipliers for attention-logit, residual-branch and DenseAM temperature and memory-sum sites of the model's modules."""
    base_modules = dict(base.named_modules()) if isinstance(base, nn.Module) else {}
    sites: dict[str, float] = {}
    for name, module in model.named_modules():
        site = getattr(module, "scaleplan_site", None)
        if site == "attention":
            base_module = base_modules.get(name)
            if base_module is not None:
                head_ratio = module.d_head / base_module.d_head
            else:  # no base module: the head dimension scales with the width of the module's weights
                head_ratio = max(r.m for n, r in tensors.items() if n.startswith(f"{name}."))
            sites[name] = rules.attention_multiplier(head_ratio)
        elif site == "residual":
            sites[name] = residual_multiplier(depth_ratio, completep)
        elif site == "temperature":
            base_module = base_modules.get(name)
            m = module.features / base_module.features if base_module is not None else max(r.m for r in tensors.values())
            sites[name] = rules.temperature_multiplier(m)
        elif site == "memories":  # a DenseAM's sum over its K memories (models/denseam.py MemoryUpdate)
            base_module = base_modules.get(name)
            if base_module is None:
                raise ScaleplanError(f"{name}: a DenseAM's memory sum is scaled relative to the base model's; pass base=")
            sites[name] = rules.memory_multiplier(module.n_memories / base_module.n_memories)
    if completep and "residual" not in {getattr(model.get_submodule(n), "scaleplan_site") for n in sites}:
        raise ScaleplanError("completep=True needs residual blocks (modules with scaleplan_site = 'residual'); this model has none")
    return sites


def _memory_eps(model: nn.Module, base: object, tensors: dict[str, TensorRecord], rules: Parametrization) -> None:
    """Set the Adam eps factor of every DenseAM memory matrix (a module with a temperature site) from its base's sizes."""
    base_modules = dict(base.named_modules()) if isinstance(base, nn.Module) else {}
    for name, module in model.named_modules():
        base_module = base_modules.get(name)
        if getattr(module, "scaleplan_site", None) == "temperature" and base_module is not None:
            record = tensors[f"{name}.memories" if name else "memories"]
            record.eps = rules.memory_eps_multiplier(
                module.features / base_module.features, module.n_memories / base_module.n_memories, module.gradient_order
            )


def _rescale_init(
    params: dict[str, nn.Parameter], tensors: dict[str, TensorRecord], rules: Parametrization, init_std: float | None
) -> None:
    with torch.no_grad():
        for name, param in params.items():
            record = tensors[name]
            factor = rules.multipliers(record.role, record.m).init_std
            if init_std is not None:
                if record.role in _INIT_ROLES:
                    param.normal_(0.0, init_std * factor)
            else:
                factor /= SP.multipliers(record.role, record.m).init_std
                if factor != 1.0:
                    param.mul_(factor)


def _install_readout_hooks(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    tensors: dict[str, TensorRecord],
    rules: Parametrization,
    output_mult: float,
) -> None:
    """Every module that uses a tensor as a readout (fan-in is the width) gets alpha_out * m^forward."""
    for name, param in params.items():
        record = tensors[name]
        if record.role not in ("input", "output") or param.dim() < 2:
            continue
        for module, _ in _uses(model, param):
            tied_readout = len(record.width_dims) == 1 and _use_kind(module, record.width_dims[0]) == "output"
            if record.role == "output" or tied_readout:
                module.register_forward_pre_hook(ScaleInput(output_mult * rules.multipliers("output", record.m).forward))

"""Apply a parametrization to a torch model: infer tensor roles, rescale init, set forward multipliers.

Roles come from comparing each parameter's shape with a base model (as mup's base shapes), read
through the layout of the module that uses it (`layout.py`), or from declarations. The result is
stored on the model as a picklable `ParametrizationState` (survives torch.save of the whole model and
copy.deepcopy) and, on a transformers model, in `model.config.scaleplan` (survives save_pretrained);
forward multipliers are plain floats on modules (and a picklable forward pre-hook on the readout's own
module), so torch.func.functional_call and vmap over stacked parameters work unchanged.

Model protocol (optional, used by scaleplan.models): a module with `scaleplan_site = "attention"`
(and `d_head`), `"residual"`, `"temperature"` (a DenseAM layer: `features` N, `n_memories` K, `gradient_order`,
and its (K, N) memory matrix declared `"memory"`) or `"memories"` (and `n_memories`) gets its float `multiplier`
set; a module's `scaleplan_roles` dict declares roles for its own parameters; a root `depth` attribute feeds CompleteP.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

from torch import nn

from scaleplan.core.reference import ParametrizationRef
from scaleplan.core.numbers import is_finite_number
from scaleplan.core.rules import ROLES, Parametrization, RoleMultipliers, get_parametrization, residual_multiplier
from scaleplan.errors import ParametrizationError, ParametrizationWarning
from scaleplan.parametrization.attention import attention_sites, logit_scale, set_logit_scale, unset_head_ratios
from scaleplan.parametrization.embedding_scale import embedding_scale_factors, scale_embedding
from scaleplan.parametrization.forward_audit import install as install_forward_audit
from scaleplan.parametrization.init import warn_kept_init
from scaleplan.parametrization.reinit_check import OwnInit, rescale_recorded
from scaleplan.parametrization.temperature_check import warn_temperatures
from scaleplan.parametrization.layout import (
    RECURRENT, Inferred, declared_role, infer_role, known_uses, refuse_low_rank_inputs, refuse_recurrent_readouts, warn_fused_widths,
)
from scaleplan.parametrization.metadata import check_saved, folded, model_width, saved_metadata, store_metadata, unparametrized
from scaleplan.parametrization.optimizer_check import TAG, tag_tensors, watch

@dataclass
class TensorRecord:
    """One parameter's role and width multiplier m (the one its role's rules use: fan-in for hidden and
    output tensors, fan-out for inputs, for a DenseAM memory matrix (K, N) the product N/N_base * K/K_base, N/N_base
    alone for a log-sum-exp one);
    m_out is a hidden tensor's fan-out multiplier where it differs."""

    role: str
    m: float
    width_dims: tuple[int, ...] = ()  # dimensions that are widths (empty if roles were declared without a base)
    m_out: float | None = None
    eps: float = 1.0  # factor on the Adam eps beyond the role's rule (a DenseAM's memories; see _memory_factors)
    # an absolute Adam eps that replaces the rules' (calibrate_memory_eps); not in the repr, so models that differ
    # only in it still train in one batched population
    eps_value: float | None = field(default=None, repr=False)


@dataclass
class ParametrizationState:
    """What apply_parametrization decided; stored on the model as `scaleplan_state`."""

    parametrization: str
    tensors: dict[str, TensorRecord]
    depth_ratio: float = 1.0
    completep: bool = False
    output_mult: float = 1.0
    softmax_energy: bool = False
    memories_ratio: float = 1.0  # the largest K / K_base of a DenseAM's memory matrices (1 without memories)
    sites: dict[str, float] = field(default_factory=dict)  # module name -> multiplier set
    width: int | None = None  # the model's width and its base width, where known (checked against a law)
    base_width: int | None = None
    base_depth: int | None = None
    scalings: dict[str, float] = field(default_factory=dict)  # HF attention module -> factor on its `scaling` (`scale`)
    embed_scales: dict[str, float] = field(default_factory=dict)  # module -> factor on its `embed_scale` (pinned at the base's)
    manual_readouts: tuple[str, ...] = ()  # raw readouts whose multiplier the user applies (readout_multiplier)
    head_ratios: dict[str, float] = field(default_factory=dict)  # attention it cannot set -> d_head / base (unset_head_ratios)
    init_std: float | None = None  # as applied: what initialize() draws with
    # tensors whose init could not be set because they were on the meta device (initialize() sets them once materialized)
    init_pending: tuple[str, ...] = ()
    # what it rescaled, to recognise a re-initialization; per-draw numbers, so not in the repr: models that differ only in
    # their seed still train in one batched population (population._static_state compares reprs)
    own_inits: dict[str, OwnInit] = field(default_factory=dict, repr=False)

    def multipliers(self, name: str, optimizer: str = "adam", decay: str = "torch") -> RoleMultipliers:
        """The rules' factors for tensor `name` under `optimizer` (before a DenseAM memory's eps factor)."""
        record = self.tensors[name]
        return get_parametrization(self.parametrization).multipliers(
            record.role, record.m, optimizer, self.depth_ratio, self.completep, decay, m_out=record.m_out)

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
    """Forward pre-hook multiplying a readout's input by a float (picklable, vmap-safe). `ran` records that the
    module's forward ran since the optimizer check last looked (it resets it at each step): a readout used only through
    its weight (F.linear(h, head.weight), a fused linear + cross-entropy) never gets the multiplier, and the check names
    it; `manual` that the caller applies the multiplier itself (readout_multiplier); `tied` that the weight is also an
    input embedding, which gets a gradient from steps that never call the readout (its `ran` is not reset)."""

    ran = False  # class defaults, so hooks pickled before the flags existed read False
    manual = False
    tied = False

    def __init__(self, multiplier: float) -> None:
        self.multiplier = multiplier

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any] | None = None) -> Any:
        if not self.ran:
            self.ran = True
        if kwargs is None:  # registered without kwargs (models pickled before keyword inputs were handled)
            return (args[0] * self.multiplier, *args[1:])
        if args:
            return (args[0] * self.multiplier, *args[1:]), kwargs
        name = next(iter(inspect.signature(module.forward).parameters))  # the input passed by keyword: Linear's `input`
        if name not in kwargs:
            raise ParametrizationError(f"readout {type(module).__name__} called without its input {name!r}; the 1/m multiplier has nothing to scale")
        return args, {**kwargs, name: kwargs[name] * self.multiplier}


def find_states(model: nn.Module) -> list[tuple[str, nn.Module, ParametrizationState]]:
    """The (module name, module, state) of every parametrized module inside `model` (an encoder and a decoder
    parametrized apart are two)."""
    found = []
    for name, module in model.named_modules():
        state = module.__dict__.get("scaleplan_state")
        if isinstance(state, ParametrizationState):
            found.append((name, module, state))
    return found


def require_states(model: nn.Module) -> list[tuple[str, nn.Module, ParametrizationState]]:
    """`find_states`, refusing a model with none (the error names a folded copy or a checkpoint to re-attach)."""
    found = find_states(model)
    if not found:
        raise unparametrized(model)
    return found


def find_state(model: nn.Module) -> tuple[str, nn.Module, ParametrizationState] | None:
    """The (module name, module, state) of the first parametrized module inside `model`, if any."""
    found = find_states(model)
    return found[0] if found else None


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
    delta: nn.Module | Mapping[str, tuple[int, ...]] | None = None,
    rescale: bool = True,
) -> nn.Module:
    """Parametrize `model` in place (and return it) relative to `base` (a model or {name: shape}).

    Without `base`, every parameter's role must be declared and `base_width` / `model.width` give m.
    `delta` (the model at any other width) tells which dimensions are widths where the model has the
    base's shapes (mup's `delta`); scaleplan's builders pass it. init_std=None keeps the model's own init,
    assumed to be PyTorch's fan-in (SP) default, and rescales it as mup does; a float re-draws every
    input, hidden, output and memory weight as N(0, (init_std * factor)^2), at every width, the base included
    (tensors with no width dimension, role "fixed", keep their init: it is the same at every width), except entries the model
    initialized to zero (muP's zero readout, or the query slice of a fused qkv), which stay zero. rescale=False re-attaches
    the multipliers, hooks and attention scales to a reloaded checkpoint without touching its weights
    (mup's rescale_params=False); metadata saved with it (HF config) is checked against the model.
    """
    rules = get_parametrization(parametrization)
    _refuse_compiled(model, base, delta)
    _refuse_second_application(model, rescale)
    if completep and rules.name != "mup":
        raise ParametrizationError(f"completep=True needs parametrization 'mup', not {rules.name!r}")
    if not is_finite_number(output_mult) or output_mult <= 0:
        raise ParametrizationError(f"output_mult must be a finite positive number, got {output_mult!r}")
    if init_std is not None and (not is_finite_number(init_std) or init_std < 0):
        raise ParametrizationError(f"init_std must be a finite number >= 0 (or None: keep the model's init), got {init_std!r}")
    if init_std is not None and not rescale:
        raise ParametrizationError("init_std re-draws the weights; rescale=False re-attaches to trained weights: drop init_std")
    if roles is not None and not isinstance(roles, Mapping):
        raise ParametrizationError(f"roles must be a mapping {{parameter name: role}}, got {type(roles).__name__}")

    params = dict(model.named_parameters())
    lazy = [name for name, p in params.items() if isinstance(p, nn.parameter.UninitializedParameter)]
    if lazy:
        raise ParametrizationError(
            f"{', '.join(lazy[:3])}: lazy parameters without a shape yet; run one forward pass of the model (and of the base) "
            "before apply_parametrization"
        )
    sharded = [name for name, p in params.items() if type(p.data).__name__ == "DTensor"]
    if sharded:
        raise ParametrizationError(
            f"{sharded[0]} is a DTensor (sharded by FSDP2's fully_shard or tensor parallelism): apply_parametrization "
            "reads and rescales whole tensors, so apply it before sharding (on the meta device if the model is large: "
            "see scaleplan.initialize)"
        )
    declared = _declared_roles(model, params, roles)
    base_shapes = _shapes_like(params, base, "base") if base is not None else None
    tensors = _tensor_records(model, params, base, base_shapes, declared, base_width, delta)
    for record in tensors.values():
        rules.rule(record.role)  # every role must be defined before anything is modified
    if rules.multipliers("output", 2.0).forward != 1.0:  # SP applies no readout multiplier, so none is lost
        refuse_recurrent_readouts(model, tensors)
    if base is not None and not any(r.width_dims for r in tensors.values()) and (init_std is not None or output_mult != 1.0):
        raise ParametrizationError(
            "the model has the base's shapes everywhere, so its width dimensions are unknown and init_std / "
            "output_mult cannot be placed: pass delta=<the same model at another width> (as mup's delta)"
        )

    resolved_base_width = _base_width(base, base_shapes, base_width, tensors)
    _check_memory_protocol(model, base, tensors, rules)
    depth_ratio = _depth_ratio(model, base, base_depth) if completep else 1.0
    base_modules = dict(base.named_modules()) if isinstance(base, nn.Module) else {}
    sites, scalings = _site_multipliers(model, base_modules, tensors, rules, depth_ratio, completep)
    memories_ratio = _memory_factors(model, base_modules, tensors, rules)
    embed_scales = embedding_scale_factors(model, base_modules, rules)
    state = ParametrizationState(
        parametrization=rules.name,
        tensors=tensors,
        depth_ratio=depth_ratio,
        completep=completep,
        output_mult=output_mult,
        softmax_energy=any(site_energy(m) == "lse" for m in model.modules()),
        memories_ratio=memories_ratio,
        sites=sites,
        width=model_width(model) or _inferred_width(tensors, resolved_base_width),
        base_width=resolved_base_width,
        base_depth=(base_depth if base_depth is not None else _int_attr(base, "depth")) if completep else None,
        scalings=scalings,
        embed_scales=embed_scales,
        manual_readouts=tuple(n for n, r in tensors.items() if r.role == "output" and not _readout_modules(model, params[n], r)),
        head_ratios=unset_head_ratios(model, base_modules),
        init_std=init_std,
    )
    if not rescale:
        check_saved(model, state)
    else:
        warn_kept_init(model, params, tensors, init_std, base if isinstance(base, nn.Module) else None)
        state.own_inits = rescale_recorded(model, params, tensors, rules, init_std)
        if init_std is not None or not rules.keeps_model_scales:  # SP keeps a model's own init: nothing to set later
            state.init_pending = tuple(name for name, param in params.items() if param.is_meta)
    hooks = _install_readout_hooks(model, params, tensors, rules, output_mult)
    # torch types a Module's attributes as Tensor | Module: the float ones below are scaleplan's
    for module_name, value in sites.items():
        model.get_submodule(module_name).multiplier = value  # type: ignore[assignment]
    warn_temperatures(model, base_modules, rules)
    for module_name, factor in scalings.items():
        module = model.get_submodule(module_name)
        set_logit_scale(module, logit_scale(module) * factor)
    for module_name, factor in embed_scales.items():
        scale_embedding(model.get_submodule(module_name), factor)
    _warn_tied_readouts(model, params, tensors, rules)
    _warn_recurrent(model, tensors, rules)
    if state.manual_readouts:
        warnings.warn(
            f"raw readout(s) {', '.join(state.manual_readouts)}: scaleplan cannot hook a tensor used in your own forward; "
            "multiply its input by scaleplan.parametrization.readout_multiplier(model, name) there",
            ParametrizationWarning,
            stacklevel=2,
        )
    model.scaleplan_state = state  # type: ignore[assignment]
    store_metadata(model, state)
    tag_tensors(model, params, {name: {family: state.multipliers(name, family).lr for family in ("adam", "sgd")} for name in tensors}, hooks)
    watch()
    if not rules.keeps_model_scales:
        install_forward_audit(model)
    return model


def _warn_tied_readouts(model: nn.Module, params: dict[str, nn.Parameter], tensors: dict[str, TensorRecord],
                        rules: Parametrization) -> None:
    """Warn when an input embedding is also the readout (tied) under rules that scale the readout by 1/m: measured
    on transformers' GPT-2, muP then trains markedly worse than SP at the target, and matches it untied."""
    if rules.multipliers("output", 2.0).forward == 1.0:
        return  # SP: the readout is not rescaled, tying changes nothing here
    tied = [n for n, r in tensors.items() if r.role == "input" and params[n].dim() >= 2 and _readout_modules(model, params[n], r)]
    if tied:
        warnings.warn(
            f"tied input/output embedding(s) {', '.join(tied)} under {rules.name!r}: the shared matrix trains with the input "
            "rule while its readout use is scaled by 1/m (as mup's MuSharedReadout does); on transformers' GPT-2 (width 16 "
            "-> 256, 200 steps) this trained 8% worse than SP at its best lr, and untied it matched SP "
            "(benchmarks/results/hf-gpt2-tied.txt): untie them for muP (tie_word_embeddings=False where the model honours it; "
            "transformers' T5 ties regardless: give the readout its own copy before apply_parametrization, "
            "model.lm_head.weight = nn.Parameter(model.lm_head.weight.detach().clone()))",
            ParametrizationWarning,
            stacklevel=3,
        )


def _warn_recurrent(model: nn.Module, tensors: dict[str, TensorRecord], rules: Parametrization) -> None:
    """Warn when a recurrent layer's hidden weights get muP's lr: measured on an LSTM char-LM, the lr did not transfer at
    a constant lr (the best lr of the recurrent weights stayed constant in width there, not 1/width), where SP's did;
    with warmup, cosine decay and clipping it transferred, but trained far worse than SP."""
    recurrent = [name for name, module in model.named_modules() if isinstance(module, RECURRENT)]
    hidden = [n for n in tensors if n.rpartition(".")[0] in recurrent and tensors[n].role == "hidden"]
    if not hidden or rules.multipliers("hidden", 2.0).lr == 1.0:  # (SP: one lr for every width)
        return
    warnings.warn(
        f"recurrent layer(s) {', '.join(recurrent[:3])} under {rules.name!r}: on a 2-layer LSTM char-LM (widths 32-64 -> 256, "
        "200 Adam steps) reusing the width-64 lr cost 7.2% +- 2.2% at 256 under these rules and 0.15% under SP "
        "(benchmarks/results/lstm-lm-transfer.md): the recurrent weights' best lr did not fall like 1/width there; with "
        "warmup, cosine decay and clipping muP's lr transferred (0.54% +- 0.28%) but its best loss at 256 was 29% above "
        "SP's (lstm-lm-recipe-transfer.md); check the transfer and the loss against SP on your task (scaleplan validate) "
        "before relying on it",
        ParametrizationWarning,
        stacklevel=3,
    )


def readout_multiplier(model: nn.Module, name: str) -> float:
    """alpha_out / m for readout `name`: what a raw readout used as x @ w must multiply x by (muP), 1 under SP."""
    _, holder, state = require_states(model)[0]
    record = state.tensors.get(name)
    if record is None or record.role != "output":
        raise ParametrizationError(f"{name!r} is not a readout of this model (readouts: {', '.join(n for n, r in state.tensors.items() if r.role == 'output')})")
    for hook in getattr(holder.get_parameter(name), TAG, (None, None, ()))[2]:
        hook.manual = True  # the caller applies the multiplier: the optimizer check must not say nobody does
    return state.output_mult * get_parametrization(state.parametrization).multipliers("output", record.m).forward


def _base_width(base: object, base_shapes: dict[str, tuple[int, ...]] | None, base_width: int | None,
                tensors: dict[str, TensorRecord]) -> int | None:
    """The base width a law is checked against: `base_width`, else the base's own. A `base_width` that contradicts the
    base's `.width` is refused; one that is none of the base's width-dimension sizes is warned about: the multipliers
    come from the base's shapes, so a law fitted at that base width would be applied off by their ratio."""
    own = model_width(base)
    if base_width is None:
        return own
    if own is not None and own != base_width:
        raise ParametrizationError(f"base_width={base_width} but the base has width {own}: drop base_width or build the base at {base_width}")
    if base_shapes is not None:
        sizes = sorted({base_shapes[n][d] for n, r in tensors.items() for d in r.width_dims})
        if sizes and base_width not in sizes:
            warnings.warn(
                f"base_width={base_width} is none of the base's width sizes ({', '.join(map(str, sizes[:4]))}): the multipliers "
                "are relative to the base's shapes, so a law is checked against one base width and applied at another; "
                "pass the base's width (its d_model)",
                ParametrizationWarning,
                stacklevel=3,
            )
    return base_width


def _inferred_width(tensors: dict[str, TensorRecord], base_width: int | None) -> int | None:
    """A model without `.width`: its base width times the width multiplier its input tensors share, where they do."""
    ms = {r.m for r in tensors.values() if r.role == "input" and r.width_dims}
    return round(base_width * ms.pop()) if base_width is not None and len(ms) == 1 else None


def _refuse_compiled(*models: object) -> None:
    """torch.compile's wrapper renames every parameter (_orig_mod.*), so shapes cannot be matched with a base: apply first."""
    if any(type(m).__name__ == "OptimizedModule" and hasattr(m, "_orig_mod") for m in models):
        raise ParametrizationError(
            "apply_parametrization to the model before torch.compile, not to the compiled wrapper (its parameters are "
            "renamed _orig_mod.*): model = torch.compile(apply_parametrization(model, ...)), the base uncompiled"
        )


def _refuse_second_application(model: nn.Module, rescale: bool) -> None:
    _refuse_mup_package(model)
    if folded(model):
        raise unparametrized(model)  # its weights already carry the multipliers: applying would scale them twice
    existing = find_state(model)
    if existing is not None:
        raise ParametrizationError(
            f"model is already parametrized ({existing[2].parametrization!r}) and carries its hooks and multipliers; "
            "applying twice would rescale it twice: build a fresh model and apply once"
        )
    saved = saved_metadata(model)
    if saved is not None and rescale:
        raise ParametrizationError(
            f"model's config says it was parametrized ({saved.get('parametrization')!r}): a reloaded checkpoint; re-attach "
            "without rescaling its weights: apply_parametrization(model, ..., rescale=False)"
        )


def _refuse_mup_package(model: nn.Module) -> None:
    """A model the `mup` package parametrized (set_base_shapes marks each tensor's `infshape` and rescales the init)
    or whose readout is mup's MuReadout (it divides by its own width_mult): scaleplan would apply muP a second time,
    squaring the readout's 1/m, and the model would still train, worse."""
    if any(hasattr(p, "infshape") for p in model.parameters()):
        raise ParametrizationError(
            "mup's set_base_shapes already parametrized this model (its tensors carry infshape): apply_parametrization "
            "would apply muP twice; build the model afresh without set_base_shapes, or stay with mup alone"
        )
    readouts = [name for name, m in model.named_modules() if type(m).__module__.split(".")[0] == "mup"]
    if readouts:
        raise ParametrizationError(
            f"{readouts[0]} is mup's {type(model.get_submodule(readouts[0])).__name__}, which divides by its own width_mult: "
            "build it as nn.Linear (scaleplan multiplies a readout's input by output_mult/m; pass output_mult= to "
            "apply_parametrization)"
        )


def _int_attr(obj: object, name: str) -> int | None:
    """obj.<name> when it is a positive int (a reference model's width or depth), else None."""
    value = getattr(obj, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _declared_roles(model: nn.Module, params: dict[str, nn.Parameter], roles: Mapping[str, str] | None) -> dict[str, str]:
    """Roles the model's modules declare (`scaleplan_roles`) overridden by the user's `roles`."""
    declared: dict[str, str] = {}
    canonical = {id(p): name for name, p in params.items()}  # a parameter shared by several modules has one name
    for module_name, module in model.named_modules():
        for local, role in getattr(module, "scaleplan_roles", {}).items():
            full = f"{module_name}.{local}" if module_name else local
            owned = module._parameters.get(local)
            declared[canonical.get(id(owned), full) if owned is not None else full] = role
    declared.update(roles or {})
    for name, role in declared.items():
        if role not in ROLES:
            raise ParametrizationError(f"unknown role {role!r} declared for {name!r}; valid roles: {', '.join(ROLES)}")
        if name not in params:
            raise ParametrizationError(f"role declared for {name!r}, which is not a parameter of the model")
    return declared


def _tensor_records(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    base: nn.Module | Mapping[str, tuple[int, ...]] | None,
    base_shapes: dict[str, tuple[int, ...]] | None,
    declared: dict[str, str],
    base_width: int | None,
    delta: nn.Module | Mapping[str, tuple[int, ...]] | None,
) -> dict[str, TensorRecord]:
    if base_shapes is None:  # no base: roles declared, widths from base_width
        return _records_from_widths(model, params, declared, base_width)
    delta_shapes = _shapes_like(params, delta, "delta") if delta is not None else None
    _refuse_non_width_differences(model, base)
    if delta_shapes is not None:
        warn_fused_widths({name: tuple(p.shape) for name, p in params.items()}, base_shapes, delta_shapes)
    records = {}
    for name, param in params.items():
        shape = tuple(param.shape)
        mults = _width_mults(name, shape, base_shapes[name], delta_shapes[name] if delta_shapes else None)
        if name not in declared and sum(m is not None for m in mults) > 2:
            raise ParametrizationError(
                f"{name}: more than 2 width dimensions in shape {list(shape)} (base {list(base_shapes[name])}): if one is a "
                "layer count (a stacked (layers, d, d) weight), build the base and delta at the model's depth, only widths "
                "may differ; else declare its role with roles="
            )
        layouts = known_uses(model, param)
        inferred: Inferred = (
            declared_role(name, declared[name], shape, mults, layouts) if name in declared else infer_role(name, shape, mults, layouts)
        )
        dims = tuple(i for i, mult in enumerate(mults) if mult is not None)
        records[name] = TensorRecord(role=inferred.role, m=inferred.m, width_dims=dims, m_out=inferred.m_out)
    refuse_low_rank_inputs(model, records, declared)
    return records


def _records_from_widths(
    model: nn.Module, params: dict[str, nn.Parameter], declared: dict[str, str], base_width: int | None
) -> dict[str, TensorRecord]:
    undeclared = [name for name in params if name not in declared]
    if undeclared:
        raise ParametrizationError(
            f"no base model given and no role declared for {undeclared[:5]}; pass base= (a model at the base "
            "width, or {name: shape}) or declare roles={name: role} for every parameter"
        )
    width = model_width(model)
    if base_width is None or width is None:
        raise ParametrizationError("without base=, give base_width= and a model with a .width attribute (or pass base=)")
    m = _ratio("width", width, base_width)
    return {name: TensorRecord(role=role, m=1.0 if role == "fixed" else m) for name, role in declared.items()}


def _shapes_like(params: dict[str, nn.Parameter], other: nn.Module | Mapping[str, tuple[int, ...]], what: str) -> dict[str, tuple[int, ...]]:
    """{name: shape} of the base (or delta) model, refusing one with other parameters than the model's."""
    if isinstance(other, nn.Module):
        shapes = {name: tuple(p.shape) for name, p in other.named_parameters()}
    elif isinstance(other, Mapping):
        shapes = {name: tuple(shape) for name, shape in other.items()}
    else:
        raise ParametrizationError(f"{what} must be a torch model or a dict of parameter shapes, got {type(other).__name__}")
    missing, extra = sorted(set(params) - set(shapes)), sorted(set(shapes) - set(params))
    if missing or extra:
        raise ParametrizationError(
            f"model and {what} have different parameters (missing in {what}: {missing[:5]}, extra in {what}: {extra[:5]}); "
            f"build the {what} with the same architecture at another width"
        )
    return shapes


# sizes a model or its config may store that are never widths: vocabularies, contexts, inputs, outputs, classes, images
_NON_WIDTH_SIZES = (
    "vocab_size", "vocab", "n_vocab", "ntoken", "num_tokens", "n_positions", "max_position_embeddings", "seq_len",
    "max_seq_len", "block_size", "context_length", "n_ctx", "in_dim", "out_dim", "input_dim", "output_dim", "num_labels",
    "num_classes", "n_classes", "image_size", "patch_size",
)  # not in_features / out_features / in_channels: a bare nn.Linear or Conv as the model has them, and there they are widths


def _refuse_non_width_differences(model: nn.Module, base: object) -> None:
    """A base built with another vocabulary (or context, or input/output size) would turn those into widths."""
    for holder_model, holder_base in ((model, base), (getattr(model, "config", None), getattr(base, "config", None))):
        for key in _NON_WIDTH_SIZES:
            ours, theirs = _int_attr(holder_model, key), _int_attr(holder_base, key)
            if ours is not None and theirs is not None and ours != theirs:
                raise ParametrizationError(
                    f"the base has {key}={theirs} but the model {key}={ours}; only widths may differ from the base: "
                    f"build the base with {key}={ours}"
                )


def _width_mults(name: str, shape: tuple[int, ...], base_shape: tuple[int, ...], delta_shape: tuple[int, ...] | None) -> list[float | None]:
    """Per dimension: dim / base_dim where the dimension is a width (differs from the base, or the base
    differs from delta there), None where it is finite."""
    for other, what in ((base_shape, "base"), (delta_shape, "delta")):
        if other is not None and len(other) != len(shape):
            raise ParametrizationError(f"{name}: shape {list(shape)} does not match the {what} shape {list(other)}; build the {what} with the same architecture")
    mults: list[float | None] = []
    for i, (dim, base_dim) in enumerate(zip(shape, base_shape)):
        if dim < base_dim:
            raise ParametrizationError(f"{name}: base width larger than width (base shape {list(base_shape)}, shape {list(shape)}); the base must be the narrower model")
        is_width = dim != base_dim if delta_shape is None else delta_shape[i] != base_dim
        if delta_shape is not None and dim != base_dim and not is_width:
            raise ParametrizationError(
                f"{name}: dimension {i} differs from the base ({base_dim} -> {dim}) but not between base and delta, so it "
                "is not a width; build the base with the model's non-width sizes"
            )
        mults.append(dim / base_dim if is_width else None)
    return mults


def _depth_ratio(model: nn.Module, base: object, base_depth: int | None) -> float:
    depth = getattr(model, "depth", None)
    if base_depth is None:
        base_depth = getattr(base, "depth", None)
    if depth is None or base_depth is None:
        raise ParametrizationError("completep=True needs a model with a .depth attribute and base_depth= (or a base model with .depth)")
    return _ratio("depth", depth, base_depth)


def _ratio(what: str, value: int, base: int) -> float:
    """value / base for a model size ("width" or "depth"), refusing a base that is not in (0, value]."""
    if base <= 0 or base > value:
        raise ParametrizationError(f"base {what} {base} is larger than the model {what} {value} (or not positive); use base_{what} <= {what}")
    return value / base


def _site_multipliers(
    model: nn.Module,
    base_modules: dict[str, nn.Module],
    tensors: dict[str, TensorRecord],
    rules: Parametrization,
    depth_ratio: float,
    completep: bool,
) -> tuple[dict[str, float], dict[str, float]]:
    """Multipliers for attention-logit, residual-branch and DenseAM temperature and memory-sum sites; HF attention scalings."""
    fallback = {  # no base module: the head dimension scales with the width of the module's weights
        name: max((r.m for n, r in tensors.items() if n.startswith(f"{name}.")), default=1.0) for name, _ in model.named_modules()
    }
    sites, scalings = attention_sites(model, base_modules, fallback, rules)
    for name, module in model.named_modules():
        site = getattr(module, "scaleplan_site", None)
        if site == "residual":
            sites[name] = residual_multiplier(depth_ratio, completep)
        elif site == "temperature":
            base_module = base_modules.get(name)
            m = (_site_size(name, module, "features") / _site_size(name, base_module, "features") if base_module is not None
                 else max(r.m for r in tensors.values()))
            sites[name] = rules.temperature_multiplier(m)
        elif site == "memories":  # a DenseAM's sum over its K memories (models/denseam.py MemoryUpdate)
            base_module = base_modules.get(name)
            if base_module is None:
                raise ParametrizationError(f"{name}: a DenseAM's memory sum is scaled relative to the base model's; pass base=")
            sites[name] = rules.memory_multiplier(_site_size(name, module, "n_memories") / _site_size(name, base_module, "n_memories"))
    if completep and "residual" not in {getattr(model.get_submodule(n), "scaleplan_site", None) for n in sites}:
        raise ParametrizationError("completep=True needs residual blocks (modules with scaleplan_site = 'residual'); this model has none")
    return sites, scalings


def _memory_factors(model: nn.Module, base_modules: dict[str, nn.Module], tensors: dict[str, TensorRecord],
                    rules: Parametrization) -> float:
    """Set the Adam eps factor of every DenseAM memory matrix (a module with a temperature site) from its base's sizes,
    and drop K/K_base from a log-sum-exp memory's multiplier (its SGD lr): a retrieved memory keeps an O(1) softmax
    weight whatever K is, so its gradient carries no 1/K (with it, the base's best SGD lr diverged at 8x K;
    benchmarks/results/denseam-sgd.md). Returns the largest K / K_base among them (1 without memories)."""
    largest = 1.0
    for name, module in model.named_modules():
        base_module = base_modules.get(name)
        if getattr(module, "scaleplan_site", None) == "temperature" and base_module is not None:
            record = tensors[site_memory(name, module, tensors)]
            m_memories = _site_size(name, module, "n_memories") / _site_size(name, base_module, "n_memories")
            m_features = _site_size(name, module, "features") / _site_size(name, base_module, "features")
            record.eps = rules.memory_eps_multiplier(m_features, m_memories, _site_size(name, module, "gradient_order"))
            if site_energy(module) == "lse":
                record.m = m_features
            largest = max(largest, m_memories)
    return largest


def site_energy(module: nn.Module) -> str | None:
    """A DenseAM site's energy name: `scaleplan_energy`, else `energy` where that is a string (an energy-based model's
    `energy` is often its method)."""
    for attribute in ("scaleplan_energy", "energy"):
        value = getattr(module, attribute, None)
        if isinstance(value, str):
            return value
    return None


PROTOCOL = ("declare the memory matrix (K, N) on the module that owns it, scaleplan_roles = {'<its name>': 'memory'}, "
            "with scaleplan_site = 'temperature' and attributes features (N), n_memories (K) and gradient_order "
            "(README, DenseAM rules)")


def site_memory(name: str, module: nn.Module, tensors: dict[str, TensorRecord]) -> str:
    """The full name of the one memory-role tensor a temperature-site module owns, whatever its name (the Adam eps rule
    and calibrate_memory_eps act on it); refused if it owns none or several."""
    own = [f"{name}.{local}" if name else local for local, _ in module.named_parameters(recurse=False)]
    memories = [n for n in own if n in tensors and tensors[n].role == "memory"]
    if len(memories) == 1:
        return memories[0]
    prefix = f"{name}." if name else ""
    below = [n for n, r in tensors.items() if r.role == "memory" and n.startswith(prefix) and n not in own]
    if memories:
        hint = (f" ({', '.join(memories)}: one site holds one memory matrix; keys and values stored apart are one memory "
                "(declared) and an ordinary weight (not declared))")
    elif below:
        hint = (f" (its memory {below[0]} belongs to a submodule: declare the site, its sizes and the role on the module "
                "that owns the tensor, an nn.Linear itself)")
    else:
        hint = ""
    raise ParametrizationError(f"{name or 'the model'} has scaleplan_site = 'temperature' but {len(memories)} memory "
                               f"tensors of its own{hint}: {PROTOCOL}")


def _site_size(name: str, module: nn.Module, attribute: str) -> float:
    """A DenseAM site's size attribute (features, n_memories, gradient_order), refused in one line when it is missing."""
    value: Any = getattr(module, attribute, None)
    if not is_finite_number(value) or value <= 0:
        raise ParametrizationError(f"{name or 'the model'}: a DenseAM site needs a positive number attribute {attribute!r}, "
                                   f"got {value!r}: {PROTOCOL}")
    return float(value)


def _check_memory_protocol(model: nn.Module, base: object, tensors: dict[str, TensorRecord], rules: Parametrization) -> None:
    """The DenseAM rules act on declared memory matrices only, which shapes cannot tell from a Linear (a (K, N) matrix
    whose N grows is inferred an input, whose N and K grow together a hidden matrix): refuse 'denseam' without one, and
    memories whose Adam eps rule cannot be placed (no temperature site, no base module to read the sizes from)."""
    memories = [n for n, r in tensors.items() if r.role == "memory"]
    if rules.name == "denseam" and not memories:
        raise ParametrizationError(f"parametrization 'denseam' found no memory matrix, so its rules would act on nothing: {PROTOCOL}")
    if memories and not isinstance(base, nn.Module):
        raise ParametrizationError(
            f"memory tensor(s) {', '.join(memories[:3])}: their multiplier (N/N_base x K/K_base) and Adam eps rule read the "
            "base's sizes: pass base=<the model at the base size> as a module (the meta device will do)"
        )
    sited = {_oriented_memory(n, m, tensors) for n, m in model.named_modules() if getattr(m, "scaleplan_site", None) == "temperature"}
    unsited = [n for n in memories if n not in sited]
    if unsited:
        warnings.warn(
            f"memory tensor(s) {', '.join(unsited[:3])} belong to no module with scaleplan_site = 'temperature': their Adam "
            f"eps is not scaled by the DenseAM rule (1/(m_N^order m_K)); {PROTOCOL}",
            ParametrizationWarning,
            stacklevel=3,
        )


def _oriented_memory(name: str, module: nn.Module, tensors: dict[str, TensorRecord]) -> str:
    """site_memory, refused in one line unless the matrix is (K, N) as the site's sizes say: the Adam eps rule reads those sizes
    and calibrate_memory_eps takes each row for a memory, so an (N, K) matrix would get per-feature gradients silently. With
    N == K the two cannot be told apart: the matrix is read as (K, N)."""
    memory = site_memory(name, module, tensors)
    shape = tuple(module.get_parameter(memory.rsplit(".", 1)[-1]).shape)
    n, k = _site_size(name, module, "features"), _site_size(name, module, "n_memories")
    if shape != (k, n):
        fix = ("store it (K, N), one memory per row (overlaps x @ xi.T)" if shape == (n, k) else
               "set the site's n_memories (K) and features (N) to the matrix's sizes, stored (K, N)")
        raise ParametrizationError(f"memory matrix {memory} has shape {list(shape)}, but its site declares K = {k:g} memories of "
                                   f"N = {n:g} features, (K, N) = ({k:g}, {n:g}): {fix}")
    return memory


def check_intact(model: nn.Module, state: ParametrizationState) -> None:
    """Refuse a model changed after apply_parametrization where the change drops what muP set: a parameter added
    (it has no role; FSDP1's flat parameter without use_orig_params), or a readout's module replaced (transformers'
    resize_token_embeddings, a new head: the new module lacks the 1/m input hook and still trains, as SP); and one
    parametrized on the meta device whose init was never drawn (it trains from whatever materializing it drew)."""
    pending = getattr(state, "init_pending", ())  # (states pickled before it)
    if pending:
        raise ParametrizationError(
            f"{len(pending)} tensor(s) ({', '.join(pending[:3])}{', ...' if len(pending) > 3 else ''}) were on the meta "
            f"device when the model was parametrized, so {state.parametrization}'s init was never drawn on them: once the "
            "model is materialized (model.to_empty(device=...) and its own init), call scaleplan.initialize(model); to "
            "keep weights loaded from a checkpoint instead, apply with rescale=False"
        )
    params = dict(model.named_parameters())
    added = [name for name in params if name not in state.tensors]
    flat = [name for name in added if name.rsplit(".", 1)[-1] == "_flat_param"]  # FSDP1's FlatParameter
    if flat:
        raise ParametrizationError(
            f"{flat[0]} is FSDP's flat parameter, one tensor holding many whose roles need different lrs: wrap with "
            "FullyShardedDataParallel(model, use_orig_params=True) or shard with fully_shard (FSDP2), which keep each "
            "tensor, then build param_groups from the wrapped model"
        )
    if added:
        raise ParametrizationError(
            f"parameter(s) {', '.join(added[:3])}{', ...' if len(added) > 3 else ''} were added after apply_parametrization "
            "and have no role: make such changes before applying it (and to the base)"
        )
    for name, record in state.tensors.items():
        param = params.get(name)
        if param is None or record.role not in ("input", "output") or param.dim() < 2:
            continue
        unhooked = [m for m in _readout_modules(model, param, record)
                    if not any(isinstance(h, ScaleInput) for h in m._forward_pre_hooks.values())]
        if unhooked:
            raise ParametrizationError(
                f"the readout {name} lost its muP output multiplier: the module that uses it was replaced after "
                "apply_parametrization (resize_token_embeddings, a new head), and would train as SP: make such changes "
                "before applying it (and to the base)"
            )


def _readout_modules(model: nn.Module, param: nn.Parameter, record: TensorRecord) -> list[nn.Module]:
    """The modules that compute a readout from `param` (x @ W with only the fan-in a width): they get the hook.
    Each once, though a module registered under two names (an alias) is used twice."""
    found: dict[int, nn.Module] = {}
    for use in known_uses(model, param):
        only_fan_in = use.fan_in in record.width_dims and use.fan_out not in record.width_dims
        if use.kind == "linear" and (only_fan_in or (record.role == "output" and not record.width_dims)):
            found.setdefault(id(use.module), use.module)
    return list(found.values())


def _install_readout_hooks(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    tensors: dict[str, TensorRecord],
    rules: Parametrization,
    output_mult: float,
) -> dict[str, list[ScaleInput]]:
    """Every module that computes a readout (its fan-in is the only width) gets alpha_out * m^forward on its input;
    returns the hooks per readout tensor."""
    hooks: dict[str, list[ScaleInput]] = {}
    for name, param in params.items():
        record = tensors[name]
        if record.role not in ("input", "output") or param.dim() < 2:
            continue
        for module in _readout_modules(model, param, record):
            forward = rules.multipliers("output", record.m).forward
            if not rules.keeps_model_scales and _scales_readout_input(model, module):
                forward *= math.sqrt(record.m)  # the model's own d_model^-1/2 already gives m^-1/2 of the rules' 1/m
            hook = ScaleInput(output_mult * forward)
            hook.tied = record.role == "input"  # an embedding tied to the readout: a gradient without the module running
            module.register_forward_pre_hook(hook, with_kwargs=True)
            hooks.setdefault(name, []).append(hook)
    return hooks


# transformers models whose forward multiplies the readout's input by model_dim^-1/2: model_type -> the config flag
# that turns it on (the T5 family names it scale_decoder_outputs; Switch Transformers does it when tied)
_SCALED_READOUT_INPUT = {"t5": "scale_decoder_outputs", "longt5": "scale_decoder_outputs", "umt5": "scale_decoder_outputs",
                         "pop2piano": "scale_decoder_outputs", "switch_transformers": "tie_word_embeddings"}


def _scales_readout_input(model: nn.Module, module: nn.Module) -> bool:
    """Whether `module` is the output embedding of a model that scales its input by model_dim^-1/2 itself."""
    config = getattr(model, "config", None)
    flag = _SCALED_READOUT_INPUT.get(getattr(config, "model_type", None) or "")
    output_embeddings = getattr(model, "get_output_embeddings", None)
    return flag is not None and bool(getattr(config, flag, False)) and callable(output_embeddings) and output_embeddings() is module

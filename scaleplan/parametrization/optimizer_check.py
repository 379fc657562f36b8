"""Warn when a torch optimizer loses what param_groups set per role: a model that still trains, just worse.

Training code loses it without an error in several ways: an optimizer built from `model.parameters()` (one lr for
tensors whose roles need different ones); a schedule that sets every group's lr to one value after `param_groups`
gave each role its own (nanoGPT's loop `g["lr"] = lr`, OneCycleLR or CyclicLR with one max_lr, the floor of
CosineAnnealingLR's eta_min), or every group's weight decay to one value (a loop `g["weight_decay"] = wd`); groups
built for Adam stepped by SGD (or the reverse); a weight_decay or eps given to the optimizer's constructor, which
param_groups' groups override; an SGD momentum other than the one an SGD law was fitted with; a readout used through its
weight, whose module (with muP's 1/m input hook) does not run at a step; and an optimizer scaleplan has no muP rules for
(Muon, Adafactor). A global optimizer step pre-hook checks every optimizer
that steps parametrized tensors and warns once per optimizer, at the training loop's step, naming the fix.
"""

from __future__ import annotations

import inspect
import warnings
import weakref
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch.optim.optimizer import Optimizer, register_optimizer_step_pre_hook

from scaleplan.errors import ParametrizationWarning
from scaleplan.parametrization.caller import caller_stacklevel

FACTOR_KEY = "scaleplan_lr_factor"  # on each group of param_groups: the group's lr over the base lr
OPTIMIZER_KEY = "scaleplan_optimizer"  # on each group of param_groups: the optimizer its rules were for
# on each group of param_groups: the base weight decay it scaled; on the groups where it scaled Adam's eps, the base eps
BASE_KEYS = {"weight_decay": "scaleplan_weight_decay", "eps": "scaleplan_eps"}
DECAY_KEY = "scaleplan_initial_weight_decay"  # on each group of param_groups: the weight_decay it was built with
MOMENTUM_KEY = "scaleplan_momentum"  # on each group built from an SGD law's prediction: the law's (momentum, nesterov)
TAG = "_scaleplan_lr_factors"  # on each parametrized tensor: (its name, {optimizer family: lr factor}, readout hooks)
RATIO_TOLERANCE = 1e-3  # relative spread of lr / factor across groups that still counts as one base lr

_registered = False
# parametrized module -> {name: its tensor's tag}: tensors replaced after apply_parametrization (FSDP2's fully_shard, a
# .to() under torch's swap/overwrite-on-conversion) are new objects without the tag, and are tagged again from here
_tags: weakref.WeakKeyDictionary[torch.nn.Module, dict[str, tuple]] = weakref.WeakKeyDictionary()
_warned: weakref.WeakSet[Optimizer] = weakref.WeakSet()
_checked_groups: weakref.WeakKeyDictionary[Optimizer, int] = weakref.WeakKeyDictionary()  # optimizer -> groups checked
_readouts: weakref.WeakKeyDictionary[Optimizer, list] = weakref.WeakKeyDictionary()  # optimizer -> its readouts


def watch() -> None:
    """Register the step pre-hook once per process (apply_parametrization and param_groups call this)."""
    global _registered
    if not _registered:
        register_optimizer_step_pre_hook(_check_step)
        _registered = True


def tag_tensors(model: torch.nn.Module, params: Mapping[str, torch.nn.Parameter], factors: Mapping[str, Mapping[str, float]],
                hooks: Mapping[str, Sequence[Any]]) -> None:
    """Record on each parametrized tensor of `model` its name, its lr factor per optimizer family ("adam", "sgd") and
    the readout hooks that must run for it to be muP's readout (those with a `ran` flag; none for other tensors)."""
    tags = {name: (name, dict(factors[name]), tuple(hooks.get(name, ()))) for name in params}
    _tags[model] = tags
    for name, param in params.items():
        setattr(param, TAG, tags[name])


def retag(params: Iterable[torch.nn.Parameter]) -> None:
    """Tag again the tensors among `params` that a parametrized module holds under a tagged name but that lost the tag
    (replaced after apply_parametrization: FSDP2's DTensor parameters, swap-on-conversion), so the checks see them."""
    untagged = {id(p) for p in params if not hasattr(p, TAG)}
    if not untagged:
        return
    for model, tags in list(_tags.items()):
        for name, param in model.named_parameters():
            if id(param) in untagged and name in tags:
                setattr(param, TAG, tags[name])


# per-coordinate normalized optimizers: muP's Adam lr rules apply to them (AdamW subclasses Adam)
ADAPTIVE = (torch.optim.Adam, torch.optim.NAdam, torch.optim.RAdam, torch.optim.Adamax, torch.optim.RMSprop, torch.optim.Adagrad)


def stepping(optimizer: Optimizer) -> Optimizer:
    """The optimizer whose update rule steps the tensors: a wrapper's inner one (ZeroRedundancyOptimizer's `optim`,
    built from its optimizer_class over the groups), else `optimizer` itself."""
    inner = getattr(optimizer, "optim", None)
    return inner if isinstance(inner, Optimizer) else optimizer


def family(optimizer: Optimizer) -> str | None:
    """The optimizer family whose muP lr rules apply ("adam" for Adam-like adaptive optimizers, "sgd"), or None if
    scaleplan has none (Adafactor, Muon, ... scale otherwise)."""
    optimizer = stepping(optimizer)
    if isinstance(optimizer, torch.optim.SGD):
        return "sgd"
    if isinstance(optimizer, ADAPTIVE):
        return "adam"
    return None


def unruled_problem(groups: Iterable[Mapping[str, Any]], optimizer: Optimizer, optimizer_family: str | None) -> str | None:
    """Why an optimizer scaleplan has no muP rules for (Muon, Adafactor, a third-party one; `optimizer_family` None)
    stepping parametrized tensors may not be muP, or None: the groups' per-role lrs are Adam's or SGD's rules, and an
    optimizer that orthogonalizes (Muon, whose adjust_lr_fn already scales with the shape) or scales relatively
    (Adafactor) follows neither."""
    if optimizer_family is not None:
        return None
    tagged = next((getattr(p, TAG)[0] for g in groups for p in g["params"] if hasattr(p, TAG)), None)
    if tagged is None:
        return None
    return (
        f"scaleplan has no muP rules for torch.optim.{type(optimizer).__name__}, which steps {tagged} of a parametrized "
        "model: the lrs of param_groups follow Adam's rules (or SGD's), not this optimizer's update, so its lr may not "
        "transfer across widths. Use Adam, AdamW or SGD with param_groups, or measure the transfer (scaleplan validate, "
        "coord-check); for an optimizer that normalizes each coordinate as Adam does (e.g. Lion), Adam's rules apply: "
        "warnings.filterwarnings('ignore', 'scaleplan has no muP rules')"
    )


def optimizer_problem(groups: Iterable[Mapping[str, Any]], optimizer: Optimizer) -> str | None:
    """Why groups that param_groups built for one optimizer are stepped by another whose rules differ, or None.

    Adam and AdamW share muP's lr rules; SGD's differ; AdamW's independent decay (weight_decay = lambda / lr) is
    not an L2 coefficient for Adam.
    """
    groups = list(groups)
    kind = family(optimizer)
    if kind is None:
        return None
    name = "adamw" if isinstance(stepping(optimizer), torch.optim.AdamW) else kind
    no_decay = all(not g.get("weight_decay") for g in groups)
    accepted = {"sgd"} if kind == "sgd" else {"adam", "adamw"} if name == "adamw" or no_decay else {"adam"}
    built = next((g[OPTIMIZER_KEY] for g in groups if g.get(OPTIMIZER_KEY, name) not in accepted), None)
    if built is None:
        return None
    return (
        f"param_groups built these groups for optimizer={built!r}, but torch.optim.{type(optimizer).__name__} steps them, "
        f"whose muP lrs (or weight decay) differ: build them with param_groups(model, lr, optimizer={name!r})"
    )


def momentum_problem(groups: Iterable[Mapping[str, Any]], optimizer: Optimizer) -> str | None:
    """Why torch.optim.SGD steps groups built from an SGD law's prediction with another momentum than the sweep
    trained with (the optimal lr falls about as 1 - momentum), or None."""
    if not isinstance(stepping(optimizer), torch.optim.SGD):
        return None
    for index, group in enumerate(groups):
        if MOMENTUM_KEY not in group:
            continue
        fitted = tuple(group[MOMENTUM_KEY])
        used = (float(group.get("momentum", 0.0)), bool(group.get("nesterov", False)))
        if used != fitted:
            return (
                f"the law's lr was fitted with SGD {_momentum(*fitted)}, but torch.optim.SGD steps group {index} with "
                f"{_momentum(*used)}: SGD's optimal lr scales about as 1 - momentum, so it does not hold here; pass "
                f"momentum={fitted[0]:g}, nesterov={fitted[1]} to torch.optim.SGD, or fit a law with this momentum "
                "([train] momentum in the sweep's spec; a user objective's spec must declare the momentum its code uses)"
            )
    return None


def _momentum(momentum: float, nesterov: bool) -> str:
    return f"momentum {momentum:g}" + (", nesterov" if nesterov else "")


def schedule_problem(groups: Iterable[Mapping[str, Any]]) -> str | None:
    """Why the groups of param_groups no longer share one base lr (lr / factor), or None if they do."""
    stamped = [(i, g) for i, g in enumerate(groups) if FACTOR_KEY in g]
    implied = [(float(g["lr"]) / float(g[FACTOR_KEY]), i, g) for i, g in stamped]
    if len(implied) < 2 or all(base == 0 for base, _, _ in implied):
        return None
    low, high = min(implied, key=lambda x: x[0]), max(implied, key=lambda x: x[0])
    if high[0] <= low[0] * (1 + RATIO_TOLERANCE):
        return None
    return (
        "the optimizer's learning rates lost muP's per-layer ratios: param_groups gave every group one base lr times "
        f"its factor, but {_describe(*low)} and {_describe(*high)}. Something set the groups' lrs directly "
        "(a loop g['lr'] = lr, OneCycleLR or CyclicLR with one max_lr, CosineAnnealingLR's eta_min): scale each group's own "
        "lr instead: g['lr'] = lr * g['scaleplan_lr_factor'], max_lr=[g['lr'] for g in opt.param_groups], or a LambdaLR"
    )


def decay_schedule_problem(groups: Iterable[Mapping[str, Any]]) -> str | None:
    """Why the groups of param_groups no longer share one weight-decay schedule (each group's weight_decay over the one
    it was built with), or None: a loop g['weight_decay'] = wd_t (a DINO/ViT-style decay schedule) flattens muP's
    per-role decay, and decays the roles param_groups left undecayed."""
    stamped = [(i, g) for i, g in enumerate(groups) if DECAY_KEY in g]
    revived = next((i for i, g in stamped if float(g[DECAY_KEY]) == 0 and float(g.get("weight_decay", 0.0)) != 0), None)
    scales = [float(g.get("weight_decay", 0.0)) / float(g[DECAY_KEY]) for _, g in stamped if float(g[DECAY_KEY]) != 0]
    spread = len(scales) >= 2 and max(scales) > min(scales) * (1 + RATIO_TOLERANCE)
    if revived is None and not spread:
        return None
    what = (f"group {revived} was built without weight decay (no_decay) and now has weight_decay "
            f"{float(dict(stamped)[revived]['weight_decay']):.3g}" if revived is not None else
            f"their weight decays are now {min(scales):.3g}x to {max(scales):.3g}x the ones param_groups set")
    return (
        f"the optimizer's weight decays lost muP's per-role ratios: {what}. Something set the groups' weight_decay "
        "directly (a loop g['weight_decay'] = wd): scale each group's own value instead, "
        f"g['weight_decay'] = g[{DECAY_KEY!r}] * factor"
    )


def grouping_problem(groups: Iterable[Mapping[str, Any]], optimizer_family: str) -> str | None:
    """Why groups not built by param_groups hold parametrized tensors that need different lrs, or None."""
    for i, group in enumerate(groups):
        if FACTOR_KEY in group:
            continue
        tagged = [getattr(p, TAG) for p in group["params"] if hasattr(p, TAG)]
        factors = [(f[optimizer_family], name) for name, f, _ in tagged]
        if not factors:
            continue
        low, high = min(factors), max(factors)
        if high[0] > low[0] * (1 + RATIO_TOLERANCE):
            return (
                f"optimizer group {i} gives one lr to tensors of a muP model whose roles need different ones at this width "
                f"({low[1]}: lr x {low[0]:.3g}, {high[1]}: lr x {high[0]:.3g}): build the optimizer from "
                "scaleplan.param_groups(model, lr), which gives each role its own lr"
            )
    return None


def readouts(groups: Iterable[Mapping[str, Any]]) -> list[torch.nn.Parameter]:
    """The readouts among the groups' tensors: those whose module's input hook (muP's 1/m) must run."""
    return [p for group in groups for p in group["params"] if getattr(p, TAG, (None, None, ()))[2]]


def readout_problem(params: Iterable[torch.nn.Parameter]) -> str | None:
    """Why a readout about to be stepped has a gradient although its module's forward (which applies muP's 1/m) did not
    run since the last step, or None: the training path used it through its weight, as in F.linear(h, head.weight) or a
    fused linear + cross-entropy (an evaluation forward through the module before does not count)."""
    for p in params:
        name, _, hooks = getattr(p, TAG)
        # (a gradient left at zero by zero_grad(set_to_none=False) on a step that did not use the readout is none)
        if not any(h.ran or h.manual for h in hooks) and p.grad is not None and bool(p.grad.any()):
            return (
                f"the readout {name} has a gradient, but its module's forward did not run since the last step, so muP's 1/m "
                "output multiplier was not applied (the model uses its weight directly, e.g. F.linear(h, head.weight) or a "
                "fused linear + cross-entropy): call the module, or multiply its input by "
                f"scaleplan.parametrization.readout_multiplier(model, {name!r})"
            )
    return None


def _reset_readouts(params: Iterable[torch.nn.Parameter]) -> None:
    """Clear the readouts' `ran` flags after a step: the next step must see its own forward (a tied embedding's stay:
    a step may train it as an input alone)."""
    for p in params:
        for hook in getattr(p, TAG)[2]:
            if not hook.tied:
                hook.ran = False


def _describe(base: float, index: int, group: Mapping[str, Any]) -> str:
    """'group 1 (h.weight, ...) has lr 0.001 = 0.004 x its factor 0.25'."""
    names = list(group.get("names", []))
    shown = f" ({', '.join(names[:2])}{', ...' if len(names) > 2 else ''})" if names else ""
    return f"group {index}{shown} has lr {float(group['lr']):.3g} = {base:.3g} x its factor {float(group[FACTOR_KEY]):.3g}"


def defaults_problem(groups: Iterable[Mapping[str, Any]], optimizer: Optimizer) -> str | None:
    """Why a weight_decay or eps given to the optimizer's constructor does not reach param_groups' groups, or None.

    Every group of param_groups sets its own weight_decay (and, where the rules scale it, eps) from the base value
    param_groups was given, so the constructor's value is overridden there: a value other than torch's default and
    param_groups' base is taken to be meant. Groups whose eps the rules leave alone take the constructor's.
    """
    stamped = [g for g in groups if FACTOR_KEY in g]
    for option, key in BASE_KEYS.items():
        given, assumed = optimizer.defaults.get(option), next((g[key] for g in stamped if key in g), None)
        if given is None or assumed is None or given in (assumed, _constructor_default(type(optimizer), option)):
            continue
        return (
            f"torch.optim.{type(optimizer).__name__}({option}={given:g}) is overridden by param_groups' groups, which set "
            f"their own {option} from {option}={assumed:g}: pass {option}={given:g} to param_groups(model, lr, ...), "
            "which scales it per role"
        )
    return None


def _constructor_default(cls: type, option: str) -> Any:
    parameter = inspect.signature(cls).parameters.get(option)
    return None if parameter is None else parameter.default


def _check_step(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
    """The step pre-hook: warn once per optimizer whose lrs or settings break the parametrization's."""
    if optimizer in _warned:
        return
    groups = optimizer.param_groups
    problem = schedule_problem(groups) or decay_schedule_problem(groups)  # these change every step; the rest only when
    # groups are added
    if problem is None and _checked_groups.get(optimizer) != len(groups):
        _checked_groups[optimizer] = len(groups)
        retag(p for g in groups for p in g["params"])
        _readouts[optimizer] = readouts(groups)
        opt_family = family(optimizer)
        problem = (unruled_problem(groups, optimizer, opt_family) or optimizer_problem(groups, optimizer) or defaults_problem(groups, optimizer)
                   or momentum_problem(groups, optimizer)
                   or (grouping_problem(groups, opt_family) if opt_family else None))
    # a wrapper's inner optimizer steps the same readouts right after it, and looks at them then
    stepped = _readouts.get(optimizer, []) if stepping(optimizer) is optimizer else []
    problem = problem or readout_problem(stepped)  # every step: a forward through the module once does not excuse later ones
    _reset_readouts(stepped)
    if problem is not None:
        _warned.add(optimizer)
        warnings.warn(problem, ParametrizationWarning, stacklevel=caller_stacklevel())

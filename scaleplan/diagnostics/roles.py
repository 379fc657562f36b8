"""What apply_parametrization decided for each tensor of a model, and what scaleplan warns about in it.

A mis-parametrized model still trains, just worse, so the decisions are printed for a person to read: each tensor's
role, its width multipliers and the factors its role's rules put on the lr, init, forward and weight decay; and every
`ParametrizationWarning` that applying the parametrization, the model's first forward (the forward audit) and one
optimizer step (the optimizer check) give.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

from torch import nn

from scaleplan.diagnostics.coord_check import Batch, batch_loss
from scaleplan.errors import ParametrizationWarning
from scaleplan.parametrization.apply import ScaleInput, require_states
from scaleplan.parametrization.groups import param_groups, tensor_multipliers
from scaleplan.train.loop import OPTIMIZER_CLASSES


@dataclass(frozen=True)
class RoleRow:
    """One tensor: its role, width multiplier m (m_out: a hidden tensor's fan-out one, where it differs) and the
    factors its role's rules set relative to the base lr, init std, forward multiplier, weight decay and Adam eps."""

    name: str
    shape: tuple[int, ...]
    role: str
    m: float
    m_out: float | None
    lr: float
    init_std: float
    forward: float
    weight_decay: float
    eps: float


@dataclass(frozen=True)
class SiteRow:
    """A multiplier the parametrization set on a module's computation rather than on a tensor: attention logits
    (relative to SP's 1/sqrt(d_head)), a residual branch (CompleteP), a DenseAM's temperature or memory sum, a
    readout's input (muP's 1/m, a forward pre-hook; a tied readout's too), a transformers attention module's `scaling`
    or an embedding's `embed_scale`."""

    module: str
    kind: str
    multiplier: float


def site_rows(model: nn.Module) -> list[SiteRow]:
    """Every module-level multiplier of every parametrized module in `model` (named from `model`)."""
    rows = []
    for prefix, holder, state in require_states(model):
        rows += [SiteRow(_qualified(prefix, name), str(holder.get_submodule(name).scaleplan_site), value)
                 for name, value in state.sites.items()]
        rows += [SiteRow(_qualified(prefix, name), "readout input", hook.multiplier) for name, module in holder.named_modules()
                 for hook in module._forward_pre_hooks.values() if isinstance(hook, ScaleInput)]
        rows += [SiteRow(_qualified(prefix, name), "attention scaling", value) for name, value in state.scalings.items()]
        rows += [SiteRow(_qualified(prefix, name), "embed_scale", value) for name, value in state.embed_scales.items()]
    return rows


def role_rows(model: nn.Module, optimizer: str = "adam", decay: str = "torch") -> list[RoleRow]:
    """Every tensor of every parametrized module in `model` (an encoder and a decoder parametrized apart are two),
    named from `model`, in parameter order."""
    rows = []
    for prefix, holder, state in require_states(model):
        factors = tensor_multipliers(holder, optimizer, decay)
        shapes = {name: tuple(p.shape) for name, p in holder.named_parameters()}
        for name, record in state.tensors.items():
            f = factors[name]
            rows.append(RoleRow(_qualified(prefix, name), shapes[name], record.role, record.m, record.m_out,
                                f.lr, f.init_std, f.forward, f.weight_decay, f.eps))
    return rows


def _qualified(prefix: str, name: str) -> str:
    """`name` inside the part at `prefix`, as `model.named_modules()` names it ("(model)" for the model itself)."""
    return ".".join(p for p in (prefix, name) if p) or "(model)"


@dataclass(frozen=True)
class Inspection:
    """What `scaleplan roles` shows: tensors, module multipliers, warnings."""

    tensors: list[RoleRow]
    sites: list[SiteRow]
    warnings: list[str]


def inspect_model(make: Callable[[], tuple[nn.Module, Batch]], optimizer: str = "adam") -> Inspection:
    """The role and site rows of the parametrized model `make()` returns (with a batch for it), and every distinct
    ParametrizationWarning of its parametrization, first forward and first optimizer step."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ParametrizationWarning)
        model, batch = make()
        rows, sites = role_rows(model, optimizer), site_rows(model)
    messages = parametrization_warnings(caught)
    return Inspection(rows, sites, messages + [m for m in first_step_warnings(model, batch, optimizer) if m not in messages])


def first_step_warnings(model: nn.Module, batch: Batch, optimizer: str = "adam") -> list[str]:
    """The ParametrizationWarnings of the model's first forward (watched once) and first optimizer step (checked once),
    each once; the model's weights are stepped (lr 1e-6): use a throwaway copy."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ParametrizationWarning)
        groups = param_groups(model, 1e-6, optimizer=optimizer)
        step = OPTIMIZER_CLASSES[optimizer](groups)
        batch_loss(model, batch).backward()
        step.step()
    return parametrization_warnings(caught)


def parametrization_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """The distinct messages of the ParametrizationWarnings among `caught`, in order; other warnings are re-issued."""
    messages: list[str] = []
    for w in caught:
        if not issubclass(w.category, ParametrizationWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif str(w.message) not in messages:
            messages.append(str(w.message))
    return messages

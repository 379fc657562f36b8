"""The parametrization's metadata outside the pickled state: in a transformers config, checked on re-attach.

`model.scaleplan_state` travels with torch.save of the whole model; `save_pretrained` writes only the
config and the weights, so apply_parametrization also writes a JSON-ready summary to
`model.config.scaleplan`. `from_pretrained` reads it back; re-attaching with rescale=False checks the
model against it (same parametrization, base width, roles and multipliers), so a checkpoint is never
re-attached under another parametrization, and applying with rescaling is refused.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from scaleplan.errors import ParametrizationError

if TYPE_CHECKING:
    from torch import nn

    from scaleplan.parametrization.apply import ParametrizationState

_WIDTH_KEYS = ("hidden_size", "n_embd", "d_model")
FOLDED_KEY = "scaleplan_folded"  # the config key of fold_multipliers' copy, in place of `scaleplan`: what was folded


def model_width(obj: object) -> int | None:
    """A model's width: its positive int `.width`, else its config's hidden size (transformers)."""
    for holder, keys in ((obj, ("width",)), (getattr(obj, "config", None), _WIDTH_KEYS)):
        for key in keys:
            value = getattr(holder, key, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def summary(state: ParametrizationState) -> dict[str, Any]:
    """JSON-ready: name, widths, output multiplier, CompleteP and every tensor's [role, m, m_out]."""
    return {
        "parametrization": state.parametrization,
        "width": state.width,
        "base_width": state.base_width,
        "output_mult": state.output_mult,
        "completep": state.completep,
        "base_depth": state.base_depth,
        "tensors": {name: [r.role, r.m, r.m_out] for name, r in state.tensors.items()},
    }


def _config(model: nn.Module) -> Any:
    config = getattr(model, "config", None)
    return config if config is not None and hasattr(config, "to_dict") else None


def saved_metadata(model: nn.Module) -> dict[str, Any] | None:
    """The summary a reloaded transformers checkpoint carries in its config, if any."""
    saved = getattr(_config(model), "scaleplan", None)
    return saved if isinstance(saved, dict) else None


def folded(model: nn.Module) -> bool:
    """Whether `model` (or a part) is fold_multipliers' inference copy: its weights carry the multipliers."""
    return any(isinstance(getattr(_config(m), FOLDED_KEY, None), dict) for m in model.modules())


def unparametrized(model: nn.Module) -> ParametrizationError:
    """The error for a model without a parametrization state; for a reloaded checkpoint whose config says it was
    parametrized, it names the re-attach (without it the model computes SP's readout and attention scales)."""
    if folded(model):
        return ParametrizationError(
            "model is an inference copy with scaleplan's multipliers folded into its weights (fold_multipliers): "
            "train the unfolded model, re-attached with rescale=False after from_pretrained"
        )
    saved = next((s for s in map(saved_metadata, model.modules()) if s is not None), None)
    if saved is None:
        return ParametrizationError("model has no scaleplan parametrization; call apply_parametrization(model, 'mup', base=...) first")
    return ParametrizationError(
        f"model is a reloaded checkpoint parametrized with {saved.get('parametrization')!r} (base width "
        f"{saved.get('base_width')}), not re-attached: its readout and attention scales are SP's until "
        f"apply_parametrization(model, {saved.get('parametrization')!r}, base=<the same base>, rescale=False)"
    )


def store_metadata(model: nn.Module, state: ParametrizationState) -> None:
    """Write the summary into a transformers config (save_pretrained then saves it in config.json)."""
    config = _config(model)
    if config is not None:
        config.scaleplan = summary(state)


def check_saved(model: nn.Module, state: ParametrizationState) -> None:
    """Refuse re-attaching `state` to a checkpoint whose saved summary says it was parametrized otherwise."""
    saved = saved_metadata(model)
    if saved is None:
        return
    ours = summary(state)
    for key in ("parametrization", "base_width", "output_mult", "completep", "base_depth"):
        if saved.get(key) != ours[key]:
            raise ParametrizationError(
                f"the checkpoint was parametrized with {key}={saved.get(key)!r}, re-attached with {key}={ours[key]!r}; "
                "re-attach exactly as it was parametrized"
            )
    tensors = saved.get("tensors", {})
    for name, (role, m, m_out) in ours["tensors"].items():
        theirs = tensors.get(name)
        if theirs is None or theirs[0] != role or not _close(theirs[1], m) or not _close(theirs[2], m_out):
            raise ParametrizationError(
                f"the checkpoint's {name} was parametrized as {theirs}, the model gives [{role!r}, {m}, {m_out}]; "
                "re-attach with the base (and roles) it was parametrized with"
            )


def _close(a: float | None, b: float | None) -> bool:
    return a == b if a is None or b is None else math.isclose(a, b, rel_tol=1e-9)

"""Attention logits under muP: q.k x sqrt(d_base)/d_head instead of 1/sqrt(d_head), wherever it can be set.

Three kinds of module: scaleplan's protocol (`scaleplan_site = "attention"`: a float `multiplier`
on top of 1/sqrt(d_head)); HF-style attention that keeps its logit scale in a float `scaling` next to
`head_dim` (GPT-2, Llama and every family built on transformers' attention interface: the eager, SDPA
and flash paths all read `scaling`); and modules whose scale scaleplan cannot change
(`nn.MultiheadAttention`, other `*Attention` classes): those get a warning naming them and the fix,
`attention_scale(d_head, base_d_head)` in the user's own call to SDPA.
"""

from __future__ import annotations

import warnings
from typing import Mapping

from torch import nn

from scaleplan.core.rules import Parametrization
from scaleplan.errors import ParametrizationError


def has_hf_scaling(module: nn.Module) -> bool:
    """An attention module whose logit scale is its float `scaling` attribute (transformers' convention)."""
    return isinstance(getattr(module, "scaling", None), float) and isinstance(getattr(module, "head_dim", None), int)


def attention_sites(
    model: nn.Module, base_modules: Mapping[str, nn.Module], fallback_ratio: dict[str, float], rules: Parametrization
) -> tuple[dict[str, float], dict[str, float]]:
    """({module: multiplier} for scaleplan's protocol, {module: factor on `scaling`} for HF-style modules).

    The head ratio is d_head / the base module's d_head; for the protocol without a base module it is
    `fallback_ratio[name]` (the width multiplier of the module's weights, as before).
    """
    multipliers: dict[str, float] = {}
    scalings: dict[str, float] = {}
    unreachable = []
    for name, module in model.named_modules():
        base_module = base_modules.get(name)
        if getattr(module, "scaleplan_site", None) == "attention":
            ratio = module.d_head / base_module.d_head if base_module is not None else fallback_ratio[name]
            multipliers[name] = rules.attention_multiplier(ratio)
        elif has_hf_scaling(module):
            if base_module is None or not isinstance(getattr(base_module, "head_dim", None), int):
                raise ParametrizationError(
                    f"attention module {name!r}: its head dimension at the base width is unknown; pass base= as a "
                    "model (not a dict of shapes) so scaleplan can set its logit scale"
                )
            scalings[name] = rules.attention_multiplier(module.head_dim / base_module.head_dim)
        elif _unreachable_attention(module):
            unreachable.append(f"{name or 'model'} ({type(module).__name__})")
    if unreachable and rules.attention_multiplier(2.0) != 1.0:
        warnings.warn(
            f"scaleplan cannot set the attention-logit scale of {', '.join(unreachable[:5])}"
            f"{' and more' if len(unreachable) > 5 else ''}: they keep 1/sqrt(d_head), muP needs 1/d_head; compute "
            "attention yourself with F.scaled_dot_product_attention(q, k, v, scale=attention_scale(d_head, base_d_head))",
            UserWarning,
            stacklevel=4,
        )
    return multipliers, scalings


def _unreachable_attention(module: nn.Module) -> bool:
    """nn.MultiheadAttention, or a module named like attention with neither `scaling` nor the protocol."""
    if isinstance(module, nn.MultiheadAttention):
        return True
    return type(module).__name__.lower().endswith("attention") and not any(
        has_hf_scaling(child) or getattr(child, "scaleplan_site", None) == "attention" for child in module.modules()
    )

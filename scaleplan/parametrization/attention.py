"""Attention logits under muP: q.k x sqrt(d_base)/d_head instead of 1/sqrt(d_head), wherever it can be set.

Three kinds of module: scaleplan's protocol (`scaleplan_site = "attention"`: a float `multiplier`
on top of 1/sqrt(d_head)); HF-style attention that keeps its logit scale in a float `scaling` (or, in CLIP, SigLIP
and the vision towers built on them, `scale`) next to its head size (`head_dim`, or `qk_head_dim`, `head_size`,
`key_value_proj_dim`, `attention_head_size`: GPT-2, Llama, GPT-NeoX, T5, DeepSeek-V3, BERT and every family built
on transformers' attention interface: the eager, SDPA and flash paths all take that attribute as their scale); and modules whose scale scaleplan cannot change: `nn.MultiheadAttention`, warned about here
with the fix (`attention_scale(d_head, base_d_head)` in the user's own call to SDPA), and other `*Attention` classes,
whose logits the first forward's audit reads (forward_audit.py) to warn only where they sit at 1/sqrt(d_head).
"""

from __future__ import annotations

import warnings
import math
from typing import Mapping

from torch import nn

from scaleplan.core.rules import Parametrization
from scaleplan.errors import ParametrizationError, ParametrizationWarning


# q.k's size: DeepSeek's MLA, most, NeoX, T5, BERT and the ~30 families copied from it
_HEAD_SIZES = ("qk_head_dim", "head_dim", "head_size", "key_value_proj_dim", "attention_head_size")


def head_size(module: nn.Module) -> int | None:
    """The size of the query-key dot product of an HF attention module, where it names it."""
    for key in _HEAD_SIZES:
        value = getattr(module, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def scale_attribute(module: nn.Module) -> str | None:
    """The attribute holding an HF attention module's float logit scale, where it names its head size too: `scaling`
    (transformers' convention), or `scale` in a class named like attention (CLIP's, SigLIP's: a bare `scale` elsewhere
    is something else, SAM2's position embedding's 2 pi)."""
    if head_size(module) is None:
        return None
    if isinstance(getattr(module, "scaling", None), float):
        return "scaling"
    if isinstance(getattr(module, "scale", None), float) and "attention" in type(module).__name__.lower():
        return "scale"
    return None


def has_hf_scaling(module: nn.Module) -> bool:
    """An attention module whose logit scale is a float attribute scaleplan can set (see scale_attribute)."""
    return scale_attribute(module) is not None


def logit_scale(module: nn.Module) -> float:
    """An HF attention module's logit scale, from the attribute scale_attribute names."""
    return float(getattr(module, scale_attribute(module)))  # type: ignore[arg-type]


def set_logit_scale(module: nn.Module, value: float) -> None:
    """Set an HF attention module's logit scale, in the attribute scale_attribute names."""
    setattr(module, scale_attribute(module), value)  # type: ignore[arg-type]


def scaling_factor(module: nn.Module, base_module: nn.Module, rules: Parametrization) -> float:
    """The factor on an HF module's `scaling` that gives the rules' logit scale: the rules' multiplier on top of
    1/sqrt(d_head), anchored at the base module's scale where the model's own does not follow 1/sqrt(d_head)
    (Gemma2's fixed query_pre_attn_scalar, T5's 1); SP keeps the model's own."""
    ratio = head_size(module) / head_size(base_module)  # type: ignore[operator]
    factor = rules.attention_multiplier(ratio)
    if rules.keeps_model_scales:
        return factor
    own, base_scale = logit_scale(module), logit_scale(base_module)
    standard = base_scale / math.sqrt(ratio)  # what 1/sqrt(d_head) gives, from the base's scale
    if not math.isclose(own, standard, rel_tol=1e-9):
        factor *= standard / own
    return factor


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
            if base_module is None or not has_hf_scaling(base_module):
                raise ParametrizationError(
                    f"attention module {name!r}: its head dimension at the base width is unknown; pass base= as a "
                    "model (not a dict of shapes) so scaleplan can set its logit scale"
                )
            scalings[name] = scaling_factor(module, base_module, rules)
        elif isinstance(module, nn.MultiheadAttention):  # other attention scaleplan cannot set: its first forward is read
            unreachable.append(f"{name or 'model'} ({type(module).__name__})")
    if unreachable and rules.attention_multiplier(2.0) != 1.0:
        warnings.warn(
            f"scaleplan cannot set the attention-logit scale of {', '.join(unreachable[:5])}"
            f"{' and more' if len(unreachable) > 5 else ''}: they keep 1/sqrt(d_head), muP needs 1/d_head; compute "
            "attention yourself with F.scaled_dot_product_attention(q, k, v, scale=attention_scale(d_head, base_d_head))",
            ParametrizationWarning,
            stacklevel=4,
        )
    return multipliers, scalings


def unset_head_ratios(model: nn.Module, base_modules: Mapping[str, nn.Module]) -> dict[str, float]:
    """{module: d_head / the base's} for attention modules that name their head size but whose scale scaleplan cannot
    set (ModernBERT passes head_dim**-0.5 to SDPA itself): the first forward judges an explicit SDPA scale in them by
    whether their head grew, which it cannot tell from the call alone."""
    ratios = {}
    for name, module in model.named_modules():
        base_module = base_modules.get(name)
        if (base_module is None or has_hf_scaling(module) or getattr(module, "scaleplan_site", None) == "attention"
                or "attention" not in type(module).__name__.lower()):
            continue
        size, base_size = head_size(module), head_size(base_module)
        if size is not None and base_size:
            ratios[name] = size / base_size
    return ratios


def opaque_attention(module: nn.Module) -> bool:
    """A module named like attention with neither `scaling` nor the protocol: scaleplan cannot set its logit scale."""
    return type(module).__name__.lower().endswith("attention") and not any(
        has_hf_scaling(child) or getattr(child, "scaleplan_site", None) == "attention" for child in module.modules()
    )

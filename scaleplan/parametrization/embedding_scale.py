"""Embeddings that multiply their output by a width-dependent `embed_scale` (Gemma's sqrt(hidden_size), BART's and
M2M100's sqrt(d_model) with `scale_embedding`): muP's input layer must give width-independent activations, so the
scale is pinned at the base model's value (SP keeps the model's own)."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from scaleplan.core.rules import Parametrization
from scaleplan.errors import ParametrizationError


def embedding_scale_factors(model: nn.Module, base_modules: Mapping[str, nn.Module], rules: Parametrization) -> dict[str, float]:
    """{module name: factor on its `embed_scale`} for every module whose scale differs from its base module's."""
    if rules.keeps_model_scales:
        return {}
    factors = {}
    for name, module in model.named_modules():
        ours = _embed_scale(module)
        if ours is None:
            continue
        base_module = base_modules.get(name)
        theirs = _embed_scale(base_module) if base_module is not None else None
        if theirs is None:
            raise ParametrizationError(
                f"{name or 'model'} scales its embedding by embed_scale={ours:g}, which may grow with the width; pass base= as "
                "a model (not a dict of shapes) so scaleplan can pin it at the base's value"
            )
        if ours != theirs:
            factors[name] = theirs / ours
    return factors


def scale_embedding(module: nn.Module, factor: float) -> None:
    """Multiply a module's `embed_scale` (a float or a one-element buffer, and Gemma's float copy that its
    re-initialization reads) by `factor`."""
    scale = module.embed_scale
    if isinstance(scale, torch.Tensor):
        with torch.no_grad():
            scale.mul_(factor)
    else:
        module.embed_scale = scale * factor  # type: ignore[assignment, operator]
    if isinstance(getattr(module, "scalar_embed_scale", None), float):
        module.scalar_embed_scale = module.scalar_embed_scale * factor  # type: ignore[assignment, operator]


def _embed_scale(module: nn.Module) -> float | None:
    value = getattr(module, "embed_scale", None)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None

"""Record the attention logits of transformers models, whose attention returns no logits to hook.

Registers an attention function in transformers' `AttentionInterface` that records mean |q.k x scaling|
(the logits, before the mask and any soft-capping, as scaleplan's own GPT probe records them) and then runs
the attention the model runs without it (its configured implementation, or its modeling module's eager
one), so the model computes exactly what it computes unprobed (Gemma2's soft-capping included).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from typing import Any, Callable, Iterator

import torch
from torch import nn

from scaleplan.parametrization.attention import has_hf_scaling

_NAME = "scaleplan_probe"
# id(attention module) -> (recorder, the attention function it runs unprobed)
_ACTIVE: dict[int, tuple[Callable[[torch.Tensor], None], Callable[..., Any]]] = {}


def _probe(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any, **kwargs: Any) -> Any:
    entry = _ACTIVE.get(id(module))
    if entry is None:  # an attention module that names no scale (not probed): run it as SDPA
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    record, attend = entry
    repeat = query.shape[1] // key.shape[1]  # grouped-query attention shares each key head
    keys = key.repeat_interleave(repeat, dim=1) if repeat > 1 else key
    scaling = kwargs.get("scaling")
    record((query @ keys.transpose(-1, -2)) * (query.shape[-1] ** -0.5 if scaling is None else scaling))
    return attend(module, query, key, value, attention_mask, **kwargs)


def _unprobed(module: nn.Module, implementation: str) -> Callable[..., Any]:
    """The attention function `module` runs under `implementation`: a registered one, else (eager) its modeling
    module's `eager_attention_forward`, else SDPA."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    registered = ALL_ATTENTION_FUNCTIONS.get(implementation)  # none for "eager"
    if registered is not None:
        return registered
    return getattr(sys.modules[type(module).__module__], "eager_attention_forward", sdpa_attention_forward)


@contextlib.contextmanager
def attention_logits(model: nn.Module, record: Callable[[str, torch.Tensor], None]) -> Iterator[None]:
    """While active, every HF attention module of `model` reports its logits as record(f"{name}.logits", t)."""
    config = getattr(model, "config", None)
    modules = [(name, m) for name, m in model.named_modules() if has_hf_scaling(m)]
    if config is None or not modules or not hasattr(config, "_attn_implementation"):
        yield
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    previous = config._attn_implementation
    AttentionInterface.register(_NAME, _probe)
    # the masks the unprobed attention gets (eager: additive, SDPA: boolean or none), not none for an unknown name
    AttentionMaskInterface.register(_NAME, ALL_MASK_ATTENTION_FUNCTIONS.get(previous) or ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    for name, module in modules:
        _ACTIVE[id(module)] = (functools.partial(record, f"{name}.logits"), _unprobed(module, previous))
    config._attn_implementation = _NAME
    try:
        yield
    finally:
        config._attn_implementation = previous
        for _, module in modules:
            _ACTIVE.pop(id(module), None)

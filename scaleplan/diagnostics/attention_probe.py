"""Record the attention logits of transformers models, whose attention returns no logits to hook.

Registers an attention function in transformers' `AttentionInterface` that records mean |q.k x scaling|
(the logits, before the mask, as scaleplan's own GPT probe records them) and then runs the SDPA path,
so the model computes exactly what it computes with `attn_implementation="sdpa"`.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

import torch
from torch import nn

from scaleplan.parametrization.attention import has_hf_scaling

_NAME = "scaleplan_probe"
_ACTIVE: dict[int, Callable[[torch.Tensor], None]] = {}  # id(attention module) -> recorder


def _probe(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any, **kwargs: Any) -> Any:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    record = _ACTIVE.get(id(module))
    if record is not None:
        repeat = query.shape[1] // key.shape[1]  # grouped-query attention shares each key head
        keys = key.repeat_interleave(repeat, dim=1) if repeat > 1 else key
        scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
        record((query @ keys.transpose(-1, -2)) * scaling)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


@contextlib.contextmanager
def attention_logits(model: nn.Module, record: Callable[[str, torch.Tensor], None]) -> Iterator[None]:
    """While active, every HF attention module of `model` reports its logits as record(f"{name}.logits", t)."""
    config = getattr(model, "config", None)
    modules = [(name, m) for name, m in model.named_modules() if has_hf_scaling(m)]
    if config is None or not modules or not hasattr(config, "_attn_implementation"):
        yield
        return
    from transformers import AttentionInterface

    AttentionInterface.register(_NAME, _probe)
    previous = config._attn_implementation
    for name, module in modules:
        _ACTIVE[id(module)] = functools.partial(record, f"{name}.logits")
    config._attn_implementation = _NAME
    try:
        yield
    finally:
        config._attn_implementation = previous
        for _, module in modules:
            _ACTIVE.pop(id(module), None)

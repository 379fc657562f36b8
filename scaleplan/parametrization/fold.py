"""Fold a parametrized transformers model's forward multipliers into its weights, for consumers without scaleplan.

muP's readout multiplier (a forward pre-hook), its attention-logit scale (the attention module's `scaling`) and a
pinned `embed_scale` live outside the weights, so `save_pretrained` alone writes a checkpoint that plain transformers
(vLLM, lm-eval, a colleague's notebook) runs with SP's scales: other logits, silently. `fold_multipliers` returns a
copy whose weights carry them, checked to compute the same outputs, for inference; training on needs the unfolded
model (re-attached with rescale=False after from_pretrained).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn

from scaleplan.errors import ParametrizationError
from scaleplan.parametrization.apply import ParametrizationState, ScaleInput, require_states
from scaleplan.parametrization.attention import head_size, logit_scale, set_logit_scale
from scaleplan.parametrization.embedding_scale import scale_embedding
from scaleplan.parametrization.metadata import FOLDED_KEY, summary

_QUERY_LINEARS = ("q_proj", "q", "q_b_proj", "query")  # Llama-likes and Bart, T5, DeepSeek's MLA, BERT-likes
_QUERY_NORMS = ("q_norm", "q_layernorm")  # Qwen3, Gemma, OLMo2, Cohere; StableLM, Phi, Persimmon


def fold_multipliers(model: nn.Module, example: Any = None) -> nn.Module:
    """A copy of parametrized `model` with every forward multiplier folded into its weights (tied readouts untied);
    it computes what `model` computes (checked on `example`: input ids for a transformers model by default) without
    scaleplan. For inference: save it with save_pretrained; keep training the original."""
    found = require_states(model)
    for prefix, _, state in found:
        _refuse_unfoldable(prefix, state)
    folded = copy.deepcopy(model)
    for prefix, _, state in found:
        holder = folded.get_submodule(prefix)
        _fold_readouts(holder)
        for name, factor in state.scalings.items():
            _fold_attention(holder.get_submodule(name), name, factor)
        for name, factor in state.embed_scales.items():
            _fold_embed_scale(holder.get_submodule(name), factor)
        del holder.__dict__["scaleplan_state"]
        config = getattr(holder, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            config.__dict__.pop("scaleplan", None)
            setattr(config, FOLDED_KEY, summary(state))
    _check_same_outputs(model, folded, example)
    return folded


def _refuse_unfoldable(prefix: str, state: ParametrizationState) -> None:
    """Multipliers that a module's own forward reads (scaleplan's protocol) or the user applies stay outside weights."""
    where = f" in {prefix}" if prefix else ""
    if state.sites:
        raise ParametrizationError(
            f"fold_multipliers is for transformers models; {', '.join(sorted(state.sites)[:3])}{where} read their multiplier "
            "in their own forward: save the whole model (torch.save) or rebuild and re-attach it"
        )
    if state.manual_readouts:
        raise ParametrizationError(
            f"raw readout(s) {', '.join(state.manual_readouts)}{where} get their multiplier in your forward "
            "(readout_multiplier): fold it there by hand"
        )


def _fold_readouts(holder: nn.Module) -> None:
    """Each readout's input multiplier into its weight (untied from an input embedding first), the hook removed: apply
    hooks only readouts whose input meets nothing but their weight (Linear, Conv1D, MoE routers); the output check
    catches any other."""
    for module in holder.modules():
        hooks = [(key, hook) for key, hook in module._forward_pre_hooks.items() if isinstance(hook, ScaleInput)]
        for key, hook in hooks:
            if not isinstance(getattr(module, "weight", None), nn.Parameter):
                raise ParametrizationError(f"readout {type(module).__name__} has no weight to fold its 1/m into")
            _scale_weight(module, hook.multiplier)
            del module._forward_pre_hooks[key]
            module._forward_pre_hooks_with_kwargs.pop(key, None)
            config: Any = getattr(holder, "config", None)
            if getattr(config, "tie_word_embeddings", False):
                config.tie_word_embeddings = False  # the readout has its own (scaled) weight now: not re-tied on load


def _fold_attention(module: nn.Module, name: str, factor: float) -> None:
    """An attention module's logit-scale factor into its queries; `scaling` back to what its config gives."""
    clip = getattr(module, "clip_qkv", None) or getattr(getattr(module, "config", None), "clip_qkv", None)
    if clip:  # clamp(f q) is not f clamp(q): DBRX, OLMo and OLMoE with clip_qkv
        raise ParametrizationError(f"attention {name!r} ({type(module).__name__}) clips its queries to +-{clip} (clip_qkv): the logit scale cannot be folded into them")
    norm = next((n for k in _QUERY_NORMS if isinstance(n := getattr(module, k, None), nn.Module) and _gains(n)), None)
    if norm is not None:  # a norm after the projection would undo a factor folded into it
        for gain in _gains(norm):
            _fold_into_norm(gain, name, factor)
    elif (linear := next((getattr(module, k) for k in _QUERY_LINEARS if isinstance(getattr(module, k, None), nn.Linear)), None)) is not None:
        _scale_rows(linear, linear.out_features, linear.out_features, factor)
    elif type(getattr(module, "c_attn", None)).__name__ == "Conv1D" and isinstance(split := getattr(module, "split_size", None), int):
        conv: Any = getattr(module, "c_attn")  # GPT-2's fused (in, 3d) Conv1D: queries are the first split_size columns
        with torch.no_grad():
            conv.weight[:, :split] *= factor
            if conv.bias is not None:
                conv.bias[:split] *= factor
    elif (fused := next((found for layout in _FUSED_LAYOUTS if (found := layout(module)) is not None), None)) is not None:
        _scale_rows(*fused, factor)
    else:
        raise ParametrizationError(f"attention {name!r} ({type(module).__name__}): scaleplan cannot find its query projection to fold the logit scale into")
    set_logit_scale(module, logit_scale(module) / factor)


def _gains(norm: nn.Module) -> list[nn.Module]:
    """The modules holding a query norm's gains: itself, or one per head (StableLM's per-head LayerNorms)."""
    return [m for m in norm.modules() if isinstance(getattr(m, "weight", None), nn.Parameter)]


# fused qkv Linears, each layout giving (Linear, width, block): its query rows are those whose index % block < width
def _shard_interleaved(module: nn.Module) -> tuple[nn.Linear, int, int] | None:
    """CodeGen's qkv_proj: mp_num shards of [q | v | k], each embed_dim / mp_num rows."""
    linear, shards = getattr(module, "qkv_proj", None), getattr(module, "mp_num", None)
    if not isinstance(linear, nn.Linear) or not isinstance(shards, int):
        return None
    width = linear.out_features // (3 * shards)
    return linear, width, 3 * width


def _head_interleaved(module: nn.Module) -> tuple[nn.Linear, int, int] | None:
    """GPT-NeoX's and Persimmon's query_key_value, GPT-BigCode's multi-head c_attn: [head][q | k | v][head size]."""
    linear = getattr(module, "c_attn" if getattr(module, "multi_query", None) is False else "query_key_value", None)
    size = head_size(module)
    return (linear, size, 3 * size) if isinstance(linear, nn.Linear) and size is not None else None


def _queries_first(module: nn.Module) -> tuple[nn.Linear, int, int] | None:
    """Phi-3's qkv_proj, GPT-BigCode's multi-query c_attn: [all queries | keys | values] (GQA sizes)."""
    linear = getattr(module, "c_attn" if getattr(module, "multi_query", None) is True else "qkv_proj", None)
    config = getattr(module, "config", None)
    heads = next((n for n in (getattr(module, "num_heads", None), getattr(config, "num_attention_heads", None)) if isinstance(n, int)), None)
    size = head_size(module)
    if not isinstance(linear, nn.Linear) or heads is None or size is None:
        return None
    return linear, heads * size, linear.out_features


_FUSED_LAYOUTS: tuple[Callable[[nn.Module], tuple[nn.Linear, int, int] | None], ...] = (_shard_interleaved, _head_interleaved, _queries_first)


def _scale_rows(linear: nn.Linear, width: int, block: int, factor: float) -> None:
    """Multiply the query rows of a Linear's weight and bias, those whose index % block < width, by `factor`."""
    rows = torch.arange(linear.out_features) % block < width
    with torch.no_grad():
        linear.weight[rows] *= factor
        if linear.bias is not None:
            linear.bias[rows] *= factor


def _fold_into_norm(norm: nn.Module, name: str, factor: float) -> None:
    """A norm's output times `factor`, through its bias and its gain: w (RMSNorm, LayerNorm) or 1 + w (Gemma's),
    found by trying both on a probe."""
    weight: torch.Tensor = getattr(norm, "weight")
    bias = getattr(norm, "bias", None)
    probe = torch.randn(3, *weight.shape, generator=torch.Generator().manual_seed(0)).to(weight)
    with torch.no_grad():
        wanted = norm(probe) * factor
        original = weight.detach().clone()
        if isinstance(bias, nn.Parameter):
            bias.mul_(factor)
        for gain in (original * factor, (1 + original) * factor - 1):
            weight.copy_(gain)
            if torch.allclose(norm(probe), wanted, rtol=1e-4, atol=1e-6):
                return
    raise ParametrizationError(f"attention {name!r}: its query norm {type(norm).__name__} does not scale with its weight; the logit scale cannot be folded")


def _fold_embed_scale(module: nn.Module, factor: float) -> None:
    """A pinned embed_scale's factor into the embedding weight; the scale back to what the config gives."""
    _scale_weight(module, factor)
    scale_embedding(module, 1.0 / factor)


def _scale_weight(module: nn.Module, factor: float) -> None:
    """Give `module` its own weight, `factor` times the old one (a weight it shared stays with the other user)."""
    weight: torch.Tensor = getattr(module, "weight")
    module.weight = nn.Parameter(weight.detach() * factor, requires_grad=weight.requires_grad)


def _check_same_outputs(model: nn.Module, folded: nn.Module, example: Any) -> None:
    """Refuse a fold that changes what the model computes (in eval mode, on `example` or default input ids)."""
    if example is None:
        example = _default_example(model)
    modes = [m.training for m in (model, folded)]
    model.eval()
    folded.eval()
    try:
        with torch.no_grad():
            ours, theirs = (_first_tensor(m(**example) if isinstance(example, dict) else m(example)) for m in (model, folded))
    finally:
        model.train(modes[0])
        folded.train(modes[1])
    tolerance = 1e-4 if ours.dtype in (torch.float32, torch.float64) else 2e-2
    scale = float(ours.abs().max()) or 1.0
    error = float((ours - theirs).abs().max()) / scale
    if not error <= tolerance:
        raise ParametrizationError(
            f"folding changed the model's outputs (max difference {error:.2g} of their largest): this architecture folds "
            "differently; serve it with scaleplan, re-attached with rescale=False"
        )


def _default_example(model: nn.Module) -> dict[str, torch.Tensor]:
    """Input ids (and decoder input ids for an encoder-decoder) of a transformers model; other models need `example`."""
    config = getattr(model, "config", None)
    vocab = getattr(config, "vocab_size", None)
    if not isinstance(vocab, int):
        raise ParametrizationError("fold_multipliers(model, example): pass an example input to check the folded copy against")
    device = next(model.parameters()).device
    ids = torch.randint(0, vocab, (2, 8), generator=torch.Generator().manual_seed(0)).to(device)
    return {"input_ids": ids, "decoder_input_ids": ids} if getattr(config, "is_encoder_decoder", False) else {"input_ids": ids}


def _first_tensor(output: Any) -> torch.Tensor:
    """A model output's logits, or its first floating tensor."""
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits.float()
    items = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else [output]
    for item in items:
        if isinstance(item, torch.Tensor) and item.is_floating_point():
            return item.float()
    raise ParametrizationError("fold_multipliers: the model's output has no floating tensor to compare")

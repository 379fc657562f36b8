"""Coordinate check of transformers families whose own conventions muP must override (CPU, about 3 minutes).

Each family is built from a tiny config at widths 32-256 (base 32, delta 64, `init_std=0.02`), parametrized
with `apply_parametrization` under muP and under SP, and trained for 6 Adam steps (lr 1e-2, each tensor's
lr from `param_groups`) on one fixed batch of 4 x 16 tokens, 2 seeds. Printed: mean |activation| of the
site the family's convention touches, at the base and the widest width after the steps, and their ratio
(muP: flat or shrinking, as an O(1) quantity should; SP: the model's own growth):
- Gemma: its embedding is multiplied by sqrt(hidden_size) (`embed_scale`): the residual stream after the
  last block;
- Gemma2: q.k is scaled by query_pre_attn_scalar^-1/2 = 1/16 at every head size: the attention logits;
- T5: the decoder output is multiplied by d_model^-1/2 before the tied lm_head: the logits;
- Mixtral: the router's raw (experts, hidden) weight is a readout: the router logits;
- Llama (a family with none of these conventions), as the control: the attention logits and the logits.

    python benchmarks/hf_families_coord_check.py
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
import transformers

from scaleplan import apply_parametrization, param_groups
from scaleplan.diagnostics.attention_probe import attention_logits

WIDTHS = (32, 64, 128, 256)
STEPS, LR, SEEDS, VOCAB = 6, 1e-2, 2, 100
IDS = torch.randint(0, VOCAB, (4, 16), generator=torch.Generator().manual_seed(0))


def gemma(w: int) -> torch.nn.Module:
    return transformers.GemmaForCausalLM(transformers.GemmaConfig(
        vocab_size=VOCAB, hidden_size=w, intermediate_size=2 * w, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=w // 4, max_position_embeddings=32, tie_word_embeddings=False, attn_implementation="eager"))


def gemma2(w: int) -> torch.nn.Module:
    return transformers.Gemma2ForCausalLM(transformers.Gemma2Config(
        vocab_size=VOCAB, hidden_size=w, intermediate_size=2 * w, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=w // 4, max_position_embeddings=32, tie_word_embeddings=False, attn_implementation="eager"))


def t5(w: int) -> torch.nn.Module:
    return transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=VOCAB, d_model=w, d_kv=w // 4, d_ff=2 * w, num_layers=1, num_decoder_layers=1, num_heads=4,
        relative_attention_num_buckets=8, dropout_rate=0.0, decoder_start_token_id=0))


def mixtral(w: int) -> torch.nn.Module:
    return transformers.MixtralForCausalLM(transformers.MixtralConfig(
        vocab_size=VOCAB, hidden_size=w, intermediate_size=2 * w, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=32, tie_word_embeddings=False))


def llama(w: int) -> torch.nn.Module:
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=w, intermediate_size=2 * w, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=32, tie_word_embeddings=False, attn_implementation="eager"))


# family -> (builder, the sites to print: module name, or "<attention module>.logits" from the probe)
FAMILIES: dict[str, tuple[Callable[[int], torch.nn.Module], tuple[str, ...]]] = {
    "Gemma (embed_scale)": (gemma, ("model.layers.1",)),
    "Gemma2 (query_pre_attn_scalar)": (gemma2, ("model.layers.1.self_attn.logits",)),
    "T5 (scale_decoder_outputs)": (t5, ("lm_head",)),
    "Mixtral (router)": (mixtral, ("model.layers.1.mlp.gate",)),
    "Llama (control)": (llama, ("model.layers.1.self_attn.logits", "lm_head")),
}


def first_tensor(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else next(t for t in output if isinstance(t, torch.Tensor))


def after_training(build: Callable[[int], torch.nn.Module], width: int, parametrization: str, sites: tuple[str, ...], seed: int) -> dict[str, float]:
    """Mean |activation| of each site in the forward pass after STEPS Adam steps."""
    torch.manual_seed(seed)
    model = build(width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # T5's tied embedding warns (benchmarks/results/hf-gpt2-tied.txt)
        apply_parametrization(model, parametrization, base=build(WIDTHS[0]), delta=build(2 * WIDTHS[0]), init_std=0.02)
    seen: dict[str, float] = {}
    record = lambda name, out: seen.__setitem__(name, first_tensor(out).detach().abs().float().mean().item())  # noqa: E731
    for name in sites:
        if not name.endswith(".logits"):
            model.get_submodule(name).register_forward_hook(lambda module, args, out, name=name: record(name, out))
    opt = torch.optim.Adam(param_groups(model, LR))
    with attention_logits(model, record):
        for step in range(STEPS + 1):
            loss = model(input_ids=IDS, labels=IDS).loss
            if step < STEPS:
                opt.zero_grad()
                loss.backward()
                opt.step()
    return {name: seen[name] for name in sites}


def main() -> None:
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(2)
    print(f"mean |activation| after {STEPS} Adam steps (lr {LR}), widths {WIDTHS[0]} and {WIDTHS[-1]}, {SEEDS} seeds; ratio = widest / base\n")
    print("| family | site | muP: base, widest | muP ratio | SP: base, widest | SP ratio |")
    print("|---|---|---|---|---|---|")
    for family, (build, sites) in FAMILIES.items():
        means: dict[tuple[str, int], dict[str, float]] = {}
        for parametrization in ("mup", "sp"):
            for width in (WIDTHS[0], WIDTHS[-1]):
                runs = [after_training(build, width, parametrization, sites, seed) for seed in range(SEEDS)]
                means[parametrization, width] = {s: sum(r[s] for r in runs) / SEEDS for s in sites}
        for site in sites:
            cells = []
            for parametrization in ("mup", "sp"):
                base, wide = means[parametrization, WIDTHS[0]][site], means[parametrization, WIDTHS[-1]][site]
                cells += [f"{base:.4f}, {wide:.4f}", f"{wide / base:.2f}"]
            print(f"| {family} | {site} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

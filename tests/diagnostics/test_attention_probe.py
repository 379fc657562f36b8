"""The HF attention probe records the logits and leaves the model's own computation as it was."""

from __future__ import annotations

import pytest
import torch

from scaleplan.diagnostics.attention_probe import attention_logits

transformers = pytest.importorskip("transformers")
transformers.utils.logging.set_verbosity_error()


def gemma2(implementation: str):
    """Gemma2 soft-caps its logits, which SDPA cannot: the probe must run the model's own (eager) attention."""
    cfg = transformers.Gemma2Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                    num_key_value_heads=2, head_dim=8, attn_logit_softcapping=1.0, attn_implementation=implementation)
    return transformers.Gemma2ForCausalLM(cfg)


def llama(implementation: str):
    cfg = transformers.LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                   num_key_value_heads=2, attn_implementation=implementation)
    return transformers.LlamaForCausalLM(cfg)


@pytest.mark.parametrize(("build", "implementation"), [(gemma2, "eager"), (llama, "eager"), (llama, "sdpa")])
def test_the_probed_model_computes_what_it_computes_unprobed(build, implementation: str) -> None:
    """The same logits, bit for bit, with the causal mask the implementation gets unprobed."""
    torch.manual_seed(0)
    model = build(implementation).eval()
    ids = torch.randint(0, 50, (2, 6))
    expected = model(ids).logits
    recorded: dict[str, torch.Tensor] = {}
    with attention_logits(model, lambda name, t: recorded.__setitem__(name, t)):
        probed = model(ids).logits
    assert torch.equal(probed, expected)
    assert list(recorded) == ["model.layers.0.self_attn.logits"] and recorded["model.layers.0.self_attn.logits"].shape == (2, 4, 6, 6)
    assert model.config._attn_implementation == implementation

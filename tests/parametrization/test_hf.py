"""muP on HuggingFace transformers models built from tiny configs: roles, attention scaling, checkpoints."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from scaleplan.errors import ParametrizationError
from scaleplan.parametrization import apply_parametrization, param_groups

transformers = pytest.importorskip("transformers")
transformers.utils.logging.set_verbosity_error()


def gpt2(width: int, tied: bool = True, inner: int | None = None, vocab: int = 50, heads: int = 2):
    cfg = transformers.GPT2Config(n_embd=width, n_layer=1, n_head=heads, vocab_size=vocab, n_positions=8, n_inner=inner,
                                  tie_word_embeddings=tied, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


def llama(width: int, head_dim: int | None = None):
    """Two heads whose size grows with the width, or heads of fixed head_dim whose number grows."""
    heads = width // head_dim if head_dim else 2
    cfg = transformers.LlamaConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=heads,
                                   num_key_value_heads=heads // 2, vocab_size=50, head_dim=head_dim, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return transformers.LlamaForCausalLM(cfg)


def roles(model) -> dict[str, tuple[str, float, float | None]]:
    return {n: (r.role, r.m, r.m_out) for n, r in model.scaleplan_state.tensors.items()}


def gpt2_expected(tied: bool) -> dict[str, tuple[str, float, float | None]]:
    """d_model x2 and n_inner x8: Conv1D weights are (in, out), so c_fc's fan-out is the FFN width."""
    block = "transformer.h.0."
    expected = {"transformer.wte.weight": ("input", 2.0, None), "transformer.wpe.weight": ("input", 2.0, None)}
    for name in ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "attn.c_attn.bias", "attn.c_proj.bias", "mlp.c_proj.bias"):
        expected[block + name] = ("vector", 2.0, None)
    expected[block + "mlp.c_fc.bias"] = ("vector", 8.0, None)
    expected[block + "attn.c_attn.weight"] = ("hidden", 2.0, None)
    expected[block + "attn.c_proj.weight"] = ("hidden", 2.0, None)
    expected[block + "mlp.c_fc.weight"] = ("hidden", 2.0, 8.0)  # fan-in d_model, fan-out n_inner
    expected[block + "mlp.c_proj.weight"] = ("hidden", 8.0, 2.0)
    expected["transformer.ln_f.weight"] = expected["transformer.ln_f.bias"] = ("vector", 2.0, None)
    if not tied:
        expected["lm_head.weight"] = ("output", 2.0, None)
    return expected


@pytest.mark.parametrize("tied", [True, False])
def test_gpt2_roles_read_the_conv1d_layout(tied: bool) -> None:
    model = apply_parametrization(gpt2(64, tied, inner=512), "mup", base=gpt2(32, tied, inner=64), init_std=0.02)
    assert roles(model) == gpt2_expected(tied)
    lrs = {n: g["lr"] for g in param_groups(model, 1.0, optimizer="sgd") for n in g["names"]}
    assert lrs["transformer.h.0.mlp.c_fc.weight"] == 4.0 and lrs["transformer.h.0.mlp.c_proj.weight"] == 0.25  # fan-out/fan-in
    adam = {n: g["lr"] for g in param_groups(model, 1.0) for n in g["names"]}
    assert adam["transformer.h.0.mlp.c_fc.weight"] == 0.5 and adam["transformer.h.0.mlp.c_proj.weight"] == 0.125  # 1/fan-in
    hooks = list(model.lm_head._forward_pre_hooks.values())
    assert [h.multiplier for h in hooks] == [0.5]  # the readout's own module (tied or not), never the root
    assert [n for n, m in model.named_modules() if m._forward_pre_hooks] == ["lm_head"]  # not the embedding nor the root
    assert model(torch.randint(0, 50, (2, 8))).logits.shape == (2, 8, 50)


def test_gpt2_attention_scaling_is_sqrt_base_over_d_head() -> None:
    model = apply_parametrization(gpt2(128, heads=2), "mup", base=gpt2(32, heads=2), init_std=0.02)
    assert model.transformer.h[0].attn.scaling == pytest.approx(math.sqrt(16) / 64, rel=1e-12)  # d_head 64, base 16
    base_width = apply_parametrization(gpt2(32, heads=2), "mup", base=gpt2(32, heads=2), delta=gpt2(64, heads=2), init_std=0.02)
    assert base_width.transformer.h[0].attn.scaling == 16**-0.5  # equal to SP at the base width
    sp = apply_parametrization(gpt2(128, heads=2), "sp", base=gpt2(32, heads=2), init_std=0.02)
    assert sp.transformer.h[0].attn.scaling == 64**-0.5


@pytest.mark.parametrize("head_dim, expected", [(None, math.sqrt(32) / 64), (16, 16**-0.5)])
def test_llama_roles_and_scaling(head_dim: int | None, expected: float) -> None:
    """Llama: Linear layers, RMSNorm gains, an untied lm_head; with a fixed head_dim the scale stays."""
    model = apply_parametrization(llama(128, head_dim), "mup", base=llama(64, head_dim), init_std=0.02)
    got = {n: r for n, (r, _, _) in roles(model).items()}
    assert got["model.embed_tokens.weight"] == "input" and got["lm_head.weight"] == "output"
    assert got["model.norm.weight"] == "vector"
    linears = [n for n in got if "proj" in n]
    assert len(linears) == 7 and all(got[n] == "hidden" for n in linears)
    assert model.model.layers[0].self_attn.scaling == pytest.approx(expected, rel=1e-12)


def test_hf_init_warns_without_init_std() -> None:
    with pytest.warns(UserWarning, match=r"keeps HF's N\(0, 0.02\) for .*pass init_std="):
        apply_parametrization(gpt2(64), "mup", base=gpt2(32))
    with warnings.catch_warnings(record=True) as caught:  # the tied-embedding warning is another matter (test_apply.py)
        warnings.simplefilter("always")
        apply_parametrization(gpt2(64), "mup", base=gpt2(32), init_std=0.02)
    assert not [w for w in caught if "init" in str(w.message) and "tied" not in str(w.message)]


def test_init_std_applies_at_the_base_width() -> None:
    torch.manual_seed(0)
    model = apply_parametrization(gpt2(256, inner=1024), "mup", base=gpt2(256, inner=1024), delta=gpt2(512, inner=2048), init_std=0.05)
    assert model.transformer.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.05, rel=0.03)
    assert model.transformer.wte.weight.std().item() == pytest.approx(0.05, rel=0.03)


def test_a_base_with_another_vocabulary_is_refused() -> None:
    with pytest.raises(ParametrizationError, match=r"^the base has vocab_size=40 but the model vocab_size=50"):
        apply_parametrization(gpt2(64), "mup", base=gpt2(32, vocab=40))


def test_save_pretrained_round_trip_reattaches_without_rescaling(tmp_path) -> None:
    torch.manual_seed(0)
    model = apply_parametrization(gpt2(64, tied=False), "mup", base=gpt2(32, tied=False), init_std=0.02).eval()
    model.save_pretrained(tmp_path)
    loaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    with pytest.raises(ParametrizationError, match="reloaded checkpoint; re-attach .*rescale=False"):
        apply_parametrization(loaded, "mup", base=gpt2(32, tied=False))
    with pytest.raises(ParametrizationError, match="parametrized with parametrization='mup', re-attached with parametrization='sp'"):
        apply_parametrization(loaded, "sp", base=gpt2(32, tied=False), rescale=False)
    with pytest.raises(ParametrizationError, match="parametrized with base_width=32, re-attached with base_width=16"):
        apply_parametrization(loaded, "mup", base=gpt2(16, tied=False), rescale=False)
    apply_parametrization(loaded, "mup", base=gpt2(32, tied=False), rescale=False)
    tokens = torch.randint(0, 50, (2, 8))
    assert torch.equal(loaded(tokens).logits, model(tokens).logits)  # weights untouched, hook and scaling back
    assert [g["lr"] for g in param_groups(loaded, 1e-3)] == [g["lr"] for g in param_groups(model, 1e-3)]
    with pytest.raises(ParametrizationError, match="already parametrized"):
        apply_parametrization(loaded, "mup", base=gpt2(32, tied=False), rescale=False)


def test_torch_save_of_the_whole_hf_model_keeps_everything(tmp_path) -> None:
    model = apply_parametrization(gpt2(64), "mup", base=gpt2(32), init_std=0.02).eval()
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    tokens = torch.randint(0, 50, (2, 8))
    assert torch.equal(loaded(tokens).logits, model(tokens).logits)  # hook on lm_head and attention scaling came along
    assert loaded.transformer.h[0].attn.scaling == model.transformer.h[0].attn.scaling
    for rescale in (True, False):
        with pytest.raises(ParametrizationError, match="already parametrized"):
            apply_parametrization(loaded, "mup", base=gpt2(32), rescale=rescale)

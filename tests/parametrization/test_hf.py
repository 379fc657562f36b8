"""muP on HuggingFace transformers models built from tiny configs: roles, attention scaling, checkpoints."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from scaleplan.errors import ParametrizationError, ParametrizationWarning
from scaleplan.parametrization import apply_parametrization, param_groups
from scaleplan.parametrization.apply import ScaleInput

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
    assert [n for n, m in model.named_modules() if any(isinstance(h, ScaleInput) for h in m._forward_pre_hooks.values())] == ["lm_head"]  # not the embedding nor the root
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
    with pytest.warns(ParametrizationWarning, match=r"keeps HF's N\(0, 0.02\) for .*pass init_std="):
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


@pytest.mark.parametrize("tied", [False, True])
def test_resize_token_embeddings_after_apply_is_refused_where_it_drops_the_readout_hook(tied: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tied readout
        model = apply_parametrization(gpt2(64, tied=tied), "mup", base=gpt2(32, tied=tied), delta=gpt2(48, tied=tied))
    model.resize_token_embeddings(60, mean_resizing=False)
    if tied:  # transformers re-ties the new embedding to the same lm_head module, which keeps its hook
        assert param_groups(model, 1e-3)
        assert any(type(h).__name__ == "ScaleInput" for h in model.lm_head._forward_pre_hooks.values())
    else:  # a new lm_head module without the 1/m hook: it would train as SP
        with pytest.raises(ParametrizationError, match=r"^the readout lm_head.weight lost its muP output multiplier.*resize_token_embeddings"):
            param_groups(model, 1e-3)


def test_save_pretrained_round_trip_reattaches_without_rescaling(tmp_path) -> None:
    torch.manual_seed(0)
    model = apply_parametrization(gpt2(64, tied=False), "mup", base=gpt2(32, tied=False), init_std=0.02).eval()
    model.save_pretrained(tmp_path)
    loaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    for holder in (loaded, torch.nn.ModuleDict({"backbone": loaded})):  # trained on without re-attaching: SP's scales
        with pytest.raises(ParametrizationError, match=r"reloaded checkpoint parametrized with 'mup' \(base width 32\), not re-attached.*rescale=False"):
            param_groups(holder, 1e-3)
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


def mixtral(width: int):
    cfg = transformers.MixtralConfig(vocab_size=50, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=4,
                                     num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, tie_word_embeddings=False)
    return transformers.MixtralForCausalLM(cfg)


def test_moe_router_is_a_readout_and_gets_its_hook() -> None:
    """A router's raw (experts, hidden) weight is used as F.linear(x, w): only its fan-in is a width, so a readout."""
    model = apply_parametrization(mixtral(128), "mup", base=mixtral(32), delta=mixtral(64), init_std=0.02)
    router = model.model.layers[0].mlp.gate
    assert model.scaleplan_state.tensors["model.layers.0.mlp.gate.weight"].role == "output"
    assert [h.multiplier for h in router._forward_pre_hooks.values()] == [0.25]
    adam = {n: g["lr"] for g in param_groups(model, 1.0) for n in g["names"]}
    assert adam["model.layers.0.mlp.gate.weight"] == 1.0 and adam["model.layers.0.mlp.experts.gate_up_proj"] == 0.25
    x = torch.randn(5, 128)
    logits = router(x)[0]
    assert torch.allclose(logits, torch.nn.functional.linear(x / 4, router.weight))


class NormalizingRouter(torch.nn.Module):
    """A router that normalizes its input first: multiplying the input is not multiplying the weight."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(4, width) / width**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x / x.norm(dim=-1, keepdim=True), self.weight)


class WithRouter(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(width, width)
        self.gate = NormalizingRouter(width)


def test_a_router_whose_input_is_not_only_multiplied_by_its_weight_is_left_to_the_user() -> None:
    with pytest.warns(ParametrizationWarning, match=r"raw readout\(s\) gate.weight: .*readout_multiplier"):
        model = apply_parametrization(WithRouter(64), "mup", base=WithRouter(16), init_std=0.02)
    assert model.scaleplan_state.tensors["gate.weight"].role == "output" and not model.gate._forward_pre_hooks


def gemma2(width: int, **kwargs):
    cfg = transformers.Gemma2Config(vocab_size=50, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=4,
                                    num_key_value_heads=2, head_dim=width // 4, tie_word_embeddings=False, **kwargs)
    return transformers.Gemma2ForCausalLM(cfg)


def test_an_attention_scale_the_model_fixes_is_anchored_at_the_base() -> None:
    """Gemma2 scales q.k by query_pre_attn_scalar^-1/2 (256 by default) at every head size: muP's 1/d_head is then
    the base's scale x d0/d, not the model's x sqrt(d0/d); SP keeps the model's own."""
    model = apply_parametrization(gemma2(128), "mup", base=gemma2(32), init_std=0.02)
    assert model.model.layers[0].self_attn.scaling == pytest.approx(256**-0.5 * 8 / 32, rel=1e-12)
    assert gemma2(128).model.layers[0].self_attn.scaling == 256**-0.5
    sp = apply_parametrization(gemma2(128), "sp", base=gemma2(32), init_std=0.02)
    assert sp.model.layers[0].self_attn.scaling == 256**-0.5


def neox(width: int):
    cfg = transformers.GPTNeoXConfig(vocab_size=50, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=2,
                                     max_position_embeddings=16, tie_word_embeddings=False)
    return transformers.GPTNeoXForCausalLM(cfg)


def t5(width: int):
    cfg = transformers.T5Config(vocab_size=50, d_model=width, d_kv=width // 4, d_ff=2 * width, num_layers=1, num_heads=4, decoder_start_token_id=0)
    return transformers.T5ForConditionalGeneration(cfg)


def test_attention_named_by_its_head_size_or_key_value_dim_is_set() -> None:
    """GPT-NeoX names its head `head_size`, T5 `key_value_proj_dim` (and scales q.k by 1): both are reachable."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nx = apply_parametrization(neox(128), "mup", base=neox(32), init_std=0.02)
        five = apply_parametrization(t5(128), "mup", base=t5(32), delta=t5(64), init_std=0.02)
    assert not [w for w in caught if "attention-logit" in str(w.message)]
    assert nx.gpt_neox.layers[0].attention.scaling == pytest.approx(math.sqrt(16) / 64, rel=1e-12)
    attention = five.decoder.block[0].layer[1].EncDecAttention
    assert attention.scaling == pytest.approx(8 / 32, rel=1e-12)  # 1 at the base's d_kv 8, x d0/d


def bert(width: int):
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=width, num_hidden_layers=1, num_attention_heads=4, intermediate_size=2 * width,
                                  max_position_embeddings=16, num_labels=3)
    return transformers.BertForSequenceClassification(cfg)


def clip_vision(width: int):
    cfg = transformers.CLIPVisionConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=4,
                                        image_size=8, patch_size=4)
    return transformers.CLIPVisionModel(cfg)


@pytest.mark.parametrize("build, attention, attribute", [(bert, "bert.encoder.layer.0.attention.self", "scaling"),
                                                         (clip_vision, "encoder.layers.0.self_attn", "scale")])
def test_attention_named_by_attention_head_size_or_scaled_by_scale_is_set(build, attention: str, attribute: str) -> None:
    """BERT (and the ~30 families copied from it) names its head `attention_head_size`; CLIP and SigLIP keep their
    logit scale in `scale`. Both pass it to SDPA explicitly, so the first forward cannot see it: apply must set it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = apply_parametrization(build(128), "mup", base=build(32), delta=build(64), init_std=0.02)
    assert not [w for w in caught if "attention" in str(w.message)]
    assert getattr(model.get_submodule(attention), attribute) == pytest.approx(math.sqrt(8) / 32, rel=1e-12)  # d_head 8 -> 32
    sp = apply_parametrization(build(128), "sp", base=build(32), delta=build(64), init_std=0.02)
    assert getattr(sp.get_submodule(attention), attribute) == pytest.approx(32**-0.5, rel=1e-12)


def test_t5_readout_keeps_the_rules_one_over_m() -> None:
    """T5 multiplies the decoder output by d_model^-1/2 before lm_head: the hook adds only the rest of muP's 1/m."""
    model = apply_parametrization(t5(128), "mup", base=t5(32), delta=t5(64), init_std=0.02)
    assert [h.multiplier for h in model.lm_head._forward_pre_hooks.values()] == [pytest.approx(0.5, rel=1e-12)]  # 1/4 x sqrt(4)
    sp = apply_parametrization(t5(128), "sp", base=t5(32), delta=t5(64), init_std=0.02)
    assert [h.multiplier for h in sp.lm_head._forward_pre_hooks.values()] == [1.0]


def gemma(width: int):
    cfg = transformers.GemmaConfig(vocab_size=50, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=4,
                                   num_key_value_heads=2, head_dim=width // 4, tie_word_embeddings=False)
    return transformers.GemmaForCausalLM(cfg)


def test_a_width_dependent_embed_scale_is_pinned_at_the_base() -> None:
    """Gemma multiplies its embeddings by sqrt(hidden_size): under muP the input layer's output must not grow with width."""
    model = apply_parametrization(gemma(128), "mup", base=gemma(32), init_std=0.02)
    embed = model.model.embed_tokens
    assert float(embed.embed_scale) == pytest.approx(32**0.5, rel=1e-6) and embed.scalar_embed_scale == pytest.approx(32**0.5)
    sp = apply_parametrization(gemma(128), "sp", base=gemma(32), init_std=0.02)
    assert float(sp.model.embed_tokens.embed_scale) == pytest.approx(128**0.5, rel=1e-6)
    bart = lambda w: transformers.BartForConditionalGeneration(transformers.BartConfig(  # noqa: E731
        vocab_size=50, d_model=w, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=2 * w, decoder_ffn_dim=2 * w, max_position_embeddings=16, tie_word_embeddings=False, scale_embedding=True))
    scaled = apply_parametrization(bart(128), "mup", base=bart(32), init_std=0.02)
    assert scaled.model.encoder.embed_tokens.embed_scale == pytest.approx(32**0.5)
    embed = lambda w: transformers.models.bart.modeling_bart.BartScaledWordEmbedding(50, w, 0, embed_scale=w**0.5)  # noqa: E731
    with pytest.raises(ParametrizationError, match="embed_scale=11.3137, which may grow with the width; pass base= as a model"):
        apply_parametrization(embed(128), "mup", base={"weight": (50, 32)})


def test_t5_untied_by_hand_is_a_readout_as_the_tied_warning_says() -> None:
    """transformers' T5 ties lm_head to the embedding whatever its config says; the warning's fix (a copy) unties it."""
    def untied(width: int):
        model = t5(width)
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
        return model

    with pytest.warns(ParametrizationWarning, match=r"transformers' T5 ties regardless: give the readout its own copy"):
        apply_parametrization(t5(128), "mup", base=t5(32), delta=t5(64), init_std=0.02)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = apply_parametrization(untied(128), "mup", base=untied(32), delta=untied(64), init_std=0.02)
    assert not [w for w in caught if "tied" in str(w.message)]
    assert model.scaleplan_state.tensors["lm_head.weight"].role == "output"
    assert [h.multiplier for h in model.lm_head._forward_pre_hooks.values()] == [pytest.approx(0.5, rel=1e-12)]

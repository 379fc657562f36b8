"""fold_multipliers: a transformers checkpoint that plain transformers reloads and runs as the parametrized model."""

from __future__ import annotations

import warnings

import pytest
import torch

from scaleplan.errors import ParametrizationError
from scaleplan.models import build_parametrized
from scaleplan.parametrization import apply_parametrization, fold_multipliers, param_groups
from scaleplan.parametrization.fold import _check_same_outputs

transformers = pytest.importorskip("transformers")
transformers.utils.logging.set_verbosity_error()
T = transformers
IDS = {"vocab_size": 50, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}


def _decoder(width: int, config: type, model: type, **extra):
    cfg = config(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=2, **IDS, **extra)
    return model(cfg)


# one per way a multiplier is folded: readout Linear (tied and untied), q_proj, a query RMSNorm (w and Gemma's 1 + w),
# GPT-2's fused Conv1D, GPT-NeoX's per-head fused qkv, an MoE router, T5's q, Bart's q_proj and pinned embed_scale;
# then the served families: fused qkv with queries first (Phi-3, GPT-BigCode MQA), per head (GPT-BigCode MHA,
# Persimmon), per shard (CodeGen); query norms over all heads (OLMo2), per head (StableLM), (heads, d_head) (Cohere),
# LayerNorm with bias (Phi, Persimmon); MLA (DeepSeek-V3, q_b_proj and q_proj); logits that pass a softcap (Gemma 2),
# a logit_scale (Cohere) or Granite's config multipliers after the readout; BERT's `attention_head_size` and `query`;
# Falcon, whose attention apply cannot reach
FAMILIES = {
    "gpt2-untied": lambda w: T.GPT2LMHeadModel(T.GPT2Config(n_embd=w, n_layer=1, n_head=2, n_positions=16, tie_word_embeddings=False, **IDS)),
    "gpt2-tied": lambda w: T.GPT2LMHeadModel(T.GPT2Config(n_embd=w, n_layer=1, n_head=2, n_positions=16, tie_word_embeddings=True, **IDS)),
    "llama": lambda w: _decoder(w, T.LlamaConfig, T.LlamaForCausalLM, num_key_value_heads=1, tie_word_embeddings=False),
    "qwen3": lambda w: _decoder(w, T.Qwen3Config, T.Qwen3ForCausalLM, num_key_value_heads=1, head_dim=w // 2, tie_word_embeddings=False),
    "gemma3-tied": lambda w: _decoder(w, T.Gemma3TextConfig, T.Gemma3ForCausalLM, num_key_value_heads=1, head_dim=w // 2,
                                      query_pre_attn_scalar=w // 2, tie_word_embeddings=True),
    "neox": lambda w: _decoder(w, T.GPTNeoXConfig, T.GPTNeoXForCausalLM, tie_word_embeddings=False),
    "mixtral": lambda w: _decoder(w, T.MixtralConfig, T.MixtralForCausalLM, num_key_value_heads=1, num_local_experts=4,
                                  num_experts_per_tok=2, tie_word_embeddings=False),
    "t5": lambda w: T.T5ForConditionalGeneration(T.T5Config(d_model=w, d_kv=w // 2, d_ff=2 * w, num_layers=1, num_heads=2,
                                                            decoder_start_token_id=0, tie_word_embeddings=False, **IDS)),
    "bart": lambda w: T.BartForConditionalGeneration(T.BartConfig(
        d_model=w, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * w,
        decoder_ffn_dim=2 * w, max_position_embeddings=16, scale_embedding=True, **IDS)),
    "phi3": lambda w: _decoder(w, T.Phi3Config, T.Phi3ForCausalLM, num_key_value_heads=1, tie_word_embeddings=False),
    "bigcode-mqa": lambda w: _bigcode(w, multi_query=True),
    "bigcode-mha": lambda w: _bigcode(w, multi_query=False),
    "persimmon": lambda w: _decoder(w, T.PersimmonConfig, T.PersimmonForCausalLM, qk_layernorm=True, tie_word_embeddings=False),
    "persimmon-no-qk-norm": lambda w: _decoder(w, T.PersimmonConfig, T.PersimmonForCausalLM, qk_layernorm=False, tie_word_embeddings=False),
    "codegen": lambda w: T.CodeGenForCausalLM(T.CodeGenConfig(n_embd=w, n_layer=1, n_head=2, n_positions=16, rotary_dim=8,
                                                              tie_word_embeddings=False, **IDS)),
    "olmo2": lambda w: _decoder(w, T.Olmo2Config, T.Olmo2ForCausalLM, num_key_value_heads=1, tie_word_embeddings=False),
    "stablelm-qk-norm": lambda w: _decoder(w, T.StableLmConfig, T.StableLmForCausalLM, num_key_value_heads=1, qk_layernorm=True,
                                           tie_word_embeddings=False),
    "cohere-qk-norm-tied": lambda w: _decoder(w, T.CohereConfig, T.CohereForCausalLM, num_key_value_heads=1, use_qk_norm=True,
                                              logit_scale=0.5, tie_word_embeddings=True),
    "phi-qk-norm": lambda w: _decoder(w, T.PhiConfig, T.PhiForCausalLM, qk_layernorm=True, tie_word_embeddings=False),
    "deepseek-v3": lambda w: _deepseek(w, q_lora_rank=w // 2),
    "deepseek-v3-no-q-lora": lambda w: _deepseek(w, q_lora_rank=None),
    "gemma2": lambda w: _decoder(w, T.Gemma2Config, T.Gemma2ForCausalLM, num_key_value_heads=1, head_dim=w // 2, query_pre_attn_scalar=w // 2,
                                 final_logit_softcapping=2.0, tie_word_embeddings=False),
    "granite": lambda w: _decoder(w, T.GraniteConfig, T.GraniteForCausalLM, num_key_value_heads=1, embedding_multiplier=12.0,
                                  logits_scaling=8.0, residual_multiplier=0.22, attention_multiplier=1 / 64, tie_word_embeddings=False),
    "qwen2-moe": lambda w: _decoder(w, T.Qwen2MoeConfig, T.Qwen2MoeForCausalLM, num_key_value_heads=1, moe_intermediate_size=w,
                                    shared_expert_intermediate_size=w, num_experts=4, num_experts_per_tok=2, tie_word_embeddings=False),
    "gptj": lambda w: T.GPTJForCausalLM(T.GPTJConfig(n_embd=w, n_layer=1, n_head=2, n_positions=16, rotary_dim=8, tie_word_embeddings=False, **IDS)),
    "mistral": lambda w: _decoder(w, T.MistralConfig, T.MistralForCausalLM, num_key_value_heads=1, tie_word_embeddings=False),
    "starcoder2": lambda w: _decoder(w, T.Starcoder2Config, T.Starcoder2ForCausalLM, num_key_value_heads=1, tie_word_embeddings=False),
    "bert": lambda w: T.BertForMaskedLM(T.BertConfig(hidden_size=w, num_hidden_layers=1, num_attention_heads=2, intermediate_size=2 * w,
                                                     max_position_embeddings=16, tie_word_embeddings=False, **IDS)),
    "falcon": lambda w: T.FalconForCausalLM(T.FalconConfig(hidden_size=w, num_hidden_layers=1, num_attention_heads=4, num_kv_heads=2,
                                                           new_decoder_architecture=True, tie_word_embeddings=False, **IDS)),
}


def _bigcode(width: int, multi_query: bool):
    return T.GPTBigCodeForCausalLM(T.GPTBigCodeConfig(n_embd=width, n_layer=1, n_head=2, n_positions=16, multi_query=multi_query,
                                                      tie_word_embeddings=False, **IDS))


def _deepseek(width: int, q_lora_rank: int | None):
    return _decoder(width, T.DeepseekV3Config, T.DeepseekV3ForCausalLM, num_key_value_heads=2, moe_intermediate_size=width,
                    n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1, first_k_dense_replace=0, q_lora_rank=q_lora_rank,
                    kv_lora_rank=width // 4, qk_rope_head_dim=8, qk_nope_head_dim=width // 4, v_head_dim=width // 4, tie_word_embeddings=False)


def _parametrized(family: str, width: int = 96):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = apply_parametrization(FAMILIES[family](width), "mup", base=FAMILIES[family](32)).eval()
    readout = set(model.get_output_embeddings().parameters())  # its bias is outside the 1/m: left small
    with torch.no_grad():  # biases and norm gains off their init (0 and 1), so that a fold must scale them right
        for param in model.parameters():
            if param.dim() == 1 and param not in readout:
                param.add_(0.3 * torch.randn_like(param))
    return model


def _logits(model) -> torch.Tensor:
    ids = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(1))
    kwargs = {"input_ids": ids, "decoder_input_ids": ids} if model.config.is_encoder_decoder else {"input_ids": ids}
    with torch.no_grad():
        return model(**kwargs).logits


def _reloaded(model, path):
    model.save_pretrained(path)
    return type(model).from_pretrained(path).eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_plain_transformers_reloads_the_folded_checkpoint_as_the_parametrized_model(family: str, tmp_path) -> None:
    model = _parametrized(family)
    want = _logits(model)
    assert (_logits(_reloaded(model, tmp_path / "plain")) - want).abs().max() > 0.5 * want.abs().max()  # unfolded: SP's scales
    folded = _reloaded(fold_multipliers(model), tmp_path / "folded")
    torch.testing.assert_close(_logits(folded), want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    assert folded.get_output_embeddings().weight is not folded.get_input_embeddings().weight
    # the readout has its own weight: a consumer that ties by the config (vLLM) must not (T5Config forces True)
    assert folded.config.tie_word_embeddings is (family == "t5")
    torch.testing.assert_close(_logits(model), want, rtol=0, atol=0)  # the original is untouched, still parametrized
    assert [g["lr"] for g in param_groups(model, 1e-3)]


def test_the_folded_copy_is_not_parametrized_again_nor_trained_as_muP(tmp_path) -> None:
    folded = fold_multipliers(_parametrized("llama"))
    assert "scaleplan" not in folded.config.to_dict() and folded.config.scaleplan_folded["parametrization"] == "mup"
    for candidate in (folded, _reloaded(folded, tmp_path)):
        with pytest.raises(ParametrizationError, match="inference copy .* folded into its weights"):
            param_groups(candidate, 1e-3)
        for rescale in (True, False):
            with pytest.raises(ParametrizationError, match="inference copy"):
                apply_parametrization(candidate, "mup", base=FAMILIES["llama"](32), rescale=rescale)


def test_multipliers_a_module_reads_in_its_own_forward_are_refused() -> None:
    with pytest.raises(ParametrizationError, match="fold_multipliers is for transformers models; .* read their multiplier"):
        fold_multipliers(build_parametrized("gpt", 64, "mup", base_width=32))
    with pytest.raises(ParametrizationError, match="no scaleplan parametrization"):
        fold_multipliers(torch.nn.Linear(2, 2))


def test_a_fold_that_changes_the_outputs_is_refused() -> None:
    model, other = _parametrized("llama"), _parametrized("llama")
    torch.nn.init.normal_(other.lm_head.weight)
    with pytest.raises(ParametrizationError, match="folding changed the model's outputs"):
        _check_same_outputs(model, other, None)
    with pytest.raises(ParametrizationError, match="pass an example input"):
        _check_same_outputs(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), None)


def test_queries_clipped_after_their_projection_are_refused() -> None:
    # clamp(f q) is not f clamp(q): DBRX keeps clip_qkv on its attention module, OLMo on its config
    dbrx = lambda w: T.DbrxForCausalLM(T.DbrxConfig(  # noqa: E731
        d_model=w, n_heads=2, n_layers=1, max_seq_len=16, attn_config={"kv_n_heads": 1, "rope_theta": 1e4, "clip_qkv": 8.0},
        ffn_config={"ffn_hidden_size": 2 * w, "moe_num_experts": 2, "moe_top_k": 1}, tie_word_embeddings=False, **IDS))
    olmo = lambda w: _decoder(w, T.OlmoConfig, T.OlmoForCausalLM, clip_qkv=8.0, tie_word_embeddings=False)  # noqa: E731
    for build in (dbrx, olmo):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = apply_parametrization(build(96), "mup", base=build(32))
        with pytest.raises(ParametrizationError, match=r"clips its queries to \+-8.0 \(clip_qkv\): the logit scale cannot be folded") as refused:
            fold_multipliers(model)
        assert "\n" not in str(refused.value)

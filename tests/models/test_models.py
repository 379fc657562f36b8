"""Reference models: sizes, causality, bad options (the DenseAM's own dynamics: test_denseam.py)."""

from __future__ import annotations

import pytest
import torch

from scaleplan.errors import ScaleplanError
from scaleplan.models import build_model, build_parametrized


@pytest.mark.parametrize(
    "name, kwargs, n_params",
    [
        ("mlp", {"in_dim": 16, "out_dim": 10, "depth": 2}, 16 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10),
        # wte 64*32 + wpe 8*32 + block (2 LN 128, q/k/v/proj 4096, fc 4224, fc_proj 4128) + ln_f 64 + lm_head 2048
        ("gpt", {"depth": 1, "vocab": 64, "seq_len": 8}, 2048 + 256 + 12576 + 64 + 2048),
        ("gpt", {"depth": 1, "vocab": 64, "seq_len": 8, "tied": True}, 2048 + 256 + 12576 + 64),
        ("denseam", {"in_dim": 16, "out_dim": 10, "n_memories": 8}, 8 * 32 + 16 * 32 + 32 + 32 * 10 + 10),
        ("denseam", {"in_dim": 32, "n_memories": 8, "readout": "denoise"}, 8 * 32),
    ],
)
def test_parameter_counts(name: str, kwargs: dict, n_params: int) -> None:
    assert sum(p.numel() for p in build_model(name, 32, **kwargs).parameters()) == n_params


def test_output_shapes() -> None:
    assert build_model("mlp", 32, in_dim=5, out_dim=3)(torch.randn(4, 5)).shape == (4, 3)
    assert build_model("gpt", 32, vocab=50, seq_len=8)(torch.randint(0, 50, (2, 6))).shape == (2, 6, 50)
    assert build_model("denseam", 32, in_dim=5, out_dim=3)(torch.randn(4, 5)).shape == (4, 3)
    assert build_model("denseam", 32, in_dim=32, readout="denoise")(torch.randn(4, 32)).shape == (4, 32)


def test_gpt_is_causal() -> None:
    torch.manual_seed(0)
    net = build_model("gpt", 32, seq_len=8)
    a = torch.randint(0, 64, (1, 8))
    b = a.clone()
    b[0, 5] = (a[0, 5] + 1) % 64
    out_a, out_b = net(a), net(b)
    assert torch.equal(out_a[0, :5], out_b[0, :5])
    assert not torch.allclose(out_a[0, 5:], out_b[0, 5:])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: build_model("resnet", 32), "unknown model 'resnet'; valid models: mlp, gpt, denseam"),
        (lambda: build_model("mlp", 32, heads=2), "bad option for model 'mlp'"),
        (lambda: build_model("gpt", 30, n_heads=4), "width divisible by n_heads"),
        (lambda: build_model("gpt", 32, tied=True, readout_zero_init=True), "zero the token embedding"),
        (lambda: build_model("gpt", 32, seq_len=4)(torch.zeros(1, 6, dtype=torch.long)), "longer than the model's seq_len=4"),
        (lambda: build_model("denseam", 32, energy="softmax"), "valid: lse, relu-poly"),
        (lambda: build_model("denseam", 32, readout="linear"), "valid: classifier, denoise"),
        (lambda: build_model("denseam", 32, in_dim=16, readout="denoise"), "in_dim \\(16\\) must equal width \\(32\\)"),
        (lambda: build_model("mlp", 0), "sizes must be positive"),
    ],
)
def test_bad_model_options(call, message: str) -> None:
    with pytest.raises(ScaleplanError, match=message):
        call()


def test_hf_gpt2_model() -> None:
    pytest.importorskip("transformers")
    net = build_model("hf-gpt2", 32, vocab=50, seq_len=8, n_heads=2, init="fan-in", tied=False, readout_zero_init=True, query_zero_init=True)
    assert net(torch.randint(0, 50, (2, 6))).shape == (2, 6, 50)
    assert not net.hf.lm_head.weight.any() and not net.hf.transformer.h[0].attn.c_attn.weight[:, :32].any()
    assert net.hf.transformer.h[0].attn.c_attn.weight[:, 32:].std().item() == pytest.approx(1 / (3 * 32) ** 0.5, rel=0.1)
    tied = build_model("hf-gpt2", 32)
    assert tied.hf.lm_head.weight is tied.hf.transformer.wte.weight
    with pytest.raises(ScaleplanError, match="unknown hf-gpt2 init 'xavier'; valid: hf, fan-in"):
        build_model("hf-gpt2", 32, init="xavier")
    with pytest.raises(ScaleplanError, match="zero the token embedding"):
        build_model("hf-gpt2", 32, readout_zero_init=True)

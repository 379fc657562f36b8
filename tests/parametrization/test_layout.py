"""Role inference from each module's layout: convolutions, MHA, raw parameters (ViT-like), refusals, state dicts."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from scaleplan.core.rules import attention_scale
from scaleplan.errors import ParametrizationError, ParametrizationWarning
from scaleplan.parametrization import apply_parametrization, param_groups, readout_multiplier
from scaleplan.parametrization.apply import ScaleInput


class ViT(nn.Module):
    """Patch-embedding conv, raw cls token (1, 1, d) and position embedding (1, 5, d), MHA block, head."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, 5, d) * 0.02)
        self.norm = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.head = nn.Linear(d, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1) + self.pos
        h = self.norm(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return self.head(x[:, 0])


class RawLM(nn.Module):
    """Token ids -> raw embedding lookup (vocab, d) + raw positions (T, d) -> raw readout (d, vocab) as x @ w."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.emb = nn.Parameter(torch.randn(20, d))
        self.pos = nn.Parameter(torch.randn(6, d))
        self.hidden = nn.Parameter(torch.randn(d, d) / d**0.5)
        self.out = nn.Parameter(torch.randn(d, 20) / d**0.5)
        self.scale = 1.0

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = F.embedding(idx, self.emb) + self.pos[: idx.shape[1]]
        x = torch.tanh(x @ self.hidden)
        return (x * self.scale) @ self.out


def vit_pair(d: int = 64, base: int = 16) -> nn.Module:
    with pytest.warns(ParametrizationWarning, match=r"cannot set the attention-logit scale of attn \(MultiheadAttention\).*attention_scale\("):
        return apply_parametrization(ViT(d), "mup", base=ViT(base), init_std=0.02)


def test_vit_roles_and_hooks() -> None:
    model = vit_pair()
    roles = {n: r.role for n, r in model.scaleplan_state.tensors.items()}
    assert roles["patch.weight"] == "input" and roles["cls"] == "input" and roles["pos"] == "input"
    assert roles["attn.in_proj_weight"] == "hidden" and roles["attn.out_proj.weight"] == "hidden"
    assert roles["head.weight"] == "output" and roles["head.bias"] == "fixed"
    assert [h.multiplier for h in model.head._forward_pre_hooks.values()] == [0.25]
    assert not any(isinstance(h, ScaleInput) for h in model._forward_pre_hooks.values())  # the image reaches the model unscaled
    images = torch.randn(2, 3, 8, 8)
    assert torch.equal(model.patch(images), F.conv2d(images, model.patch.weight, model.patch.bias, stride=4))
    assert model(images).shape == (2, 10)


def test_raw_vector_likes_are_inputs_and_a_raw_readout_is_refused() -> None:
    with pytest.raises(ParametrizationError, match=r"^cannot infer the role of raw parameter 'out' \(shape \[64, 20\].*roles=\{'out': 'output'\}"):
        apply_parametrization(RawLM(64), "mup", base=RawLM(16))


def test_raw_readout_declared_gets_a_multiplier_to_apply() -> None:
    with pytest.warns(ParametrizationWarning, match=r"raw readout\(s\) out: .*readout_multiplier\(model, name\)"):
        model = apply_parametrization(RawLM(64), "mup", base=RawLM(16), roles={"out": "output"})
    roles = {n: (r.role, r.m) for n, r in model.scaleplan_state.tensors.items()}
    assert roles == {"emb": ("input", 4.0), "pos": ("input", 4.0), "hidden": ("hidden", 4.0), "out": ("output", 4.0)}
    assert not any(isinstance(h, ScaleInput) for m in model.modules() for h in m._forward_pre_hooks.values())  # no hook on a module that does not compute the readout
    model.scale = readout_multiplier(model, "out")
    assert model.scale == 0.25
    assert model(torch.randint(0, 20, (2, 6))).shape == (2, 6, 20)  # token ids reach F.embedding untouched
    with pytest.raises(ParametrizationError, match="'emb' is not a readout of this model"):
        readout_multiplier(model, "emb")


def test_transposed_conv_and_conv_layouts() -> None:
    def net(c: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, c, 3), nn.ConvTranspose2d(c, c, 3), nn.ConvTranspose2d(c, 3, 3))

    model = apply_parametrization(net(32), "mup", base=net(8), init_std=0.1)
    roles = {n: (r.role, r.m) for n, r in model.scaleplan_state.tensors.items()}
    # ConvTranspose stores (in, out, k, k): the last one maps width -> 3 channels, a readout
    assert roles["0.weight"] == ("input", 4.0) and roles["1.weight"] == ("hidden", 4.0) and roles["2.weight"] == ("output", 4.0)
    assert [h.multiplier for h in model[2]._forward_pre_hooks.values()] == [0.25]


def test_state_dict_round_trip_with_rescale_false() -> None:
    torch.manual_seed(0)
    model = vit_pair()
    fresh = ViT(64)
    with pytest.warns(UserWarning, match="MultiheadAttention"):
        apply_parametrization(fresh, "mup", base=ViT(16), rescale=False)
    fresh.load_state_dict(model.state_dict())
    images = torch.randn(2, 3, 8, 8)
    assert torch.equal(fresh(images), model(images))
    assert [g["lr"] for g in param_groups(fresh, 1e-3)] == [g["lr"] for g in param_groups(model, 1e-3)]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: apply_parametrization(nn.Conv1d(3, 32, 5), "mup", base=nn.Conv1d(3, 8, 3)),
         r"^weight: dimension 2 \(size 5\) differs from the base but is neither the fan-in nor the fan-out"),
        (lambda: apply_parametrization(nn.Embedding(40, 32), "mup", base=nn.Embedding(20, 8)),
         r"^weight: the number of embeddings \(40\) differs from the base's, but a vocabulary is not a width"),
        (lambda: apply_parametrization(nn.Linear(8, 8), "mup", base=nn.Linear(8, 8), init_std=0.02),
         r"^the model has the base's shapes everywhere.*pass delta="),
        (lambda: apply_parametrization(nn.Linear(8, 32), "mup", base=nn.Linear(8, 8), delta=nn.Linear(8, 8)),
         r"^weight: dimension 0 differs from the base \(8 -> 32\) but not between base and delta"),
        (lambda: apply_parametrization(nn.Linear(8, 32), "mup", base=nn.Linear(8, 8), init_std=0.1, rescale=False),
         r"^init_std re-draws the weights; rescale=False"),
        (lambda: attention_scale(0, 16), "head dimensions must be positive"),
        (lambda: apply_parametrization(nn.Linear(32, 32), "mup", base=nn.Linear(8, 8), roles={"weight": "output"}),
         r"^'weight' is declared output, but its fan-out is a width too \(shape \[32, 32\]\)"),
    ],
)
def test_refusals_are_one_line(call, message: str) -> None:
    with pytest.raises(Exception) as info:
        call()
    assert "\n" not in str(info.value)
    assert re.search(message, str(info.value)), str(info.value)


def test_attention_scale_helper_matches_the_rules() -> None:
    assert attention_scale(64, 16) == pytest.approx(4 / 64, rel=1e-15)
    assert attention_scale(16, 16) == 16**-0.5
    assert attention_scale(64, 16, "sp") == 64**-0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_parametrization(ViT(64), "sp", base=ViT(16))  # SP needs no attention change: no warning

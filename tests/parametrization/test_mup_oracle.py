"""Oracle: scaleplan's muP equals microsoft/mup 1.0 on six architectures beyond the reference models.

Each architecture is written twice with the same parameter names: plain torch layers (scaleplan infers
the roles) and mup's layers (MuReadout / MuSharedReadout, attention sqrt(d_base)/d_head). From equal
initial weights we compare the init after rescaling, every tensor's Adam and SGD lr and weight decay,
the init std drawn by init_std vs mup.init.normal_, and the outputs after 5 optimizer steps.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from scaleplan.parametrization import apply_parametrization, param_groups

mup = pytest.importorskip("mup")

VOCAB, SEQ = 16, 6


class Attention(nn.Module):
    """Single-head attention whose logit scale is a float `scaling` (as transformers' modules)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.head_dim, self.scaling = d, d**-0.5
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.q(x) @ self.k(x).transpose(-1, -2) * self.scaling
        mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril()
        return self.o(F.softmax(logits.masked_fill(~mask, float("-inf")), -1) @ self.v(x))


class Transformer(nn.Module):
    """Token embedding, a raw (SEQ, d) position embedding, one pre-LN block (FFN width `ffn`), readout."""

    def __init__(self, d: int, ffn: int, tied: bool, mup_layers: bool) -> None:
        super().__init__()
        self.wte = nn.Embedding(VOCAB, d)
        self.wpe = nn.Parameter(torch.randn(SEQ, d) * 0.1)
        self.ln1, self.attn, self.ln2, self.ln_f = nn.LayerNorm(d), Attention(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.fc, self.proj = nn.Linear(d, ffn), nn.Linear(ffn, d)
        if tied:
            self.readout = mup.MuSharedReadout(self.wte.weight, bias=False) if mup_layers else nn.Linear(d, VOCAB, bias=False)
            self.readout.weight = self.wte.weight
        else:
            self.readout = (mup.MuReadout if mup_layers else nn.Linear)(d, VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe
        x = x + self.attn(self.ln1(x))
        x = x + self.proj(F.gelu(self.fc(self.ln2(x))))
        return self.readout(self.ln_f(x))


class MLP(nn.Module):
    def __init__(self, d: int, mup_layers: bool) -> None:
        super().__init__()
        self.inp, self.hidden = nn.Linear(8, d), nn.Linear(d, d)
        self.readout = (mup.MuReadout if mup_layers else nn.Linear)(d, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(F.relu(self.hidden(F.relu(self.inp(x)))))


class CNN(nn.Module):
    def __init__(self, c: int, mup_layers: bool) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.readout = (mup.MuReadout if mup_layers else nn.Linear)(c, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.readout(h.mean(dim=(2, 3)))


class FFNOnly(nn.Module):
    """Only the FFN's inner width scales: its second layer maps width -> d, a readout in mup's terms."""

    def __init__(self, ffn: int, mup_layers: bool) -> None:
        super().__init__()
        self.ln, self.fc = nn.LayerNorm(12), nn.Linear(12, ffn)
        self.proj = (mup.MuReadout if mup_layers else nn.Linear)(ffn, 12)
        self.readout = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(x + self.proj(F.gelu(self.fc(self.ln(x)))))


# name: (build(width, mup_layers), base width, width, inputs, tied)
ARCHS = {
    "transformer": (lambda w, mu: Transformer(w, 4 * w, False, mu), 16, 64, "tokens", False),
    "transformer-tied": (lambda w, mu: Transformer(w, 4 * w, True, mu), 16, 64, "tokens", True),
    "mlp-biases": (lambda w, mu: MLP(w, mu), 16, 128, "vectors", False),
    "cnn": (lambda w, mu: CNN(w, mu), 8, 32, "images", False),
    "ffn-only": (lambda w, mu: FFNOnly(w, mu), 16, 128, "vectors12", False),
    # d_model x2 while the FFN grows x8: hidden tensors whose fan-in and fan-out scale differently
    "unequal-fan-in-fan-out": (lambda w, mu: Transformer(w, 32 if w == 16 else 256, False, mu), 16, 32, "tokens", False),
}


def inputs(kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    if kind == "tokens":
        return torch.randint(0, VOCAB, (3, SEQ), generator=gen)
    if kind == "images":
        return torch.randn(3, 3, 6, 6, generator=gen)
    return torch.randn(4, 12 if kind == "vectors12" else 8, generator=gen)


def pair(arch: str, rescale_theirs: bool = True) -> tuple[nn.Module, nn.Module]:
    """(ours parametrized by scaleplan, theirs by mup), both from the same initial weights."""
    build, base_w, w, _, tied = ARCHS[arch]
    torch.manual_seed(0)
    ours = build(w, False)
    theirs = build(w, True)
    theirs.load_state_dict(ours.state_dict())
    apply_parametrization(ours, "mup", base=build(base_w, False))
    # mup rescales a MuSharedReadout's weight, the embedding itself, x sqrt(m) (its examples re-initialize
    # the embedding afterwards); the tied case is compared from scaleplan's rescaled weights instead
    mup.set_base_shapes(theirs, build(base_w, True), rescale_params=rescale_theirs and not tied, do_assert=False)
    if tied:
        theirs.load_state_dict(ours.state_dict())
    for module in theirs.modules():
        if isinstance(module, Attention):
            module.scaling = math.sqrt(16) / module.head_dim  # mup: attn_mult / d_head, equal to SP at the base
    return ours, theirs


def by_name(model: nn.Module, groups: list[dict]) -> dict[str, tuple[float, float]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_rescaled_init_equals_mup(arch: str) -> None:
    ours, theirs = pair(arch)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert torch.equal(p, theirs_params[name]), name


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_per_tensor_lr_and_weight_decay_equal_mup(arch: str, optimizer: str) -> None:
    ours, theirs = pair(arch)
    mu_opt = (mup.MuSGD if optimizer == "sgd" else mup.MuAdam)(theirs.parameters(), lr=1e-2, weight_decay=0.1)
    expected = by_name(theirs, mu_opt.param_groups)
    got = by_name(ours, param_groups(ours, 1e-2, 0.1, optimizer))
    assert got.keys() == expected.keys()
    for name, value in got.items():
        assert value == pytest.approx(expected[name], rel=1e-12), name


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_outputs_after_five_steps_equal_mup(arch: str, optimizer: str) -> None:
    ours, theirs = pair(arch)
    x = inputs(ARCHS[arch][3])
    lr = 1e-2 if optimizer == "adam" else 0.05
    opt_ours = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(param_groups(ours, lr, optimizer=optimizer))
    opt_theirs = (mup.MuSGD if optimizer == "sgd" else mup.MuAdam)(theirs.parameters(), lr=lr)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)  # readout multiplier and attention scale agree
    for _ in range(5):
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    out = ours(x)
    assert torch.allclose(out, theirs(x), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out, pair(arch)[0](x), atol=1e-4)  # the steps moved the model


@pytest.mark.parametrize("arch", ["transformer", "mlp-biases", "cnn", "unequal-fan-in-fan-out"])
def test_init_std_equals_mup_init_normal(arch: str) -> None:
    """init_std draws N(0, (sigma * factor)^2): the std mup.init.normal_ gives each weight (large tensors)."""
    build, base_w, w, _, _ = ARCHS[arch]
    torch.manual_seed(0)
    ours = apply_parametrization(build(4 * w, False), "mup", base=build(base_w, False), init_std=0.05)
    theirs = mup.set_base_shapes(build(4 * w, True), build(base_w, True), do_assert=False)
    for name, p in theirs.named_parameters():
        if p.dim() >= 2 and p.numel() >= 2000:
            mup.init.normal_(p, std=0.05)
            ours_std = dict(ours.named_parameters())[name].std().item()
            assert ours_std == pytest.approx(p.std().item(), rel=0.08), name

"""Architectures beyond the oracle's six (test_mup_oracle.py), written as a user would, parametrized at width 128
from a base at 32 and a delta at 64: each tensor's role, init, Adam and SGD lr and forward multiplier are compared
with microsoft/mup (set_base_shapes, MuReadout, MuAdam/MuSGD) where it can represent the model, and with muP theory
(Tensor Programs V, Tables 3 and 8: a weight whose fan-in and fan-out both grow is hidden, one whose fan-out alone
grows an input, one whose fan-in alone grows an output) where mup cannot, or reads a tensor's layout wrongly.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from scaleplan.errors import ParametrizationError, ParametrizationWarning
from scaleplan.parametrization import apply_parametrization, param_groups, readout_multiplier
from scaleplan.parametrization.apply import ScaleInput

mup = pytest.importorskip("mup")

BASE, DELTA, WIDTH, M = 32, 64, 128, 4.0
VOCAB, SEQ, RANK, EXPERTS, DT_RANK, D_STATE = 16, 4, 4, 4, 4, 8


def head(mu: bool) -> type[nn.Linear]:
    """A readout layer: nn.Linear for scaleplan, mup's MuReadout (1/width_mult on its input) for mup."""
    return mup.MuReadout if mu else nn.Linear


class RecurrentLM(nn.Module):
    """Embedding (width `emb`), a 2-layer LSTM/GRU of hidden size d, linear head."""

    def __init__(self, d: int, mu: bool, cell: type[nn.RNNBase], emb: int | None = None) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, emb or d)
        self.rnn = cell(emb or d, d, num_layers=2, batch_first=True)
        self.head = head(mu)(d, VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.emb(idx))[0])


class EncoderLM(nn.Module):
    """Embedding, nn.TransformerEncoder of two nn.TransformerEncoderLayer (fused MHA in_proj, FFN 4d), head."""

    def __init__(self, d: int, mu: bool) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, d)
        layer = nn.TransformerEncoderLayer(d, 2, 4 * d, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = head(mu)(d, VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(self.emb(idx)))


class ResNet(nn.Module):
    """Stem conv, BatchNorm, depthwise conv + GroupNorm, a grouped conv (4 groups) beside a 1x1 downsample conv, a
    grouped conv of fixed group size (8 channels), a depthwise Conv1d, global pool, linear head."""

    def __init__(self, c: int, mu: bool) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c)
        self.dw, self.gn = nn.Conv2d(c, c, 3, padding=1, groups=c), nn.GroupNorm(4, c)
        self.grouped, self.bn2 = nn.Conv2d(c, 2 * c, 3, padding=1, groups=4), nn.BatchNorm2d(2 * c)
        self.down = nn.Conv2d(c, 2 * c, 1, bias=False)
        self.group8 = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=c // 4)
        self.dw1 = nn.Conv1d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.head = head(mu)(2 * c, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.stem(x)))
        h = h + F.relu(self.gn(self.dw(h)))
        h = F.relu(self.bn2(self.grouped(h))) + self.down(h)
        h = h + self.group8(h)
        return self.head(self.dw1(h.flatten(2)).mean(-1))


class Mamba(nn.Module):
    """A selective-SSM block by hand: in_proj (d -> 2 d_inner), depthwise conv, x_proj (d_inner -> dt_rank + 2 d_state,
    both fixed), dt_proj (dt_rank -> d_inner), raw A_log (d_inner, d_state) and D (d_inner,), out_proj, head."""

    def __init__(self, d: int, mu: bool, dt_rank: int = DT_RANK) -> None:
        super().__init__()
        inner, self.dt_rank = 2 * d, dt_rank
        self.emb, self.in_proj = nn.Embedding(VOCAB, d), nn.Linear(d, 2 * inner)
        self.conv = nn.Conv1d(inner, inner, 4, groups=inner, padding=3)
        self.x_proj = head(mu)(inner, dt_rank + 2 * D_STATE, bias=False)
        self.dt_proj = nn.Linear(dt_rank, inner)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, D_STATE + 1.0)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj, self.head = nn.Linear(inner, d), head(mu)(d, VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(self.emb(idx)).chunk(2, -1)
        x = F.silu(self.conv(x.transpose(1, 2))[..., : idx.shape[1]].transpose(1, 2))
        dt, b, c = self.x_proj(x).split([self.dt_rank, D_STATE, D_STATE], -1)
        dt, a = F.softplus(self.dt_proj(dt)), -torch.exp(self.A_log)
        state, ys = torch.zeros(x.shape[0], x.shape[2], D_STATE), []
        for t in range(x.shape[1]):
            state = torch.exp(dt[:, t, :, None] * a) * state + dt[:, t, :, None] * b[:, t, None, :] * x[:, t, :, None]
            ys.append((state * c[:, t, None, :]).sum(-1))
        return self.head(self.out_proj((torch.stack(ys, 1) + x * self.D) * F.silu(z)))


class MoE(nn.Module):
    """Embedding, a linear router (d -> E), raw stacked experts (E, d, 4d) and (E, 4d, d) used as x @ w[e], head."""

    def __init__(self, d: int, mu: bool, init: str = "fan-in") -> None:
        super().__init__()
        self.emb, self.router, self.head = nn.Embedding(VOCAB, d), head(mu)(d, EXPERTS, bias=False), head(mu)(d, VOCAB)
        scale = (lambda fan_in: fan_in**-0.5) if init == "fan-in" else (lambda fan_in: 0.02)
        self.w_in = nn.Parameter(torch.randn(EXPERTS, d, 4 * d) * scale(d))
        self.w_out = nn.Parameter(torch.randn(EXPERTS, 4 * d, d) * scale(4 * d))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        gates = F.softmax(self.router(x), -1)
        experts = torch.einsum("ebtf,efd->ebtd", torch.einsum("btd,edf->ebtf", x, self.w_in).relu(), self.w_out)
        return self.head(x + torch.einsum("bte,ebtd->btd", gates, experts))


class LoRA(nn.Module):
    """A frozen base Linear(d, d) with a LoRA adapter: A = Linear(d, r) (a readout of the width), B = Linear(r, d), zero."""

    def __init__(self, d: int, mu: bool) -> None:
        super().__init__()
        self.emb, self.base, self.head = nn.Embedding(VOCAB, d), nn.Linear(d, d), head(mu)(d, VOCAB)
        self.base.weight.requires_grad_(False)
        self.A, self.B = head(mu)(d, RANK, bias=False), nn.Linear(RANK, d, bias=False)
        nn.init.zeros_(self.B.weight)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        return self.head(x + self.base(x) + self.B(self.A(x)))


class RawLoRA(nn.Module):
    """loralib's layout: raw lora_A (r, d) and lora_B (d, r) beside a frozen weight, used as x @ A.T @ B.T."""

    def __init__(self, d: int, mu: bool) -> None:
        super().__init__()
        self.emb, self.base, self.head = nn.Embedding(VOCAB, d), nn.Linear(d, d), head(mu)(d, VOCAB)
        self.base.weight.requires_grad_(False)
        self.lora_A, self.lora_B = nn.Parameter(torch.randn(RANK, d) / d**0.5), nn.Parameter(torch.zeros(d, RANK))
        self.scale = 1.0  # the readout multiplier the user applies to A's input

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        return self.head(x + self.base(x) + (x * self.scale) @ self.lora_A.T @ self.lora_B.T)


class Raw(nn.Module):
    """Small raw tensors: cls token (1, 1, d), position embedding (1, T, d), LayerScale gamma (d,), PReLU(d),
    nn.Embedding(padding_idx=0), and a bilinear readout nn.Bilinear(k, d, classes) of a fixed-size and a width input."""

    def __init__(self, d: int, mu: bool) -> None:
        super().__init__()
        self.emb, self.fc, self.act = nn.Embedding(VOCAB, d, padding_idx=0), nn.Linear(d, d), nn.PReLU(d)
        self.cls, self.pos = nn.Parameter(torch.randn(1, 1, d) * 0.02), nn.Parameter(torch.randn(1, SEQ + 1, d) * 0.02)
        self.gamma = nn.Parameter(1e-1 * torch.ones(d))
        self.head, self.bil = head(mu)(d, VOCAB), nn.Bilinear(3, d, VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.cls.expand(len(idx), -1, -1), self.emb(idx)], 1) + self.pos
        x = x + self.gamma * self.act(self.fc(x))
        return self.head(x) + self.bil(torch.ones(*x.shape[:2], 3), x)


@dataclass(frozen=True)
class Arch:
    """A model builder (width, mup layers), its inputs, scaleplan's roles (theory's), the roles declared, and the
    tensors where mup differs: {name: (what, why)}; what: "init" (mup's rescaled init), "sgd" (MuSGD's lr)."""

    build: Callable[[int, bool], nn.Module]
    inputs: str
    roles: dict[str, str]
    declared: dict[str, str] = field(default_factory=dict)
    mup_differs: dict[str, tuple[str, str]] = field(default_factory=dict)


def _recurrent_roles(emb_role: str, ih0_role: str) -> dict[str, str]:
    roles = {"emb.weight": emb_role, "rnn.weight_ih_l0": ih0_role, "head.weight": "output", "head.bias": "fixed"}
    for layer in (0, 1):
        roles |= {f"rnn.weight_hh_l{layer}": "hidden", f"rnn.bias_ih_l{layer}": "vector", f"rnn.bias_hh_l{layer}": "vector"}
    return roles | {"rnn.weight_ih_l1": "hidden"}


# PyTorch draws every recurrent tensor U(+-1/sqrt(hidden_size)); muP's biases and input weights are O(1), so scaleplan
# rescales them by sqrt(m) from that init; mup's set_base_shapes rescales only nn.Linear / conv biases
_RNN_INIT = ("init", "mup leaves a recurrent layer's U(+-1/sqrt(hidden)) init: its biases (and a fixed-size input's gate "
             "weights) shrink by 1/sqrt(m); muP keeps them O(1)")
_RNN_BIASES = {f"rnn.bias_{kind}_l{layer}": _RNN_INIT for kind in ("ih", "hh") for layer in (0, 1)}
# mup reads every tensor's dimension 0 as its fan-out and 1 as its fan-in: for stacked experts (E, d, 4d) that is the
# expert count and d, so MuSGD divides the lr by m; theory (and scaleplan): fan-in and fan-out both grow, SGD lr x 1
_EXPERTS_SGD = ("sgd", "mup takes dimension 0 (the experts) for the fan-out: MuSGD's lr / m, muP's hidden SGD lr is constant")

ENCODER_ROLES = {"emb.weight": "input", "head.weight": "output", "head.bias": "fixed"} | {
    f"enc.layers.{i}.{name}": role for i in (0, 1) for name, role in (
        ("self_attn.in_proj_weight", "hidden"), ("self_attn.in_proj_bias", "vector"), ("self_attn.out_proj.weight", "hidden"),
        ("self_attn.out_proj.bias", "vector"), ("linear1.weight", "hidden"), ("linear1.bias", "vector"),
        ("linear2.weight", "hidden"), ("linear2.bias", "vector"), ("norm1.weight", "vector"), ("norm1.bias", "vector"),
        ("norm2.weight", "vector"), ("norm2.bias", "vector"))
}

ARCHS = {
    "lstm": Arch(lambda d, mu: RecurrentLM(d, mu, nn.LSTM), "tokens", _recurrent_roles("input", "hidden"), mup_differs=_RNN_BIASES),
    "gru": Arch(lambda d, mu: RecurrentLM(d, mu, nn.GRU), "tokens", _recurrent_roles("input", "hidden"), mup_differs=_RNN_BIASES),
    "lstm-fixed-embedding": Arch(lambda d, mu: RecurrentLM(d, mu, nn.LSTM, emb=12), "tokens", _recurrent_roles("fixed", "input"),
                                 mup_differs=_RNN_BIASES | {"rnn.weight_ih_l0": _RNN_INIT}),
    "transformer-encoder": Arch(EncoderLM, "tokens", ENCODER_ROLES),
    "resnet-depthwise-grouped": Arch(ResNet, "images", {
        "stem.weight": "input", "stem.bias": "vector", "bn.weight": "vector", "bn.bias": "vector",
        "dw.weight": "input", "dw.bias": "vector", "gn.weight": "vector", "gn.bias": "vector",  # depthwise: fan-in k*k
        "grouped.weight": "hidden", "grouped.bias": "vector", "bn2.weight": "vector", "bn2.bias": "vector",
        "down.weight": "hidden", "group8.weight": "input", "group8.bias": "vector",  # 8 channels per group: fan-in fixed
        "dw1.weight": "input", "dw1.bias": "vector", "head.weight": "output", "head.bias": "fixed"}),
    "mamba": Arch(Mamba, "tokens", {
        "A_log": "vector", "D": "vector", "emb.weight": "input", "in_proj.weight": "hidden", "in_proj.bias": "vector",
        "conv.weight": "input", "conv.bias": "vector", "x_proj.weight": "output", "dt_proj.weight": "input",
        "dt_proj.bias": "vector", "out_proj.weight": "hidden", "out_proj.bias": "vector", "head.weight": "output",
        "head.bias": "fixed"}, declared={"A_log": "vector"}),
    "moe-raw-experts": Arch(MoE, "tokens", {
        "emb.weight": "input", "router.weight": "output", "head.weight": "output", "head.bias": "fixed",
        "w_in": "hidden", "w_out": "hidden"}, mup_differs={"w_in": _EXPERTS_SGD, "w_out": _EXPERTS_SGD}),
    "lora": Arch(LoRA, "tokens", {
        "emb.weight": "input", "base.weight": "hidden", "base.bias": "vector", "A.weight": "output", "B.weight": "input",
        "head.weight": "output", "head.bias": "fixed"}),
    "raw-tensors": Arch(Raw, "tokens", {
        "cls": "input", "pos": "input", "gamma": "vector", "emb.weight": "input", "fc.weight": "hidden", "fc.bias": "vector",
        "act.weight": "vector", "head.weight": "output", "head.bias": "fixed", "bil.weight": "output", "bil.bias": "fixed"}),
}


def inputs(kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    if kind == "images":
        return torch.randn(2, 3, 5, 5, generator=gen)
    return torch.randint(0, VOCAB, (2, SEQ), generator=gen)


def quiet(call: Callable[[], nn.Module]) -> nn.Module:
    """Run `call` with apply's warnings (MHA's attention scale, a kept init) silenced: they are tested on their own;
    a fused fixed-and-width dimension is an error (no model here has one but the one built for it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.filterwarnings("error", message=".*less than in proportion")
        return call()


def ours(arch: str, init_std: float | None = None) -> nn.Module:
    spec = ARCHS[arch]
    torch.manual_seed(0)
    model = spec.build(WIDTH, False)
    return quiet(lambda: apply_parametrization(model, "mup", base=spec.build(BASE, False), delta=spec.build(DELTA, False),
                                               roles=spec.declared, init_std=init_std))


def theirs(arch: str, rescale: bool = True) -> nn.Module:
    """The same model with mup's readouts and set_base_shapes, from the same initial weights as `ours(arch)`."""
    spec = ARCHS[arch]
    torch.manual_seed(0)
    plain = spec.build(WIDTH, False)
    model = spec.build(WIDTH, True)
    model.load_state_dict(plain.state_dict())
    return mup.set_base_shapes(model, spec.build(BASE, True), delta=spec.build(DELTA, True), rescale_params=rescale, do_assert=False)


def lrs(groups: list[dict], model: nn.Module) -> dict[str, float]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g["lr"] for g in groups for p in g["params"]}


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_roles_are_muPs(arch: str) -> None:
    assert {n: r.role for n, r in ours(arch).scaleplan_state.tensors.items()} == ARCHS[arch].roles


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_rescaled_init_equals_mup_where_mup_rescales_it(arch: str) -> None:
    """From equal weights, scaleplan's rescaled init is mup's, except where mup is documented to differ."""
    model, reference = dict(ours(arch).named_parameters()), dict(theirs(arch).named_parameters())
    differs = {n for n, (what, _) in ARCHS[arch].mup_differs.items() if what == "init"}
    for name, p in model.items():
        assert torch.equal(p, reference[name]) != (name in differs), name


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_per_tensor_lr_equals_mup_where_mup_reads_the_layout(arch: str, optimizer: str) -> None:
    model, reference = ours(arch), theirs(arch)
    mu_opt = (mup.MuSGD if optimizer == "sgd" else mup.MuAdam)(reference.parameters(), lr=1e-2)
    expected, got = lrs(mu_opt.param_groups, reference), lrs(param_groups(model, 1e-2, optimizer=optimizer), model)
    assert got.keys() == expected.keys()
    theory = {"input": M, "vector": M, "output": M, "hidden": 1.0, "fixed": 1.0} if optimizer == "sgd" else \
        {"input": 1.0, "vector": 1.0, "output": 1.0, "hidden": 1 / M, "fixed": 1.0}
    for name, value in got.items():
        assert value == pytest.approx(1e-2 * theory[ARCHS[arch].roles[name]], rel=1e-12), name
        differs = ARCHS[arch].mup_differs.get(name, ("", ""))[0] == optimizer
        assert (value == pytest.approx(expected[name], rel=1e-12)) != differs, name


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_readouts_and_only_they_get_one_over_m(arch: str) -> None:
    """Every module computing a readout (the head, Mamba's x_proj, the MoE router, LoRA's A, a bilinear readout: mup's
    MuReadout 1/width_mult where it has one) gets 1/m on its input; nothing else is hooked."""
    model = ours(arch)
    hooked = {n: [h.multiplier for h in m._forward_pre_hooks.values() if isinstance(h, ScaleInput)] for n, m in model.named_modules()}
    expected = {n.removesuffix(".weight"): [1 / M] for n, role in ARCHS[arch].roles.items() if role == "output"}
    assert {n: h for n, h in hooked.items() if h} == expected


@pytest.mark.parametrize("arch", sorted(a for a in ARCHS if "bil.weight" not in ARCHS[a].roles))
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_outputs_after_three_steps_equal_mup_from_equal_weights(arch: str, optimizer: str) -> None:
    """mup started from scaleplan's rescaled weights: same forward multipliers, same per-tensor lrs, same outputs
    (where the lrs differ, stacked experts under SGD, the outputs must differ)."""
    model, reference = ours(arch), theirs(arch, rescale=False)
    reference.load_state_dict(model.state_dict())
    x = inputs(ARCHS[arch].inputs)
    assert torch.allclose(model(x), reference(x), atol=1e-6)
    lr = 1e-2 if optimizer == "adam" else 0.05
    opts = ((model, (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(param_groups(model, lr, optimizer=optimizer))),
            (reference, (mup.MuSGD if optimizer == "sgd" else mup.MuAdam)(reference.parameters(), lr=lr)))
    for _ in range(3):
        for net, opt in opts:
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    same = not any(what == optimizer for what, _ in ARCHS[arch].mup_differs.values())
    assert torch.allclose(model(x), reference(x), rtol=1e-4, atol=1e-5) == same


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_init_std_draws_muPs_std_per_role_as_mup_init_normal(arch: str) -> None:
    """init_std: inputs and readouts N(0, sigma^2), hidden N(0, sigma^2 / m) (mup.init.normal_); vectors keep theirs."""
    model, reference = dict(ours(arch, init_std=0.05).named_parameters()), theirs(arch)
    kept = dict(ours(arch).named_parameters())
    for name, p in reference.named_parameters():
        role = ARCHS[arch].roles[name]
        if role in ("input", "hidden", "output"):
            mup.init.normal_(p, std=0.05)
            if p.numel() >= 1000:
                assert model[name].std().item() == pytest.approx(p.std().item(), rel=0.1), name
                assert model[name].std().item() == pytest.approx(0.05 / (math.sqrt(M) if role == "hidden" else 1), rel=0.1), name
        elif role == "fixed":
            assert torch.equal(model[name], kept[name]), name


def test_init_std_redraws_raw_inputs_keeps_vectors_and_an_embeddings_padding_row() -> None:
    """cls token and position embedding are inputs (N(0, sigma^2)); LayerScale's gamma and PReLU's slopes are vectors
    (kept); nn.Embedding(padding_idx=0)'s zero row stays zero."""
    model, kept = ours("raw-tensors", init_std=0.05), ours("raw-tensors")
    assert not model.emb.weight[0].any() and model.emb.weight[1:].std().item() == pytest.approx(0.05, rel=0.1)
    assert model.pos.std().item() == pytest.approx(0.05, rel=0.2) and not torch.equal(model.cls, kept.cls)
    assert torch.equal(model.gamma, kept.gamma) and torch.equal(model.act.weight, kept.act.weight)


def test_a_recurrent_layers_fixed_size_input_is_an_input_and_its_init_stays_the_bases() -> None:
    """nn.LSTM(12, d): weight_ih_l0 (4d, 12) has a known (out, in) layout (it was refused as a raw tensor); PyTorch draws
    it and the biases U(+-1/sqrt(d)), which muP's O(1) input weights and biases undo, with or without init_std."""
    model = ours("lstm-fixed-embedding")
    torch.manual_seed(0)
    base = dict(ARCHS["lstm-fixed-embedding"].build(BASE, False).named_parameters())
    for name in ("rnn.weight_ih_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l1"):
        assert model.get_parameter(name).std().item() == pytest.approx(base[name].std().item(), rel=0.15), name
    redrawn = ours("lstm-fixed-embedding", init_std=0.05)
    assert redrawn.rnn.weight_ih_l0.std().item() == pytest.approx(0.05, rel=0.1)
    assert redrawn.rnn.bias_hh_l0.std().item() == pytest.approx(base["rnn.bias_hh_l0"].std().item(), rel=0.15)
    sp = quiet(lambda: apply_parametrization(RecurrentLM(WIDTH, False, nn.LSTM, emb=12), "sp", base=RecurrentLM(BASE, False, nn.LSTM, emb=12)))
    assert sp.rnn.bias_ih_l0.abs().max().item() <= WIDTH**-0.5  # SP keeps PyTorch's own init


def test_an_lstm_cells_tensors_get_the_layers_rules() -> None:
    cells = {d: nn.LSTMCell(12, d) for d in (BASE, DELTA, WIDTH)}
    model = quiet(lambda: apply_parametrization(cells[WIDTH], "mup", base=cells[BASE], delta=cells[DELTA]))
    assert {n: r.role for n, r in model.scaleplan_state.tensors.items()} == {
        "weight_ih": "input", "weight_hh": "hidden", "bias_ih": "vector", "bias_hh": "vector"}
    assert model.bias_ih.abs().max().item() > WIDTH**-0.5  # rescaled by sqrt(m) from U(+-1/sqrt(hidden))


@pytest.mark.parametrize("layer", ["lstm", "bilinear"])
@pytest.mark.parametrize("init", ["pytorch", "constant"])
def test_a_layers_own_init_is_warned_about_only_when_it_is_not_pytorchs(layer: str, init: str) -> None:
    """The kept-init check reads an RNN's init by its hidden size and nn.Bilinear's by in1_features, as PyTorch draws
    them (an LSTM whose hidden size is fixed reads the width as a readout; a fan-in reading called its init wrong): the
    layer's own init passes, N(0, 0.02) is named."""
    def build(d: int) -> nn.Module:
        module = nn.LSTM(d, 8) if layer == "lstm" else nn.Bilinear(3, d, 5)
        if init == "constant":
            for p in module.parameters():
                nn.init.normal_(p, std=0.02)
        return module
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_parametrization(build(WIDTH), "mup", base=build(BASE), delta=build(DELTA))
    assert any("init_std=None keeps" in str(w.message) for w in caught) == (init == "constant")


@pytest.mark.parametrize("init, warns", [("fan-in", False), ("constant", True)])
def test_raw_stacked_experts_are_warned_about_only_when_their_init_is_not_fan_in(init: str, warns: bool) -> None:
    """The kept-init check reads a raw (E, d, 4d) tensor's fan-in as d (its last width dimension is the fan-out, not a
    kernel: d x 4d made every fan-in init look 'not fan-in scaled')."""
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_parametrization(MoE(WIDTH, False, init), "mup", base=MoE(BASE, False, init), delta=MoE(DELTA, False, init))
    named = [str(w.message) for w in caught if "init_std=None keeps" in str(w.message)]
    assert bool(named) == warns and all("w_in" in message for message in named)


def test_a_bilinear_readout_is_hooked_and_a_form_of_two_widths_is_refused() -> None:
    """nn.Bilinear(k, d, C) reads the width through its second input: a readout, 1/m on the first input (exact, the
    form is linear in it), whose PyTorch init U(+-1/sqrt(k)) is already muP's width-independent one: kept, bias too,
    unwarned (a fan-in rescale made both grow by sqrt(m)); with both inputs widths the fan-in is d^2 (muP: 1/m^2),
    which no role gives: refused."""
    bilinear = {d: nn.Bilinear(3, d, 5) for d in (BASE, DELTA, WIDTH)}
    drawn = {n: p.detach().clone() for n, p in bilinear[WIDTH].named_parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = apply_parametrization(bilinear[WIDTH], "mup", base=bilinear[BASE], delta=bilinear[DELTA])
    assert all(torch.equal(p, drawn[n]) for n, p in model.named_parameters())
    x1, x2 = torch.randn(2, 3), torch.randn(2, WIDTH)
    assert torch.allclose(model(x1, x2), F.bilinear(x1, x2, model.weight / M, model.bias), atol=1e-6)
    square = {d: nn.Bilinear(d, d, 5) for d in (BASE, DELTA, WIDTH)}
    with pytest.raises(ParametrizationError, match=r"^weight: the model \(Bilinear\)'s first input is a width .*nn.Bilinear\(k, d, out\)"):
        apply_parametrization(square[WIDTH], "mup", base=square[BASE], delta=square[DELTA])


def test_a_loralib_adapter_is_refused_until_A_is_declared_a_readout() -> None:
    """Raw lora_A (r, d) looks like a position embedding (an input, no 1/m: under Adam it would update m times too
    fast; LoRA+ finds lr_B / lr_A ~ width); B's refusal names A's role, and B declared alone is refused naming both."""
    build = {d: RawLoRA(d, False) for d in (BASE, DELTA, WIDTH)}

    def apply(roles: dict[str, str]) -> nn.Module:
        return quiet(lambda: apply_parametrization(build[WIDTH], "mup", base=build[BASE], delta=build[DELTA], roles=roles))

    with pytest.raises(ParametrizationError, match=r"^cannot infer the role of raw parameter 'lora_B'.*a LoRA B \(d, r\), whose A \(r, d\) is then an 'output'"):
        apply({})
    with pytest.raises(ParametrizationError, match=re.escape("declare roles={'lora_A': 'output', 'lora_B': 'input'}")):
        apply({"lora_B": "input"})
    model = apply({"lora_A": "output", "lora_B": "input"})
    model.scale = readout_multiplier(model, "lora_A")
    assert model.scale == 1 / M
    adam = lrs(param_groups(model, 1e-2), model)
    assert adam["lora_A"] == adam["lora_B"] == 1e-2  # with A's 1/m: lr_B / lr_A = m in the unscaled parametrization


def test_the_linear_lora_adapters_lr_ratio_is_lora_plus() -> None:
    """LoRA+ (Hayou et al. 2024): lr_B / lr_A = Theta(width) under Adam. A = Linear(d, r) is a readout (1/m on its input,
    Adam lr eta: effectively eta/m), B = Linear(r, d) an input (eta): their effective ratio is m; B stays zero."""
    model = ours("lora", init_std=0.02)
    adam = lrs(param_groups(model, 1e-2), model)
    multiplier = next(h.multiplier for h in model.A._forward_pre_hooks.values() if isinstance(h, ScaleInput))
    assert adam["B.weight"] / (adam["A.weight"] * multiplier) == pytest.approx(M)
    assert not model.B.weight.any() and model.A.weight.std().item() == pytest.approx(0.02, rel=0.2)


def test_an_ssm_table_is_refused_naming_vector_which_keeps_its_init() -> None:
    """A_log (d_inner, d_state) is a per-channel table, not a weight: refused with 'vector' among the fixes, and as a
    vector init_std leaves its S4D init (log 1..d_state) alone, where 'input' would re-draw it as N(0, sigma^2)."""
    with pytest.raises(ParametrizationError, match=r"^cannot infer the role of raw parameter 'A_log'.*'vector' if it is a per-channel table"):
        apply_parametrization(Mamba(WIDTH, False), "mup", base=Mamba(BASE, False), delta=Mamba(DELTA, False))
    model = ours("mamba", init_std=0.02)
    assert torch.equal(model.A_log, torch.log(torch.arange(1, D_STATE + 1.0)).repeat(2 * WIDTH, 1))


def test_a_fixed_part_fused_with_a_width_sized_one_is_warned_about() -> None:
    """mamba_ssm's dt_rank = d/16 makes x_proj's rows dt_rank + 2 d_state grow 18 -> 20 -> 24 from the base to the
    model: readout rows (B, C) fused with hidden ones (dt), which no one role fits (mup, like scaleplan's roles, reads
    it as a hidden matrix whose fan-out grew 4/3x); warned, naming the tensor. None of the architectures above is."""
    build = {d: Mamba(d, False, dt_rank=d // 16) for d in (BASE, DELTA, WIDTH)}
    with pytest.warns(ParametrizationWarning, match=r"^x_proj.weight: dimension 0 grows 18 -> 20 -> 24 .*split it into two layers"):
        apply_parametrization(build[WIDTH], "mup", base=build[BASE], delta=build[DELTA], roles={"A_log": "vector"})
    for arch in ARCHS:
        ours(arch)  # quiet() makes the warning an error


def test_an_lstm_projecting_to_a_fixed_size_is_refused() -> None:
    """weight_hr_l0 (proj, d) with a fixed proj_size is a readout inside torch's kernel, where no 1/m can be applied."""
    class Projected(nn.Module):
        def __init__(self, d: int, proj: int) -> None:
            super().__init__()
            self.emb, self.rnn, self.head = nn.Embedding(20, d), nn.LSTM(d, d, batch_first=True, proj_size=proj), nn.Linear(proj, 20)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(self.emb(x))[0])

    with pytest.raises(ParametrizationError, match=r"^rnn.weight_hr_l0: rnn \(LSTM\) projects its width hidden state to a fixed size 8 inside"):
        apply_parametrization(Projected(WIDTH, 8), "mup", base=Projected(BASE, 8), delta=Projected(DELTA, 8))
    scaled = apply_parametrization(Projected(WIDTH, WIDTH // 4), "mup", base=Projected(BASE, BASE // 4), delta=Projected(DELTA, DELTA // 4))
    assert scaled.scaleplan_state.tensors["rnn.weight_hr_l0"].role == "hidden"  # a proj_size that scales is a hidden weight
    sp = quiet(lambda: apply_parametrization(Projected(WIDTH, 8), "sp", base=Projected(BASE, 8), delta=Projected(DELTA, 8)))
    assert sp.scaleplan_state.tensors["rnn.weight_hr_l0"].role == "output"  # SP applies no readout multiplier: nothing lost


@pytest.mark.parametrize("parametrization, warned", [("mup", True), ("sp", False)])
def test_recurrent_layers_under_mup_warn_that_their_transfer_failed_where_measured(parametrization: str, warned: bool) -> None:
    """benchmarks/results/lstm-lm-transfer.md: muP's lr did not transfer on an LSTM char-LM (7.2% at 4x), SP's did."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_parametrization(RecurrentLM(WIDTH, False, nn.LSTM), parametrization, base=RecurrentLM(BASE, False, nn.LSTM))
    recurrent = [str(w.message) for w in caught if issubclass(w.category, ParametrizationWarning) and "recurrent" in str(w.message)]
    assert len(recurrent) == int(warned)
    if warned:
        assert recurrent[0].startswith("recurrent layer(s) rnn under 'mup': on a 2-layer LSTM char-LM") and "scaleplan validate" in recurrent[0]

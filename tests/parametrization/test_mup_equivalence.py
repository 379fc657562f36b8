"""Per-tensor Adam, AdamW and SGD learning rates and weight decays equal microsoft/mup's MuAdam / MuAdamW / MuSGD."""

from __future__ import annotations

import pytest
import torch

from scaleplan.models import build_model, build_parametrized
from scaleplan.parametrization import param_groups

mup = pytest.importorskip("mup")

CASES = [
    ("mlp", {"depth": 3}),
    ("gpt", {"depth": 2, "vocab": 32, "seq_len": 8}),
    ("gpt", {"depth": 1, "vocab": 32, "seq_len": 8, "tied": True}),
    ("denseam", {"energy": "relu-poly"}),  # memory Xi (K x N) scales like mup's vector-like tensors
]


def by_param(groups: list[dict]) -> dict[int, tuple[float, float]]:
    return {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}


@pytest.mark.parametrize("name, kwargs", CASES)
@pytest.mark.parametrize("width", [128, 512])
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_lr_and_wd_equal_mup_package(name: str, kwargs: dict, width: int, optimizer: str) -> None:
    param = "denseam" if name == "denseam" else "mup"
    net = build_parametrized(name, width, param, 64, **kwargs)
    mup.set_base_shapes(net, build_model(name, 64, **kwargs), rescale_params=False, do_assert=False)
    mu_opt = {"sgd": mup.MuSGD, "adam": mup.MuAdam, "adamw": mup.MuAdamW}[optimizer](net.parameters(), lr=1e-2, weight_decay=0.1)
    theirs = by_param(mu_opt.param_groups)
    ours = by_param(param_groups(net, 1e-2, 0.1, optimizer))
    names = {id(p): n for n, p in net.named_parameters()}
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        assert value == pytest.approx(theirs[key], rel=1e-12), names[key]
    if not (name == "denseam" and optimizer != "sgd"):  # the check is not vacuous: two distinct lrs and wds
        assert len({v[0] for v in ours.values()}) == 2 and len({v[1] for v in ours.values()}) == 2


def test_readout_multiplier_equals_mureadout() -> None:
    """Our readout (hook: x * alpha_out/m, init x sqrt(m)) computes what mup.MuReadout computes."""
    torch.manual_seed(0)
    net = build_parametrized("mlp", 256, "mup", 64, depth=1)
    ref = mup.MuReadout(256, 10, output_mult=1.0)
    ref.weight.data.copy_(net.readout.weight.data)
    ref.bias.data.copy_(net.readout.bias.data)
    mup.set_base_shapes(ref, mup.MuReadout(64, 10), rescale_params=False)
    h = torch.randn(4, 256)
    assert torch.allclose(net.readout(h), ref(h), atol=1e-6)

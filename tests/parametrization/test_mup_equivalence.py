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


class _WithMuReadout(torch.nn.Module):
    """A model written for the mup package: its readout is mup's MuReadout."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.inp, self.hidden, self.out = torch.nn.Linear(8, width), torch.nn.Linear(width, width), mup.MuReadout(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(torch.relu(self.inp(x)))))


def test_a_model_mup_parametrized_or_reading_out_through_mureadout_is_refused() -> None:
    """Applying scaleplan on top of mup would square the readout's 1/m (and rescale the init twice) silently."""
    from scaleplan.errors import ParametrizationError
    from scaleplan.parametrization import apply_parametrization

    model = _WithMuReadout(256)
    mup.set_base_shapes(model, _WithMuReadout(32))
    with pytest.raises(ParametrizationError, match="mup's set_base_shapes already parametrized this model"):
        apply_parametrization(model, "mup", base=_WithMuReadout(32))
    with pytest.raises(ParametrizationError, match="out is mup's MuReadout, which divides by its own width_mult: build it as nn.Linear"):
        apply_parametrization(_WithMuReadout(256), "mup", base=_WithMuReadout(32))

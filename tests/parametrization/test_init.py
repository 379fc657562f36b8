"""Keeping the model's own init (init_std=None) is muP only for a fan-in init: any other is named in a warning."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from scaleplan.parametrization import apply_parametrization


class Net(nn.Module):
    def __init__(self, width: int, std: float | None) -> None:
        super().__init__()
        self.inp, self.hid, self.out = nn.Linear(8, width), nn.Linear(width, width), nn.Linear(width, 3)
        if std is not None:  # nanoGPT's N(0, 0.02) on every matrix, at every width
            for layer in (self.inp, self.hid, self.out):
                nn.init.normal_(layer.weight, 0.0, std)


def kept_init_warnings(width: int, base_width: int, std: float | None) -> list[str]:
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_parametrization(Net(width, std), "mup", base=Net(base_width, std))
    return [str(w.message) for w in caught if "init_std=None keeps" in str(w.message)]


@pytest.mark.parametrize("width", [256, 1024])
def test_a_constant_std_near_fan_in_at_this_width_is_named_by_comparing_with_the_base(width: int) -> None:
    # 0.02 is within 2.5x of 1/sqrt(3 * 256): only the base's own weights show it does not shrink with the fan-in
    messages = kept_init_warnings(width, 64, 0.02)
    assert len(messages) == 1 and "hid.weight" in messages[0] and "pass init_std=" in messages[0]


def test_pytorchs_fan_in_init_is_kept_without_a_warning() -> None:
    assert kept_init_warnings(256, 64, None) == []


def test_a_small_fan_in_readout_is_not_taken_for_a_constant_init_by_its_draw_alone() -> None:
    """A readout of 2 x 16 entries over a base of 2 x 8: its std's draw noise (a log s.e. near 0.2) crossed the midpoint
    between fan-in and constant in 17 of 320 such builds (4 shapes, 2 readout sizes, 40 seeds) before the standard
    error was weighed."""
    def small(width: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 2))

    named = []
    for seed in range(40):
        torch.manual_seed(seed)
        base = small(8)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            apply_parametrization(small(16), "mup", base=base)
        named += [seed for w in caught if "init_std=None keeps" in str(w.message)]
    assert named == []


class Stem(nn.Module):
    """A conv net whose input layer is drawn like torchvision's ResNet stem (or xavier): its std shrinks with the width."""

    def __init__(self, width: int, init: str) -> None:
        super().__init__()
        self.stem, self.conv, self.fc = nn.Conv2d(3, width, 3), nn.Conv2d(width, width, 3), nn.Linear(width, 10)
        if init == "fan_out":
            nn.init.kaiming_normal_(self.stem.weight, mode="fan_out", nonlinearity="relu")
        elif init == "xavier":
            nn.init.xavier_uniform_(self.stem.weight)


@pytest.mark.parametrize("init, named", [("fan_out", True), ("xavier", True), ("fan_in", False)])
def test_an_input_init_that_shrinks_with_the_width_is_named(init: str, named: bool) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = apply_parametrization(Stem(128, init), "mup", base=Stem(32, init), delta=Stem(64, init))
    messages = [str(w.message) for w in caught if "init_std=None keeps" in str(w.message)]
    assert messages == ([f"init_std=None keeps an init that shrinks as the width grows for 1 input tensor(s) (stem.weight): "
                         "their std is the base's / sqrt(fan-out growth) (xavier, kaiming mode='fan_out'), muP keeps an "
                         "input's init constant in width: pass init_std= (applied at every width) or draw them by fan-in "
                         "(PyTorch's default)"] if named else [])
    assert model.scaleplan_state.tensors["stem.weight"].role == "input"


def test_an_identity_init_is_kept_without_a_warning() -> None:
    """An identity (IRNN-style) hidden weight has no std to judge: it is kept, and nothing is warned (it raised log(0))."""
    def net(width: int) -> Net:
        model = Net(width, None)
        nn.init.eye_(model.hid.weight)
        return model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = apply_parametrization(net(256), "mup", base=net(32))
    assert not [w for w in caught if "init_std=None keeps" in str(w.message)]
    assert torch.equal(model.hid.weight, torch.eye(256))


def test_a_recurrent_layers_own_input_init_is_rescaled_not_named() -> None:
    """An LSTM's fixed-size input weights are drawn U(+-1/sqrt(hidden)), shrinking with the width like a fan-out init;
    scaleplan rescales that init to muP's (init.py's _own_init_stds), so it is not named."""
    class Recurrent(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.embed, self.rnn, self.head = nn.Embedding(20, 16), nn.LSTM(16, width, batch_first=True), nn.Linear(width, 20)

    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = apply_parametrization(Recurrent(256), "mup", base=Recurrent(32), delta=Recurrent(64))
    assert model.scaleplan_state.tensors["rnn.weight_ih_l0"].role == "input"
    assert not [w for w in caught if "init_std=None keeps" in str(w.message)]

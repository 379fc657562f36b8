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

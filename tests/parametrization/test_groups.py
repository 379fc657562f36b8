"""param_groups checks a model against the law prediction it is given: a mismatch is an error, not a wrong lr."""

from __future__ import annotations

import pytest

from scaleplan.core.reference import ParametrizationRef
from scaleplan.errors import ParametrizationError
from scaleplan.laws import Estimate, Prediction
from scaleplan.models import build_parametrized
from scaleplan.parametrization import param_groups


def prediction(width: float, ref: ParametrizationRef) -> Prediction:
    return Prediction("law", {"W": width}, {"lr": Estimate(0.01)}, (), ref)


def mlp(width: int, base_width: int, parametrization: str = "mup"):
    return build_parametrized("mlp", width, parametrization, base_width, in_dim=8, out_dim=4)


def test_matching_model_gets_the_muP_lrs() -> None:
    groups = param_groups(mlp(256, 64), prediction(256, ParametrizationRef("mup", base_width=64)))
    lrs = {name: g["lr"] for g in groups for name in g["names"]}
    assert lrs["hidden.0.weight"] == pytest.approx(0.01 / 4) and lrs["readout.weight"] == pytest.approx(0.01)


@pytest.mark.parametrize(
    "model, pred, optimizer, fragment",
    [
        (lambda: mlp(256, 32), prediction(256, ParametrizationRef("mup", base_width=64)), "adam", "base width 32 (law: 64)"),
        (lambda: mlp(256, 64, "sp"), prediction(256, ParametrizationRef("mup", base_width=64)), "adam", "parametrization 'sp'"),
        (lambda: mlp(128, 64), prediction(256, ParametrizationRef("mup", base_width=64)), "adam",
         "the prediction is for width 256 but the model has width 128"),
        (lambda: mlp(256, 64), prediction(256, ParametrizationRef("mup", base_width=64)), "sgd", "optimizer 'sgd'"),
    ],
)
def test_mismatches_are_refused(model, pred: Prediction, optimizer: str, fragment: str) -> None:
    with pytest.raises(ParametrizationError) as info:
        param_groups(model(), pred, optimizer=optimizer)
    assert fragment in str(info.value)


def test_a_plain_float_lr_is_not_checked() -> None:
    assert param_groups(mlp(128, 64), 0.01)

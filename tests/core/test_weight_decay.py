"""The AdamW decay timescale: tau <-> lambda in both conventions, number by number, and bad input."""

from __future__ import annotations

import math

import pytest

from scaleplan.core.weight_decay import check_weight_decay, timescale, weight_decay_for
from scaleplan.errors import InputError


@pytest.mark.parametrize(
    "lr, wd, steps, convention, tau",
    [
        (1e-3, 0.1, 1000, "torch", 10.0),  # tau_iter = 1/(1e-3 * 0.1) = 1e4 steps = 10 runs of 1000 steps
        (1e-2, 0.5, 2000, "torch", 0.1),
        (1e-2, 0.5, 2000, "independent", 1e-3),  # tau_iter = 1/0.5 = 2 steps
        (1e-3, 0.0, 1000, "torch", math.inf),
    ],
)
def test_timescale_numbers_and_inverse(lr: float, wd: float, steps: int, convention: str, tau: float) -> None:
    assert timescale(lr, wd, steps, convention) == pytest.approx(tau, rel=1e-12)
    if math.isfinite(tau):
        assert weight_decay_for(lr, tau, steps, convention) == pytest.approx(wd, rel=1e-12)


@pytest.mark.parametrize("tau", [0.0, -0.5, float("nan"), float("inf")])
def test_a_timescale_that_implies_no_positive_lambda_is_refused(tau: float) -> None:
    with pytest.raises(InputError, match="tau <= 0 implies lambda <= 0"):
        weight_decay_for(1e-3, tau, 100)


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), True, "0.1"])
def test_bad_lambda_is_refused(value) -> None:
    with pytest.raises(InputError, match="weight_decay must be a finite number >= 0"):
        check_weight_decay(value)

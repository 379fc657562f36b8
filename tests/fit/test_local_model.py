"""The local model behind smoothed regrets: an asymmetric parabola in log lr near the lowest seed mean."""

import math

import pytest

from scaleplan.fit.local_model import fit_local_model


def curve(left: float, right: float, optimum: float = 0.01, floor: float = 2.0):  # noqa: ANN201
    return lambda lr: floor * (1 + (left if lr < optimum else right) * math.log(lr / optimum) ** 2)


@pytest.mark.parametrize("left, right", [(0.05, 0.4), (0.4, 0.05), (0.1, 0.1)])
def test_recovers_an_asymmetric_minimum_between_grid_points(left: float, right: float) -> None:
    f = curve(left, right)
    lrs = [0.01 * 2 ** (k / 2 + 0.2) for k in range(-6, 6)]
    model = fit_local_model(lrs, [f(x) for x in lrs])
    assert model is not None
    assert model.min_loss == pytest.approx(2.0, rel=1e-6)
    assert model.vertex_lr == pytest.approx(0.01, rel=2e-3)
    assert (model.left, model.right) == pytest.approx((2.0 * left, 2.0 * right), rel=2e-3)
    for x in (0.01 * 2**-0.8, 0.01 * 2**0.7):
        assert model.covers(x) and model.loss(x) == pytest.approx(f(x), rel=1e-5)


def test_a_parabola_understates_the_minimum_the_local_model_does_not() -> None:
    """The reason for the model: on a curve steep above its optimum, a least-squares parabola through the five
    points around the minimum dips below the true minimum (raising every smoothed regret)."""
    import numpy as np

    f = curve(0.05, 0.5)
    lrs = [0.01 * 2 ** (k / 2 + 0.2) for k in range(-6, 6)]
    y = [f(x) for x in lrs]
    best = int(np.argmin(y))
    u = np.log(lrs[best - 2 : best + 3])
    c = np.polyfit(u, y[best - 2 : best + 3], 2)
    parabola_min = c[2] - c[1] ** 2 / (4 * c[0])
    assert parabola_min < 2.0 * (1 - 0.004)  # more than 0.4% too low
    assert fit_local_model(lrs, y).min_loss == pytest.approx(2.0, rel=1e-6)


def test_window_is_one_octave_and_needs_both_sides() -> None:
    f = curve(0.1, 0.1)
    lrs = [0.01 * 2 ** (k / 2) for k in range(-6, 7)]
    model = fit_local_model(lrs, [f(x) for x in lrs])
    assert (model.low_lr, model.high_lr, model.n_points) == pytest.approx((0.005, 0.02, 5))
    assert not model.covers(0.0049) and model.covers(0.02)
    edge = [0.01 * 2 ** (k / 2) for k in range(0, 6)]  # the lowest mean is the first lr: not bracketed
    assert fit_local_model(edge, [f(x) for x in edge]) is None
    assert fit_local_model(lrs[:3], [1.0, 0.9, 1.0]) is None  # too few points
    skipped = fit_local_model(lrs, [f(x) if i != 6 else math.inf for i, x in enumerate(lrs)])  # the optimum's lr diverged
    assert skipped.vertex_lr == pytest.approx(0.01, rel=2e-3) and skipped.n_points == 4

"""Tests of scaleplan.fit.power_sum: gradients, the vectorised grid, constraints, starts and bootstrap restarts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import check_grad

from scaleplan.errors import FitError
from scaleplan.fit.power_sum import (
    EXPONENT_GRID,
    Constraints,
    PowerSumModel,
    _distinct,
    _ProfileStarts,
    fit_power_sum,
    huber_objective,
)

RNG = np.random.default_rng(0)
LN_X = RNG.normal(20.0, 2.0, (2, 30))
LN_Y = RNG.normal(1.0, 0.1, 30)
WEIGHTS = RNG.integers(1, 3, 30).astype(float)


@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("delta", [1e-3, 1.0])
def test_gradient_matches_finite_differences(linear: bool, delta: float) -> None:
    theta = np.array([5.0, 6.0, 0.5, 0.3, 0.28])
    value = lambda t: huber_objective(t, LN_X, LN_Y, delta, WEIGHTS, linear)[0]  # noqa: E731
    grad = lambda t: huber_objective(t, LN_X, LN_Y, delta, WEIGHTS, linear)[1]  # noqa: E731
    assert check_grad(value, grad, theta) < 1e-5 * np.linalg.norm(grad(theta))


@pytest.mark.parametrize("linear", [False, True])
def test_each_start_carries_the_best_coefficients_for_its_exponents(linear: bool) -> None:
    """On exact data whose exponents lie on the grid, the profiled start at those exponents is the law itself."""
    alpha, beta = EXPONENT_GRID[30], EXPONENT_GRID[25]
    ln_x = np.log(np.stack([np.geomspace(1e7, 1e10, 12), np.geomspace(1e9, 1e12, 12)[::-1]]))
    y = 1.7 + 400.0 * np.exp(-alpha * ln_x[0]) + 2000.0 * np.exp(-beta * ln_x[1])
    model = PowerSumModel(("A", "B"), ("alpha", "beta"), Constraints())
    starts = _ProfileStarts(model, ln_x, np.log(y), 1e-3, linear)
    assert starts.size == 48 * 48
    (best,) = starts.best(np.ones(12), 1)
    assert model.natural(best) == pytest.approx([1.7, 400.0, 2000.0, alpha, beta], rel=1e-6)


def test_profiled_coefficients_are_never_negative() -> None:
    """Data that a negative E would fit best: the profile keeps E >= 0 (active set), so every start is a valid law."""
    ln_x = np.log(np.geomspace(1e7, 1e9, 10))[None]
    y = -0.5 + 40.0 * np.exp(-0.2 * ln_x[0])
    model = PowerSumModel(("A",), ("alpha",), Constraints())
    natural = _ProfileStarts(model, ln_x, np.log(y), 1e-3, False)._profile(np.ones(10))
    assert np.all(natural[:, :2] >= 0)


def test_ties_and_fixed_values_shrink_the_free_parameters() -> None:
    model = PowerSumModel(("A", "B"), ("alpha", "beta"), Constraints(fixed={"E": 1.5}, tied=(("beta", "alpha"),)))
    assert model.free == ("A", "B", "alpha")
    grid = model.exponent_grid()
    assert grid.shape == (48, 2) and np.all(grid[:, 0] == grid[:, 1])
    E, A, B, alpha, beta = model.natural(np.array([np.log(400.0), np.log(300.0), 0.3]))
    assert (E, A, B, alpha, beta) == pytest.approx((1.5, 400.0, 300.0, 0.3, 0.3))
    no_constant = PowerSumModel(("A",), ("alpha",), Constraints(fixed={"E": 0.0}))
    assert no_constant.natural(np.array([np.log(2.0), 0.5]))[0] == 0.0


@pytest.mark.parametrize(
    "constraints, message",
    [
        (Constraints(fixed={"F": 1.0}), "unknown parameter 'F'"),
        (Constraints(fixed={"alpha": -0.1}), "fixed alpha must be positive"),
        (Constraints(tied=(("beta", "A"),)), "only exponents can be tied"),
        (Constraints(tied=(("beta", "alpha"),), fixed={"alpha": 0.3}), "tie two distinct free parameters"),
    ],
)
def test_bad_constraints(constraints: Constraints, message: str) -> None:
    with pytest.raises(FitError, match=message):
        PowerSumModel(("A", "B"), ("alpha", "beta"), constraints)


def test_a_fixed_zero_constant_fits_a_pure_power_law() -> None:
    x = np.geomspace(1e16, 1e19, 8)
    fit = fit_power_sum(np.log(x)[None], np.log(50.0 * x**-0.1), PowerSumModel(("A",), ("alpha",), Constraints(fixed={"E": 0.0})),
                        delta=1e-3, starts=4)
    assert fit.params["E"] == 0.0 and fit.params["alpha"] == pytest.approx(0.1, rel=1e-6)
    assert fit.params["A"] == pytest.approx(50.0, rel=1e-5) and fit.n_free == 2


def test_too_few_points_for_the_free_parameters() -> None:
    with pytest.raises(FitError, match="5 points cannot determine 5 free parameters"):
        fit_power_sum(LN_X[:, :5], LN_Y[:5], PowerSumModel(("A", "B"), ("alpha", "beta"), Constraints()), delta=1e-3)


def test_distinct_basins_are_one_per_objective_level() -> None:
    results = [(1.0, np.array([1.0])), (1.0 + 1e-7, np.array([1.1])), (2.0, np.array([5.0])), (2.0, np.array([5.1]))]
    assert [x[0] for x in _distinct(results)] == [1.0, 5.0]

"""Tests of scaleplan.fit.power_law: exact recovery, statsmodels intervals, cluster-robust kind, errors."""

from __future__ import annotations

import numpy as np
import pytest

from scaleplan.errors import ScaleplanError
from scaleplan.fit.power_law import fit_power_law, percentile_ci

N = np.array([1e6, 1e6, 4e6, 4e6, 1.6e7, 1.6e7])
D = np.array([1e8, 1e9, 1e8, 1e9, 1e8, 1e9])


@pytest.mark.parametrize("a, alpha, beta", [(2.0, -0.5, 0.3), (0.01, -0.77, 0.2), (40.0, 0.1, -0.25)])
def test_exact_recovery(a: float, alpha: float, beta: float) -> None:
    fit = fit_power_law("lr", a * N**alpha * D**beta, {"N": N, "D": D})
    assert fit.intercept == pytest.approx(np.log(a), abs=1e-9)
    assert fit.exponents == pytest.approx({"N": alpha, "D": beta}, abs=1e-10)
    assert fit.n_points == 6 and fit.dof == 3 and fit.covariance.shape == (3, 3)
    assert fit.predict({"N": 2e6, "D": 5e8}) == pytest.approx(a * 2e6**alpha * 5e8**beta)


def test_confidence_interval_is_statsmodels_t_interval() -> None:
    noise = np.array([0.05, -0.03, 0.02, -0.04, 0.01, 0.0])
    fit = fit_power_law("lr", 2.0 * N**-0.5 * np.exp(noise), {"N": N})
    import statsmodels.api as sm

    ref = sm.OLS(np.log(2.0 * N**-0.5 * np.exp(noise)), sm.add_constant(np.log(N))).fit()
    assert fit.exponents["N"] == pytest.approx(ref.params[1])
    assert fit.conf_int["N"] == pytest.approx(tuple(ref.conf_int(0.05)[1]))
    assert fit.residual_variance == pytest.approx(ref.scale)
    assert fit.covariance_kind == "ols"


def test_groups_give_cluster_robust_covariance() -> None:
    n = np.repeat([1e6, 2e6, 4e6, 8e6, 1.6e7], 3)
    y = 3.0 * n**-0.6 * np.exp(np.tile([-0.02, 0.0, 0.02], 5) + np.repeat([0.03, -0.01, 0.0, 0.02, -0.03], 3))
    fit = fit_power_law("lr", y, {"N": n}, groups=np.repeat(np.arange(5), 3))
    assert fit.covariance_kind == "cluster-robust (by cell)"
    assert fit.dof == 4  # clusters - 1, not points - 2
    assert fit.n_points == 15


def test_weighted_fit() -> None:
    fit = fit_power_law("lr", 2.0 * N**-0.5, {"N": N}, weights=np.arange(1.0, 7.0))
    assert fit.covariance_kind == "wls" and fit.exponents["N"] == pytest.approx(-0.5)


@pytest.mark.parametrize(
    "y, predictors, message",
    [
        (np.ones(3), {"N": np.array([1e6, 1e6, 1e6])}, "at least 2 distinct values of N"),
        (np.ones(3), {"N": np.array([1.0, 2.0, 4.0]), "D": np.array([2.0, 4.0, 8.0])}, "collinear"),
        (np.array([1.0, -1.0, 1.0]), {"N": np.array([1.0, 2.0, 4.0])}, "positive and finite"),
    ],
)
def test_errors(y: np.ndarray, predictors: dict, message: str) -> None:
    with pytest.raises(ScaleplanError, match=message):
        fit_power_law("lr", y, predictors)


def test_no_residual_dof_gives_no_covariance() -> None:
    fit = fit_power_law("lr", np.array([1.0, 0.5]), {"N": np.array([1.0, 4.0])})
    assert fit.exponents["N"] == pytest.approx(-0.5) and fit.covariance is None and fit.dof is None


def test_percentile_ci() -> None:
    assert percentile_ci(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))
    assert np.isnan(percentile_ci(np.array([np.nan]))[0])

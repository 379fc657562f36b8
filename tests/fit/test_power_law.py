"""Tests of scaleplan.fit.power_law: exact recovery, statsmodels intervals, cluster-robust kind, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import t as t_dist

from scaleplan.errors import FitError, ScaleplanError
from scaleplan.fit.power_law import checked_covariance, fit_power_law, percentile_ci

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
    assert fit.covariance_kind.startswith("wls") and fit.exponents["N"] == pytest.approx(-0.5)


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


def test_no_residual_dof_gives_no_covariance_and_says_so() -> None:
    fit = fit_power_law("lr", np.array([1.0, 0.5]), {"N": np.array([1.0, 4.0])})
    assert fit.exponents["N"] == pytest.approx(-0.5) and fit.covariance is None and fit.dof is None
    assert fit.flags == ("lr: 2 cells for 2 coefficients leave no residual degrees of freedom: the law passes through "
                         "every cell, so nothing tests it and it has no interval; sweep more cells (sizes or D)",)


def test_many_points_in_as_few_cells_as_coefficients_give_no_interval() -> None:
    """The band method's runs of 2 cells: the cells are the observations, so a 2-coefficient law has 0 dof (it
    had a t interval with points - 2 = 8 dof, as if the band's runs were independent cells)."""
    n = np.repeat([1e6, 4e6], 5)
    y = 2.0 * n**-0.5 * np.exp(np.tile([-0.2, -0.1, 0.0, 0.1, 0.2], 2))
    fit = fit_power_law("lr", y, {"N": n}, groups=np.repeat([0, 1], 5))
    assert fit.covariance is None and fit.dof is None and np.isnan(fit.conf_int["N"][0])
    assert "2 cells for 2 coefficients leave no residual degrees of freedom" in fit.flags[0]


def test_weighted_optima_exactly_on_the_law_keep_their_own_variance() -> None:
    """Argmin optima on a grid that moves with N lie exactly on a power law: the weighted residual scale is 0, and the
    interval must still be that of the cells' own variances (1/weights), not zero-width."""
    n = np.array([1e6, 4e6, 1.6e7])
    sd = np.log(2) / 4  # each optimum located to a quarter octave
    fit = fit_power_law("lr", 20.0 * n**-0.5, {"N": n}, weights=np.full(3, 1 / sd**2))
    x = np.log(n)
    half = t_dist.ppf(0.975, 1) * sd / np.sqrt(np.sum((x - x.mean()) ** 2))
    assert fit.conf_int["N"] == pytest.approx((-0.5 - half, -0.5 + half))
    assert fit.covariance_kind == "wls, scale floored at 1"
    noisy = fit_power_law("lr", 20.0 * n**-0.5 * np.exp([0.5, -1.0, 0.5]), {"N": n}, weights=np.full(3, 1 / sd**2))
    assert noisy.covariance_kind == "wls"  # a scatter above the cells' variances keeps the residual scale


def test_percentile_ci() -> None:
    assert percentile_ci(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))
    assert np.isnan(percentile_ci(np.array([np.nan]))[0])


def test_a_regressor_spanning_less_than_2x_is_refused() -> None:
    """The issue's case: N spanning 0.26% gave lr ~ N^71; now one line saying why, before any fit."""
    n = np.array([2.140e8, 2.140e8, 2.1456e8, 2.1456e8])  # 0.26% apart
    d = np.array([1e9, 4e9, 1e9, 4e9])
    with pytest.raises(FitError, match=r"N spans only 1.003x \(2.14e\+08 to 2.1456e\+08\); fitting an exponent needs at least 2x") as err:
        fit_power_law("lr", np.array([1e-3, 2e-3, 1.1e-3, 2.1e-3]), {"N": n, "D": d})
    assert "\n" not in str(err.value)
    fit = fit_power_law("lr", 2.0 * N**-0.5, {"N": N})  # 16x: fine
    assert fit.exponents["N"] == pytest.approx(-0.5)


@pytest.mark.parametrize(
    "cov, semidefinite, problem",
    [
        ([[1.0, 0.0], [0.0, np.inf]], False, "is not finite"),
        ([[1.0, 0.5], [0.4, 1.0]], False, "is not symmetric"),
        ([[1.0, 2.0], [2.0, 1.0]], False, "is not positive definite"),
        ([[1.0, 1.0], [1.0, 1.0]], False, "is not positive definite"),  # singular: fine only where semidefinite is allowed
        ([[1.0, 2.0], [2.0, 1.0]], True, "is not positive semidefinite"),
    ],
)
def test_checked_covariance_refuses_what_must_not_reach_a_law_file(cov: list, semidefinite: bool, problem: str) -> None:
    kept, why = checked_covariance(np.array(cov), semidefinite)
    assert kept is None and why.startswith(problem)


def test_checked_covariance_keeps_good_matrices() -> None:
    assert checked_covariance(np.array([[2.0, 0.5], [0.5, 1.0]]))[1] is None
    assert checked_covariance(np.array([[1.0, 1.0], [1.0, 1.0]]), semidefinite=True)[1] is None  # tied parameters


def test_bootstrap_over_cells_resamples_whole_cells() -> None:
    """With a cluster of 3 points per cell, the bootstrap resamples cells: replicates never split a cell."""
    rng = np.random.default_rng(1)
    n = np.repeat(np.geomspace(1e6, 1e8, 6), 3)
    y = 3.0 * n**-0.6 * np.exp(np.repeat(rng.normal(0, 0.05, 6), 3) + rng.normal(0, 0.01, 18))
    fit = fit_power_law("lr", y, {"N": n}, groups=np.repeat(np.arange(6), 3), n_cell_boot=300)
    assert fit.n_cells == 6 and fit.n_cell_boot == 300 and fit.cell_bootstrap_covariance.shape == (2, 2)
    lo, hi = fit.cell_bootstrap_ci["N"]
    assert lo < fit.exponents["N"] < hi
    assert fit_power_law("lr", y, {"N": n}, groups=np.repeat(np.arange(6), 3), n_cell_boot=0).cell_bootstrap_covariance is None


def test_few_cells_bootstrap_is_skipped_when_it_cannot_vary() -> None:
    """2 cells for 2 coefficients: every replicate is the same exact fit or degenerate, so no bootstrap covariance."""
    fit = fit_power_law("lr", np.array([1.0, 0.5, 0.3]), {"N": np.array([1.0, 4.0, 16.0])}, groups=np.array([0, 1, 1]))
    assert fit.n_cells == 2 and fit.cell_bootstrap_covariance is None and fit.n_cell_boot == 0


def test_a_correction_replaces_the_log_of_its_variable_and_recovers_the_finite_width_form() -> None:
    """ln y = a + c (W/32)^-1/2 exactly: recovered with no W exponent; the law levels off at exp(a), where a power
    law through the same points keeps falling."""
    w = np.array([32.0, 64.0, 128.0, 256.0])
    y = np.exp(-5.86 + 1.70 * (w / 32) ** -0.5)
    fit = fit_power_law("lr", y, {"W": w}, corrections={"W": 0.5})
    assert fit.exponents == {} and fit.inputs() == ["W"] and fit.keys() == ["intercept", "W^-0.5"]
    (term,) = fit.corrections
    assert (term.centre, term.power) == (32.0, 0.5)
    assert fit.intercept == pytest.approx(-5.86, abs=1e-9) and term.coefficient == pytest.approx(1.70, abs=1e-9)
    assert fit.predict({"W": 4096.0}) == pytest.approx(np.exp(-5.86 + 1.70 / np.sqrt(128)), rel=1e-9)
    power = fit_power_law("lr", y, {"W": w})
    assert power.predict({"W": 4096.0}) < 0.5 * fit.predict({"W": 4096.0})
    assert fit.design({"W": w}).shape == (4, 2)


def test_nearly_collinear_regressors_are_flagged() -> None:
    """D = 20 N with 1% off at one size: the rank check passes and the fit printed N^-1.71 D^1.31, exponents the data
    cannot separate; now flagged. The independent N x D design is not."""
    n = np.array([1e6, 4e6, 1.6e7, 6.4e7])
    d = 20 * n * np.array([1.0, 1.01, 1.0, 1.0])
    fit = fit_power_law("lr", 20 * n**-0.5 * np.exp([0.01, -0.02, 0.015, 0.0]), {"N": n, "D": d})
    assert fit.flags[0] == ("lr: ln N and ln D are nearly collinear over the fitted points (correlation 1.00000): their "
                            "exponents are not separately determined (read their intervals), and a prediction off the swept "
                            "D-to-N relation extrapolates; sweep N and D independently")
    assert len(fit.flags) == 2 and "leave 1 residual degree of freedom" in fit.flags[1]  # 4 points, 3 coefficients
    assert fit_power_law("lr", 2.0 * N**-0.5 * D**0.3 * np.exp([0.01, 0, -0.01, 0, 0.01, 0]), {"N": N, "D": D}).flags == ()


def test_one_residual_degree_of_freedom_is_flagged_with_its_quantile() -> None:
    """3 widths for a 2-coefficient law: the t interval's quantile is 12.7, a prediction interval 16x out spans ~30
    octaves (simulated), and nothing said why; 4 widths are not flagged."""
    widths = np.array([64.0, 128.0, 256.0, 512.0])
    lr = 0.5 * widths**-0.5 * np.exp([0.02, -0.03, 0.01, 0.0])
    three = fit_power_law("lr", lr[:3], {"W": widths[:3]})
    assert three.dof == 1 and three.flags == (
        "lr: 3 cells for 2 coefficients leave 1 residual degree of freedom: the t interval's 95% quantile is 12.7 (normal: "
        "1.96), so its prediction intervals span orders of magnitude; sweep more sizes (or D): 2 dof give 4.3, 3 give 3.2",)
    assert fit_power_law("lr", lr, {"W": widths}).flags == ()


def test_a_span_of_exactly_the_minimum_read_back_through_logs_is_accepted() -> None:
    """D of 1e10 and 2e10 through exp(log(D)) measures 1.9999999999999973x: it spans 2x (a loss law once refused it,
    saying 'spans only 2x ... needs at least 2x')."""
    from scaleplan.fit.power_law import check_span

    check_span("loss law", "D", np.exp(np.log(np.array([1e10, 2e10]))), min_span=2.0)
    with pytest.raises(FitError, match="spans only 1.99x"):
        check_span("loss law", "D", np.array([1e10, 1.99e10]), min_span=2.0)

"""Tests of scaleplan.fit.loss_law: published refits (Epoch, Gadre et al.), recovery, starts, flags, refusals."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from scaleplan.errors import FitError
from scaleplan.fit import loss_law as loss_law_module
from scaleplan.fit.blas import single_blas_thread
from scaleplan.fit.loss_law import fit_loss_law
from scaleplan.fit.power_sum import Constraints, huber_objective

DATA = Path(__file__).resolve().parents[1] / "data"


def test_epoch_chinchilla_refit() -> None:
    """Huber (delta 1e-3) on log L, 5 highest losses dropped: Epoch's E=1.817, alpha=0.3478, beta=0.3658 (tolerance 0.01)."""
    points = pd.read_csv(DATA / "epoch_chinchilla_svg_extracted_data.csv").sort_values("loss").iloc[:-5]
    n = points["Model Size"].to_numpy()
    d = points["Training FLOP"].to_numpy() / (6 * n)
    fit = fit_loss_law(n, d, points["loss"].to_numpy(), starts=6, n_boot=4, seed=0)
    assert fit.law.alpha == pytest.approx(0.3478, abs=0.01)
    assert fit.law.beta == pytest.approx(0.3658, abs=0.01)
    assert fit.law.E == pytest.approx(1.817, abs=0.02)
    assert (fit.law.alpha, fit.law.beta, fit.law.E) == pytest.approx((0.3473, 0.3672, 1.8172), abs=2e-4)  # this implementation
    assert fit.n_points == 240 and fit.grid_size == 48 * 48 and fit.starts_run == 6 and 1 <= fit.starts_reached <= 6
    assert fit.objective == pytest.approx(1.01827e-3, rel=1e-4)
    assert np.array(fit.law.covariance).shape == (5, 5)
    assert set(fit.conf_int) == {"E", "A", "B", "alpha", "beta"}
    assert "reached by" in fit.describe() and "2304-point grid" in fit.describe()


GADRE = DATA / "gadre_overtraining_c4_val_loss.csv"
FIT_MODELS = ("d=96_l=8_h=4", "d=512_l=8_h=4", "d=576_l=24_h=8", "d=1024_l=24_h=8")


def gadre_points(dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gadre et al.'s fitting set (4 models at M = 20 tokens/param, the smallest also at M = 320) and everything."""
    data = pd.read_csv(GADRE)
    data = data[data["dataset"] == dataset]
    fit = data[(data["model"].isin(FIT_MODELS) & (data["M"] == 20)) | ((data["model"] == FIT_MODELS[0]) & (data["M"] == 320))]
    return fit, data


def test_gadre_tied_exponent_law_and_its_held_out_errors() -> None:
    """Gadre et al. 2024 fit L = E + a N^-eta + b' D^-eta (one exponent) by least squares on L (scipy curve_fit)
    on 5 small runs, then predict a 1.4B model at M = 640 and a 6.9B model at M = 20. Their notebook
    (scaling_explorer.ipynb, RedPajama, C4 eval) prints relative errors 0.7103% and 0.7320%; their code gives
    E = 1.83665, A = 166.211, eta = 0.272851, B = 366.687 * 6^(-eta/2) = 287.2. Reproduced to 1e-3 (relative)."""
    points, data = gadre_points("rpj")
    fit = fit_loss_law(points["N"], points["D"], points["loss_c4_val"], delta=1.0, space="linear",
                       constraints=Constraints(tied=(("beta", "alpha"),)), starts=10)
    law = fit.law
    assert law.alpha == law.beta == pytest.approx(0.272851, rel=1e-3)
    assert (law.E, law.A) == pytest.approx((1.83665, 166.211), rel=1e-3)
    assert law.B == pytest.approx(366.687 * 6 ** (-0.272851 / 2), rel=1e-3)
    for model, m, published in (("open_lm_1b", 640, 0.7103), ("open_lm_7b", 20, 0.7320)):
        row = data[(data["model"] == model) & (data["M"] == m)].iloc[0]
        error = abs(law.loss(row["N"], row["D"]) / row["loss_c4_val"] - 1) * 100
        assert error == pytest.approx(published, abs=0.001), model
    assert fit.constraints.describe() == "alpha = beta" and "Huber (delta 1) on L over 5 points" in fit.describe()


def test_loss_space_matters_on_five_points() -> None:
    """The same 5 points fitted by Huber on log L (the default) give a different law: the objective is stated."""
    points, _ = gadre_points("rpj")
    log_fit = fit_loss_law(points["N"], points["D"], points["loss_c4_val"], constraints=Constraints(tied=(("beta", "alpha"),)), starts=10)
    assert log_fit.law.alpha == pytest.approx(0.2670, abs=5e-4) and "on log L" in log_fit.describe()


TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def chinchilla_grid(law: dict = TRUE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, d = (g.ravel() for g in np.meshgrid(np.geomspace(1e7, 1e10, 6), np.geomspace(1e9, 1e12, 6)))
    return n, d, law["E"] + law["A"] / n ** law["alpha"] + law["B"] / d ** law["beta"]


def test_exact_recovery_of_a_noiseless_law() -> None:
    fit = fit_loss_law(*chinchilla_grid(), starts=4)
    for key, value in TRUE.items():
        assert getattr(fit.law, key) == pytest.approx(value, rel=1e-3), key
    assert fit.objective < 1e-12


def test_fixed_and_tied_parameters() -> None:
    fixed = fit_loss_law(*chinchilla_grid(), starts=4, constraints=Constraints(fixed={"E": 1.69}))
    assert fixed.law.E == 1.69 and fixed.law.alpha == pytest.approx(0.34, rel=1e-3)
    tied_law = dict(TRUE, beta=0.34)
    tied = fit_loss_law(*chinchilla_grid(tied_law), starts=4, constraints=Constraints(tied=(("beta", "alpha"),)))
    assert tied.law.alpha == tied.law.beta == pytest.approx(0.34, rel=1e-3)


@pytest.mark.parametrize("compute", [1e20, 5.76e23, 1e25])
def test_compute_optimal_minimises_loss_on_the_budget(compute: float) -> None:
    fit = fit_loss_law(*chinchilla_grid(), starts=2)
    n_opt, d_opt = fit.compute_optimal(compute)
    assert 6 * n_opt * d_opt == pytest.approx(compute)
    grid = n_opt * np.geomspace(0.5, 2, 201)
    losses = [fit.law.loss(x, compute / (6 * x)) for x in grid]
    assert grid[int(np.argmin(losses))] == pytest.approx(n_opt, rel=0.01)


def test_collapsed_irreducible_loss_is_flagged() -> None:
    """Step Law's raw (unsmoothed) cell minima drive E to ~0: the data do not identify it, and the fit says so."""
    raw = pd.read_csv(DATA / "steplaw_dense_lr_bs_loss.csv").groupby(["N", "D"])["loss"].min().reset_index()
    fit = fit_loss_law(raw["N"], raw["D"], raw["loss"], starts=8)
    assert fit.law.E < 1e-3
    assert len(fit.flags) == 1 and "collapsed to ~0: the data do not identify an irreducible loss" in fit.flags[0]
    assert fit_loss_law(raw["N"], raw["D"], raw["loss"], starts=8, constraints=Constraints(fixed={"E": 1.5})).flags == ()


def test_a_non_finite_bootstrap_covariance_never_reaches_the_law(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loss_law_module.np, "cov", lambda *a, **k: np.full((5, 5), np.inf))
    fit = fit_loss_law(*chinchilla_grid(), starts=2, n_boot=3)
    assert fit.law.covariance is None
    assert fit.flags == ("loss law: bootstrap covariance is not finite; not written",)


@pytest.mark.parametrize(
    "n, d, loss, message",
    [
        ([1e6, 2e6, 4e6], [1e9, 2e9, 4e9], [3.0, 2.9, 2.8], "3 points cannot determine 5 free parameters"),
        (np.linspace(1.0e8, 1.0026e8, 6), np.geomspace(1e9, 1e10, 6), np.linspace(3, 2, 6), r"N spans only 1.003x"),
        (np.geomspace(1e6, 1e7, 6), np.geomspace(1e9, 1e10, 6), [3, 2, -1, 2, 2, 2], "every loss must be positive"),
    ],
)
def test_errors(n: list, d: list, loss: list, message: str) -> None:
    with pytest.raises(FitError, match=message):
        fit_loss_law(np.asarray(n), np.asarray(d), np.asarray(loss, dtype=float))


# The starts scaleplan used before the dense grid: (a, b, e) in {0, 10, 20}^2 x {-1, 0, 1}, alpha = beta = 0.5.
OLD_STARTS = list(itertools.product((0.0, 10.0, 20.0), (0.0, 10.0, 20.0), (-1.0, 0.0, 1.0), (0.5,), (0.5,)))
# Hoffmann et al.'s grid over all five parameters (a, b in {0..25}, e in {-1..1}, alpha, beta in {0..2}).
HOFFMANN = np.array(list(itertools.product(*[np.arange(0.0, 30.0, 5.0)] * 2, np.arange(-1.0, 1.5, 0.5), *[np.arange(0.0, 2.5, 0.5)] * 2)))
STEEP = dict(E=0.85, A=1.76e19, B=1.77e12, alpha=1.9, beta=1.13)  # steep terms: a multi-basin landscape


def steep_points(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """25 runs (5 sizes x 5 token ratios 5..200) of the STEEP law with 1% log-normal noise."""
    n = np.geomspace(1.1e9, 5.3e10, 5).repeat(5)
    d = n * np.tile(np.geomspace(5, 200, 5), 5)
    loss = STEEP["E"] + STEEP["A"] / n ** STEEP["alpha"] + STEEP["B"] / d ** STEEP["beta"]
    return n, d, loss * np.exp(np.random.default_rng(seed).normal(0, 0.01, 25))


def best_lbfgs(n: np.ndarray, d: np.ndarray, loss: np.ndarray, starts: list) -> tuple[float, float]:
    """(objective, beta) of the best L-BFGS run from `starts` (the old procedure)."""
    ln_x, ln_y, w = np.log(np.stack([n, d])), np.log(loss), np.ones(loss.size)
    with single_blas_thread():  # several BLAS threads make each L-BFGS step ~10x slower on a busy machine
        runs = [minimize(huber_objective, np.array(s, dtype=float), args=(ln_x, ln_y, 1e-3, w), jac=True, method="L-BFGS-B")
                for s in starts]
    best = min(runs, key=lambda r: r.fun)
    return best.fun * 1e-6, best.x[4]


@pytest.mark.parametrize("seed, old, label", [(6, OLD_STARTS, "the old 27 starts"), (0, None, "the best 20 of Hoffmann's 4500")])
def test_starts_that_used_to_miss_the_global_optimum(seed: int, old: list | None, label: str) -> None:
    """Regression: the old procedure (27 starts, scipy's default L-BFGS tolerances) stops at beta ~ 0.08 with an ~8x
    higher objective on seed 6 (from these starts, tight tolerances would have got there: the early stop is the
    bug); ranking Hoffmann's full grid and running the best 20 ends in the wrong basin on seed 0 even with tight
    tolerances (the issue's case had beta 0.48 where a dense grid found 0.645). The profiled grid finds ~1.15."""
    n, d, loss = steep_points(seed)
    if old is None:  # rank Hoffmann's grid by objective, as "evaluate all, L-BFGS from the best few" would
        ln_x, ln_y, w = np.log(np.stack([n, d])), np.log(loss), np.ones(loss.size)
        values = np.array([huber_objective(row, ln_x, ln_y, 1e-3, w)[0] for row in HOFFMANN])
        old = list(HOFFMANN[np.argsort(values)[:20]])
    old_objective, old_beta = best_lbfgs(n, d, loss, old)
    fit = fit_loss_law(n, d, loss, starts=5)
    assert old_beta < 0.1 and fit.law.beta == pytest.approx(1.15, abs=0.02), label
    assert old_objective > 5 * fit.objective and fit.starts_reached >= 4


def test_bootstrap_replicates_can_leave_the_full_data_basin() -> None:
    """Step Law's raw cell minima have several basins: some replicates' optima are not reachable from the
    full-data optimum, and the restarts find them (the old bootstrap restarted from the optimum only)."""
    raw = pd.read_csv(DATA / "steplaw_dense_lr_bs_loss.csv").groupby(["N", "D"])["loss"].min().reset_index()
    fit = fit_loss_law(raw["N"], raw["D"], raw["loss"], starts=4, n_boot=24, seed=0)  # ~1 in 6 leaves (by CPU rounding)
    assert fit.boot_left_basin >= 1 and f"({fit.boot_left_basin} left the full-data basin)" in fit.describe()

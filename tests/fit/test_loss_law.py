"""Tests of scaleplan.fit.loss_law: Epoch's Chinchilla refit, exact recovery, compute-optimal sizes, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaleplan.errors import ScaleplanError
from scaleplan.fit.loss_law import fit_loss_law

DATA = Path(__file__).resolve().parents[1] / "data"


def test_epoch_chinchilla_refit() -> None:
    """Huber (delta 1e-3) on log L, 5 highest losses dropped: Epoch's E=1.817, alpha=0.3478, beta=0.3658."""
    points = pd.read_csv(DATA / "epoch_chinchilla_svg_extracted_data.csv").sort_values("loss").iloc[:-5]
    n = points["Model Size"].to_numpy()
    d = points["Training FLOP"].to_numpy() / (6 * n)
    fit = fit_loss_law(n, d, points["loss"].to_numpy(), n_boot=10, seed=0)
    assert fit.law.alpha == pytest.approx(0.3478, abs=0.01)
    assert fit.law.beta == pytest.approx(0.3658, abs=0.01)
    assert fit.law.E == pytest.approx(1.817, abs=0.02)
    assert fit.n_points == 240
    assert np.array(fit.law.covariance).shape == (5, 5)
    assert set(fit.conf_int) == {"E", "A", "B", "alpha", "beta"}


TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def test_exact_recovery_of_a_noiseless_law() -> None:
    n, d = (g.ravel() for g in np.meshgrid(np.geomspace(1e7, 1e10, 6), np.geomspace(1e9, 1e12, 6)))
    loss = TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]
    fit = fit_loss_law(n, d, loss)
    for key, value in TRUE.items():
        assert getattr(fit.law, key) == pytest.approx(value, rel=1e-3), key
    assert fit.objective < 1e-12


@pytest.mark.parametrize("compute", [1e20, 5.76e23, 1e25])
def test_compute_optimal_minimises_loss_on_the_budget(compute: float) -> None:
    n = np.geomspace(1e7, 1e10, 6).repeat(6)
    d = np.tile(np.geomspace(1e9, 1e12, 6), 6)
    fit = fit_loss_law(n, d, TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"])
    n_opt, d_opt = fit.compute_optimal(compute)
    assert 6 * n_opt * d_opt == pytest.approx(compute)
    grid = n_opt * np.geomspace(0.5, 2, 201)
    losses = [fit.law.loss(x, compute / (6 * x)) for x in grid]
    assert grid[int(np.argmin(losses))] == pytest.approx(n_opt, rel=0.01)


@pytest.mark.parametrize(
    "n, d, loss, message",
    [
        ([1e6] * 3, [1e9] * 3, [3.0] * 3, "at least 6"),
        ([1e6] * 6, np.geomspace(1e9, 1e10, 6), np.linspace(3, 2, 6), "2 distinct values of N"),
        (np.geomspace(1e6, 1e7, 6), np.geomspace(1e9, 1e10, 6), [3, 2, -1, 2, 2, 2], "every loss must be positive"),
    ],
)
def test_errors(n: list, d: list, loss: list, message: str) -> None:
    with pytest.raises(ScaleplanError, match=message):
        fit_loss_law(np.asarray(n), np.asarray(d), np.asarray(loss, dtype=float))

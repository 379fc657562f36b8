"""Tests of scaleplan.fit.asymmetry: the flag for parabola optima that lean to the flat side of asymmetric curves."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from scaleplan.fit.asymmetry import MIN_SHIFT_OCTAVES, asymmetric_optima, cell_shifts, systematic
from scaleplan.fit.pipeline import FitOptions, SweepData, SweepFit, fit_sweep

SIZES = (1e6, 4e6, 1.6e7, 6.4e7)


def _sweep(above: float = 1.0, below: float = 1.0, end_cells: int = 0, noise: float = 0.001) -> pd.DataFrame:
    """4 sizes, 11 lrs half an octave apart, 3 seeds; loss rises 3% one octave below lr* times `below`, one octave
    above times `above`. The first `end_cells` cells have lr* at their grid's top lr (unbracketed)."""
    rng = np.random.default_rng(0)
    rows = []
    for i, n in enumerate(SIZES):
        star = 0.02 * (n / 1e6) ** -0.5
        centre = star * 2 ** (-2.5 if i < end_cells else 0.3 * (i - 1.5))
        for lr in centre * 2 ** (0.5 * np.arange(-5, 6)):
            u = math.log(lr / star)
            mean = 3.0 * (1 + 0.03 * (u / math.log(2)) ** 2 * (above if u > 0 else below))
            rows += [{"N": n, "lr": lr, "seed": s, "loss": mean * (1 + noise * rng.standard_normal())} for s in range(3)]
    return pd.DataFrame(rows)


def _fit(frame: pd.DataFrame, method: str | None = None) -> SweepFit:
    return fit_sweep(SweepData(frame, "sim.csv", None), FitOptions(n_boot=0, loss_law=False, method=method), name="sim",
                     title=None, command="scaleplan fit sim.csv")


def _shifts(fitted: SweepFit) -> list[float]:
    assert fitted.hyper is not None
    return [s.octaves for s in cell_shifts(fitted.hyper, fitted.trials)]


def _flag(fitted: SweepFit) -> list[str]:
    return [f for f in fitted.flags if "asymmetric fit" in f]


def _median(flag: str) -> float:
    found = re.search(r"sits ([0-9.]+) octave", flag)
    assert found is not None, flag
    return float(found.group(1))


def test_a_sweep_steeper_above_its_optima_is_flagged_with_how_far_and_which_way() -> None:
    """3x steeper above lr*: the parabola puts every cell's lr* about 0.2 octave low, and the law file (so every
    prediction from it) says so."""
    fitted = _fit(_sweep(above=3.0))
    shifts = _shifts(fitted)
    assert len(shifts) == 4 and all(-0.3 < s < -0.1 for s in shifts)
    (flag,) = _flag(fitted)
    assert "(4 of 4 below)" in flag and "biased low" in flag
    assert _median(flag) == pytest.approx(-float(np.median(shifts)), abs=0.005)
    assert fitted.law.flag_warnings() and any("asymmetric fit" in w for w in fitted.law.flag_warnings())


def test_a_sweep_steeper_below_its_optima_is_flagged_the_other_way() -> None:
    (flag,) = _flag(_fit(_sweep(below=3.0)))
    assert "above" in flag and "biased high" in flag and _median(flag) > MIN_SHIFT_OCTAVES


def test_a_symmetric_sweep_is_not_flagged() -> None:
    fitted = _fit(_sweep())
    assert len(_shifts(fitted)) == 4
    assert not _flag(fitted)


def test_cells_at_the_edge_or_fallen_back_are_left_out() -> None:
    """Two cells whose lr* is the top of their grid leave two usable cells: too few to call the shift systematic.
    A cell fallen back to its argmin (or flat, or re-centred) has no parabola vertex to compare."""
    fitted = _fit(_sweep(above=3.0, end_cells=2))
    assert fitted.hyper is not None and [o.at_edge for o in fitted.hyper.optima] == [True, True, False, False]
    assert len(_shifts(fitted)) == 2
    assert not _flag(fitted)
    full = _fit(_sweep(above=3.0))
    assert full.hyper is not None
    for skipped in ("fallback", "flat", "recentred"):
        hyper = replace(full.hyper, optima=[replace(o, **{skipped: i == 0}) for i, o in enumerate(full.hyper.optima)])
        assert [s.where for s in cell_shifts(hyper, full.trials)] == [o.where("N") for o in full.hyper.optima[1:]]
        assert "(3 of 3 below)" in asymmetric_optima(hyper, full.trials)[0]


def test_other_methods_are_not_checked() -> None:
    fitted = _fit(_sweep(above=3.0), method="vertex")
    assert _shifts(fitted) == [] and not _flag(fitted)


@pytest.mark.parametrize("octaves, flagged", [
    ([-0.2, -0.18, -0.22], True),  # consistent
    ([0.2, 0.15, 0.25, -0.02, 0.3, 0.2], True),  # one cell the other way: the mean still stands out
    ([-0.2, -0.15], False),  # too few cells
    ([-0.05, -0.06, -0.04, -0.05], False),  # significant, but too small to matter
    ([-0.6, -0.1, -0.15], False),  # one sign, but scattered as symmetric noise is (sd 0.2-0.3 octave per cell)
    ([0.3, -0.25, 0.2, -0.3], False),
])
def test_a_shift_is_systematic_when_its_mean_stands_out_of_the_cells_scatter(octaves: list[float], flagged: bool) -> None:
    assert systematic(octaves) is flagged

"""Whether the parabola's optima lean systematically to the flat side of asymmetric loss-vs-lr curves.

The `parabola` method fits a symmetric quadratic in ln lr to the points near a cell's minimum. Real curves rise
faster above the optimum than below it, and there the symmetric vertex leans toward the flat (low-lr) side: on
simulated sweeps 3x steeper above the optimum, lr* came out 0.19 octave low in every cell (0.25 at 5x). The
exponents survive (the shift is the same at every size), but the law's level moves by the shift, and no interval
includes it: a 95% prediction interval made narrow by many cells or little noise covered the truth 1-80% of the time.

The check fits the asymmetric local model (`local_model`: separate curvatures either side of its vertex) to each
cell's per-lr mean losses and compares its vertex with the located lr*. One cell's shift is mostly noise (at 1%
seed noise its sd is 0.2-0.3 octave, as large as the bias), so the cells' shifts are tested together: their mean
must differ from 0 by more than Student's t allows at LEVEL (the cells' own scatter is the noise scale), and their
median must exceed MIN_SHIFT_OCTAVES. Cells at the edge of their lrs, flat, fallen back to the argmin, re-centred
or extrapolated, over several batch sizes, or without a local model (fewer than 4 lrs within an octave of the
lowest mean, as on grids coarser than half an octave; or not bracketed) are not used; MIN_CELLS must remain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from scaleplan.fit.local_model import fit_local_model
from scaleplan.fit.optimum import CellOptimum, cell_arrays

if TYPE_CHECKING:
    from scaleplan.fit.data import Trials
    from scaleplan.fit.hyperparameter_law import HyperparameterFit
    from scaleplan.fit.multi_axis import MultiAxisFit

MIN_CELLS = 3  # usable cells the test needs (2 residual degrees of freedom)
LEVEL = 0.98  # two-sided: at most 2% of symmetric sweeps flagged (measured 0-1.9% on simulated ones: README)
MIN_SHIFT_OCTAVES = 0.1  # a median shift below this (7% in lr) is not worth a flag, however significant


@dataclass(frozen=True)
class CellShift:
    """One cell's located lr* against the asymmetric local model's vertex: `octaves` = log2(lr* / vertex)."""

    where: str
    lr: float
    vertex_lr: float

    @property
    def octaves(self) -> float:
        return math.log2(self.lr / self.vertex_lr)


def cell_shifts(hyper: HyperparameterFit | MultiAxisFit, trials: Trials) -> list[CellShift]:
    """The shift of every usable cell of a parabola fit (none for other methods)."""
    if hyper.method != "parabola":
        return []
    out = []
    for optimum, (lr, loss, batch) in zip(hyper.optima, _curves(hyper, trials), strict=True):
        if not _usable(optimum) or (batch is not None and np.unique(batch).size > 1):
            continue
        lrs, index = np.unique(lr, return_inverse=True)
        model = fit_local_model(lrs, np.bincount(index, weights=loss) / np.bincount(index))
        if model is not None:
            out.append(CellShift(optimum.where(hyper.x), optimum.lr, model.vertex_lr))
    return out


def asymmetric_optima(hyper: HyperparameterFit | MultiAxisFit | None, trials: Trials) -> tuple[str, ...]:
    """One flag when the parabola's optima sit systematically to one side of the asymmetric model's vertices
    (`systematic`); else nothing."""
    if hyper is None:
        return ()
    shifts = [s.octaves for s in cell_shifts(hyper, trials)]
    if not systematic(shifts):
        return ()
    median = float(np.median(shifts))
    side, bias = ("below", "low") if median < 0 else ("above", "high")
    same = sum(1 for s in shifts if (s < 0) == (median < 0))
    factor = 2 ** abs(median)
    return (f"the parabola's lr* sits {abs(median):.2f} octave (x{factor:.2f}) {side} the vertex of an asymmetric fit "
            f"(separate curvatures either side) in the median usable cell ({same} of {len(shifts)} {side}): the loss "
            "curves are asymmetric and the symmetric parabola leans to their flat side, so the lr law's level (not its "
            f"exponents) is biased {bias} by about x{factor:.2f}, which its intervals do not include; "
            f"{'multiply' if median < 0 else 'divide'} the predicted lr by {factor:.2f} (--method vertex leans the same "
            "way) or check it at the target with scaleplan validate",)


def systematic(octaves: list[float]) -> bool:
    """True for at least MIN_CELLS shifts whose mean differs from 0 beyond Student's t at LEVEL (two-sided; the
    shifts' own scatter as the noise) and whose median exceeds MIN_SHIFT_OCTAVES."""
    from scaleplan.core.stats import two_sided_quantile

    if len(octaves) < MIN_CELLS or abs(float(np.median(octaves))) <= MIN_SHIFT_OCTAVES:
        return False
    mean, sd = float(np.mean(octaves)), float(np.std(octaves, ddof=1))
    return abs(mean) > two_sided_quantile(LEVEL, len(octaves) - 1) * sd / math.sqrt(len(octaves))


def _usable(optimum: CellOptimum) -> bool:
    """A cell whose lr* is its own parabola's vertex, bracketed inside the lrs it was fitted on."""
    return not (optimum.at_edge or optimum.fallback or optimum.flat or optimum.recentred or optimum.outside_window)


def _curves(hyper: HyperparameterFit | MultiAxisFit, trials: Trials) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Each cell's (lr, loss, batch) trials, in the order of `hyper.optima`."""
    from scaleplan.fit.multi_axis import MultiAxisFit

    if isinstance(hyper, MultiAxisFit):
        return [(cell.lr, cell.loss, None) for cell in hyper.cells]
    return list(cell_arrays(trials, hyper.method).values())

"""IsoFLOP profiles: compute-optimal N*(C) and D*(C) (Chinchilla approaches 1 and 2, Hoffmann et al. 2022).

Runs are grouped by compute budget C. Per budget, approach 1 takes the size with the lowest loss (the
envelope of the runs); approach 2 fits a parabola of loss in ln N to the points near the minimum and takes
its vertex (fit.optimum's parabola, so the same window, edge and extrapolation flags apply). Budgets whose
optimum sits at the edge of the sizes run are excluded (the profile does not bracket it) and flagged.
Then N* = G * C^a and D* = H * C^b are regressed on logs over the budgets (t interval and a bootstrap
over budgets), and the loss at the optimum L*(C) = E + A / C^alpha (an additive constant: the loss
saturates) is fitted like the loss law.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaleplan.errors import FitError
from scaleplan.fit.optimum import DEFAULT_NEAR, locate_optimum
from scaleplan.fit.power_law import PowerLawFit, fit_power_law, percentile_ci
from scaleplan.fit.power_sum import Constraints, PowerSumFit, PowerSumModel, fit_power_sum

APPROACHES = (1, 2)
BUDGET_RTOL = 0.05  # runs whose 6ND differ by less than this share a budget (when no C column is given)
MIN_BUDGETS_FOR_LOSS = 4  # L*(C) has 3 parameters


@dataclass(frozen=True)
class BudgetOptimum:
    """The compute-optimal point of one budget, with its bootstrap interval over the budget's runs."""

    compute: float
    n_opt: float
    d_opt: float
    loss: float
    n_points: int
    at_edge: bool
    outside_window: bool
    fallback: bool
    n_ci: tuple[float, float]


@dataclass(frozen=True)
class IsoflopFit:
    """Per-budget optima, the N*(C) and D*(C) laws over the budgets used, and L*(C) when there are enough."""

    approach: int
    budgets: list[BudgetOptimum]
    n_law: PowerLawFit
    d_law: PowerLawFit
    loss_law: PowerSumFit | None
    n_boot: int
    skipped: tuple[float, ...] = ()  # budgets with fewer than 3 sizes: no profile to fit

    @property
    def used(self) -> list[BudgetOptimum]:
        """Budgets whose optimum is bracketed by the sizes run (the others are excluded from the laws)."""
        return [b for b in self.budgets if not b.at_edge]

    @property
    def label(self) -> str:
        """How the optima were located, as recorded in a law file."""
        how = "lowest loss per budget" if self.approach == 1 else "vertex of a parabola in ln N per budget"
        return f"isoFLOP approach {self.approach} ({how}); OLS on logs over {len(self.used)} budgets"


def group_budgets(compute: np.ndarray, rtol: float = BUDGET_RTOL) -> np.ndarray:
    """Budget id of each run: runs within `rtol` of the previous one (sorted by C) share a budget."""
    order = np.argsort(compute, kind="stable")
    ids = np.empty(compute.size, dtype=int)
    current, start = 0, compute[order[0]]
    for i in order:
        if compute[i] > start * (1 + rtol):
            current, start = current + 1, compute[i]
        ids[i] = current
    return ids


def fit_isoflop(
    compute: np.ndarray,
    params: np.ndarray,
    loss: np.ndarray,
    approach: int = 2,
    near: float = DEFAULT_NEAR,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> IsoflopFit:
    """Fit N*(C) and D*(C) (D* = C / 6N*) from runs of several sizes at each of several compute budgets."""
    compute, params, loss = (np.asarray(v, dtype=float) for v in (compute, params, loss))
    if approach not in APPROACHES:
        raise FitError(f"isoFLOP approach must be 1 (lowest loss per budget) or 2 (parabola per budget), got {approach}")
    for name, col in (("C", compute), ("N", params), ("loss", loss)):
        if not (np.all(np.isfinite(col)) and np.all(col > 0)):
            raise FitError(f"isoFLOP fit: every {name} must be positive and finite")
    ids = group_budgets(compute)
    rng = np.random.default_rng(seed)
    method = "argmin" if approach == 1 else "parabola"
    budgets, skipped = [], []
    for b in np.unique(ids):
        sel = ids == b
        n, l, c = params[sel], loss[sel], float(np.exp(np.mean(np.log(compute[sel]))))
        if np.unique(n).size < 3:
            skipped.append(c)  # a profile needs 3 sizes
            continue
        opt = locate_optimum(n, l, method=method, near=near, recentre=False, check_ends=False)  # flat_end is never read
        reps = [locate_optimum(n[idx], l[idx], method=method, near=near, recentre=False, check_ends=False).lr
                for idx in (rng.integers(0, n.size, n.size) for _ in range(n_boot))]
        budgets.append(BudgetOptimum(
            compute=c, n_opt=opt.lr, d_opt=c / (6.0 * opt.lr), loss=opt.loss, n_points=int(n.size), at_edge=opt.at_edge,
            outside_window=opt.outside_window, fallback=opt.fallback, n_ci=percentile_ci(np.array(reps), level),
        ))
    used = [b for b in budgets if not b.at_edge]
    if len(used) < 3:
        raise FitError(
            f"isoFLOP fit: {len(used)} budget(s) with an optimum bracketed by at least 3 sizes "
            f"({len(budgets) - len(used)} more at the edge of their sizes); need 3 to fit N*(C) with an interval"
        )
    cs = np.array([b.compute for b in used])
    n_law = fit_power_law("N_opt", np.array([b.n_opt for b in used]), {"C": cs}, level=level, seed=seed)
    d_law = fit_power_law("D_opt", np.array([b.d_opt for b in used]), {"C": cs}, level=level, seed=seed)
    loss_law = None
    if len(used) >= MIN_BUDGETS_FOR_LOSS:
        model = PowerSumModel(("A",), ("alpha",), Constraints())
        loss_law = fit_power_sum(np.log(cs)[None], np.log([b.loss for b in used]), model, delta=1e-3, what="isoFLOP L*(C)")
    return IsoflopFit(approach, budgets, n_law, d_law, loss_law, n_boot, tuple(skipped))

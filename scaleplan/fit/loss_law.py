"""Loss law L(N, D) = E + A/N^alpha + B/D^beta, fitted as Chinchilla / Epoch do.

Huber loss (delta = 1e-3 by default) on log L, minimised by L-BFGS from the best points of a dense
start grid (fit.power_sum); bootstrap over points, each replicate restarting from several starts so
that its interval can include another basin. Exponents can be tied (alpha = beta, as Gadre et al.
2024) and parameters fixed (E = 0 drops the irreducible loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scaleplan.errors import FitError
from scaleplan.fit.power_law import check_span, checked_covariance, percentile_ci
from scaleplan.fit.power_sum import DEFAULT_BOOT_STARTS, DEFAULT_STARTS, Constraints, PowerSumModel, fit_power_sum
from scaleplan.laws import LossLaw

HUBER_DELTA = 1e-3
PARAMETERS = ("E", "A", "B", "alpha", "beta")
E_COLLAPSED = 1e-3  # E below this fraction of the smallest loss: the data do not identify an irreducible loss


@dataclass(frozen=True)
class LossLawFit:
    """The fitted law, the objective reached and how the starts fared, and bootstrap covariance/intervals."""

    law: LossLaw
    objective: float
    n_points: int
    conf_int: dict[str, tuple[float, float]]
    n_boot: int
    delta: float = HUBER_DELTA
    space: str = "log"
    constraints: Constraints = field(default_factory=Constraints)
    grid_size: int = 0
    starts_run: int = 0
    starts_reached: int = 0
    boot_left_basin: int = 0
    flags: tuple[str, ...] = ()

    def compute_optimal(self, compute: float) -> tuple[float, float]:
        """(N, D) minimising the fitted loss at `compute` FLOPs (C = 6 N D)."""
        return self.law.compute_optimal(compute)

    def describe(self) -> str:
        """How it was fitted, for the summary and the law file's notes."""
        on = "log L" if self.space == "log" else "L"
        boot = (f"; {self.n_boot} bootstrap replicates, each restarted from several starts "
                f"({self.boot_left_basin} left the full-data basin)") if self.n_boot else ""
        return (f"Huber (delta {self.delta:g}) on {on} over {self.n_points} points, constraints: {self.constraints.describe()}; "
                f"objective {self.objective:.6g} reached by {self.starts_reached} of {self.starts_run} L-BFGS starts "
                f"(the best of a {self.grid_size}-point grid){boot}")


def fit_loss_law(
    params: np.ndarray,
    tokens: np.ndarray,
    loss: np.ndarray,
    delta: float = HUBER_DELTA,
    starts: int = DEFAULT_STARTS,
    constraints: Constraints | None = None,
    n_boot: int = 0,
    boot_starts: int = DEFAULT_BOOT_STARTS,
    seed: int = 0,
    level: float = 0.95,
    space: str = "log",
) -> LossLawFit:
    """Fit E + A/N^alpha + B/D^beta to (N, D, L) points; `n_boot` > 0 adds a bootstrap covariance and CIs.

    `space="linear"` puts the Huber residuals on L itself (with a delta above every residual: least squares,
    as Gadre et al.'s curve_fit); the default is log L (Chinchilla, Epoch).
    """
    constraints = constraints or Constraints()
    ln_n, ln_d, ln_l = (_logs(np.asarray(v, dtype=float), name) for v, name in ((params, "N"), (tokens, "D"), (loss, "loss")))
    for name, col in (("N", ln_n), ("D", ln_d)):
        check_span("loss law", name, np.exp(col))
    model = PowerSumModel(("A", "B"), ("alpha", "beta"), constraints)
    fit = fit_power_sum(np.stack([ln_n, ln_d]), ln_l, model, delta, starts, n_boot, boot_starts, seed, what="loss law", space=space)
    p = fit.params
    if not (p["alpha"] > 0 and p["beta"] > 0):
        raise FitError(
            f"loss law: fitted exponents are not positive (alpha={p['alpha']:.3g}, beta={p['beta']:.3g}); the data do not "
            "show loss falling with N and D"
        )
    flags = []
    boot = fit.boot
    covariance, ci = None, {}
    if boot is not None and len(boot) > 1:
        ci = {name: percentile_ci(boot[:, i], level) for i, name in enumerate(PARAMETERS)}
        covariance, why = checked_covariance(np.cov(boot, rowvar=False), semidefinite=True)
        if why:
            flags.append(f"loss law: bootstrap covariance {why}; not written")
    if fit.n_boot_failed:
        flags.append(f"loss law: {fit.n_boot_failed} of {n_boot} bootstrap replicates failed to fit")
    if "E" not in constraints.fixed and p["E"] < E_COLLAPSED * float(np.exp(ln_l.min())):
        flags.append(f"loss law: E = {p['E']:.3g} collapsed to ~0: the data do not identify an irreducible loss (fix it with --fix E=VALUE)")
    law = LossLaw(E=p["E"], A=p["A"], B=p["B"], alpha=p["alpha"], beta=p["beta"],
                  covariance=None if covariance is None else covariance.tolist())
    return LossLawFit(
        law=law, objective=fit.objective, n_points=fit.n_points, conf_int=ci, n_boot=n_boot, delta=delta, space=space,
        constraints=constraints, grid_size=fit.grid_size, starts_run=fit.starts_run, starts_reached=fit.starts_reached,
        boot_left_basin=fit.boot_left_basin, flags=tuple(flags),
    )


def _logs(values: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise FitError(f"loss law: every {name} must be positive and finite")
    return np.log(values)

"""The surge or saturating form of lr*(D, B) (laws/surge.py) fitted on a multi-axis fit's cell optima.

Least squares in ln lr* over the cells, unweighted (as the forms were scored on the GPT char-LM's pre-registered
targets, benchmarks/results/batch-prereg.md), from a grid of
starts, since the noise scale's level n0 is poorly identified when the swept batches do not reach it. Intervals:
the t covariance s^2 (J'J)^-1 of the least-squares Jacobian (the law file's), and percentile intervals of the
parameters and predictions refitted on every bootstrap replicate of the cells' optima (trials resampled within
cells, as the power law's bootstrap; laws/surge.py says why not their covariance).
The steps S = D / (B u) need u, the tokens of one batch unit: read from the runs' own steps (u = D / (B steps)),
which must agree over every cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from scaleplan.core.stats import two_sided_quantile
from scaleplan.errors import FitError
from scaleplan.fit.power_law import percentile_ci
from scaleplan.laws.surge import MIN_BATCH_SIZES, MIN_D, PARAMETERS, SurgeLaw

UNIT_TOLERANCE = 0.01  # relative spread of D / (B steps) over the cells that still counts as one unit (rounded step counts)
BRACKETED = 1.0  # |1/2 ln(B / B_noise)| below this at some swept cell: the turnover was seen, not extrapolated
NOISE_STARTS = 9  # starts of ln B_noise over the swept ln B, widened by START_MARGIN on each side
START_MARGIN = 2.5
NOISE_EXPONENT_STARTS = (-1.0, 0.0, 1.0)


@dataclass(frozen=True)
class SurgeFit:
    """The fitted surge-family law (its covariances filled in), the parameters' intervals, the bootstrap replicates
    (parameter rows in the law's `coefficients()` order) and the rms of ln lr* over the cells."""

    law: SurgeLaw
    conf_int: dict[str, tuple[float, float]]  # t intervals at `level`, by parameter name
    bootstrap_ci: dict[str, tuple[float, float]]
    replicates: np.ndarray | None
    rms: float
    n_cells: int
    level: float
    positions: np.ndarray  # 1/2 ln(B / B_noise(S)) at every cell
    log_steps: np.ndarray  # ln S at every cell

    def bootstrap_interval(self, values: dict[str, float], level: float = 0.95) -> tuple[float, float] | None:
        """Percentile interval of the predicted lr at `values` over the bootstrap replicates."""
        if self.replicates is None or len(self.replicates) == 0:
            return None
        logs = [float(self.law.with_coefficients(row).log_value(values)) for row in self.replicates]
        lo, hi = percentile_ci(np.array(logs), level)
        return math.exp(lo), math.exp(hi)

    def flags(self) -> list[str]:
        """The turnover never seen: every swept cell far from the noise scale."""
        if np.any(np.abs(self.positions) < BRACKETED):
            return []
        side = "below" if np.all(self.positions < 0) else ("above" if np.all(self.positions > 0) else "on both sides of")
        at = self.law.noise_scale(float(np.exp(np.median(self.log_steps))))
        return [f"the {self.law.form} law's noise scale B_noise(S) lies far {side} every swept batch size (|1/2 ln(B / B_noise)| >= "
                f"{BRACKETED:g} at every cell): its bend is extrapolated, not measured; sweep batch sizes near {at:.3g}"]


def batch_unit_tokens(d: np.ndarray, b: np.ndarray, steps: np.ndarray) -> float:
    """u = D / (B steps), the data of one batch unit, the same at every cell (else a FitError naming the spread)."""
    u = d / (b * steps)
    if not np.all(np.isfinite(u)) or np.any(u <= 0) or (u.max() - u.min()) > UNIT_TOLERANCE * u.max():
        raise FitError(f"the surge and saturating forms need one data-per-batch-unit D / (B * steps) over the cells; found "
                       f"{u.min():.6g} to {u.max():.6g}: give D and the batch size in units that agree")
    return float(np.median(u))


def fit_surge(values: dict[str, np.ndarray], lr: np.ndarray, steps: np.ndarray, replicate_lrs: list[np.ndarray],
              level: float = 0.95, form: str = "surge") -> SurgeFit:
    """Fit the surge form, or another of FORMS, on cells at `values` (law variable -> one value per cell: D, B and
    the varying size axes), their located optima `lr` and the runs' `steps`; `replicate_lrs` are the bootstrap
    replicates' optima."""
    d, b = values["D"], values["B"]
    sizes = [v for v in values if v not in ("D", "B")]
    n_params = 1 + len(sizes) + len(PARAMETERS)
    if len(lr) < n_params + 1:
        raise FitError(f"the {form} form has {n_params} parameters: it needs at least {n_params + 1} cells, got {len(lr)}")
    if len({float(x) for x in d}) < MIN_D or len({float(x) for x in b}) < MIN_BATCH_SIZES:
        raise FitError(f"the {form} form needs several D and at least {MIN_BATCH_SIZES} batch sizes (a tokens ladder with --lr-batch)")
    template = SurgeLaw("lr", "learning rate", 0.0, 0.0, 0.0, 0.0, batch_unit_tokens(d, b, steps), {v: 0.0 for v in sizes},
                        form=form)
    log_lr = np.log(lr)

    def residuals(theta: np.ndarray, target: np.ndarray) -> np.ndarray:
        return template.with_coefficients(theta).log_value(values, np) - target

    def jacobian(theta: np.ndarray, target: np.ndarray) -> np.ndarray:
        return np.column_stack(np.broadcast_arrays(*template.with_coefficients(theta).gradient(values, np)))

    log_b = np.log(b)
    best = None
    for n0 in np.linspace(log_b.min() - START_MARGIN, log_b.max() + START_MARGIN, NOISE_STARTS):
        for n1 in NOISE_EXPONENT_STARTS:
            start = np.array([float(log_lr.mean()), *([0.0] * len(sizes)), 0.0, n0, n1])
            fit = least_squares(residuals, start, jac=jacobian, args=(log_lr,))
            if best is None or fit.cost < best.cost:
                best = fit
    assert best is not None
    theta = best.x
    dof = len(lr) - n_params
    rss = float(np.sum(best.fun**2))
    s2 = rss / dof
    covariance = s2 * np.linalg.pinv(best.jac.T @ best.jac)
    rows = [least_squares(residuals, theta, jac=jacobian, args=(np.log(rep),)) for rep in replicate_lrs]
    replicates = np.array([r.x for r in rows if r.success and np.all(np.isfinite(r.x))]) if rows else None
    law = template.with_coefficients(theta)
    law = SurgeLaw(**{**law.__dict__, "covariance": _symmetric(covariance), "residual_variance": s2, "dof": dof,
                      "n_points": len(lr)})
    q = two_sided_quantile(level, dof)
    names = law.coefficient_names()
    conf = {n: (float(t - q * math.sqrt(max(covariance[i, i], 0.0))), float(t + q * math.sqrt(max(covariance[i, i], 0.0))))
            for i, (n, t) in enumerate(zip(names, theta))}
    boot = {} if replicates is None or not len(replicates) else {n: percentile_ci(replicates[:, i], level) for i, n in enumerate(names)}
    return SurgeFit(law, conf, boot, replicates, math.sqrt(rss / len(lr)), len(lr), level,
                    np.asarray(law.noise_position(values, np), dtype=float), np.asarray(law.log_steps(values, np), dtype=float))


def _symmetric(matrix: np.ndarray) -> list[list[float]]:
    """The covariance as the law file stores it: symmetrised, plain floats."""
    return (0.5 * (matrix + matrix.T)).tolist()

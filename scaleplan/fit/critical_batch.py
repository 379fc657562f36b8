"""Critical batch size per model size from steps-to-target-loss (Zhang et al. 2024; McCandlish et al. 2018).

Per size, S(B) = S_min (1 + B_crit / B) is fitted on ln S; then B_crit is regressed on N as a power law.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaleplan.errors import ScaleplanError
from scaleplan.fit.power_law import PowerLawFit, fit_power_law


@dataclass(frozen=True)
class CriticalBatch:
    """One size's fit: minimum steps S_min, critical batch B_crit (unit of the batches given), and their SEs in log."""

    size: float
    s_min: float
    b_crit: float
    se_ln_s_min: float
    se_ln_b_crit: float
    n_points: int


@dataclass(frozen=True)
class CriticalBatchLaw:
    """B_crit per size and the power law B_crit = c * N^gamma fitted over them."""

    per_size: list[CriticalBatch]
    law: PowerLawFit

    @property
    def monotone(self) -> bool:
        """True when B_crit strictly grows with size."""
        values = [c.b_crit for c in sorted(self.per_size, key=lambda c: c.size)]
        return all(b > a for a, b in zip(values, values[1:]))


def fit_critical_batch(batch: np.ndarray, steps: np.ndarray, size: float = float("nan")) -> CriticalBatch:
    """Fit ln S = ln S_min + ln(1 + B_crit / B) by nonlinear least squares (scipy curve_fit)."""
    from scipy.optimize import curve_fit  # lazy: scipy.optimize is slow to import

    batch = np.asarray(batch, dtype=float)
    steps = np.asarray(steps, dtype=float)
    if batch.size < 3 or np.unique(batch).size < 3:
        raise ScaleplanError(f"critical batch (size {size:.4g}): need at least 3 distinct batch sizes; got {np.unique(batch).size}")
    if not (np.all(np.isfinite(batch)) and np.all(np.isfinite(steps)) and np.all(batch > 0) and np.all(steps > 0)):
        raise ScaleplanError(f"critical batch (size {size:.4g}): batch sizes and steps must be positive and finite")

    def model(b: np.ndarray, ln_s_min: float, ln_b_crit: float) -> np.ndarray:
        return ln_s_min + np.log1p(np.exp(ln_b_crit) / b)

    start = [np.log(steps.min()), np.log(np.median(batch))]
    params, cov = curve_fit(model, batch, np.log(steps), p0=start, maxfev=10000)
    se = np.sqrt(np.clip(np.diag(cov), 0, None)) if np.all(np.isfinite(cov)) else np.array([np.nan, np.nan])
    return CriticalBatch(size, float(np.exp(params[0])), float(np.exp(params[1])), float(se[0]), float(se[1]), int(batch.size))


def fit_critical_batch_law(sizes: np.ndarray, batch: np.ndarray, steps: np.ndarray, level: float = 0.95) -> CriticalBatchLaw:
    """B_crit for every distinct size, then OLS of ln B_crit on ln N (with its CI)."""
    sizes = np.asarray(sizes, dtype=float)
    batch = np.asarray(batch, dtype=float)
    steps = np.asarray(steps, dtype=float)
    distinct = np.unique(sizes)
    if distinct.size < 2:
        raise ScaleplanError("critical batch law: need at least 2 distinct model sizes")
    per_size = [fit_critical_batch(batch[sizes == s], steps[sizes == s], float(s)) for s in distinct]
    law = fit_power_law("critical_batch_size", np.array([c.b_crit for c in per_size]), {"N": distinct}, level=level)
    return CriticalBatchLaw(per_size, law)

"""Critical batch size per model size from steps-to-target-loss (Zhang et al. 2024; McCandlish et al. 2018).

Per size, S(B) = S_min (1 + B_crit / B) is fitted on ln S; then B_crit is regressed on N as a power law.
`steps_to_target` reads S(B) off a sweep of scaleplan's own over batch sizes and horizons (tokens ladder).
"""

from __future__ import annotations

import math
import warnings
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
    with warnings.catch_warnings():  # an inestimable covariance comes back as inf: reported as no interval
        warnings.simplefilter("ignore")
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


@dataclass(frozen=True)
class StepsToTarget:
    """Steps each batch size needs to reach `target_loss`, read off a sweep over batch sizes and horizons."""

    target_loss: float
    batch: np.ndarray
    steps: np.ndarray
    skipped: tuple[float, ...]  # batch sizes whose curve does not bracket the target (already below it at the shortest run)


def steps_to_target(curves: dict[float, list[tuple[float, float]]]) -> StepsToTarget:
    """From {batch: [(steps, best loss of a run that long), ...]}, the steps to reach a common target loss.

    The target is the highest of the batch sizes' best losses at their longest run, so every batch size
    reaches it inside its swept horizons; each one's steps are interpolated linearly in ln steps between
    the two runs that bracket the target. Each horizon is its own run with its own schedule, so a point
    is "the loss of a run trained for that long", as Zhang et al.'s steps to target are.
    """
    ordered = {b: sorted(points) for b, points in curves.items() if len(points) >= 2}
    if len(ordered) < 3:
        raise ScaleplanError(f"critical batch: need at least 3 batch sizes with 2 or more horizons each; got {len(ordered)}")
    target = max(points[-1][1] for points in ordered.values())
    batches, steps, skipped = [], [], []
    for b, points in sorted(ordered.items()):
        if points[0][1] <= target:
            skipped.append(b)
            continue
        for (s0, l0), (s1, l1) in zip(points, points[1:]):
            if l1 <= target < l0:
                frac = (l0 - target) / (l0 - l1)
                batches.append(b)
                steps.append(math.exp(math.log(s0) + frac * (math.log(s1) - math.log(s0))))
                break
    return StepsToTarget(target, np.array(batches), np.array(steps), tuple(skipped))

"""lr*(N or width, D) and B*(D[, N]) power laws from a sweep: locate optima, regress, bootstrap.

The bootstrap resamples trials within each cell, re-locates every optimum and refits: its
percentile intervals measure how much the optimum-location step alone moves the exponents.
With one optimum per cell (parabola, argmin), the regression is weighted by the inverse of each
optimum's bootstrap variance (in log space): cells whose optimum is poorly located (a flat or noisy
lr curve) pull the law less than cells with a sharp optimum.
`lr_form="finite-width"` fits ln lr* = a + c (size / size_min)^(-1/2) instead of the size exponent: a
width-independent asymptote, which the rules promise, plus the leading finite-width correction
(core/correction.py); proxies off their asymptote (a DenseAM's beta0 / sqrt(N) > 1) make a power law
extrapolate the correction's slope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from scaleplan.core.correction import FINITE_WIDTH_POWER
from scaleplan.errors import ScaleplanError
from scaleplan.fit.blas import single_blas_thread
from scaleplan.fit.data import Trials
from scaleplan.fit.optimum import (
    DEFAULT_BAND,
    DEFAULT_NEAR,
    CellArrays,
    CellKey,
    CellOptimum,
    cell_arrays,
    cell_optima,
    method_label,
    refuse_unbracketed,
)
from scaleplan.fit.power_law import PowerLawFit, fit_power_law, percentile_ci, replicate_interval

# Name of each size column (and derived quantity) as a law-file variable: C = 6ND, R = D/N tokens per parameter.
LAW_VARIABLE = {"N": "N", "width": "W", "D": "D", "C": "C", "R": "R"}
DERIVED = ("C", "R")  # need N and D
WEIGHTINGS = ("inverse-variance", "none")
LR_FORMS = ("power", "finite-width")  # the lr law's size term: e ln(size), or c (size / size_min)^-1/2
MIN_LOG_SD = math.log(2) / 16  # floor on an optimum's log-sd (1/16 octave): no infinite weights
MIN_REPLICATES = 20  # fewer bootstrap replicates give no usable variance: fall back to unweighted


@dataclass(frozen=True)
class HyperparameterFit:
    """Optima per cell and the power laws fitted on them (lr always; batch_size when it was swept)."""

    method: str
    band: float
    x: str
    optima: list[CellOptimum]
    lr: PowerLawFit
    batch_size: PowerLawFit | None
    n_boot: int
    n_boot_failed: int
    cell_lr_ci: list[tuple[float, float]]  # bootstrap interval of each cell's lr optimum (same order as optima)
    weighted: bool = False  # True when the regressions were weighted by 1/var of each cell's optimum
    lr_replicates: np.ndarray | None = None  # bootstrap coefficients [intercept, *exponents], one row per replicate
    batch_replicates: np.ndarray | None = None
    unswept_batch: tuple[str, ...] = ()  # cells at one batch size where others swept it: no B* there (`flags`)

    @property
    def label(self) -> str:
        """Optimum method and regression weighting, as recorded in a law file."""
        how = "WLS, weights 1/var(ln optimum) from the bootstrap" if self.weighted else "OLS"
        return f"{method_label(self.method, self.band)}; {how}"

    def flags(self) -> list[str]:
        """What the fit found doubtful beyond the cells' and laws' own flags: cells that ran one batch size while
        others swept it (their batch size was chosen, not located, so the batch-size law leaves them out)."""
        if not self.unswept_batch:
            return []
        kept = "no batch-size law written" if self.batch_size is None else "left out of the batch-size law"
        return [f"{len(self.unswept_batch)} of {len(self.optima)} cells ran a single batch size ({kept}: a batch size "
                f"chosen, not swept, is no optimum): {'; '.join(self.unswept_batch)}; sweep batch sizes there"]

    def bootstrap_interval(self, target: str, values: dict[str, float], level: float = 0.95) -> tuple[float, float] | None:
        """Percentile interval of the law's prediction at `values` (law variable -> value) over the bootstrap
        replicates: how far the optimum-location noise alone moves the prediction (None without replicates)."""
        fit, reps = (self.lr, self.lr_replicates) if target == "lr" else (self.batch_size, self.batch_replicates)
        return replicate_interval(fit, reps, values, level)


def fit_hyperparameter_laws(
    trials: Trials,
    method: str = "parabola",
    band: float = DEFAULT_BAND,
    near: float = DEFAULT_NEAR,
    batch_on_size: bool = False,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    weighting: str = "inverse-variance",
    lr_in: list[str] | None = None,
    batch_in: list[str] | None = None,
    offsets: dict[str, float] | None = None,
    lr_form: str = "power",
) -> HyperparameterFit:
    """Locate each cell's optimum with `method` and fit ln lr* (and ln B*) on the logs of the cell sizes.

    `weighting="inverse-variance"` weights each cell by 1/var(ln optimum) over the bootstrap replicates
    (one-point-per-cell methods with >= MIN_REPLICATES replicates); "none" is plain OLS.
    `lr_in` / `batch_in` choose the predictors (columns N, width, D, or C = 6ND, R = D/N), e.g. ["C"]
    for DeepSeek's lr = a * C^b; by default the size (and D when it varies). `offsets` ({"lr": c}) fit
    lr* = c + a * N^alpha with the constant c given and held fixed (its uncertainty is not in the intervals).
    `lr_form="finite-width"` puts the size into the lr law as (size / size_min)^-1/2 (see the module docstring).
    """
    if weighting not in WEIGHTINGS:
        raise ScaleplanError(f"unknown weighting '{weighting}'; use one of {', '.join(WEIGHTINGS)}")
    if lr_form not in LR_FORMS:
        raise ScaleplanError(f"unknown lr law form '{lr_form}'; use one of {', '.join(LR_FORMS)}")
    cells = cell_arrays(trials, method)
    optima = cell_optima(cells, method, band, near)
    refuse_unbracketed(optima, trials.x)
    lr_vars, batch_vars = _law_variables(trials, batch_on_size)
    lr_vars = _chosen(trials, lr_in, "lr") if lr_in else lr_vars
    batch_vars = _chosen(trials, batch_in, "batch_size") if batch_in and batch_vars else batch_vars
    batch_cells = [i for i, (_, _, b) in enumerate(cells.values()) if b is not None and np.unique(b).size > 1]
    unswept = tuple(o.where(trials.x) for i, o in enumerate(optima) if i not in batch_cells) if batch_vars else ()
    batch_vars = batch_vars if len(batch_cells) > 1 else []
    rng = np.random.default_rng(seed)
    with single_blas_thread():
        replicates = [_replicate(cells, rng, method, band, near, optima) for _ in range(n_boot)]
    weigh = weighting == "inverse-variance" and method != "band" and len(replicates) >= MIN_REPLICATES
    lr_w = _cell_weights("lr", replicates, optima, cells) if weigh else None
    batch_w = _cell_weights("batch_size", replicates, optima, cells)[batch_cells] if weigh and batch_vars else None
    offsets = offsets or {}
    lr_c, batch_c = offsets.get("lr", 0.0), offsets.get("batch_size", 0.0)
    corrections = {LAW_VARIABLE[trials.x]: FINITE_WIDTH_POWER} if lr_form == "finite-width" else {}
    if corrections and trials.x not in lr_vars:
        raise ScaleplanError(f"the finite-width lr law needs the size ({trials.x}) among its predictors; drop --lr-in or "
                             "use --lr-form power")
    lr_fit = _fit_target("lr", optima, lr_vars, trials.x, level, lr_w, seed, lr_c, corrections)
    batch_fit = (_fit_target("batch_size", [optima[i] for i in batch_cells], batch_vars, trials.x, level, batch_w, seed, batch_c)
                 if batch_vars else None)
    lr_samples, batch_samples, cell_lr, failed = [], [], [], 0
    for resampled in replicates:
        try:
            lr_coef = _coefficients(lr_fit, resampled, lr_vars, trials.x, lr_w)
            batch_coef = None if batch_fit is None else _coefficients(batch_fit, [resampled[i] for i in batch_cells], batch_vars,
                                                                      trials.x, batch_w)
        except (ScaleplanError, np.linalg.LinAlgError):
            failed += 1
            continue
        lr_samples.append(lr_coef)
        if batch_coef is not None:
            batch_samples.append(batch_coef)
        cell_lr.append([o.lr for o in resampled])
    lr_fit = _with_bootstrap(lr_fit, lr_samples, level)
    batch_fit = None if batch_fit is None else _with_bootstrap(batch_fit, batch_samples, level)
    cell_ci = [percentile_ci(col, level) for col in np.array(cell_lr).T] if cell_lr else [(np.nan, np.nan)] * len(optima)
    return HyperparameterFit(method, band, trials.x, optima, lr_fit, batch_fit, n_boot, failed, cell_ci, weigh,
                             np.array(lr_samples) if lr_samples else None, np.array(batch_samples) if batch_samples else None,
                             unswept)


def _cell_weights(target: str, replicates: list[list[CellOptimum]], optima: list[CellOptimum],
                  cells: dict[CellKey, CellArrays]) -> np.ndarray:
    """1 / var(ln optimum) of each cell over the bootstrap replicates, the sd floored at MIN_LOG_SD.

    A flat cell (its whole sweep within the band) locates no optimum: its sd is that of a uniform
    over the swept range, whatever its replicates say (they may all agree, giving a zero variance).
    """
    logs = np.log(np.array([[o.lr if target == "lr" else o.batch_size for o in rep] for rep in replicates], dtype=float))
    sd = np.maximum(np.nanstd(logs, axis=0, ddof=1), MIN_LOG_SD)
    for i, (o, (lr, _, batch)) in enumerate(zip(optima, cells.values())):
        if o.flat:
            swept = lr if target == "lr" else batch
            assert swept is not None, "batch-size weights are computed only for a swept batch size"
            sd[i] = max(sd[i], float(np.ptp(np.log(swept))) / math.sqrt(12.0))
    return 1.0 / sd**2


def _replicate(cells: dict[CellKey, CellArrays], rng: np.random.Generator, method: str, band: float, near: float,
               chosen: list[CellOptimum]) -> list[CellOptimum]:
    """Every cell's optimum after resampling its trials with replacement (by the estimator `chosen` used)."""
    resampled: dict[CellKey, CellArrays] = {}
    for key, (lr, loss, b) in cells.items():
        idx = rng.integers(0, len(lr), len(lr))
        resampled[key] = (lr[idx], loss[idx], None if b is None else b[idx])
    return cell_optima(resampled, method, band, near, chosen)


def _law_variables(trials: Trials, batch_on_size: bool) -> tuple[list[str], list[str]]:
    """Predictors of lr (size, and D when it varies) and of batch size (D, plus size if asked)."""
    sizes = trials.frame[trials.x].nunique()
    if sizes < 2:
        value = trials.frame[trials.x].iloc[0]
        raise ScaleplanError(
            f"need at least 2 distinct sizes ({trials.x}) to fit a power law; found 1 ({trials.x}={value:.4g}): "
            "sweep more sizes"
        )
    lr_vars = [trials.x] + (["D"] if trials.has_tokens else [])
    if not trials.has_batch:
        if batch_on_size:
            raise ScaleplanError("--batch-on-size needs a swept batch size (several batch sizes within a cell); "
                                 "drop the flag or sweep batch sizes")
        return lr_vars, []
    batch_vars = (["D"] if trials.has_tokens else []) + ([trials.x] if batch_on_size or not trials.has_tokens else [])
    return lr_vars, batch_vars


def _chosen(trials: Trials, names: list[str], target: str) -> list[str]:
    """Check user-chosen predictors: the size column, D, or C / R (which need N and D)."""
    allowed = [trials.x, *(["D", *(DERIVED if trials.x == "N" else ())] if "D" in trials.frame else [])]
    unknown = [v for v in names if v not in allowed]
    if unknown:
        raise ScaleplanError(f"{target} law: cannot use {unknown} as predictors here; this data offers {', '.join(allowed)} "
                             "(C = 6ND and R = D/N need --x N and a D column)")
    return list(dict.fromkeys(names))


def _cell_value(o: CellOptimum, v: str, x: str) -> float:
    """A cell's value of predictor `v`: its size, D, C = 6ND or R = D/N."""
    if v == x:
        return o.size
    assert o.tokens is not None, "D, C and R are predictors only of trials with a D column (every cell then has D)"
    return {"D": o.tokens, "C": 6.0 * o.size * o.tokens, "R": o.tokens / o.size}[v]


def _design(target: str, optima: list[CellOptimum], variables: list[str], x: str,
            offset: float = 0.0) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Stack the regression points of every cell: y - offset, {law variable: values}, cell id per point."""
    ys: list[np.ndarray] = []
    cols: dict[str, list[np.ndarray]] = {LAW_VARIABLE[v]: [] for v in variables}
    groups: list[np.ndarray] = []
    for i, o in enumerate(optima):
        pts = o.points_lr if target == "lr" else o.points_batch
        assert pts is not None, "a batch-size law is fitted only to a swept batch size (every cell then has one)"
        ys.append(pts)
        groups.append(np.full(len(pts), i))
        for v in variables:
            cols[LAW_VARIABLE[v]].append(np.full(len(pts), _cell_value(o, v, x)))
    y = np.concatenate(ys) - offset
    if offset and np.any(y <= 0):
        raise ScaleplanError(f"--offset {target}={offset:g}: the {target} optimum of some cell is at or below the offset "
                             f"(smallest {float(np.min(y) + offset):.4g}); a power law above it cannot pass there: lower it")
    return y, {k: np.concatenate(c) for k, c in cols.items()}, np.concatenate(groups)


def _fit_target(target: str, optima: list[CellOptimum], variables: list[str], x: str, level: float,
                weights: np.ndarray | None = None, seed: int = 0, offset: float = 0.0,
                corrections: dict[str, float] | None = None) -> PowerLawFit:
    """Regress one target (less `offset`) over the cells; `weights` (one per cell) only with one point per cell;
    `corrections` (law variable -> power) as fit_power_law takes them."""
    y, predictors, groups = _design(target, optima, variables, x, offset)
    several = any(len(o.points_lr) > 1 for o in optima)
    fit = fit_power_law(target, y, predictors, weights=weights, groups=groups if several else None, level=level, seed=seed,
                        corrections=corrections)
    return replace(fit, offset=offset)


def _coefficients(fit: PowerLawFit, optima: list[CellOptimum], variables: list[str], x: str,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """(Weighted) least-squares coefficients of `fit`'s law (its terms, its offset) on resampled `optima`: the
    bootstrap's refit (no covariance needed, so no statsmodels)."""
    y, predictors, _ = _design(fit.target, optima, variables, x, fit.offset)
    design = fit.design(predictors)
    root_w = np.ones_like(y) if weights is None else np.sqrt(weights)
    coef, _, rank, _ = np.linalg.lstsq(design * root_w[:, None], np.log(y) * root_w, rcond=None)
    if rank < design.shape[1]:
        raise ScaleplanError("degenerate bootstrap replicate")
    return coef


def _with_bootstrap(fit: PowerLawFit, samples: list[np.ndarray], level: float) -> PowerLawFit:
    if not samples:
        return fit
    arr = np.array(samples)
    return replace(fit, bootstrap_ci={k: percentile_ci(arr[:, i], level) for i, k in enumerate(fit.keys())})

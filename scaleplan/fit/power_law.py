"""Power laws by least squares on logs (statsmodels): ln y = intercept + sum_v e_v ln v [+ interaction terms].

OLS by default, WLS with weights, and a cluster-robust covariance when several points come from
one cell (the band method), so the interval does not pretend the band's runs are independent (with no more
cells than coefficients: no interval, flagged). Weights are the cells' inverse variances (1/var of each
ln optimum), so a weighted fit's residual scale is floored at 1: optima that sit on the law more exactly than
their own location noise allows (argmin optima on a grid that moves with the size) do not give a zero-width interval.
A bootstrap over cells gives a second covariance: with few cells the t interval (true dof) and the
bootstrap can disagree, and a law file's prediction interval is the wider of the two at each point.
A regressor spanning less than MIN_SPAN is refused: its exponent would be noise (e.g. N^71).
Optional `interactions` add c * ln(a / a0) * ln(b / b0) terms (core/interaction.py): an exponent that drifts
with another variable. Optional `corrections` enter a variable as c * (v / v0)^-q instead of e * ln v
(core/correction.py): the finite-width form, a v-independent asymptote plus a decaying correction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scaleplan.core.correction import Correction
from scaleplan.core.interaction import Interaction, centred, log_terms
from scaleplan.core.stats import two_sided_quantile
from scaleplan.errors import FitError, ScaleplanError

MIN_SPAN = 2.0  # a regressor must vary by at least this factor for its exponent to mean anything
DEFAULT_CELL_BOOT = 400  # bootstrap replicates over cells (cheap: one small least squares each)


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted power law with its coefficient covariance (over [intercept, *exponents]) and CIs."""

    target: str
    intercept: float
    exponents: dict[str, float]
    covariance: np.ndarray | None
    conf_int: dict[str, tuple[float, float]]  # "intercept" and each variable -> (low, high) at `level`
    residual_variance: float | None
    dof: int | None
    n_points: int
    level: float = 0.95
    covariance_kind: str = "ols"
    bootstrap_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    n_cells: int = 0
    cell_bootstrap_covariance: np.ndarray | None = None  # over [intercept, *exponents], cells resampled
    cell_bootstrap_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    n_cell_boot: int = 0
    flags: tuple[str, ...] = ()
    offset: float = 0.0  # an additive constant given by the user: y = offset + exp(intercept + ...), held fixed
    interactions: tuple[Interaction, ...] = ()  # product terms, after the exponents in the coefficients' order
    corrections: tuple[Correction, ...] = ()  # finite-size terms, after the interactions

    @property
    def extra_terms(self) -> tuple[Interaction | Correction, ...]:
        """The terms beyond the exponents, in the coefficients' order: interactions, then corrections."""
        return (*self.interactions, *self.corrections)

    def predict(self, values: Mapping[str, np.ndarray | float]) -> np.ndarray:
        """Evaluate y at `values` (variable -> value or array)."""
        log_y = sum(c * t for c, t in zip(self.coefficients(), self.terms(values)))
        return self.offset + np.exp(log_y)

    def terms(self, values: Mapping[str, Any]) -> list[Any]:
        """The regressors at `values`: [1, ln v..., interaction terms..., corrections...] (what `coefficients` multiply)."""
        return log_terms(self.exponents, self.extra_terms,
                         {k: np.asarray(v, dtype=float) for k, v in values.items()}, np.log)

    def design(self, values: Mapping[str, Any]) -> np.ndarray:
        """The regressors at `values` as a matrix, one row per point (a refit's design: the bootstrap's)."""
        return np.column_stack(np.broadcast_arrays(*self.terms(values)))

    def keys(self) -> list[str]:
        """Names of the coefficients: "intercept", each variable, each interaction ("B:D"), each correction ("W^-0.5")."""
        return ["intercept", *self.exponents, *(t.name for t in self.extra_terms)]

    def coefficients(self) -> np.ndarray:
        """[intercept, *exponents, *interaction coefficients, *correction coefficients] in the covariance's order."""
        return np.array([self.intercept, *self.exponents.values(), *(t.coefficient for t in self.extra_terms)])

    def inputs(self) -> list[str]:
        """The variables this law takes: its exponents' and its corrections'."""
        return list(dict.fromkeys([*self.exponents, *(c.variable for c in self.corrections)]))


def fit_power_law(
    target: str,
    y: np.ndarray,
    predictors: dict[str, np.ndarray],
    weights: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    level: float = 0.95,
    n_cell_boot: int = DEFAULT_CELL_BOOT,
    seed: int = 0,
    interactions: tuple[tuple[str, str], ...] = (),
    corrections: Mapping[str, float] | None = None,
) -> PowerLawFit:
    """Regress ln y on ln of each predictor (and each `interactions` pair's centred product of logs); `groups`
    (cell ids) gives a cluster-robust covariance. A predictor named in `corrections` (variable -> power q) enters
    as (v / v_min)^-q instead of ln v: the finite-width form (core/correction.py).

    The covariance is None (and the CIs NaN) when there are no residual degrees of freedom, or when it
    is not finite and positive definite (flagged). `n_cell_boot` replicates resample the cells (each
    point is a cell without `groups`) for the bootstrap covariance that intervals compare against.
    """
    import statsmodels.api as sm  # lazy: statsmodels takes ~1 s to import

    y = np.asarray(y, dtype=float)
    names = list(predictors)
    cols = [np.asarray(predictors[v], dtype=float) for v in names]
    for name, col in [(target, y), *zip(names, cols)]:
        if col.shape != y.shape or not np.all(np.isfinite(col)) or np.any(col <= 0):
            raise ScaleplanError(f"power law for {target}: '{name}' must be positive and finite for every point")
    for name, col in zip(names, cols):
        if np.unique(col).size < 2:
            raise ScaleplanError(
                f"power law for {target}: need at least 2 distinct values of {name} to fit its exponent; "
                f"found 1 ({name}={col[0]:.4g}): sweep more sizes"
            )
        check_span(f"power law for {target}", name, col)
    columns = dict(zip(names, cols))
    terms = centred(interactions, columns)
    finite = [Correction(v, float(np.min(columns[v])), float(q), 0.0) for v, q in (corrections or {}).items()]
    logged = [v for v in names if v not in (corrections or {})]
    extra: list[Interaction | Correction] = [*terms, *finite]
    design = np.column_stack(np.broadcast_arrays(*log_terms(logged, extra, columns, np.log)))
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise ScaleplanError(
            f"power law for {target}: ln {' and ln '.join(names)} are collinear over the fitted points; "
            "vary them independently (e.g. several D per size) or drop one"
        )
    model = sm.WLS(np.log(y), design, weights=weights) if weights is not None else sm.OLS(np.log(y), design)
    n, k = design.shape
    n_groups = 0 if groups is None else int(np.unique(groups).size)
    if groups is not None and n_groups > k:
        result = model.fit(cov_type="cluster", cov_kwds={"groups": _codes(groups)}, use_t=True)
        dof, kind = n_groups - 1, "cluster-robust (by cell)"
    else:  # with groups the cells are the observations: a band's runs in 2 cells leave a 2-coefficient law untested
        result = model.fit()
        dof, kind = (n if groups is None else n_groups) - k, ("wls" if weights is not None else "ols")
        if weights is not None and dof > 0 and result.scale < 1.0:
            result = model.fit(cov_type="fixed scale", cov_kwds={"scale": 1.0}, use_t=True)
            kind = "wls, scale floored at 1"
    params = np.asarray(result.params, dtype=float)
    keys = ["intercept", *logged, *(t.name for t in extra)]
    flags = _near_collinear(target, {v: np.log(columns[v]) for v in logged})
    if dof <= 0:
        flags.append(f"{target}: {n_groups or n} cells for {k} coefficients leave no residual degrees of freedom: the law "
                     "passes through every cell, so nothing tests it and it has no interval; sweep more cells (sizes or D)")
    elif dof == 1:
        flags.append(f"{target}: {n_groups or n} cells for {k} coefficients leave 1 residual degree of freedom: the t "
                     f"interval's {level:.0%} quantile is {two_sided_quantile(level, 1):.1f} (normal: "
                     f"{two_sided_quantile(level, None):.2f}), so its prediction intervals span orders of magnitude; sweep more "
                     f"sizes (or D): 2 dof give {two_sided_quantile(level, 2):.1f}, 3 give {two_sided_quantile(level, 3):.1f}")
    cov = None if dof <= 0 else np.asarray(result.cov_params(), dtype=float)
    if cov is not None:
        cov, why = checked_covariance(cov)
        if why:
            flags.append(f"{target}: regression covariance {why}; no t interval written")
    if cov is None:
        resid_var, ci = None, {key: (float("nan"), float("nan")) for key in keys}
        dof_out = None
    else:
        # unweighted residuals: the scatter a new point (a new cell, whose weight is unknown) has around the law
        resid_var = float(np.sum(np.asarray(result.resid) ** 2) / (n - k)) if n > k else None
        bounds = np.asarray(result.conf_int(alpha=1 - level), dtype=float)
        ci = {key: (float(lo), float(hi)) for key, (lo, hi) in zip(keys, bounds)}
        dof_out = int(dof)
    cells = np.arange(n) if groups is None else _codes(groups)
    samples = _cell_bootstrap(design, np.log(y), weights, cells, n_cell_boot, seed)
    boot_cov, boot_ci = None, {}
    if len(samples) > 1:
        boot_ci = {key: percentile_ci(samples[:, i], level) for i, key in enumerate(keys)}
        boot_cov, why = checked_covariance(np.cov(samples, rowvar=False), semidefinite=True)
        if why:
            flags.append(f"{target}: bootstrap-over-cells covariance {why}; not written")
    after = params[1 + len(logged):]
    fitted = tuple(Interaction(t.variables, t.centre, float(p)) for t, p in zip(terms, after))
    fitted_corrections = tuple(Correction(c.variable, c.centre, c.power, float(p)) for c, p in zip(finite, after[len(terms):]))
    return PowerLawFit(
        target=target, intercept=float(params[0]), exponents={v: float(p) for v, p in zip(logged, params[1:])},
        covariance=cov, conf_int=ci, residual_variance=resid_var, dof=dof_out, n_points=n, level=level,
        covariance_kind=kind, n_cells=int(np.unique(cells).size), cell_bootstrap_covariance=boot_cov,
        cell_bootstrap_ci=boot_ci, n_cell_boot=len(samples), flags=tuple(flags), interactions=fitted,
        corrections=fitted_corrections,
    )


NEAR_COLLINEAR = 0.99  # |correlation| of two log regressors above which their exponents are not separately determined


def _near_collinear(target: str, logs: dict[str, np.ndarray]) -> list[str]:
    """A flag for each pair of log regressors correlated beyond NEAR_COLLINEAR (N and D swept at nearly one D/N): the
    rank check passes, but the data fix only a combination of their exponents, which each alone says nothing of."""
    out = []
    names = list(logs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            r = float(np.corrcoef(logs[a], logs[b])[0, 1])
            if abs(r) > NEAR_COLLINEAR:
                out.append(f"{target}: ln {a} and ln {b} are nearly collinear over the fitted points (correlation {r:.5f}): "
                           f"their exponents are not separately determined (read their intervals), and a prediction off the "
                           f"swept {b}-to-{a} relation extrapolates; sweep {a} and {b} independently")
    return out


def replicate_interval(fit: PowerLawFit | None, replicates: np.ndarray | None, values: dict[str, float],
                       level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of `fit`'s prediction at `values` (law variable -> value) over bootstrap `replicates`
    of its coefficients (`fit.coefficients()`'s order per row); None without a fit or replicates."""
    if fit is None or replicates is None or len(replicates) == 0:
        return None
    logs = np.asarray(fit.terms(values), dtype=float)
    lo, hi = percentile_ci(replicates @ logs, level)
    return math.exp(lo) + fit.offset, math.exp(hi) + fit.offset


def check_span(what: str, name: str, values: np.ndarray, min_span: float = MIN_SPAN) -> None:
    """Refuse a regressor whose values span less than `min_span` (max/min): its exponent is not identified."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi < lo * min_span * (1 - 1e-9):  # a span of exactly min_span read back through exp(log(x)) lands a hair under
        raise FitError(
            f"{what}: {name} spans only {hi / lo:.4g}x ({lo:.6g} to {hi:.6g}); fitting an exponent needs at least "
            f"{min_span:g}x: sweep values further apart"
        )


def checked_covariance(cov: np.ndarray, semidefinite: bool = False) -> tuple[np.ndarray | None, str | None]:
    """(cov, None) when it is finite, symmetric and positive definite (semidefinite: eigenvalues >= 0 up to
    rounding, as for tied or fixed parameters), else (None, why): such a matrix never reaches a law file."""
    cov = np.atleast_2d(np.asarray(cov, dtype=float))
    if not np.all(np.isfinite(cov)):
        return None, "is not finite"
    if not np.allclose(cov, cov.T, rtol=1e-8, atol=0.0):
        return None, "is not symmetric"
    cov = 0.5 * (cov + cov.T)
    eig = np.linalg.eigvalsh(cov)
    scale = max(float(np.max(np.abs(eig))), np.finfo(float).tiny)
    if eig.min() < -1e-10 * scale or (not semidefinite and eig.min() <= 1e-14 * scale):
        return None, f"is not positive {'semi' if semidefinite else ''}definite (smallest eigenvalue {eig.min():.3g})"
    return cov, None


def _cell_bootstrap(design: np.ndarray, log_y: np.ndarray, weights: np.ndarray | None, cells: np.ndarray,
                    n_boot: int, seed: int) -> np.ndarray:
    """Coefficient samples from refits on cells resampled with replacement (rank-deficient replicates skipped)."""
    ids = np.unique(cells)
    k = design.shape[1]
    if n_boot <= 0 or ids.size <= k:
        return np.empty((0, k))
    members = [np.flatnonzero(cells == c) for c in ids]
    root_w = np.ones_like(log_y) if weights is None else np.sqrt(np.asarray(weights, dtype=float))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        idx = np.concatenate([members[i] for i in rng.integers(0, ids.size, ids.size)])
        coef, _, rank, _ = np.linalg.lstsq(design[idx] * root_w[idx, None], log_y[idx] * root_w[idx], rcond=None)
        if rank == k:
            out.append(coef)
    return np.array(out).reshape(-1, k)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap samples at `level` (NaN when there are none)."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _codes(groups: np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(groups), return_inverse=True, axis=0)[1].ravel()

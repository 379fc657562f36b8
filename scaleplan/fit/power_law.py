"""Power laws by least squares on logs (statsmodels): ln y = intercept + sum_v e_v ln v.

OLS by default, WLS with weights, and a cluster-robust covariance when several points come from
one cell (the band method), so the interval does not pretend the band's runs are independent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scaleplan.errors import ScaleplanError


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

    def predict(self, values: dict[str, np.ndarray | float]) -> np.ndarray:
        """Evaluate y at `values` (variable -> value or array)."""
        log_y = self.intercept + sum(e * np.log(np.asarray(values[v], dtype=float)) for v, e in self.exponents.items())
        return np.exp(log_y)

    def coefficients(self) -> np.ndarray:
        """[intercept, *exponents] in the covariance's order."""
        return np.array([self.intercept, *self.exponents.values()])


def fit_power_law(
    target: str,
    y: np.ndarray,
    predictors: dict[str, np.ndarray],
    weights: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    level: float = 0.95,
) -> PowerLawFit:
    """Regress ln y on ln of each predictor; `groups` (cell ids) gives a cluster-robust covariance.

    The covariance is None (and the CIs NaN) when there are no residual degrees of freedom.
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
    design = np.column_stack([np.ones_like(y), *[np.log(c) for c in cols]])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise ScaleplanError(
            f"power law for {target}: ln {' and ln '.join(names)} are collinear over the fitted points; "
            "vary them independently (e.g. several D per size) or drop one"
        )
    model = sm.WLS(np.log(y), design, weights=weights) if weights is not None else sm.OLS(np.log(y), design)
    n, k = design.shape
    n_groups = None if groups is None else np.unique(groups).size
    if groups is not None and n_groups > k:
        result = model.fit(cov_type="cluster", cov_kwds={"groups": _codes(groups)}, use_t=True)
        dof, kind = n_groups - 1, "cluster-robust (by cell)"
    else:
        result = model.fit()
        dof, kind = n - k, ("wls" if weights is not None else "ols")
    params = np.asarray(result.params, dtype=float)
    keys = ["intercept", *names]
    if dof <= 0:
        cov, resid_var, ci = None, None, {key: (float("nan"), float("nan")) for key in keys}
        dof_out = None
    else:
        cov = np.asarray(result.cov_params(), dtype=float)
        # unweighted residuals: the scatter a new point (a new cell, whose weight is unknown) has around the law
        resid_var = float(np.sum(np.asarray(result.resid) ** 2) / (n - k)) if n > k else None
        bounds = np.asarray(result.conf_int(alpha=1 - level), dtype=float)
        ci = {key: (float(lo), float(hi)) for key, (lo, hi) in zip(keys, bounds)}
        dof_out = int(dof)
    return PowerLawFit(
        target=target, intercept=float(params[0]), exponents={v: float(p) for v, p in zip(names, params[1:])},
        covariance=cov, conf_int=ci, residual_variance=resid_var, dof=dof_out, n_points=n, level=level,
        covariance_kind=kind,
    )


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

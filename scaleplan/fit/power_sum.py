"""y = E + sum_i A_i / x_i^alpha_i fitted by Huber on log y from a dense start grid (as Hoffmann et al. 2022).

ln y is modelled as LSE(a_1 - alpha_1 ln x_1, ..., e) with A_i = e^a_i and E = e^e. The objective is
non-convex, mostly through the exponents: for fixed exponents y is linear in (E, A_i). So the start grid
is dense in the exponents (48 values each, 2304 starts for two) and each start carries the (E, A_i) that
fit best for its exponents (weighted non-negative least squares, all starts in one numpy computation);
the Huber objective of every start is evaluated at once, L-BFGS runs from the best few, and the fit
reports how many of those reached the best objective. (A grid over the coefficients too, Hoffmann's
6 x 6 x 5 x 5 x 5, can leave the global basin to a start ranked in the hundreds: measured in
tests/fit/test_power_sum.py.) Exponents can be tied (alpha = beta) and any parameter fixed (E = 0 drops
the constant). The loss law L(N, D) and the loss at the optimum L*(C) = E + A / C^alpha are this model.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from scaleplan.errors import FitError
from scaleplan.fit.blas import single_blas_thread

EXPONENT_GRID = np.geomspace(0.01, 3.0, 48)  # each free exponent; the coefficients are profiled, not gridded
COEF_FLOOR = 1e-30  # a coefficient the profile puts at 0 starts from this (relative to the data's scale)
DEFAULT_STARTS = 20  # L-BFGS runs, from the best grid points
DEFAULT_BOOT_STARTS = 3  # per bootstrap replicate: up to 2 distinct full-data optima + the replicate's best grid point
SPACES = ("log", "linear")  # Huber on ln y - ln fit (Chinchilla, Epoch) or on y - fit (least squares, Gadre et al.)
REACHED_RTOL = 1e-5  # a start "reached" the optimum when its objective is within this relative gap
# scipy's default tolerances stop short in the flat E-A valleys (measured: objectives 2e-4 above the optimum on Step
# Law's cells, beta 0.08 instead of 1.16 in tests/fit/test_loss_law.py); these cost ~1.3x the iterations.
_LBFGS_OPTIONS = {"maxiter": 5000, "ftol": 1e-13, "gtol": 1e-9}


@dataclass(frozen=True)
class Constraints:
    """Fixed values (natural units, e.g. {"E": 0.0}) and ties (("beta", "alpha") makes beta equal alpha)."""

    fixed: dict[str, float] = field(default_factory=dict)
    tied: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        """`alpha = beta, E fixed at 1.69` or `none`."""
        parts = [f"{leader} = {follower}" for follower, leader in self.tied]
        parts += [f"{name} fixed at {value:g}" for name, value in self.fixed.items()]
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class PowerSumFit:
    """Best parameters (natural units, by name), the objective reached, and how the starts fared."""

    params: dict[str, float]
    objective: float
    n_points: int
    n_free: int
    grid_size: int
    starts_run: int
    starts_reached: int
    boot: np.ndarray | None  # replicates x parameters (natural units, in `params` order); failed replicates dropped
    n_boot_failed: int = 0
    boot_left_basin: int = 0  # replicates whose optimum is lower than L-BFGS from the full-data optimum reaches


class PowerSumModel:
    """The parametrisation: which parameters are free, and how the free vector maps to (a_i..., e, alpha_i...)."""

    def __init__(self, coefs: tuple[str, ...], exponents: tuple[str, ...], constraints: Constraints) -> None:
        self.coefs, self.exponents = coefs, exponents
        self.names = ("E", *coefs, *exponents)  # natural order
        self._internal = (*coefs, "E", *exponents)  # order of theta: (a_i, e, alpha_i)
        self.constraints = constraints
        for name in [*constraints.fixed, *(n for pair in constraints.tied for n in pair)]:
            if name not in self.names:
                raise FitError(f"unknown parameter '{name}' in a constraint; the parameters are {', '.join(self.names)}")
        for name, value in constraints.fixed.items():
            if not (math.isfinite(value) and (value > 0 or (name == "E" and value == 0))):
                raise FitError(f"fixed {name} must be positive (E may be 0), got {value}")
        leaders = {follower: leader for follower, leader in constraints.tied}
        for follower, leader in constraints.tied:
            if leader in leaders or follower == leader or {follower, leader} & set(constraints.fixed):
                raise FitError(f"cannot tie {follower} to {leader}: tie two distinct free parameters, once")
            if follower not in exponents or leader not in exponents:
                raise FitError(f"cannot tie {follower} to {leader}: only exponents can be tied (e.g. alpha=beta)")
        self.free = tuple(n for n in self._internal if n not in constraints.fixed and n not in leaders)
        p = len(self._internal)
        self.base = np.zeros(p)
        self.select = np.zeros((p, len(self.free)))  # theta = base + select @ free
        for i, name in enumerate(self._internal):
            if name in constraints.fixed:
                value = constraints.fixed[name]
                self.base[i] = value if name in exponents else (math.log(value) if value > 0 else -np.inf)
            else:
                self.select[i, self.free.index(leaders.get(name, name))] = 1.0

    def theta(self, free: np.ndarray) -> np.ndarray:
        """Internal vector(s) (a_i, e, alpha_i) from free vector(s) (last axis)."""
        return self.base + free @ self.select.T

    def natural(self, free: np.ndarray) -> np.ndarray:
        """(E, A_i..., alpha_i...) in natural units from one free vector."""
        theta = self.theta(free)
        k = len(self.coefs)
        return np.concatenate([[np.exp(theta[k])], np.exp(theta[:k]), theta[k + 1:]])

    def exponent_grid(self) -> np.ndarray:
        """Rows of (alpha_1..alpha_k) over the free exponents' grid (ties and fixed values applied)."""
        free = [n for n in self.free if n in self.exponents]
        rows = np.array(list(itertools.product(*[EXPONENT_GRID] * len(free))), dtype=float).reshape(-1, len(free))
        k = len(self.coefs)
        return self.base[k + 1:] + rows @ self.select[k + 1:, [self.free.index(n) for n in free]].T

    def free_vector(self, natural: np.ndarray) -> np.ndarray:
        """Free vector(s) from rows of (E, A_i..., alpha_i...) in natural units (zeros floored at COEF_FLOOR)."""
        k = len(self.coefs)
        logs = np.log(np.maximum(natural[:, :k + 1], COEF_FLOOR))
        by_name = dict(zip(self.names, [logs[:, 0], *logs[:, 1:].T, *natural[:, k + 1:].T]))
        return np.stack([by_name[n] for n in self.free], axis=1)


def huber_objective(theta: np.ndarray, ln_x: np.ndarray, ln_y: np.ndarray, delta: float, weights: np.ndarray,
                    linear: bool = False) -> tuple[float, np.ndarray]:
    """Sum of weight * Huber(residual) / delta^2 at theta = (a_1..a_k, e, alpha_1..alpha_k), and its gradient.

    The residual is LSE(a_i - alpha_i ln x_i, e) - ln y (log space, Chinchilla / Epoch), or with `linear`
    exp(LSE) - y (least squares on y when delta exceeds every residual, as scipy's curve_fit).
    ln_x: (k, n). Scaled by 1/delta^2 so that the optimiser's tolerances mean something; `weights` are
    point multiplicities (a bootstrap replicate reuses the distinct points).
    """
    k = ln_x.shape[0]
    terms = np.concatenate([theta[:k, None] - theta[k + 1:, None] * ln_x, np.full((1, ln_x.shape[1]), theta[k])])
    top = terms.max(axis=0)
    lse = top + np.log(np.exp(terms - top).sum(axis=0))
    with np.errstate(over="ignore", invalid="ignore"):  # a wild line-search step: inf, which L-BFGS backs off from
        fitted = np.exp(lse) if linear else lse
        r = fitted - (np.exp(ln_y) if linear else ln_y)
        abs_r = np.abs(r)
        value = float(np.sum(np.where(abs_r <= delta, 0.5 * r * r, delta * (abs_r - 0.5 * delta)) * weights)) / (delta * delta)
        dr = np.clip(r, -delta, delta) * weights / (delta * delta) * (fitted if linear else 1.0)  # d value / d lse
        soft = np.exp(terms - lse)  # d lse / d term
        return value, np.concatenate([soft @ dr, -(soft[:k] * ln_x) @ dr])


class _ProfileStarts:
    """Starts: every exponent combination of the grid with its best non-negative (E, A_i), and their objectives."""

    def __init__(self, model: PowerSumModel, ln_x: np.ndarray, ln_y: np.ndarray, delta: float, linear: bool) -> None:
        self.model, self.delta, self.linear = model, delta, linear
        self.exponents = model.exponent_grid()
        k = len(model.coefs)
        self.y = np.exp(ln_y)
        self.columns = np.exp(-self.exponents[:, :, None] * ln_x[None])  # (G, k, n): x_i^-alpha_i
        fixed = model.constraints.fixed
        self.fixed_part = sum((fixed[c] * self.columns[:, i] for i, c in enumerate(model.coefs) if c in fixed),
                              np.full((len(self.exponents), self.y.size), fixed.get("E", 0.0)))
        self.free_cols = [i for i, c in enumerate(("E", *model.coefs)) if c not in fixed]  # 0: the constant
        self.size = len(self.exponents)

    def best(self, counts: np.ndarray, k: int) -> list[np.ndarray]:
        """The `k` starts with the lowest objective when point j counts `counts[j]` times (free vectors)."""
        natural = self._profile(counts)
        fitted = natural[:, :1] + np.einsum("gk,gkn->gn", natural[:, 1:1 + len(self.model.coefs)], self.columns)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.abs(fitted - self.y if self.linear else np.log(fitted) - np.log(self.y))
        values = (np.where(r <= self.delta, 0.5 * r * r, self.delta * (r - 0.5 * self.delta)) @ counts)
        order = np.argsort(np.where(np.isfinite(values), values, np.inf), kind="stable")[:k]
        return list(self.model.free_vector(natural[order]))

    def _profile(self, counts: np.ndarray) -> np.ndarray:
        """Rows (E, A_i..., alpha_i...): weighted NNLS of y - fixed part on [1, x_i^-alpha_i] (free columns), by active sets."""
        k = len(self.model.coefs)
        design = np.concatenate([np.ones((self.size, 1, self.y.size)), self.columns], axis=1)[:, self.free_cols]  # (G, m, n)
        weights = counts / (1.0 if self.linear else self.y**2)  # relative errors ~ log residuals
        target = self.y - self.fixed_part
        scale = np.sqrt(np.einsum("gmn,n->gm", design**2, weights)) + 1e-300  # column norms: conditioning
        design = design / scale[:, :, None]
        best = np.zeros((self.size, len(self.free_cols)))
        best_sse = np.full(self.size, np.inf)
        for subset in itertools.chain.from_iterable(itertools.combinations(range(len(self.free_cols)), r)
                                                    for r in range(1, len(self.free_cols) + 1)):
            cols = design[:, list(subset)]
            gram = np.einsum("gmn,gpn,n->gmp", cols, cols, weights) + 1e-12 * np.eye(len(subset))
            rhs = np.einsum("gmn,gn,n->gm", cols, target, weights)
            coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
            resid = target - np.einsum("gm,gmn->gn", coef, cols)
            sse = (resid**2) @ weights
            better = np.all(coef >= 0, axis=1) & (sse < best_sse)
            best[better] = 0.0
            best[np.ix_(better, list(subset))] = coef[better]
            best_sse[better] = sse[better]
        values = np.zeros((self.size, 1 + k))
        for j, c in enumerate(self.free_cols):
            values[:, c] = best[:, j] / scale[:, j]
        fixed = self.model.constraints.fixed
        for i, name in enumerate(("E", *self.model.coefs)):
            if name in fixed:
                values[:, i] = fixed[name]
        return np.concatenate([values, self.exponents], axis=1)


def fit_power_sum(
    ln_x: np.ndarray,
    ln_y: np.ndarray,
    model: PowerSumModel,
    delta: float,
    starts: int = DEFAULT_STARTS,
    n_boot: int = 0,
    boot_starts: int = DEFAULT_BOOT_STARTS,
    seed: int = 0,
    what: str = "fit",
    space: str = "log",
) -> PowerSumFit:
    """Fit the model to (ln x, ln y) (ln_x: k x n) by L-BFGS from the `starts` best points of the dense grid.

    `space` is where the Huber residuals live: "log" (ln fit - ln y, the default) or "linear" (fit - y).

    `n_boot` replicates resample points; each restarts from the distinct optima the full-data starts found
    (up to `boot_starts` - 1, best first) and from the replicate's own best grid point, so a replicate
    can leave the full-data basin.
    """
    from scipy.optimize import minimize  # lazy: scipy.optimize is slow to import

    n = ln_y.size
    if space not in SPACES:
        raise FitError(f"{what}: the residual space must be one of {', '.join(SPACES)}, got '{space}'")
    linear = space == "linear"
    if not delta > 0:
        raise FitError(f"{what}: the Huber delta must be positive, got {delta}")
    if n <= len(model.free):
        raise FitError(f"{what}: {n} points cannot determine {len(model.free)} free parameters ({', '.join(model.free)}); "
                       "add points, or fix or tie parameters")

    def run(counts: np.ndarray, inits: list[np.ndarray]) -> list[tuple[float, np.ndarray]]:
        keep = counts > 0
        x, y, w = ln_x[:, keep], ln_y[keep], counts[keep]

        def f(free: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = huber_objective(model.theta(free), x, y, delta, w, linear)
            return value, grad @ model.select

        out = []
        for start in inits:
            res = minimize(f, start, jac=True, method="L-BFGS-B", options=_LBFGS_OPTIONS)
            if np.isfinite(res.fun) and np.all(np.isfinite(res.x)):
                out.append((float(res.fun), res.x))
        return out

    ones = np.ones(n)
    with single_blas_thread():
        grid = _ProfileStarts(model, ln_x, ln_y, delta, linear)
        results = run(ones, grid.best(ones, max(1, starts)))
        if not results:
            raise FitError(f"{what}: the optimiser failed from every start; check the data for outliers")
        results.sort(key=lambda r: r[0])
        best_value, best = results[0]
        reached = sum(v <= best_value + REACHED_RTOL * max(abs(best_value), 1e-12) for v, _ in results)
        basins = _distinct(results)[:max(1, boot_starts - 1)]
        rng = np.random.default_rng(seed)
        boot, failed, left = [], 0, 0
        for _ in range(n_boot):
            counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
            stay = run(counts, basins[:1])
            rep = stay + run(counts, [*basins[1:], *grid.best(counts, 1)])
            if not rep:
                failed += 1
                continue
            value, x = min(rep, key=lambda r: r[0])
            left += bool(stay) and value < stay[0][0] - REACHED_RTOL * max(abs(stay[0][0]), 1e-12)
            boot.append(model.natural(x))
    return PowerSumFit(
        params=dict(zip(model.names, (float(v) for v in model.natural(best)))), objective=best_value * delta * delta,
        n_points=n, n_free=len(model.free), grid_size=grid.size, starts_run=len(results), starts_reached=int(reached),
        boot=np.array(boot) if boot else None, n_boot_failed=failed, boot_left_basin=int(left),
    )


def _distinct(results: list[tuple[float, np.ndarray]]) -> list[np.ndarray]:
    """The optima of sorted (objective, x) results, one per basin (objectives apart by more than REACHED_RTOL)."""
    out, last = [], None
    for value, x in results:
        if last is None or value > last + REACHED_RTOL * max(abs(last), 1e-12):
            out.append(x)
            last = value
    return out

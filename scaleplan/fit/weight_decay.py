"""The AdamW weight-decay fit: each cell's optimum in (ln lr, ln lambda), and the timescale law tau*(D/N).

Per cell (size, D), trials at the same (lr, lambda) are averaged over seeds and a weighted 2-D quadratic
(`fit.optimum.quadratic_2d`, on `near_window`'s points) is fitted around the minimum; its vertex is
(lr*, lambda*), and tau* = B/(lr* lambda* D) = 1/(lr* lambda* steps) (independent decay: 1/(lambda* steps)).
A bootstrap over trials within cells gives each optimum's interval. Then, with statsmodels,
ln tau* = a + b ln(D/N) (Bergsma et al. 2025 find b < 0) and ln lr* on the size (and D), each cell
weighted by 1/var of its ln optimum over the bootstrap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from scaleplan.core.weight_decay import timescale, weight_decay_for
from scaleplan.errors import FitError, ScaleplanError
from scaleplan.fit.blas import single_blas_thread
from scaleplan.fit.data import Trials
from scaleplan.fit.hyperparameter_law import LAW_VARIABLE, MIN_LOG_SD, MIN_REPLICATES, HyperparameterFit, _with_bootstrap
from scaleplan.fit.optimum import DEFAULT_BAND, DEFAULT_NEAR, MIN_POINTS_2D, CellOptimum, near_window, psd_quadratic_2d, quadratic_2d
from scaleplan.fit.power_law import DEFAULT_CELL_BOOT, PowerLawFit, fit_power_law, percentile_ci
from scaleplan.fit.summary import format_power_law

METHOD = "quadratic-2d (ln lr, ln lambda)"
TAU_TARGET = "wd_tau"
TPP = "(D/N)"  # the regressor of the timescale law: tokens (or samples) per parameter


@dataclass(frozen=True)
class JointOptimum:
    """The optimum of one cell in (lr, lambda), its timescale, and their bootstrap intervals (`ci`)."""

    size: float
    tokens: float
    n_params: float
    steps: float
    lr: float
    weight_decay: float
    tau: float
    loss: float
    n_trials: int
    at_edge: bool = False
    fallback: bool = False
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)  # "lr", "weight_decay", "tau" -> (low, high)

    @property
    def tokens_per_parameter(self) -> float:
        """D / N of the cell."""
        return self.tokens / self.n_params


@dataclass(frozen=True)
class WeightDecayFit:
    """Cell optima in (lr, lambda), the timescale law tau*(D/N) and the lr law on those optima."""

    convention: str
    optima: list[JointOptimum]
    tau: PowerLawFit  # ln tau* = intercept + b ln(D/N), exponent under TPP
    hyper: HyperparameterFit  # the lr law fitted on the cells' lr*, in the form `scaleplan fit` reports and saves
    n_boot: int
    n_boot_failed: int
    weighted: bool
    tau_weights: np.ndarray | None = None  # the cells' weights in the timescale regression (1/var of ln tau*)

    def interior_tau_law(self) -> PowerLawFit | None:
        """The timescale law refitted without the cells whose optimum touches the swept box (a sensitivity check:
        a clamped optimum bounds tau*, it does not measure it); None when fewer than 3 cells are inside."""
        inside = [i for i, o in enumerate(self.optima) if not (o.at_edge or o.fallback)]
        if len(inside) < 3 or len(inside) == len(self.optima):
            return None
        weights = None if self.tau_weights is None else self.tau_weights[inside]
        try:
            return _tau_law([self.optima[i] for i in inside], weights, self.tau.level)
        except ScaleplanError:  # e.g. the inside cells share one D/N
            return None

    def tau_law_in_n_and_d(self) -> tuple[float, dict[str, float], list[list[float]] | None]:
        """The timescale law as c * N^-b * D^b: (intercept, {"N": -b, "D": b}, 3x3 covariance) for a law file."""
        b = self.tau.exponents[TPP]
        cov = None
        if self.tau.covariance is not None:
            jac = np.array([[1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])  # [a, e_N, e_D] = J [a, b]
            cov = (jac @ self.tau.covariance @ jac.T).tolist()
        return self.tau.intercept, {"N": -b, "D": b}, cov


def fit_decay_if_swept(trials: Trials, method: str, convention: str | None, **kwargs: Any) -> WeightDecayFit | None:
    """The fit pipeline's weight-decay path: None when lambda is not swept; else the 2-D fit in `convention` (None: torch)."""
    if not has_decay_axis(trials):
        return None
    if method != "parabola":
        raise FitError(f"a weight-decay sweep is fitted by a 2-D quadratic in (ln lr, ln lambda); --method {method} is "
                       "for lr-only sweeps: drop --method")
    return fit_weight_decay(trials, convention or "torch", **kwargs)


def format_weight_decay(fit: WeightDecayFit) -> str:
    """Cells table (D/N, lr*, lambda*, tau* with bootstrap CIs) and the timescale law, for `scaleplan fit`'s output."""
    header = f"{'size':>10} {'D/N':>9} {'lr*':>9} {'lambda*':>9} {'tau*':>9} {'tau* CI':>21}  flags"
    lines = ["", f"weight decay ({fit.convention} AdamW): tau = B/(lr*lambda*D)"
             if fit.convention == "torch" else "weight decay (independent AdamW): tau = B/(lambda*D)", header, "-" * len(header)]
    for o in fit.optima:
        lo, hi = o.ci.get("tau", (math.nan, math.nan))
        ci = "-" if lo != lo else f"[{lo:.3g}, {hi:.3g}]"
        flags = ",".join(f for f, on in (("edge", o.at_edge), ("argmin-fallback", o.fallback)) if on)
        lines.append(f"{o.size:>10.4g} {o.tokens_per_parameter:>9.3g} {o.lr:>9.3g} {o.weight_decay:>9.3g} {o.tau:>9.3g} "
                     f"{ci:>21}  {flags}")
    lines.append(format_power_law(fit.tau, fit.n_boot))
    if any(o.at_edge for o in fit.optima):
        lines.append("warning: some (lr, lambda) optima touch the edge of the swept box (flag 'edge'): widen the grid there")
    return "\n".join(lines)


def has_decay_axis(trials: Trials) -> bool:
    """True when the trials sweep lambda (a weight_decay or wd_tau column that takes several values)."""
    frame = trials.frame
    return any(col in frame and frame[col].nunique() > 1 for col in ("weight_decay", "wd_tau"))


def fit_weight_decay(
    trials: Trials,
    convention: str = "torch",
    near: float = DEFAULT_NEAR,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> WeightDecayFit:
    """Locate every cell's (lr*, lambda*), then fit tau*(D/N) and lr*(size[, D]) with bootstrap intervals."""
    cells = decay_cells(trials, convention)
    optima = [locate_joint_optimum(cell, convention, near) for cell in cells]
    rng = np.random.default_rng(seed)
    with single_blas_thread():
        replicates = [[locate_joint_optimum(cell.resampled(rng), convention, near) for cell in cells] for _ in range(n_boot)]
    logs = {key: np.log(np.array([[getattr(o, key) for o in rep] for rep in replicates], dtype=float)).reshape(n_boot, len(cells))
            for key in ("lr", "weight_decay", "tau")}
    optima = [replace(o, ci={key: percentile_ci(np.exp(logs[key][:, i]), level) for key in logs}) for i, o in enumerate(optima)]
    weighted = n_boot >= MIN_REPLICATES
    weights = {key: 1.0 / np.maximum(np.std(logs[key], axis=0, ddof=1), MIN_LOG_SD) ** 2 if weighted else None
               for key in ("lr", "tau")}
    tau_fit = _tau_law(optima, weights["tau"], level)
    lr_fit = _lr_law(trials, optima, weights["lr"], level)
    tau_samples, lr_samples, failed = [], [], 0
    for rep in replicates:
        try:
            tau_coef = _tau_law(rep, weights["tau"], level, n_cell_boot=0).coefficients()  # the coefficients alone
            lr_coef = _lr_law(trials, rep, weights["lr"], level, n_cell_boot=0).coefficients()
        except (ScaleplanError, np.linalg.LinAlgError):  # a degenerate replicate
            failed += 1
            continue
        tau_samples.append(tau_coef)
        lr_samples.append(lr_coef)
    tau_fit, lr_fit = _with_bootstrap(tau_fit, tau_samples, level), _with_bootstrap(lr_fit, lr_samples, level)
    hyper = HyperparameterFit(
        method=METHOD, band=DEFAULT_BAND, x=trials.x, optima=[_as_cell_optimum(o) for o in optima], lr=lr_fit,
        batch_size=None, n_boot=n_boot, n_boot_failed=failed, cell_lr_ci=[o.ci.get("lr", (math.nan, math.nan)) for o in optima],
        weighted=weighted, lr_replicates=np.array(lr_samples) if lr_samples else None,
    )
    return WeightDecayFit(convention, optima, tau_fit, hyper, n_boot, failed, weighted, weights["tau"])


@dataclass(frozen=True)
class DecayCell:
    """One cell's trials: lr, lambda, loss per trial, and the cell's size, D, N and step count."""

    size: float
    tokens: float
    n_params: float
    steps: float
    lr: np.ndarray
    weight_decay: np.ndarray
    loss: np.ndarray

    def resampled(self, rng: np.random.Generator) -> DecayCell:
        """The cell with its trials drawn with replacement (a bootstrap replicate)."""
        idx = rng.integers(0, len(self.lr), len(self.lr))
        return replace(self, lr=self.lr[idx], weight_decay=self.weight_decay[idx], loss=self.loss[idx])


def decay_cells(trials: Trials, convention: str) -> list[DecayCell]:
    """The cells of a weight-decay sweep; lambda per trial from `weight_decay`, or from `wd_tau` at the trial's lr and steps."""
    frame = trials.frame
    missing = [c for c in ("steps", "N", "D") if c not in frame]
    if missing:
        raise FitError(f"the weight-decay fit needs the column(s) {missing} (steps, N and D of every trial); "
                       "a sweep export has them, a CSV needs them")
    if trials.has_batch:
        raise FitError("the weight-decay fit locates a 2-D optimum in (lr, lambda); this sweep also varies the batch size "
                       "within cells: sweep batch size and weight decay separately")
    out = []
    for key, cell in frame.groupby(trials.cell_columns, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        where = f"{trials.x}={key[0]:.4g}" + (f", D={key[1]:.4g}" if len(key) > 1 else "")
        for col in ("steps", "N", "D"):
            if cell[col].nunique() != 1:
                raise FitError(f"cell {where}: '{col}' varies within the cell; the weight-decay fit needs one {col} per cell")
        lr, steps = cell["lr"].to_numpy(float), float(cell["steps"].iloc[0])
        if "wd_tau" in cell and cell["wd_tau"].notna().all():
            wd = np.array([weight_decay_for(r, t, steps, convention) for r, t in zip(lr, cell["wd_tau"].to_numpy(float))])
        elif "weight_decay" in cell:
            wd = cell["weight_decay"].to_numpy(float)
        else:
            raise FitError(f"cell {where}: no weight_decay or wd_tau column to fit lambda on")
        keep = np.isfinite(wd) & (wd > 0)  # lambda = 0 has no place on a log axis
        n_lr, n_wd = _distinct(lr[keep]), _distinct(wd[keep])
        if n_lr < 3 or n_wd < 3:
            raise FitError(f"cell {where} has {n_lr} learning rate(s) and {n_wd} positive weight decay(s); the 2-D quadratic "
                           "needs at least 3 of each: sweep more values there")
        out.append(DecayCell(float(key[0]), float(cell["D"].iloc[0]), float(cell["N"].iloc[0]), steps,
                             lr[keep], wd[keep], cell["loss"].to_numpy(float)[keep]))
    return out


def _distinct(values: np.ndarray) -> int:
    """How many different positive values, equal up to float rounding (lambda = 1/(lr tau steps) from two geometric
    grids repeats one value through products that differ in the last bits, by how the CPU rounds)."""
    return int(np.unique(np.round(np.log(values), 9)).size)


@dataclass(frozen=True)
class BoxMinimum:
    """Where a quadratic is lowest within its window: (lr, lambda), the value there, and the window's edges it lies on
    ("low lr", "high lr", "low lambda", "high lambda"; empty when inside)."""

    lr: float
    weight_decay: float
    value: float
    edges: tuple[str, ...]


@dataclass(frozen=True)
class LocalQuadratic:
    """A quadratic in (u, v) = (ln lr, ln lambda) fitted near the minimum of seed-averaged losses.

    loss = c0 + c1 du + c2 dv + c3 du^2 + c4 dv^2 + c5 du dv with du = u - u0, dv = v - v0; `window` is the box
    (u_lo, u_hi, v_lo, v_hi) of the points it was fitted to, `grid` the box of all the points.
    """

    coef: np.ndarray
    u0: float
    v0: float
    window: tuple[float, float, float, float]
    grid: tuple[float, float, float, float]
    n_points: int = 0  # points in the window
    fitted: tuple[tuple[float, float], ...] = ()  # their (lr, lambda)
    constrained: bool = False  # the Hessian was held positive semi-definite (the unconstrained fit was not convex)

    def value(self, lr: float, weight_decay: float) -> float:
        """The model's loss at (lr, lambda)."""
        c, du, dv = self.coef, math.log(lr) - self.u0, math.log(weight_decay) - self.v0
        return float(c[0] + c[1] * du + c[2] * dv + c[3] * du * du + c[4] * dv * dv + c[5] * du * dv)

    def covers(self, lr: float, weight_decay: float) -> bool:
        """True when (lr, lambda) lies in the box of the points the model was fitted to."""
        u_lo, u_hi, v_lo, v_hi = self.window
        return u_lo <= math.log(lr) <= u_hi and v_lo <= math.log(weight_decay) <= v_hi

    def box_minimum(self) -> BoxMinimum:
        """The minimum of the quadratic over its window (the box of the points it was fitted to), never outside it.

        Exact for any quadratic: the vertex when the Hessian is positive definite and the vertex lies inside the box,
        else the lowest of the minima along the box's four edges (a convex quadratic with no interior vertex, or a
        degenerate one whose minimizers form a line, reaches its minimum on the boundary).
        """
        u_lo, u_hi, v_lo, v_hi = (x - o for x, o in zip(self.window, (self.u0, self.u0, self.v0, self.v0)))
        c = self.coef

        def q(du: float, dv: float) -> float:
            return float(c[0] + c[1] * du + c[2] * dv + c[3] * du * du + c[4] * dv * dv + c[5] * du * dv)

        def along(lo: float, hi: float, slope: float, curvature: float) -> float:
            """argmin over [lo, hi] of slope t + curvature t^2."""
            if curvature > 0:
                return float(np.clip(-slope / (2 * curvature), lo, hi))
            return lo if slope * lo + curvature * lo * lo <= slope * hi + curvature * hi * hi else hi

        candidates = []
        for dv in (v_lo, v_hi):  # edges at fixed lambda: q = const + (c1 + c5 dv) du + c3 du^2
            candidates.append((along(u_lo, u_hi, c[1] + c[5] * dv, c[3]), dv))
        for du in (u_lo, u_hi):  # edges at fixed lr
            candidates.append((du, along(v_lo, v_hi, c[2] + c[5] * du, c[4])))
        hess = np.array([[2 * c[3], c[5]], [c[5], 2 * c[4]]])
        if np.all(np.linalg.eigvalsh(hess) > 0):
            du, dv = np.linalg.solve(hess, -c[1:3])
            if u_lo <= du <= u_hi and v_lo <= dv <= v_hi:
                candidates.append((float(du), float(dv)))
        du, dv = min(candidates, key=lambda p: q(*p))
        tol = 1e-9 * max(1.0, u_hi - u_lo, v_hi - v_lo)
        edges = tuple(name for name, on in (("low lr", du <= u_lo + tol), ("high lr", du >= u_hi - tol),
                                            ("low lambda", dv <= v_lo + tol), ("high lambda", dv >= v_hi - tol)) if on)
        return BoxMinimum(math.exp(du + self.u0), math.exp(dv + self.v0), q(du, dv), edges)

    def minimum(self) -> tuple[float, float, bool]:
        """(lr*, lambda*, at_edge): the vertex, clamped to the grid's box (at_edge when it had to be)."""
        a, b, c = 2 * self.coef[3], self.coef[5], 2 * self.coef[4]
        du, dv = np.linalg.solve(np.array([[a, b], [b, c]]), -self.coef[1:3])
        u, v = du + self.u0, dv + self.v0
        u_lo, u_hi, v_lo, v_hi = self.grid
        at_edge = not (u_lo < u < u_hi and v_lo < v < v_hi)
        return math.exp(float(np.clip(u, u_lo, u_hi))), math.exp(float(np.clip(v, v_lo, v_hi))), at_edge


def mean_by_pair(lr: np.ndarray, wd: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lr, lambda, mean loss, count) per distinct (lr, lambda): seeds averaged."""
    pairs, inverse, counts = np.unique(np.column_stack([lr, wd]), axis=0, return_inverse=True, return_counts=True)
    return pairs[:, 0], pairs[:, 1], np.bincount(inverse.ravel(), weights=loss) / counts, counts


def local_quadratic(lr: np.ndarray, wd: np.ndarray, loss: np.ndarray, counts: np.ndarray,
                    near: float = DEFAULT_NEAR, psd: bool = False) -> LocalQuadratic | None:
    """Fit `LocalQuadratic` to the seed means near the minimum (`near_window`, grown to span 3 lambdas), weighted by the
    window's weights times each point's seed count; None when the points allow no convex quadratic.

    psd=False: the unconstrained least-squares quadratic, None unless its Hessian is positive definite (a vertex).
    psd=True: the least-squares quadratic with a positive semi-definite Hessian (`psd_quadratic_2d`; the same fit
    when the unconstrained one is convex), None only when the window cannot identify a quadratic; its minimum is
    then `LocalQuadratic.box_minimum`."""
    u_all, v_all = np.log(lr), np.log(wd)
    for k in range(min(MIN_POINTS_2D, len(loss)), len(loss) + 1):  # near_window ensures 3+ lrs; grow to 3+ lambdas
        sel, w = near_window(lr, loss, near, k)
        if _distinct(wd[sel]) >= 3:
            break
    if _distinct(lr[sel]) < 3 or _distinct(wd[sel]) < 3:
        return None
    u0, v0 = float(np.mean(u_all[sel])), float(np.mean(v_all[sel]))
    du, dv, weights = u_all[sel] - u0, v_all[sel] - v0, w * counts[sel]
    if psd:
        fitted = psd_quadratic_2d(du, dv, loss[sel], weights)
    else:
        vertex = quadratic_2d(du, dv, loss[sel], weights)
        fitted = None if vertex is None else (vertex[0], False)
    if fitted is None:
        return None
    box = (float(u_all[sel].min()), float(u_all[sel].max()), float(v_all[sel].min()), float(v_all[sel].max()))
    return LocalQuadratic(fitted[0], u0, v0, box, (float(u_all.min()), float(u_all.max()), float(v_all.min()), float(v_all.max())),
                          n_points=int(sel.size), fitted=tuple((float(lr[i]), float(wd[i])) for i in sel), constrained=fitted[1])


def locate_joint_optimum(cell: DecayCell, convention: str, near: float = DEFAULT_NEAR) -> JointOptimum:
    """The vertex of `local_quadratic` through the cell's seed-averaged points.

    A vertex outside the swept box is clamped to it and flagged `at_edge`; a fit without a minimum falls back
    to the best seed-averaged point (flagged `fallback`).
    """
    lr, wd, loss, counts = mean_by_pair(cell.lr, cell.weight_decay, cell.loss)
    model = local_quadratic(lr, wd, loss, counts, near)
    common: dict[str, Any] = dict(size=cell.size, tokens=cell.tokens, n_params=cell.n_params, steps=cell.steps,
                                  n_trials=len(cell.lr))
    if model is None:
        best = int(np.argmin(loss))
        lr_star, wd_star = float(lr[best]), float(wd[best])
        edge = _on_edge(np.log(lr), np.log(wd), math.log(lr_star), math.log(wd_star))
        return JointOptimum(lr=lr_star, weight_decay=wd_star, tau=timescale(lr_star, wd_star, cell.steps, convention),
                            loss=float(loss[best]), at_edge=edge, fallback=True, **common)
    lr_star, wd_star, at_edge = model.minimum()
    return JointOptimum(lr=lr_star, weight_decay=wd_star, tau=timescale(lr_star, wd_star, cell.steps, convention),
                        loss=model.value(lr_star, wd_star), at_edge=at_edge, **common)


def _on_edge(u_all: np.ndarray, v_all: np.ndarray, u: float, v: float) -> bool:
    """True when (u, v) is not strictly inside the swept box of ln lr x ln lambda."""
    return not (u_all.min() < u < u_all.max() and v_all.min() < v < v_all.max())


def _tau_law(optima: list[JointOptimum], weights: np.ndarray | None, level: float,
             n_cell_boot: int = DEFAULT_CELL_BOOT) -> PowerLawFit:
    tau = np.array([o.tau for o in optima])
    tpp = np.array([o.tokens_per_parameter for o in optima])
    return fit_power_law(TAU_TARGET, tau, {TPP: tpp}, weights=weights, level=level, n_cell_boot=n_cell_boot)


def _lr_law(trials: Trials, optima: list[JointOptimum], weights: np.ndarray | None, level: float,
            n_cell_boot: int = DEFAULT_CELL_BOOT) -> PowerLawFit:
    predictors = {LAW_VARIABLE[trials.x]: np.array([o.size for o in optima])}
    if len({o.tokens for o in optima}) > 1:
        predictors["D"] = np.array([o.tokens for o in optima])
    return fit_power_law("lr", np.array([o.lr for o in optima]), predictors, weights=weights, level=level,
                         n_cell_boot=n_cell_boot)


def _as_cell_optimum(o: JointOptimum) -> CellOptimum:
    """The lr side of a joint optimum, as the lr-law reports and law files take it."""
    return CellOptimum(size=o.size, tokens=o.tokens, lr=o.lr, batch_size=None, loss=o.loss, n_trials=o.n_trials,
                       points_lr=np.array([o.lr]), points_batch=None, at_edge=o.at_edge, fallback=o.fallback)

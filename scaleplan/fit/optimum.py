"""Locate the optimal learning rate (and batch size) of each cell (N or width, D) of a sweep.

Three methods, as in the literature: a weighted parabola in log-lr (and log-B) fitted to the
points near the minimum (scaleplan's default), the argmin, and the near-optimal band of Step Law /
DeepSeek (every run within 0.25% of the cell's minimum loss; all of them are the optimum). A fourth,
`vertex`, is the adaptive search's own estimator (`scaleplan.sweep.adaptive.estimate`): a parabola in
log-lr fitted to the points within a window in lr around its vertex, re-centred until it settles. The
parabola picks its points by loss (within `near` of the best result): where a cell holds many noisy
points near its optimum, as an adaptive search leaves, that picks the lucky ones wherever they lie, and on
an asymmetric curve it leans to the flat side. `vertex` is the default for an adaptive sweep's trials
(`default_method`). A 1-D parabola whose vertex leaves the lrs it was fitted on is re-centred: that
cell's optimum is the `vertex` method's, in the point estimate and in every bootstrap replicate (`replica`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from scaleplan.errors import FitError, ScaleplanError
from scaleplan.fit.data import Trials

METHODS = ("parabola", "argmin", "band", "vertex")
DEFAULT_BAND = 0.0025  # Step Law / DeepSeek: within 0.25% of the minimum loss
DEFAULT_NEAR = 0.02  # parabola: points within 2% of the minimum loss (at least MIN_POINTS of them)
MIN_POINTS_1D = 5
MIN_POINTS_2D = 9
MIN_LRS = 5  # distinct learning rates in the parabola's window: 3 make a parabola, 5 make it stable
FLAT_END = 0.005  # an end lr whose mean loss is within 0.5% of the best has not shown the curve rising there


@dataclass(frozen=True)
class CellOptimum:
    """The optimum of one cell.

    `lr`/`batch_size` summarise it (the vertex, the argmin, or the geometric mean of the band);
    `points_lr`/`points_batch` are what the power-law regression uses (one point, or every band run).
    `parabola` holds (c0, c1, c2) of loss = c0 + c1 ln lr + c2 ln lr^2 along lr at the optimal batch.
    Flags: `at_edge` (touches the swept range, or the lowest mean loss is at its smallest or largest lr: unbracketed
    wherever a fit's vertex lands; `best_at_end`), `outside_window` (the parabola's vertex fell outside the lrs
    it was fitted on: an extrapolation of the quadratic), `recentred` (that happened to a 1-D parabola, so the
    optimum is the `vertex` method's instead), `flat` (every trial within `band` of the minimum: the sweep
    does not locate an optimum), `flat_end` (the smallest or largest lr's mean loss is within FLAT_END of the
    lowest mean: the curve was not seen rising there, and a better basin may lie beyond; `flat_ends`),
    `between_basins` (the measured loss at the optimum is well above the best lr's, two or more lrs away: the
    located optimum sits on a bump between two basins; `between_basins`).
    """

    size: float
    tokens: float | None
    lr: float
    batch_size: float | None
    loss: float
    n_trials: int
    points_lr: np.ndarray
    points_batch: np.ndarray | None
    at_edge: bool = False
    fallback: bool = False
    parabola: tuple[float, float, float] | None = None
    model: str | None = None
    outside_window: bool = False
    flat: bool = False
    recentred: bool = False
    flat_end: bool = False
    between_basins: bool = False
    batch_at_edge: bool = False  # a (lr, batch) cell's best mean loss, or its B*, at the smallest or largest batch swept

    def where(self, x: str = "N") -> str:
        """`N=1e+08, D=2e+09 (model m1)`: the cell, for messages."""
        text = f"{x}={self.size:.4g}" + ("" if self.tokens is None else f", D={self.tokens:.4g}")
        return text + ("" if self.model is None else f" (model {self.model})")


def method_label(method: str, band: float = DEFAULT_BAND) -> str:
    """The method as recorded in a law file: `parabola`, `argmin` or e.g. `band-0.25%`."""
    return f"band-{band * 100:g}%" if method == "band" else method


def locate_optimum(
    lr: np.ndarray,
    loss: np.ndarray,
    batch: np.ndarray | None = None,
    method: str = "parabola",
    band: float = DEFAULT_BAND,
    near: float = DEFAULT_NEAR,
    size: float = float("nan"),
    tokens: float | None = None,
    model: str | None = None,
    recentre: bool = True,
    check_ends: bool = True,
) -> CellOptimum:
    """Optimum of one cell from its trials' lr, loss (and batch size when it was swept).

    `recentre=False` keeps a 1-D parabola's extrapolated vertex (flagged) instead of the vertex method's: the
    isoFLOP profiles in ln N do, as validated against Porian et al.'s published exponents. `check_ends=False` skips
    the `flat_end` check where nobody reads it (bootstrap replicates, B* and isoFLOP profiles): checking each
    replicate cost a 200-replicate fit a quarter of its time.
    """
    lr = np.asarray(lr, dtype=float)
    loss = np.asarray(loss, dtype=float)
    batch = None if batch is None else np.asarray(batch, dtype=float)
    if method not in METHODS:
        raise ScaleplanError(f"unknown optimum method '{method}'; use one of {', '.join(METHODS)}")
    i_min = int(np.argmin(loss))
    flat = bool(np.all(loss <= loss[i_min] + abs(loss[i_min]) * band))
    one_batch = batch is None or np.unique(batch).size == 1  # a mean over lr alone means nothing on a 2-D grid
    common: dict[str, Any] = dict(size=size, tokens=tokens, n_trials=len(lr), model=model, flat=flat,
                                  flat_end=check_ends and one_batch and any(flat_ends(lr, loss)))
    if method == "band":
        keep = loss <= loss[i_min] * (1.0 + band) if loss[i_min] > 0 else loss <= loss[i_min] + abs(loss[i_min]) * band
        b = None if batch is None else batch[keep]
        return CellOptimum(
            lr=_geomean(lr[keep]), batch_size=None if b is None else _geomean(b), loss=float(loss[i_min]),
            points_lr=lr[keep], points_batch=b, at_edge=_at_edge(lr, lr[keep]), **common,
        )
    argmin = CellOptimum(
        lr=float(lr[i_min]), batch_size=None if batch is None else float(batch[i_min]), loss=float(loss[i_min]),
        points_lr=lr[i_min : i_min + 1], points_batch=None if batch is None else batch[i_min : i_min + 1],
        at_edge=_at_edge(lr, lr[i_min : i_min + 1]), **common,
    )
    if method == "argmin":
        return argmin
    if method == "vertex":
        found = _vertex(lr, loss, batch, argmin, common)
    else:
        swept_batch = batch is not None and np.unique(batch).size >= 3
        found = _parabola(lr, loss, batch if swept_batch else None, near, argmin, common, recentre)
    if check_ends and one_batch and not found.at_edge and best_at_end(lr, loss):
        found = replace(found, at_edge=True)  # a steep rise from the best end puts the vertex inside: still unbracketed
    if check_ends and not one_batch and found.batch_size is not None:
        found = replace(found, batch_at_edge=_batch_unbracketed(batch, lr, loss, found.batch_size))  # type: ignore[arg-type]
    if check_ends and one_batch and between_basins(lr, loss, found.lr):
        return replace(found, between_basins=True)
    return found


def refuse_unbracketed(optima: list[CellOptimum], x: str) -> None:
    """Refuse a law whose every cell has its optimum at the edge of its swept lrs, or is flat (every trial within the
    band of its minimum): each is a bound or a guess, not an optimum, so a law through them says where the grids end
    (cells that share an end lr give an exponent of 0 with a zero-width interval) or nothing, not where the optimum is."""
    if not optima or not all(o.at_edge or o.flat for o in optima):
        return
    where = "; ".join(f"{o.where(x)}: lr {o.lr:.4g}{' (flat)' if o.flat else ''}" for o in optima)
    flat = [o.flat for o in optima]
    if all(flat):
        raise FitError(f"every cell is flat, its loss the same at every lr within the band ({where}): the sweep locates no "
                       "optimum, so no law can be fitted; train longer or widen the lr grid until the loss moves with lr")
    where_it_lies = "at the edge of its swept lrs or is flat" if any(flat) else "at the edge of its swept lrs"
    raise FitError(f"every cell's optimum lies {where_it_lies} ({where}): the sweep brackets no optimum, so no law can be "
                   "fitted; widen the lr grid past those lrs and sweep again")


def min_lrs(method: str) -> int:
    """Distinct learning rates a cell needs for `method`: 3 to fit a parabola (parabola, vertex), else 2."""
    return 3 if method in ("parabola", "vertex") else 2


def default_method(sampler: str | None) -> str:
    """The optimum method for trials an adaptive search chose (`vertex`: its own estimator), else `parabola`."""
    return "vertex" if sampler == "adaptive" else "parabola"


def locate_optima(trials: Trials, method: str = "parabola", band: float = DEFAULT_BAND, near: float = DEFAULT_NEAR) -> list[CellOptimum]:
    """The optimum of every cell, after checking each cell has enough distinct learning rates."""
    return cell_optima(cell_arrays(trials, method), method, band, near)


CellKey = tuple[float, "float | None", "str | None"]  # (size, tokens, model)
CellArrays = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]  # (lr, loss, batch)


def cell_optima(cells: dict[CellKey, CellArrays], method: str, band: float = DEFAULT_BAND, near: float = DEFAULT_NEAR,
                chosen: list[CellOptimum] | None = None) -> list[CellOptimum]:
    """The optimum of every cell of `cell_arrays`; the bootstrap passes resampled cells and the full data's optima
    as `chosen`, so that each replicate uses the estimator the full data chose for its cell (`replica`)."""
    return [
        replica(lr, loss, batch, method, band, near, size, tokens, model, chosen[i]) if chosen is not None
        else locate_optimum(lr, loss, batch, method, band, near, size, tokens, model)
        for i, ((size, tokens, model), (lr, loss, batch)) in enumerate(cells.items())
    ]


def replica(lr: np.ndarray, loss: np.ndarray, batch: np.ndarray | None, method: str, band: float, near: float,
            size: float, tokens: float | None, model: str | None, chosen: CellOptimum) -> CellOptimum:
    """A bootstrap replicate's optimum of a cell whose full data gave `chosen`: the vertex method where the full
    data's parabola was re-centred, else `method` without re-centring. The estimator is picked once per cell, so a
    replicate whose resampled parabola happens to leave its window does not switch estimators (and move the
    cell's bootstrap variance, which weights the law) on its own."""
    if chosen.recentred:
        return replace(locate_optimum(lr, loss, batch, "vertex", band, near, size, tokens, model, check_ends=False),
                       recentred=True)
    return locate_optimum(lr, loss, batch, method, band, near, size, tokens, model, recentre=False, check_ends=False)


def cell_arrays(trials: Trials, method: str) -> dict[CellKey, CellArrays]:
    """{(size, tokens, model): (lr, loss, batch)} per cell; raises if a cell cannot locate an optimum."""
    need = min_lrs(method)
    frame = trials.frame
    out: dict[CellKey, CellArrays] = {}
    for key, cell in frame.groupby(trials.cell_columns, sort=True):
        values = dict(zip(trials.cell_columns, key if isinstance(key, tuple) else (key,)))
        size = float(values[trials.x])
        tokens = float(values["D"]) if "D" in values else None
        model = str(values["model"]) if "model" in values else None
        distinct = cell["lr"].nunique()
        if distinct < need:
            where = f"{trials.x}={size:.4g}" + ("" if tokens is None else f", D={tokens:.4g}") + ("" if model is None else f" (model {model})")
            hint = " or use --method argmin" if need == 3 and distinct == 2 else ""
            raise ScaleplanError(
                f"cell {where} has {'a single learning rate' if distinct == 1 else f'{distinct} learning rates'}"
                f" ({', '.join(f'{v:.3g}' for v in sorted(cell['lr'].unique()))}); the {method} method needs at"
                f" least {need} per cell: sweep more learning rates there{hint}"
            )
        batch = cell["batch_size"].to_numpy(float) if trials.has_batch else None
        out[(size, tokens, model)] = (cell["lr"].to_numpy(float), cell["loss"].to_numpy(float), batch)
    return out


def _parabola(lr: np.ndarray, loss: np.ndarray, batch: np.ndarray | None, near: float, argmin: CellOptimum, common: dict[str, Any],
              recentre: bool = True) -> CellOptimum:
    """Weighted least-squares quadratic in (ln lr[, ln B]) around the minimum; its vertex is the optimum.

    The points are `near_window`'s; a non-convex fit falls back to the argmin (flagged). A vertex outside the
    window's lrs (or batch sizes) is an extrapolation of the quadratic: flagged (and, like any vertex, clamped
    to the swept range). Along lr alone (and `recentre`) such a vertex is replaced by the `vertex` method's (flagged `recentred`):
    on a flat, bumpy curve the loss window spans octaves and its quadratic's vertex lands wherever the bumps
    tilt it, while a window in lr re-centred on the vertex follows the curve's own minimum.
    """
    sel, w = near_window(lr, loss, near, MIN_POINTS_2D if batch is not None else MIN_POINTS_1D)
    u_all = np.log(lr)
    u0 = float(np.mean(u_all[sel]))
    u = u_all[sel] - u0
    if np.unique(u).size < 3:
        return _fallback(argmin)
    outside = False
    if batch is None:
        design = np.column_stack([np.ones_like(u), u, u * u])
        c = _wls(design, loss[sel], w)
        if c is None or c[2] <= 0:
            return _fallback(argmin)
        u_star = -c[1] / (2 * c[2])
        v_star = None
        slice_coef = (c[0], c[1], c[2])
    else:
        v_all = np.log(batch)
        v0 = float(np.mean(v_all[sel]))
        v = v_all[sel] - v0
        if np.unique(v).size < 3:
            return _fallback(argmin)
        fitted = quadratic_2d(u, v, loss[sel], w)
        if fitted is None:
            return _fallback(argmin)
        c, (u_star, v_star) = fitted
        outside = not (v.min() <= v_star <= v.max())
        v_star = float(np.clip(v_star, v_all.min() - v0, v_all.max() - v0))
        slice_coef = (c[0] + c[2] * v_star + c[4] * v_star**2, c[1] + c[5] * v_star, c[3])
    outside = outside or not (u.min() <= u_star <= u.max())
    if outside and v_star is None and recentre:
        recentred = _vertex(lr, loss, None, argmin, common)
        if not recentred.fallback:
            return replace(recentred, recentred=True)
    u_lo, u_hi = u_all.min() - u0, u_all.max() - u0
    at_edge = not (u_lo < u_star < u_hi)
    u_star = float(np.clip(u_star, u_lo, u_hi))
    a0, a1, a2 = slice_coef
    # Re-express the lr slice in absolute ln lr: a0 + a1 (x - u0) + a2 (x - u0)^2.
    parabola = (a0 - a1 * u0 + a2 * u0 * u0, a1 - 2 * a2 * u0, a2)
    lr_star = float(np.exp(u_star + u0))
    b_star = None if v_star is None else float(np.exp(v_star + v0))
    if batch is None and argmin.batch_size is not None:
        b_star = argmin.batch_size  # batch not swept in this cell: it is the cell's (single) batch size
    return CellOptimum(
        lr=lr_star, batch_size=b_star, loss=float(a0 + a1 * u_star + a2 * u_star**2),
        points_lr=np.array([lr_star]), points_batch=None if b_star is None else np.array([b_star]),
        at_edge=at_edge, parabola=parabola, outside_window=outside, **common,
    )


def _vertex(lr: np.ndarray, loss: np.ndarray, batch: np.ndarray | None, argmin: CellOptimum,
            common: dict[str, Any]) -> CellOptimum:
    """The adaptive search's estimate of lr* (a window in ln lr around the vertex; `adaptive.estimate`), at the
    cell's one batch size. Without a convex fit near the best lr, the estimate's own answer (the best lr of a
    half-octave running mean; flagged as a fallback, its loss the mean there); with fewer than 3 lrs, the argmin
    (flagged). A vertex the window does not bracket is flagged `outside_window`; one at the lrs' ends, `at_edge`."""
    from scaleplan.sweep.adaptive import Observation, estimate

    if batch is not None and np.unique(batch).size > 1:
        raise ScaleplanError(f"cell {argmin.where()} sweeps {np.unique(batch).size} batch sizes; the vertex method locates lr at one batch size:"
                             " put the batch size in the cells (--lr-batch) or use --method parabola")
    found = estimate([Observation(float(a), float(b)) for a, b in zip(lr, loss)])
    if found is None:
        return _fallback(argmin)
    if found.parabola is None:
        at = float(np.mean(loss[np.isclose(lr, found.lr, rtol=1e-9)]))
    else:
        a0, a1, a2 = found.parabola
        at = float(a0 + a1 * math.log(found.lr) + a2 * math.log(found.lr) ** 2)
    return CellOptimum(
        lr=found.lr, batch_size=argmin.batch_size, loss=at, points_lr=np.array([found.lr]),
        points_batch=None if argmin.batch_size is None else np.array([argmin.batch_size]),
        at_edge=_at_edge(lr, np.array([found.lr])), fallback=found.parabola is None, parabola=found.parabola,
        outside_window=not found.bracketed, **common,
    )


def near_window(lr: np.ndarray, loss: np.ndarray, near: float, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    """The points a quadratic is fitted to (indices, best first) and their weights.

    Points within `near` (relative) of the minimum loss, grown (best first) to at least `min_points` points
    spanning MIN_LRS distinct learning rates, weighted 1 / (1 + gap / (near * |L_min|)).
    """
    order = np.argsort(loss, kind="stable")
    l_min = loss[order[0]]
    scale = near * max(abs(l_min), 1e-12)
    n_near = int(np.sum(loss <= l_min + scale))
    first_seen = np.unique(lr[order], return_index=True)[1]
    enough_lrs = np.sort(first_seen)[min(MIN_LRS, first_seen.size) - 1] + 1
    sel = order[: min(len(loss), max(n_near, enough_lrs, min_points))]
    return sel, 1.0 / (1.0 + (loss[sel] - l_min) / scale)


def quadratic_2d(u: np.ndarray, v: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, tuple[float, float]] | None:
    """Weighted least squares y = c0 + c1 u + c2 v + c3 u^2 + c4 v^2 + c5 u v and its vertex (u*, v*).

    None when the design is rank-deficient or the quadratic has no minimum (a Hessian eigenvalue <= 0).
    """
    c = _wls(_design_2d(u, v), y, w)
    if c is None:
        return None
    hess = np.array([[2 * c[3], c[5]], [c[5], 2 * c[4]]])
    if np.any(np.linalg.eigvalsh(hess) <= 0):
        return None
    u_star, v_star = np.linalg.solve(hess, -np.array([c[1], c[2]]))
    return c, (float(u_star), float(v_star))


def _design_2d(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones_like(u), u, v, u * u, v * v, u * v])


def psd_quadratic_2d(u: np.ndarray, v: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, bool] | None:
    """Weighted least squares y = c0 + c1 u + c2 v + c3 u^2 + c4 v^2 + c5 u v with its Hessian [[2 c3, c5], [c5, 2 c4]]
    constrained positive semi-definite (a convex quadratic): (coefficients, whether the constraint was active), None
    when the design is rank-deficient.

    When the unconstrained fit is already convex it is the answer (it is feasible, so it is the constrained optimum).
    Otherwise the problem (convex) has its optimum on the boundary of the PSD cone, where the Hessian has rank <= 1:
    H = a n n^T with n = (cos t, sin t) and a >= 0. For each direction t the rest is a linear least squares (a clipped
    to 0 where it would be negative), so the fit is a search over the one angle: a grid of half-degree steps, refined
    by a bounded Brent search around the best.
    """
    design = _design_2d(u, v)
    c = _wls(design, y, w)
    if c is None:
        return None
    if np.all(np.linalg.eigvalsh(np.array([[2 * c[3], c[5]], [c[5], 2 * c[4]]])) >= 0):
        return c, False
    from scipy.optimize import minimize_scalar  # lazy: scipy.optimize is slow to import

    sw, y_mid = np.sqrt(w), float(np.mean(y))  # centred: losses differ in the 4th digit
    target, linear = (y - y_mid) * sw, np.column_stack([np.ones_like(u), u, v]) * sw[:, None]

    def fit_at(t: float) -> tuple[float, np.ndarray]:
        """(weighted squared error, [c0, c1, c2, a]) of the best fit whose Hessian is a n n^T with a >= 0."""
        columns = np.column_stack([linear, sw * (u * math.cos(t) + v * math.sin(t)) ** 2 / 2])
        coef = np.linalg.lstsq(columns, target, rcond=None)[0]
        if coef[3] < 0:  # the best a >= 0 is then 0: a plane
            coef = np.append(np.linalg.lstsq(linear, target, rcond=None)[0], 0.0)
        residual = columns @ coef - target
        return float(residual @ residual), coef

    step = math.pi / 360
    grid = np.arange(0.0, math.pi, step)
    t0 = float(grid[int(np.argmin([fit_at(t)[0] for t in grid]))])
    refined = float(minimize_scalar(lambda x: fit_at(x)[0], bounds=(t0 - step, t0 + step), method="bounded",
                                    options={"xatol": 1e-12}).x)
    t, (_, (c0, c1, c2, a)) = min(((x, fit_at(x)) for x in (refined, t0)), key=lambda pair: pair[1][0])  # Brent's, unless worse
    return np.array([c0 + y_mid, c1, c2, a * math.cos(t) ** 2 / 2, a * math.sin(t) ** 2 / 2, a * math.cos(t) * math.sin(t)]), True


def _wls(design: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    sw = np.sqrt(w)
    coef, _, rank, _ = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)
    return coef if rank == design.shape[1] else None


def _fallback(argmin: CellOptimum) -> CellOptimum:
    return CellOptimum(**{**argmin.__dict__, "fallback": True})


def flat_ends(lr: np.ndarray, loss: np.ndarray) -> tuple[bool, bool]:
    """(bottom, top): whether the smallest / largest lr's mean loss over its trials is within FLAT_END of the lowest
    mean, at an lr that is not itself the lowest: a plateau there can hide a better basin beyond it (the MLP's
    batch-128, 2048-step target was flat within 0.3% from lr 0.002 to 0.018, then 0.9% lower at 0.07). A mean
    that is not finite (a diverged trial) is never flat."""
    best = _best_mean(lr, loss)
    if best is None:
        return False, False
    means, finite, i_best = best
    near = finite & (means - means[i_best] <= FLAT_END * abs(means[i_best]))
    return bool(near[0] and i_best != 0), bool(near[-1] and i_best != means.size - 1)


def best_at_end(lr: np.ndarray, loss: np.ndarray) -> bool:
    """True when the lowest mean loss over the swept lrs is at the smallest or largest lr: the measurements do not
    bracket the optimum, wherever a fit's vertex lands."""
    best = _best_mean(lr, loss)
    return best is not None and best[2] in (0, best[0].size - 1)


def _batch_unbracketed(batch: np.ndarray, lr: np.ndarray, loss: np.ndarray, b_star: float) -> bool:
    """Whether a (lr, batch) cell's B* is at the smallest or largest batch swept, or its lowest mean loss (over the
    trials of one lr and batch) is at one of them: the batch sizes do not bracket the optimum there."""
    frame = pd.DataFrame({"lr": lr, "batch": batch, "loss": loss})
    means = frame.groupby(["lr", "batch"])["loss"].mean()
    finite = means[np.isfinite(means.to_numpy(float))]
    best = float(finite.idxmin()[1]) if len(finite) else None
    return _at_edge(batch, np.array([b_star])) or best in (float(np.min(batch)), float(np.max(batch)))


def _best_mean(lr: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(the mean loss per distinct lr, ascending, which are finite, the index of the lowest finite one); None with
    fewer than two lrs or none finite."""
    values, _, _, means = _lr_means(lr, loss)
    finite = np.isfinite(means)
    if values.size < 2 or not finite.any():
        return None
    return means, finite, int(np.argmin(np.where(finite, means, np.inf)))


def between_basins(lr: np.ndarray, loss: np.ndarray, lr_star: float) -> bool:
    """True when the mean loss measured at the swept lr nearest `lr_star` lies two or more lrs from the best mean and
    above it by more than FLAT_END and 3 standard errors (seed-to-seed scatter pooled over repeated lrs): a quadratic
    through two basins puts its vertex on the bump between them. Without repeated lrs there is no noise scale: False."""
    values, index, counts, means = _lr_means(lr, loss)
    dof = len(loss) - values.size
    if dof < 2 or not np.all(np.isfinite(means)):
        return False
    sd = math.sqrt(float(np.sum((loss - means[index]) ** 2)) / dof)
    best, at = int(np.argmin(means)), int(np.argmin(np.abs(np.log(values) - math.log(lr_star))))
    gap = float(means[at] - means[best])
    noise = 3 * sd * math.sqrt(1 / counts[at] + 1 / counts[best])
    return abs(at - best) >= 2 and gap > max(FLAT_END * abs(float(means[best])), noise)


def _lr_means(lr: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(the distinct lrs, each trial's index among them, trials per lr, mean loss per lr)."""
    values, index = np.unique(np.asarray(lr, dtype=float), return_inverse=True)
    counts = np.bincount(index)
    return values, index, counts, np.bincount(index, weights=np.asarray(loss, dtype=float)) / counts


def _at_edge(all_lr: np.ndarray, chosen: np.ndarray) -> bool:
    """True when the optimum touches the smallest or largest lr swept: the grid may not bracket it."""
    ends = np.min(all_lr), np.max(all_lr)  # with a relative tolerance: exp(ln lr) need not round-trip exactly
    return bool(np.min(chosen) <= ends[0] * (1 + 1e-9) or np.max(chosen) >= ends[1] * (1 - 1e-9))


def _geomean(x: np.ndarray) -> float:
    return float(np.exp(np.mean(np.log(x))))

"""Adaptive lr search of one cell (width, depth, D, steps, batch size; all seeds): bracket, fit, re-centre, stop.

Near its minimum the loss is close to a parabola in ln lr, and a width's optimum lies near the law
fitted on the smaller widths. So each round proposes a few lrs: first a bracket (around that prior, or
across the whole range when there is none), then points either side of the fitted vertex, until the
vertex's 95% interval lies within ±tolerance or the budget is spent. Diverged trials cap the bracket
from above. Every function here is a pure function of the results so far, so the sweep plan can
replay a cell after a restart and any worker computes the same next round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from scaleplan.core.stats import student_t_quantile

HALF_MIN = math.log(2.0)  # narrowest first bracket around a prior: one octave either side
SPREAD_MIN = 0.25  # refinement points sit at least this far (ln lr) from the vertex ...
SPREAD_MAX = 1.0  # ... and at most this far
WIDEN = 1.0  # without a convex fit yet: points out to ±WIDEN (ln lr) around the best lr
NEAR = 0.02  # loss rise (relative) at the refinement points; the fit window reaches 2 x NEAR
SMOOTH = 0.35  # half-width (ln lr, half an octave) of the running mean that picks the first centre
WINDOW_MIN, WINDOW_MAX = 0.5, 1.0  # the fit window's half-width (ln lr)
ITERATIONS = 4
MIN_POINTS = 5
SE_FLOOR = 0.01  # ln lr: the least uncertainty a prior's optimum is given
LEVEL = 0.95  # two-sided level of the vertex interval the tolerance applies to
MAX_HALF = 20.0  # a wider interval (ln lr) is reported as unknown
MIN_DOF = 2  # residual degrees of freedom (5 points for a parabola) before an interval is trusted


@dataclass(frozen=True)
class Observation:
    """One finished trial of the cell: its lr and held-out loss (None when it diverged)."""

    lr: float
    loss: float | None


@dataclass(frozen=True)
class Prior:
    """Where the optimum is expected: `lr`, within a factor `factor` either way (a prediction interval)."""

    lr: float
    factor: float


@dataclass(frozen=True)
class SearchSettings:
    """The cell's search: the spec's lr range, when to stop, lrs per round, and the budget in trials.

    It stops once the 95% interval of lr* lies within lr* (1 ± `tolerance`), or once every lr in that
    interval costs at most `regret` (relative loss, under the fitted parabola): near a flat optimum the
    loss no longer depends on where exactly lr* is, and more trials would not change the choice.
    """

    low: float
    high: float
    tolerance: float = 0.1
    regret: float = 0.003
    round_size: int = 4
    budget: int = 24


@dataclass(frozen=True)
class Estimate:
    """The located optimum: `lr` with its 95% interval (`low`, `high`; 0 and inf when unknown).

    `bracketed` is False while the best lr is an end of the lrs tried (the optimum may lie beyond);
    `regret` is the relative loss, under the fitted parabola, at the farther end of the interval;
    `spread` is how far from lr* the parabola rises by NEAR: points there tell the most about its vertex
    while staying in its window. `parabola` is the last fit (c0, c1, c2) of loss = c0 + c1 ln lr + c2 ln lr^2
    (None without a convex fit: `lr` is then the best lr of the running mean).
    """

    lr: float
    low: float
    high: float
    bracketed: bool
    regret: float = math.inf
    spread: float = SPREAD_MAX  # |ln lr - ln lr*| where the fitted parabola rises by NEAR (clipped)
    parabola: tuple[float, float, float] | None = None

    def converged(self, tolerance: float, regret: float) -> bool:
        """True when the interval lies inside lr (1 ± tolerance), or costs at most `regret` anywhere in it."""
        if not self.bracketed or self.low <= 0 or not math.isfinite(self.high):
            return False
        half = math.log(self.high / self.lr)
        return half <= math.log1p(tolerance) or self.regret <= regret


@dataclass(frozen=True)
class Round:
    """What to do next: train `lrs` (empty when the search stopped), and why."""

    lrs: tuple[float, ...]
    estimate: Estimate | None
    reason: str  # bracket | extend-down | extend-up | widen | refine | converged | budget | range-edge | no-finite-loss

    @property
    def stopped(self) -> bool:
        return not self.lrs


def estimate(history: Sequence[Observation]) -> Estimate | None:
    """The optimum of the finite results: a quadratic in ln lr fitted to the points near it, with its interval.

    The points used are those within a distance of the vertex (not those within some loss of the best
    result: with many noisy points that picks the lucky ones, wherever they are). Start at the best lr of a
    half-octave running mean, fit, move to the vertex and set the window to where the parabola rises by
    2 x NEAR; repeat. The 95% interval is the delta method on the least-squares fit (t quantile).
    """
    finite = [(math.log(o.lr), float(o.loss)) for o in history if o.loss is not None and math.isfinite(o.loss)]
    u = np.array([p[0] for p in finite])
    y = np.array([p[1] for p in finite])
    distinct = np.unique(u)
    if distinct.size < 3:
        return None
    smooth = [float(np.mean(y[np.abs(u - d) <= SMOOTH])) for d in distinct]
    center, window = float(distinct[int(np.argmin(smooth))]), WINDOW_MAX
    last = None  # the last convex fit: (its minimum loss, curvature, vertex se, dof, points used, vertex)
    parabola = None  # ... and its coefficients in ln lr itself
    for _ in range(ITERATIONS):
        sel = _window(u, center, window)
        fit = _quadratic(u[sel] - center, y[sel])
        if fit is None:
            break
        (c0, c1, c2), se, dof = fit
        vertex = center - c1 / (2 * c2)
        last = (c0 - c1 * c1 / (4 * c2), c2, se, dof, sel, vertex)
        parabola = (c0 - c1 * center + c2 * center * center, c1 - 2 * c2 * center, c2)
        center = min(max(vertex, float(u[sel].min())), float(u[sel].max()))
        window = min(max(math.sqrt(2 * NEAR * (abs(last[0]) or 1.0) / c2), WINDOW_MIN), WINDOW_MAX)
    if last is None:  # no convex parabola near the best lr: only where it is
        return Estimate(math.exp(center), 0.0, math.inf, False)
    minimum, c2, se, dof, sel, vertex = last
    scale = abs(minimum) or 1.0
    bracketed = bool(u[sel].min() < vertex < u[sel].max())
    spread = min(max(math.sqrt(NEAR * scale / c2), SPREAD_MIN), SPREAD_MAX)
    half = student_t_quantile(0.5 + LEVEL / 2, dof) * se if dof >= MIN_DOF else math.inf
    if not half < MAX_HALF:  # too few points, or a nearly flat fit: the interval says nothing
        return Estimate(math.exp(center), 0.0, math.inf, bracketed, math.inf, spread, parabola)
    return Estimate(math.exp(center), math.exp(center - half), math.exp(center + half), bracketed,
                    c2 * half**2 / scale, spread, parabola)


def _window(u: np.ndarray, center: float, window: float) -> np.ndarray:
    """The points within `window` of `center`, widened until they hold 3 distinct lrs and MIN_POINTS points."""
    order = np.argsort(np.abs(u - center), kind="stable")
    sel = np.abs(u - center) <= window
    k = int(sel.sum())
    while k < len(u) and (np.unique(u[order[:k]]).size < 3 or k < MIN_POINTS):
        k += 1
    if k > int(sel.sum()):
        sel = np.zeros(len(u), dtype=bool)
        sel[order[:k]] = True
    return sel


def _quadratic(x: np.ndarray, y: np.ndarray) -> tuple[tuple[float, float, float], float, int] | None:
    """Least squares y = c0 + c1 x + c2 x^2: the coefficients, the standard error of the vertex -c1 / (2 c2)
    (delta method; inf without residual dof) and the residual dof. None unless convex."""
    design = np.column_stack([np.ones_like(x), x, x * x])
    coef, _, rank, _ = np.linalg.lstsq(design, y, rcond=None)
    if rank < 3 or coef[2] <= 0:
        return None
    dof = len(y) - 3
    if dof < 1:
        return (float(coef[0]), float(coef[1]), float(coef[2])), math.inf, dof
    resid = y - design @ coef
    cov = float(resid @ resid) / dof * np.linalg.inv(design.T @ design)
    grad = np.array([0.0, -1.0 / (2 * coef[2]), coef[1] / (2 * coef[2] ** 2)])
    se = math.sqrt(max(float(grad @ cov @ grad), 0.0))
    return (float(coef[0]), float(coef[1]), float(coef[2])), se, dof


def next_round(history: Sequence[Observation], settings: SearchSettings, prior: Prior | None = None) -> Round:
    """The next round of lrs for a cell given every finished trial so far (empty `lrs`: the search is done).

    Every lr lies in [low, high]: the search works in ln lr, and exp(ln high) can round above high."""
    step = _next_round(history, settings, prior)
    return replace(step, lrs=tuple(min(max(lr, settings.low), settings.high) for lr in step.lrs))


def _next_round(history: Sequence[Observation], settings: SearchSettings, prior: Prior | None) -> Round:
    """`next_round` before its lrs are clamped into the range."""
    lo, hi = math.log(settings.low), math.log(settings.high)
    room = settings.budget - len(history)
    found = estimate(history)
    if room <= 0:
        return Round((), found, "budget")
    size = min(settings.round_size, room)
    if not history:
        return Round(_first_bracket(lo, hi, size if prior is not None else min(size + 1, room), prior), None, "bracket")
    tried = [math.log(o.lr) for o in history]
    diverged = [math.log(o.lr) for o in history if o.loss is None or not math.isfinite(o.loss)]
    cap = min(diverged, default=math.inf)  # every proposal stays below the smallest diverged lr

    def propose(us: Sequence[float], reason: str) -> Round:
        return _propose(us, lo, hi, cap, tried, reason, found)

    finite = sorted((math.log(o.lr), float(o.loss)) for o in history if o.loss is not None and math.isfinite(o.loss))
    if not finite:  # everything diverged: step down below the smallest lr tried
        return propose(_beyond(cap, -1, _spacing(sorted(diverged)), size), "no-finite-loss")
    us = sorted({u for u, _ in finite})
    best_u = min(finite, key=lambda p: p[1])[0]
    step = _spacing(us)
    if best_u == us[0] and us[0] > lo + 1e-9:
        return propose(_beyond(us[0], -1, step, size), "extend-down")
    if best_u == us[-1] and us[-1] < min(hi, cap) - 1e-3:
        if cap < math.inf:  # the optimum lies between the best finite lr and the smallest diverged one
            return propose(tuple(np.linspace(us[-1], cap, size + 2)[1:-1]), "extend-up")
        return propose(_beyond(us[-1], +1, step, size), "extend-up")
    if found is None or not found.bracketed:  # best lr is an end of the range, or no convex fit yet
        at_range_end = best_u <= lo + 1e-9 or best_u >= hi - 1e-9
        if at_range_end and found is not None:
            return Round((), found, "range-edge")
        # Flat or noisy around the best lr: look wider (narrowing on noise would only fit the noise).
        return propose(_around(best_u, WIDEN, size), "widen")
    if found.converged(settings.tolerance, settings.regret):
        return Round((), found, "converged")
    return propose(_around(math.log(found.lr), found.spread, size), "refine")


def _first_bracket(lo: float, hi: float, size: int, prior: Prior | None) -> tuple[float, ...]:
    """Cold: `size` lrs spread over the whole range; warm: `size` lrs across the prior's interval."""
    if prior is None:
        return tuple(math.exp(lo + (hi - lo) * (i + 0.5) / size) for i in range(size))
    center = min(max(math.log(prior.lr), lo), hi)
    half = max(math.log(prior.factor), HALF_MIN)
    start, stop = max(center - half, lo), min(center + half, hi)
    return tuple(math.exp(u) for u in np.linspace(start, stop, size))


def _spacing(us: Sequence[float]) -> float:
    """Typical gap between the lrs tried (ln), at least SPREAD_MIN; HALF_MIN when only one was tried."""
    gaps = np.diff(np.asarray(us))
    return max(float(np.median(gaps)), SPREAD_MIN) if gaps.size else HALF_MIN


def _beyond(edge: float, sign: int, step: float, size: int) -> tuple[float, ...]:
    """`size` points past `edge` (ln lr) in direction `sign`, `step` apart."""
    return tuple(edge + sign * step * k for k in range(1, size + 1))


def _around(center: float, spread: float, size: int) -> tuple[float, ...]:
    """`size` points evenly spaced over `center` ± `spread` (ln lr)."""
    return tuple(center + o for o in np.linspace(-spread, spread, size)) if size > 1 else (center,)


def _propose(us: Sequence[float], lo: float, hi: float, cap: float, tried: Sequence[float], reason: str,
             found: Estimate | None) -> Round:
    """Clip proposals (ln lr) into [lo, hi] and below `cap`, and drop repeats of each other and of an lr `tried`
    (a seed's rerun at the same lr is the same run: it costs a trial and adds nothing, and the fit refuses two runs
    of one configuration). Stop when nothing is left (the range or the divergence cap is reached)."""
    top = min(hi, cap - 1e-3) if math.isfinite(cap) else hi
    kept: list[float] = []
    for u in us:
        clipped = min(max(u, lo), top)
        if all(abs(clipped - v) > 1e-6 for v in (*kept, *tried)):
            kept.append(clipped)
    if not kept:
        return Round((), found, "range-edge")
    return Round(tuple(math.exp(u) for u in kept), found, reason)


def prior_from(optima: Sequence[tuple[int, Estimate]], width: int) -> Prior | None:
    """Where `width`'s optimum should be, from the optima of smaller widths: ln lr* = a + b ln width.

    Optima without a finite interval are left out. One smaller width: its lr*, within a factor that allows
    lr* ∝ width^±1. Two or more: the line weighted by 1/variance of each optimum, within twice the standard
    error of its prediction (each optimum's interval propagated, times the scatter about the line when
    there are three or more and it exceeds those intervals); never narrower than one octave.
    """
    known = [(math.log(w), math.log(e.lr), _log_se(e)) for w, e in optima if e.bracketed and e.low > 0 and math.isfinite(e.high)]
    if not known:
        return None
    x = math.log(width)
    if len(known) == 1:
        x0, u0, se0 = known[0]
        return Prior(math.exp(u0), math.exp(max(abs(x - x0), 2.0 * se0, HALF_MIN)))
    xs, us, se = (np.array(column) for column in zip(*known))
    design = np.column_stack([np.ones_like(xs), xs]) / se[:, None]
    hat = np.linalg.pinv(design)  # weighted least squares: coefficients = hat @ (us / se)
    coef = hat @ (us / se)
    cov = hat @ hat.T
    if len(known) >= 3:
        chi2 = float(np.sum((design @ coef - us / se) ** 2)) / (len(known) - 2)
        cov *= max(chi2, 1.0)
    row = np.array([1.0, x])
    spread = 2.0 * math.sqrt(float(row @ cov @ row))
    return Prior(math.exp(float(row @ coef)), math.exp(max(spread, HALF_MIN)))


def _log_se(found: Estimate) -> float:
    """Standard error of ln lr* read back from its 95% interval (at least SE_FLOOR: a noiseless fit is not exact)."""
    return max(math.log(found.high / found.low) / (2 * 1.96), SE_FLOOR)

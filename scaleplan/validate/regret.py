"""Regret of a transferred learning rate at the target: L(lr) / L(best) - 1, raw and smoothed, with seed statistics.

Every lr at the target is trained with the same seeds. A seed whose loss is not finite diverged; an lr
where any seed diverged cannot be the best, and its regret is reported as diverged (with the regret of its
finite seeds beside it), never as an infinite number.

- raw regret: the choice's seed mean over the lowest seed mean of any lr trained at the target (every
  lr none of whose seeds diverged), with a jackknife standard error over seeds (seeds left out one at a
  time from every lr, the same seeds at every lr so the pairing is kept, and the lowest mean picked again in
  each replicate). A choice that is the lowest mean whichever seed is left out has no spread to measure: it is
  reported as the best lr, without a ±; with seeds that differ between lrs there is no pairing, and no ±;
- smoothed regret: the local model of loss vs log lr (fit/local_model.py) fitted through the seed
  means, its value at the choice over its minimum; outside the model's window the choice's measured mean
  over the model's minimum. Jackknife over seeds likewise (the model refitted each time).

The optimum's own interval (`optimum_interval`) says how far the target's best lr moves with its seeds: a transfer
miss smaller than it is not resolved by the target's grid.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

import numpy as np

from scaleplan.fit.power_law import percentile_ci
from scaleplan.fit.local_model import LocalModel, fit_local_model


@dataclass(frozen=True)
class LrPoint:
    """Held-out losses of one lr at the target, one per seed in seed order (non-finite: that seed diverged), and the
    seeds where known (a report's grid lists losses only)."""

    lr: float
    losses: tuple[float, ...]
    seeds: tuple[int, ...] = ()

    @property
    def n_diverged(self) -> int:
        """How many seeds diverged at this lr."""
        return sum(not math.isfinite(x) for x in self.losses)

    @property
    def diverged_fraction(self) -> float:
        return self.n_diverged / len(self.losses)

    @property
    def finite(self) -> bool:
        """True when no seed diverged."""
        return self.n_diverged == 0

    @property
    def mean(self) -> float:
        """Seed-mean loss; inf when any seed diverged."""
        return sum(self.losses) / len(self.losses) if self.finite else math.inf

    @property
    def finite_mean(self) -> float:
        """Mean over the seeds that did not diverge (inf when all did)."""
        ok = [x for x in self.losses if math.isfinite(x)]
        return sum(ok) / len(ok) if ok else math.inf

    @property
    def stderr(self) -> float | None:
        """Standard error of the seed mean; None with one seed or when a seed diverged."""
        n = len(self.losses)
        if n < 2 or not self.finite:
            return None
        m = self.mean
        return math.sqrt(sum((x - m) ** 2 for x in self.losses) / (n - 1) / n)

    def without_seed(self, i: int) -> LrPoint:
        """The point with seed `i` left out (the jackknife's replicate)."""
        return LrPoint(self.lr, self.losses[:i] + self.losses[i + 1 :], self.seeds[:i] + self.seeds[i + 1 :])


@dataclass(frozen=True)
class Regret:
    """How much worse an lr choice is than the best lr at the target, raw and smoothed.

    `raw`/`smoothed` are None when the choice diverged on some seed (`diverged` > 0; `finite_raw` then
    holds the regret of its finite-seed mean) or, for `smoothed`, when no local model could be fitted.
    `smoothed_basis` is "model" (the choice lies in the model's window), "measured" (outside it: the
    choice's measured mean over the model's minimum) or "none".
    """

    label: str
    lr: float
    loss: float
    best_lr: float
    best_loss: float
    raw: float | None
    raw_se: float | None
    smoothed: float | None
    smoothed_se: float | None
    smoothed_basis: str
    diverged: int
    n_seeds: int
    finite_raw: float | None = None


def jackknife_se(full: float, replicates: list[float]) -> float | None:
    """Jackknife standard error sqrt((n-1)/n * sum (theta_i - mean theta)^2) of a statistic over n leave-one-out replicates."""
    n = len(replicates)
    if n < 2 or not all(math.isfinite(r) for r in replicates) or not math.isfinite(full):
        return None
    centre = sum(replicates) / n
    return math.sqrt((n - 1) / n * sum((r - centre) ** 2 for r in replicates))


def group_by_lr(rows: list[tuple[float, int, float]]) -> list[LrPoint]:
    """(lr, seed, loss) rows -> one LrPoint per lr, sorted by lr, seeds in seed order; a (lr, seed) given twice (the
    prediction trained beside an equal naive lr) counts once."""
    by_lr: dict[float, dict[int, float]] = defaultdict(dict)
    for lr, seed, loss in rows:
        by_lr[lr].setdefault(seed, loss)
    return [LrPoint(lr, tuple(v[s] for s in sorted(v)), tuple(sorted(v))) for lr, v in sorted(by_lr.items())]


Point = TypeVar("Point", bound=LrPoint)

OPTIMUM_REPLICATES = 500  # seed bootstrap replicates of the target's optimum
OPTIMUM_MIN_SEEDS = 5  # fewer seeds give too few distinct resamples for a percentile interval (validate's default)


@dataclass(frozen=True)
class OptimumReplicates:
    """The local model's optimal lr in each seed bootstrap replicate that gave a model, out of `attempted`."""

    optima: list[float]
    attempted: int


def optimum_replicates(points: list[LrPoint], n_boot: int = OPTIMUM_REPLICATES, seed: int = 0) -> OptimumReplicates | None:
    """The local model's optimal lr over seed bootstrap replicates (the same resampled seeds at every lr, so the
    pairing is kept): how far the target's own optimum moves with its seeds. None with fewer than OPTIMUM_MIN_SEEDS
    seeds; replicates that give no model are left out of `optima` and counted in `attempted`."""
    finite = [p for p in points if p.finite]
    n = min((len(p.losses) for p in finite), default=0)
    if n < OPTIMUM_MIN_SEEDS:
        return None
    rng = random.Random(seed)
    optima = []
    for _ in range(n_boot):
        picks = [rng.randrange(n) for _ in range(n)]
        model = local_model([LrPoint(p.lr, tuple(p.losses[i] for i in picks)) for p in finite])
        if model is not None:
            optima.append(model.vertex_lr)
    return OptimumReplicates(optima, n_boot)


def optimum_interval(points: list[LrPoint], level: float = 0.95, n_boot: int = OPTIMUM_REPLICATES, seed: int = 0) -> tuple[float, float] | None:
    """Percentile interval of `optimum_replicates`; None with too few seeds, or when fewer than `level` of the
    replicates give a model."""
    return interval_of_optima(optimum_replicates(points, n_boot, seed), level)


def interval_of_optima(replicates: OptimumReplicates | None, level: float = 0.95) -> tuple[float, float] | None:
    """The percentile interval of the replicates' optima, in log space; None without them, or when fewer than `level`
    of the replicates gave a model."""
    if replicates is None or len(replicates.optima) < level * replicates.attempted:
        return None
    low, high = percentile_ci(np.log(replicates.optima), level)
    return math.exp(low), math.exp(high)


def best_point(points: Sequence[Point]) -> Point:
    """The lr (or a weight-decay validation's (lr, lambda)) with the lowest seed-mean loss among those where no seed
    diverged."""
    finite = [p for p in points if p.finite]
    if not finite:
        raise ValueError("every lr at the target diverged on some seed")
    return min(finite, key=lambda p: p.mean)


def local_model(points: list[LrPoint]) -> LocalModel | None:
    """The local model through the seed means of the lrs where no seed diverged."""
    finite = [p for p in points if p.finite]
    return fit_local_model([p.lr for p in finite], [p.mean for p in finite])


def _smoothed(choice: LrPoint, model: LocalModel | None) -> tuple[float | None, str]:
    if model is None or not choice.finite:
        return None, "none"
    if model.covers(choice.lr):
        return model.loss(choice.lr) / model.min_loss - 1.0, "model"
    return choice.mean / model.min_loss - 1.0, "measured"


def _jackknife(points: list[LrPoint], statistic: Callable[[list[LrPoint]], float | None], full: float | None) -> float | None:
    """Jackknife s.e. of `statistic` over seeds: seed i left out of every lr at once; None where the lrs' seeds differ
    (leaving one out of each would pair different seeds)."""
    n = min(len(p.losses) for p in points)
    if full is None or n < 2 or len({p.seeds or len(p.losses) for p in points}) > 1:
        return None
    replicates = [statistic([p.without_seed(i) for p in points]) for i in range(n)]
    if any(r is None for r in replicates):
        return None
    return jackknife_se(full, [r for r in replicates if r is not None])


def regret_of(label: str, choice: LrPoint, points: list[LrPoint]) -> Regret:
    """Regret of `choice` against every lr trained at the target (`points`; the choice is added if missing)."""
    if all(p.lr != choice.lr for p in points):
        points = [*points, choice]
    index = next(i for i, p in enumerate(points) if p.lr == choice.lr)
    best = best_point(points)
    model = local_model(points)
    smoothed, basis = _smoothed(choice, model)
    if not choice.finite:
        finite_raw = None if choice.n_diverged == len(choice.losses) else choice.finite_mean / best.mean - 1.0
        return Regret(label, choice.lr, choice.mean, best.lr, best.mean, None, None, None, None, "none",
                      choice.n_diverged, len(choice.losses), finite_raw)
    raw = choice.mean / best.mean - 1.0

    def raw_of(pts: list[LrPoint]) -> float:
        return pts[index].mean / best_point(pts).mean - 1.0

    def smoothed_of(pts: list[LrPoint]) -> float | None:
        return _smoothed(pts[index], local_model(pts))[0]

    return Regret(
        label, choice.lr, choice.mean, best.lr, best.mean, raw, _jackknife(points, raw_of, raw),
        smoothed, _jackknife(points, smoothed_of, smoothed), basis, 0, len(choice.losses),
    )


def format_regret(value: float | None, se: float | None) -> str:
    """`1.23% ± 0.45%`, `1.23%` without an s.e., `-` without a value; `0.00% (best lr)` for a choice that is the best
    with any seed left out (a ± of 0 would claim a certainty the jackknife cannot measure there)."""
    if value is None:
        return "-"
    if value == 0.0 and se == 0.0:
        return f"{value:.2%} (best lr)"
    return f"{value:.2%}" + ("" if se is None else f" ± {se:.2%}")


def describe(r: Regret, smoothed: bool = False) -> str:
    """One cell of the report: the raw (or smoothed) regret ± s.e., or how many seeds diverged."""
    if r.diverged:
        finite = "" if r.finite_raw is None else f"; its finite seeds, survivors: {r.finite_raw:.2%}"
        return f"diverged on {r.diverged}/{r.n_seeds} seeds{finite}"
    if smoothed:
        text = format_regret(r.smoothed, r.smoothed_se)
        return text + (" (measured, outside the local model)" if r.smoothed_basis == "measured" else "")
    return format_regret(r.raw, r.raw_se)

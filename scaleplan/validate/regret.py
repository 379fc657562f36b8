"""Regret of a transferred learning rate at the target width: L(lr) / L(best on a dense grid) - 1.

Losses are averaged over seeds first (the same seeds at every lr, so seed noise is shared); an lr
where any seed diverged counts as diverged (mean = inf).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class LrPoint:
    """Held-out losses of one lr at the target width, one per seed."""

    lr: float
    losses: tuple[float, ...]

    @property
    def mean(self) -> float:
        """Seed-mean loss; inf when any seed diverged."""
        return math.inf if not all(math.isfinite(x) for x in self.losses) else sum(self.losses) / len(self.losses)

    @property
    def stderr(self) -> float:
        """Standard error of the seed mean (0 with one seed, inf when diverged)."""
        n = len(self.losses)
        if n < 2 or not math.isfinite(self.mean):
            return 0.0 if n < 2 else math.inf
        var = sum((x - self.mean) ** 2 for x in self.losses) / (n - 1)
        return math.sqrt(var / n)


@dataclass(frozen=True)
class Regret:
    """How much worse an lr choice is than the best lr of the dense grid at the target width."""

    label: str
    lr: float
    loss: float
    best_lr: float
    best_loss: float
    loss_se: float = 0.0  # standard errors of the two seed means
    best_se: float = 0.0

    @property
    def regret(self) -> float:
        return self.loss / self.best_loss - 1.0

    @property
    def regret_se(self) -> float:
        """Standard error of the regret from the two seed means (treated as independent: the shared
        seeds correlate them positively, so this overstates the noise of the difference)."""
        return math.hypot(self.loss_se, self.best_se) / self.best_loss


def group_by_lr(rows: list[tuple[float, int, float]]) -> list[LrPoint]:
    """(lr, seed, loss) rows -> one LrPoint per lr, sorted by lr, seeds in seed order."""
    by_lr: dict[float, list[tuple[int, float]]] = defaultdict(list)
    for lr, seed, loss in rows:
        by_lr[lr].append((seed, loss))
    return [LrPoint(lr, tuple(loss for _, loss in sorted(v))) for lr, v in sorted(by_lr.items())]


def best_point(grid: list[LrPoint]) -> LrPoint:
    """The grid lr with the lowest seed-mean loss."""
    finite = [p for p in grid if math.isfinite(p.mean)]
    if not finite:
        raise ValueError("every lr of the target grid diverged")
    return min(finite, key=lambda p: p.mean)


def regret_of(label: str, choice: LrPoint, grid: list[LrPoint]) -> Regret:
    """Regret of `choice` against the best of `grid` plus `choice` itself (it may beat the grid)."""
    best = best_point([*grid, choice])
    return Regret(label, choice.lr, choice.mean, best.lr, best.mean, choice.stderr, best.stderr)

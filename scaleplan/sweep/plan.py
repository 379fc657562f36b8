"""The plan of a sweep: its grid points and the trial slots each point gets.

A slot is one planned trial (grid point + index). Slots are what make a sweep resumable and
exactly-once: each is enqueued once, and re-enqueued only when its trial failed or its worker died.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from scaleplan.sweep.spec import SweepSpec


@dataclass(frozen=True, order=True)
class GridPoint:
    """Where a trial sits on the sweep's grid: width, training steps, batch size and seed."""

    width: int
    steps: int
    batch_size: int
    seed: int

    @property
    def key(self) -> str:
        return f"w{self.width}-s{self.steps}-b{self.batch_size}-seed{self.seed}"

    @property
    def population_key(self) -> str:
        """Trials with the same population key can train together in one batched computation."""
        return f"w{self.width}-s{self.steps}-b{self.batch_size}"

    def attrs(self) -> dict[str, int]:
        return {"width": self.width, "steps": self.steps, "batch_size": self.batch_size, "seed": self.seed}


@dataclass(frozen=True)
class Slot:
    """One planned trial: its grid point, its index within the point, and (grid mode) fixed params."""

    point: GridPoint
    index: int
    fixed_params: tuple[tuple[str, float], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.point.key}#{self.index}"

    def user_attrs(self) -> dict[str, Any]:
        return {**self.point.attrs(), "point": self.point.key, "slot": self.key}


def grid_points(spec: SweepSpec) -> list[GridPoint]:
    """Every (width, steps, batch size, seed) combination, widths outermost."""
    return [GridPoint(w, s, b, seed) for w, s, b, seed in itertools.product(spec.widths, spec.steps, spec.batch_sizes, spec.seeds)]


def plan_slots(spec: SweepSpec) -> list[Slot]:
    """All planned trials: `trials_per_point` per grid point; in grid mode each carries its fixed params."""
    if spec.sampler == "grid":
        names = [p.name for p in spec.search]
        combos = list(itertools.product(*(p.grid() or () for p in spec.search)))
        fixed = [tuple(zip(names, combo)) for combo in combos]
    else:
        fixed = [() for _ in range(spec.trials_per_point)]
    return [Slot(point, i, params) for point in grid_points(spec) for i, params in enumerate(fixed)]

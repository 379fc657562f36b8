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
    """Where a trial sits on the sweep's grid: width, training steps, batch size, seed, and where the
    spec ladders them, depth and D (`tokens`, from which `steps` was derived).

    Without a depth or tokens ladder those stay None and the point, its key and its trial attributes
    are what they were before those ladders existed (old studies resume unchanged).
    """

    width: int
    steps: int
    batch_size: int
    seed: int
    depth: int | None = None
    tokens: int | None = None

    @property
    def key(self) -> str:
        return f"{self.population_key}-seed{self.seed}"

    @property
    def population_key(self) -> str:
        """Trials with the same population key can train together in one batched computation (same shapes)."""
        depth = "" if self.depth is None else f"-d{self.depth}"
        return f"w{self.width}{depth}-s{self.steps}-b{self.batch_size}"

    def attrs(self) -> dict[str, int]:
        optional = {k: v for k, v in (("depth", self.depth), ("tokens", self.tokens)) if v is not None}
        return {"width": self.width, **optional, "steps": self.steps, "batch_size": self.batch_size, "seed": self.seed}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> GridPoint:
        """The point stored in a trial's user attributes (inverse of `attrs`)."""
        optional = {k: int(attrs[k]) for k in ("depth", "tokens") if attrs.get(k) is not None}
        return cls(int(attrs["width"]), int(attrs["steps"]), int(attrs["batch_size"]), int(attrs["seed"]), **optional)


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
    """Every (width, depth, training length, batch size, seed) combination, widths outermost.

    With a tokens ladder each point's steps are tokens / (batch size x tokens per example), so D is the
    same at every batch size (the spec checks the division is exact).
    """
    depths: tuple[int | None, ...] = spec.depths or (None,)
    lengths: tuple[tuple[int | None, int | None], ...] = (
        tuple((s, None) for s in spec.steps) + tuple((None, d) for d in spec.tokens)
    )
    points = []
    for w, depth, (steps, tokens), b, seed in itertools.product(spec.widths, depths, lengths, spec.batch_sizes, spec.seeds):
        n_steps = steps if steps is not None else tokens // (b * spec.units_per_example)  # type: ignore[operator]
        points.append(GridPoint(w, n_steps, b, seed, depth, tokens))
    return points


def plan_slots(spec: SweepSpec) -> list[Slot]:
    """All planned trials: `trials_per_point` per grid point; in grid mode each carries its fixed params."""
    if spec.sampler == "grid":
        names = [p.name for p in spec.search]
        combos = list(itertools.product(*(p.grid() or () for p in spec.search)))
        fixed = [tuple(zip(names, combo)) for combo in combos]
    else:
        fixed = [() for _ in range(spec.trials_per_point)]
    return [Slot(point, i, params) for point in grid_points(spec) for i, params in enumerate(fixed)]

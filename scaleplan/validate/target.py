"""Where `scaleplan validate` trains: the target on one or more swept axes, and the swept cell the naive choice reuses.

A target names axes of the spec's ladder with values beyond the swept ones: `width=1024`, `depth=16`,
`steps=4800` (a steps ladder), `tokens=4000000` (a tokens ladder) or `batch=512`. Axes not targeted keep
their largest swept value. The naive choice reuses the optimum of the swept cell nearest the target:
the largest swept value of every targeted axis, the target's values elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaleplan.errors import InputError
from scaleplan.limits import MAX_BATCH_SIZE, MAX_DEPTH, MAX_STEPS, MAX_TOKENS, MAX_WIDTH

# Target axis -> (the spec's ladder attribute, the trials' column).
AXES = {"width": ("widths", "width"), "depth": ("depths", "depth"), "steps": ("steps", "steps"),
        "tokens": ("tokens", "D"), "batch": ("batch_sizes", "batch_size")}
# Target axis -> the largest value a run is trained at (a sweep's bound: the target is trained as its points are).
MOST = {"width": MAX_WIDTH, "depth": MAX_DEPTH, "steps": MAX_STEPS, "tokens": int(MAX_TOKENS), "batch": MAX_BATCH_SIZE}


def parse_targets(texts: tuple[str, ...], target_width: int | None = None) -> dict[str, int]:
    """`("depth=16", "batch=512")` (or `"depth=16,batch=512"`) and --target-width -> {axis: value}."""
    target: dict[str, int] = {}
    pieces = [p.strip() for text in texts for p in text.split(",") if p.strip()]
    if target_width is not None:
        pieces.append(f"width={target_width}")
    if not pieces:
        raise InputError("give a target: --target AXIS=VALUE (width, depth, steps, tokens, batch), e.g. --target depth=16")
    for piece in pieces:
        axis, sep, value = piece.partition("=")
        axis = axis.strip()
        if not sep or axis not in AXES:
            raise InputError(f"--target expects AXIS=VALUE with AXIS one of {', '.join(AXES)}; got '{piece}'")
        try:
            number = int(value.replace("_", ""))
        except ValueError:
            raise InputError(f"--target {axis}={value}: the value must be a positive integer") from None
        if number < 1:
            raise InputError(f"--target {axis}={value}: the value must be a positive integer (a {axis} of {number} "
                             "trains nothing)")
        if number > MOST[axis]:
            raise InputError(f"--target {axis}={value}: above the largest {axis} scaleplan trains ({MOST[axis]:,}, "
                             "scaleplan/limits.py); a typo or a unit mix-up?")
        if axis in target and target[axis] != number:
            raise InputError(f"--target gives {axis} twice ({target[axis]} and {number}); give it once")
        target[axis] = number
    return target


@dataclass(frozen=True)
class TargetPoint:
    """The target's coordinates on every axis, the naive cell's, and the law's inputs at the target."""

    target: dict[str, int]  # the targeted axes
    coords: dict[str, int | None]  # every axis at the target (depth/tokens None where the spec has no such ladder)
    naive: dict[str, int | None]  # every axis at the swept cell whose optimum the naive choice reuses
    units_per_example: int

    @property
    def label(self) -> str:
        """`depth 16` or `width 1024, batch 512`: the targeted axes."""
        return ", ".join(f"{axis} {value}" for axis, value in self.target.items())

    def data(self, coords: dict[str, int | None] | None = None) -> int:
        """D of a run at `coords` (default: the target): its tokens, else steps x batch x tokens per example."""
        c = coords or self.coords
        return c["tokens"] if c["tokens"] is not None else c["steps"] * c["batch"] * self.units_per_example  # type: ignore[operator]

    def law_inputs(self) -> dict[str, float]:
        """Keyword -> value for `LawFile.predict` at the target (width, depth, tokens, batch_size)."""
        inputs = {"width": self.coords["width"], "depth": self.coords["depth"], "tokens": self.data(),
                  "batch_size": self.coords["batch"]}
        return {k: float(v) for k, v in inputs.items() if v is not None}

    def naive_filter(self) -> dict[str, int]:
        """{trials column: value} selecting the naive cell's trials."""
        return {AXES[axis][1]: value for axis, value in self.naive.items() if value is not None
                and (axis != "steps" or self.naive["tokens"] is None)}

    def grid_point(self, seed: int) -> Any:
        """The sweep's GridPoint of a target run with `seed`."""
        from scaleplan.sweep.plan import GridPoint

        c = self.coords
        return GridPoint(c["width"], c["steps"], c["batch"], seed, c["depth"], c["tokens"])  # type: ignore[arg-type]


def resolve_target(spec: Any, target: dict[str, int], where: str) -> TargetPoint:
    """The target's point on the spec's grid; an axis the spec does not sweep, a target inside the swept range,
    or a run that cannot be built (a batch larger than the data) is a one-line InputError."""
    for axis, value in target.items():
        ladder = getattr(spec, AXES[axis][0])
        if len(ladder) < 2:
            swept = ", ".join(a for a in AXES if len(getattr(spec, AXES[a][0])) >= 2) or "nothing"
            what = f"only {axis} {ladder[0]}" if ladder else f"no {axis}"
            raise InputError(f"{where}: --target {axis}={value}: the spec sweeps {what}; a target must lie on an axis "
                             f"the sweep varied (this one varies: {swept})")
        if value <= max(ladder):
            raise InputError(f"{where}: --target {axis}={value} must exceed the largest swept {axis} ({max(ladder)})")
    largest = {axis: (max(getattr(spec, attr)) if getattr(spec, attr) else None) for axis, (attr, _) in AXES.items()}
    coords = {**largest, **target}
    naive = dict(largest)
    units = spec.units_per_example
    for c in (coords, naive):
        if c["tokens"] is not None:
            if c["tokens"] < c["batch"] * units or c["tokens"] % (c["batch"] * units):
                raise InputError(f"{where}: batch {c['batch']} x {units} tokens per example does not divide D = "
                                 f"{c['tokens']} into whole steps (a batch larger than the data?): choose another target")
            c["steps"] = c["tokens"] // (c["batch"] * units)
    return TargetPoint(dict(target), coords, naive, units)

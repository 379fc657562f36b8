"""The transfer experiment: sweep small widths, fit lr*(width), predict a wide target, measure regret.

At the target width the experiment trains, through the spec's own objective (the built-in trainer or
the user's code), a dense lr grid (the ground truth), the fitted law's prediction and the naive baseline
(the optimum of the widest swept width, reused unchanged), all with the same seeds, and reports the
regret L(choice) / L(best) - 1 on held-out loss, raw and smoothed (validate/regret.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from scaleplan.errors import InputError, ScaleplanError
from scaleplan.validate.regret import LrPoint, Regret, best_point, group_by_lr, regret_of

DEFAULT_SEEDS = 5


@dataclass(frozen=True)
class WidthOptimum:
    """The located lr optimum of one swept width, with its bootstrap interval."""

    width: int
    lr: float
    low: float
    high: float
    loss: float


@dataclass(frozen=True)
class Interval:
    """An interval of the predicted lr and how it was obtained (`kind`, with its degrees of freedom if any)."""

    low: float | None
    high: float | None
    kind: str


@dataclass(frozen=True)
class SpecValidation:
    """Everything measured for one spec (one parametrization)."""

    name: str
    parametrization: str
    base_width: int
    widths: tuple[int, ...]
    target_width: int
    seeds: tuple[int, ...]
    steps: int
    batch_size: int
    law_formula: str
    law_path: str
    optima: list[WidthOptimum]
    small_curves: dict[int, list[LrPoint]]  # swept width -> seed-mean lr curve
    target_points: list[LrPoint]  # every lr trained at the target (grid, prediction, naive), sorted by lr
    predicted_lr: float
    naive_lr: float
    predicted: Regret
    naive: Regret
    intervals: tuple[Interval, ...]  # the law's t interval and the bootstrap interval of the prediction
    fit_method: str
    best_on_edge: bool  # the target's best lr is an end of the (extended) grid: regrets are lower bounds

    @property
    def naive_width(self) -> int:
        """The swept width whose optimum the naive choice reuses (the widest)."""
        return max(self.optima, key=lambda o: o.width).width

    @property
    def lr_drift_log2(self) -> float:
        """log2 of lr*(widest swept) / lr*(narrowest swept): how far the optimum moved."""
        by_width = sorted(self.optima, key=lambda o: o.width)
        return math.log2(by_width[-1].lr / by_width[0].lr)

    @property
    def target_drift_log2(self) -> float:
        """log2 of the target's best lr / lr*(narrowest swept)."""
        return math.log2(self.predicted.best_lr / min(self.optima, key=lambda o: o.width).lr)


MAX_EXTENSIONS = 6  # grid extensions (2 lrs each) when the target's best lr sits on an edge


def target_lr_grid(predicted: float, naive: float, step_log2: float = 0.5, margin_log2: float = 1.5) -> list[float]:
    """Sorted log-spaced lrs covering both choices with `margin_log2` octaves either side, anchored on `predicted`."""
    lo = math.log2(min(predicted, naive)) - margin_log2
    hi = math.log2(max(predicted, naive)) + margin_log2
    k_lo = math.floor((lo - math.log2(predicted)) / step_log2)
    k_hi = math.ceil((hi - math.log2(predicted)) / step_log2)
    return [predicted * 2 ** (k * step_log2) for k in range(k_lo, k_hi + 1) if k != 0]


def extend_grid(
    grid_lrs: list[float],
    rows: list[tuple[float, int, float]],
    train: Callable[[list[float]], list[tuple[float, int, float]]],
    step_log2: float,
    log: Callable[[str], None],
) -> tuple[list[float], list[tuple[float, int, float]], bool]:
    """While the grid's best lr is one of its ends, train two more lrs beyond it (at most MAX_EXTENSIONS times).

    Returns the grown grid, the new (lr, seed, loss) rows, and whether the best lr is still an end.
    """
    new: list[tuple[float, int, float]] = []
    for attempt in range(MAX_EXTENSIONS + 1):
        best = best_point(group_by_lr([r for r in [*rows, *new] if r[0] in grid_lrs])).lr
        on_edge = best in (grid_lrs[0], grid_lrs[-1])
        if not on_edge or attempt == MAX_EXTENSIONS:
            break
        sign = -1 if best == grid_lrs[0] else 1
        extra = [best * 2 ** (sign * step_log2 * k) for k in (1, 2)]
        log(f"best target lr {best:.4g} is on the grid's edge: adding {', '.join(f'{x:.3g}' for x in extra)}")
        new += train(extra)
        grid_lrs = sorted([*grid_lrs, *extra])
    if on_edge:
        log("warning: the best target lr is still on the grid's edge; regret is a lower bound")
    return grid_lrs, new, on_edge


@dataclass(frozen=True)
class CheckedSpec:
    """A spec that can be validated at a target width, with its objective (loaded once)."""

    path: Path
    spec: Any  # SweepSpec
    objective: Any  # Objective


def check_spec(spec_path: str | Path, target_width: int, device: str | None = None) -> CheckedSpec:
    """Load a spec and check it can be validated (lr only, one budget, a wider target); load its objective."""
    from scaleplan.sweep.objective import load_objective
    from scaleplan.sweep.spec import load_spec

    spec = load_spec(spec_path)
    if len(spec.steps) != 1 or len(spec.batch_sizes) != 1:
        raise InputError(f"{spec_path}: validate needs one steps value and one batch size (the transfer is over width)")
    others = sorted(p.name for p in spec.search if p.name != "lr" and len(p.grid() or (0, 1)) > 1)
    if others:
        raise InputError(f"{spec_path}: validate transfers lr only; fix {', '.join(others)} to one value in the spec")
    if target_width <= max(spec.widths):
        raise InputError(f"--target-width {target_width} must be wider than the widest swept width {max(spec.widths)}")
    return CheckedSpec(Path(spec_path), spec, load_objective(spec, device))  # unknown task/model names fail here


def validate_spec(
    checked: CheckedSpec,
    target_width: int,
    seeds: tuple[int, ...] = tuple(range(DEFAULT_SEEDS)),
    device: str | None = None,
    workers: int = 1,
    out_dir: Path | None = None,
    step_log2: float = 0.5,
    n_boot: int = 200,
    log: Callable[[str], None] = print,
) -> SpecValidation:
    """Run (or resume) the spec's sweep, fit lr*(width), and measure regret at `target_width`.

    Writes OUT/<spec name>.json (the fitted law) and OUT/<spec name>-trials.csv (the sweep's trials).
    """
    from scaleplan.fit.pipeline import FitOptions, fit_command, fit_sweep, spec_data
    from scaleplan.outputs import writing
    from scaleplan.sweep.runner import run_sweep

    spec_path, spec = checked.path, checked.spec
    log(f"[{spec.name}] sweep widths {list(spec.widths)} ({spec.parametrization})")
    run_sweep(spec, workers=workers, device=device)

    out_dir = Path(out_dir or "benchmarks/results")
    law_path = out_dir / f"{spec.name}.json"
    options = FitOptions(x="width", n_boot=n_boot, d_unit="samples")
    fitted = fit_sweep(spec_data(spec), options, name=spec.name, title=f"lr*(width) of {spec.name} (scaleplan validate)",
                       command=fit_command(spec_path, law_path, options))
    law, hyper = fitted.law, fitted.hyper
    law.save(law_path)
    with writing(out_dir / f"{spec.name}-trials.csv", "sweep trials") as csv_path:
        fitted.data.frame.to_csv(csv_path, index=False)  # the sweep itself, for refits
    estimate = law.predict(width=target_width).values["lr"]
    optima = sorted(
        (WidthOptimum(int(o.size), o.lr, ci[0], ci[1], o.loss) for o, ci in zip(hyper.optima, hyper.cell_lr_ci)),
        key=lambda o: o.width,
    )
    naive_lr = optima[-1].lr  # the widest swept width's optimum
    dof = law.power_laws[0].dof
    boot_low, boot_high = hyper.bootstrap_interval("lr", {"W": target_width}) or (None, None)
    intervals = (
        Interval(estimate.low, estimate.high, f"t, {dof} dof" if dof else "none (no residual dof)"),
        Interval(boot_low, boot_high, f"bootstrap, {hyper.n_boot} replicates"),
    )
    log(f"[{spec.name}] law lr = {law.power_laws[0].formula()} ({hyper.label}); predicted lr at width {target_width}: "
        f"{estimate.value:.4g}; naive (width {optima[-1].width} optimum): {naive_lr:.4g}")

    def train(lrs: list[float]) -> list[tuple[float, int, float]]:
        return train_at(checked, spec.name, target_width, spec.steps[0], spec.batch_sizes[0], lrs, seeds, log)

    grid_lrs = target_lr_grid(estimate.value, naive_lr, step_log2)
    rows = train([estimate.value, naive_lr, *grid_lrs])
    grid_lrs, extra_rows, on_edge = extend_grid(grid_lrs, rows, train, step_log2, lambda msg: log(f"[{spec.name}] {msg}"))
    points = group_by_lr([*rows, *extra_rows])
    by_lr = {p.lr: p for p in points}
    small = {
        int(w): group_by_lr(list(zip(g["lr"], g["seed"] if "seed" in g else [0] * len(g), g["loss"])))
        for w, g in fitted.trials.frame.groupby("width")
    }
    return SpecValidation(
        name=spec.name, parametrization=spec.parametrization, base_width=spec.reference.base_width or min(spec.widths),
        widths=tuple(spec.widths), target_width=target_width, seeds=tuple(seeds), steps=spec.steps[0],
        batch_size=spec.batch_sizes[0], law_formula=law.power_laws[0].formula(), law_path=str(law_path),
        optima=optima, small_curves=small, target_points=points, predicted_lr=estimate.value, naive_lr=naive_lr,
        predicted=regret_of("fitted law", by_lr[estimate.value], points),
        naive=regret_of(f"naive (width {optima[-1].width} optimum reused)", by_lr[naive_lr], points),
        intervals=intervals, fit_method=hyper.label, best_on_edge=on_edge,
    )


def train_at(checked: CheckedSpec, name: str, width: int, steps: int, batch_size: int, lrs: list[float],
             seeds: tuple[int, ...], log: Callable[[str], None]) -> list[tuple[float, int, float]]:
    """Train every (lr, seed) at one target point through the spec's objective, in populations where it allows.

    Returns (lr, seed, held-out loss) rows; a diverged run's loss is inf.
    """
    from scaleplan.sweep.plan import GridPoint
    from scaleplan.sweep.trial import ObjectiveFailed, TrialRequest

    objective = checked.objective
    requests = [TrialRequest(GridPoint(width, steps, batch_size, seed), {"lr": lr}) for seed in seeds for lr in lrs]
    k = max(1, objective.population_size(requests[0].point))
    log(f"[{name}] target width {width}: {len(lrs)} lrs x {len(seeds)} seeds = {len(requests)} runs "
        f"({'populations of ' + str(k) if k > 1 else 'one at a time'})")
    rows = []
    for i in range(0, len(requests), k):
        chunk = requests[i : i + k]
        try:
            outcomes = objective.evaluate(chunk)
        except ObjectiveFailed as exc:
            raise ScaleplanError(f"[{name}] training at the target width {width} failed: {exc}") from None
        for request, outcome in zip(chunk, outcomes):
            loss = math.inf if outcome.diverged or not math.isfinite(outcome.loss) else outcome.loss
            rows.append((request.params["lr"], request.point.seed, loss))
    return rows

"""The transfer experiment: sweep, fit the lr law, predict a target beyond the swept axes, measure regret.

The target lies on any swept axis (width, depth, training length, batch size; validate/target.py). There
the experiment trains, through the spec's own objective (the built-in trainer or the user's code), a dense
lr grid (the ground truth), the fitted law's prediction and the naive baseline (the optimum of the swept
cell nearest the target, reused unchanged), all with the same seeds, and reports the regret
L(choice) / L(best) - 1 on held-out loss, raw and smoothed (validate/regret.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from scaleplan.errors import InputError, ScaleplanError
from scaleplan.fit.optimum import FLAT_END, flat_ends
from scaleplan.fit.local_model import LocalModel
from scaleplan.validate.regret import LrPoint, Regret, best_point, group_by_lr, local_model, regret_of
from scaleplan.validate.target import AXES, TargetPoint, resolve_target
from scaleplan.validate.target_runs import RunRecord, RunSource

DEFAULT_SEEDS = 5


@dataclass(frozen=True)
class AxisOptimum:
    """The located lr optimum of one swept value of the target's axis (other axes at the naive cell's values)."""

    value: int
    lr: float
    loss: float


@dataclass(frozen=True)
class Interval:
    """An interval of the predicted lr and how it was obtained (`kind`, with its degrees of freedom if any)."""

    low: float | None
    high: float | None
    kind: str


@dataclass(frozen=True)
class SpecValidation:
    """Everything measured for one spec (one parametrization) at one target."""

    name: str
    parametrization: str
    swept: dict[str, tuple[int, ...]]  # axis -> swept values (axes the spec ladders)
    point: TargetPoint
    seeds: tuple[int, ...]
    law_formula: str
    law_path: str
    axis: str  # the (first) targeted axis: the one the drift table and the figure follow
    optima: list[AxisOptimum]  # along `axis`, at the naive cell's other values
    small_curves: dict[int, list[LrPoint]]  # swept value of `axis` -> seed-mean lr curve
    target_points: list[LrPoint]  # every lr trained at the target (grid, prediction, naive), sorted by lr
    predicted_lr: float
    naive_lr: float
    predicted: Regret
    naive: Regret
    intervals: tuple[Interval, ...]  # the law's interval and the bootstrap interval of the prediction
    fit_method: str
    optimum_method: str  # how each cell's lr* was located (parabola, vertex, ...), as the fit did
    best_on_edge: bool  # the target's best lr is an end of the (extended) grid: regrets are lower bounds

    @property
    def target_value(self) -> int:
        return self.point.target[self.axis]

    @property
    def lr_drift_log2(self) -> float:
        """log2 of lr* at the largest / the smallest swept value of the target's axis."""
        return math.log2(self.optima[-1].lr / self.optima[0].lr)

    @property
    def target_drift_log2(self) -> float:
        """log2 of the target's best lr / lr* at the smallest swept value of the target's axis."""
        return math.log2(self.predicted.best_lr / self.optima[0].lr)


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
    """While the grid's best lr is one of its ends, or the smoothed curve's minimum (the local model's vertex) lies
    within half a step of one, or an end's seed mean is within FLAT_END of the best (`flat_ends`), train two more lrs
    beyond that end (at most MAX_EXTENSIONS times): the smoothed regret needs its minimum bracketed by a measured lr
    on each side, and the best lr needs the curve seen rising on each side of it.

    Returns the grown grid, the new (lr, seed, loss) rows, and whether the best lr is still an end.
    """
    new: list[tuple[float, int, float]] = []
    for attempt in range(MAX_EXTENSIONS + 1):
        points = group_by_lr([*rows, *new])  # the grid and the choices trained beside it
        best = best_point(points).lr
        on_edge = best in (grid_lrs[0], grid_lrs[-1])
        model = local_model(points)
        ends = (grid_lrs[0], grid_lrs[-1])
        sign = edge_side(ends, best, None if model is None else model.vertex_lr, step_log2)
        means = np.array([p.mean for p in points])  # inf where a seed diverged: never flat
        bottom, top = (False, False) if sign else flat_ends(np.array([p.lr for p in points]), means)
        flat = 1 if top else -1 if bottom else 0
        sign = sign or flat
        if not sign or attempt == MAX_EXTENSIONS:
            break
        end = grid_lrs[-1] if sign > 0 else grid_lrs[0]
        extra = [end * 2 ** (sign * step_log2 * k) for k in (1, 2)]
        adding = ", ".join(f"{x:.3g}" for x in extra)
        if flat:
            log(f"the loss at the grid's {'top' if sign > 0 else 'bottom'} lr {end:.4g} is within {FLAT_END:.1%} of the best: "
                f"adding {adding}")
        else:
            what = f"best target lr {best:.4g}" if on_edge else "the smoothed curve's minimum"
            log(f"{what} is on the grid's edge: adding {adding}")
        new += train(extra)
        grid_lrs = sorted([*grid_lrs, *extra])
    if on_edge:
        log("warning: the best target lr is still on the grid's edge; regret is a lower bound")
    return grid_lrs, new, on_edge


def edge_side(ends: tuple[float, float], best: float, smoothed: float | None, step_log2: float) -> int:
    """+1 / -1 when the measured best value of a log-spaced grid axis is its top / bottom end (`ends`), or the smoothed
    minimum `smoothed` lies within half a step (`step_log2` octaves) of that end; 0 when the minimum is bracketed by
    measured values on each side. The rule both target grids (lr; lr x lambda) are extended by."""
    low, high = ends
    half = 2 ** (step_log2 / 2)
    if best >= high or (smoothed is not None and smoothed > high / half):
        return 1
    if best <= low or (smoothed is not None and smoothed < low * half):
        return -1
    return 0


@dataclass(frozen=True)
class CheckedSpec:
    """A spec that can be validated at a target, with its objective (loaded once) and the target's point."""

    path: Path
    spec: Any  # SweepSpec
    objective: Any  # Objective
    point: TargetPoint


def check_spec(spec_path: str | Path, target: dict[str, int], device: str | None = None) -> CheckedSpec:
    """Load a spec and check it can be validated at `target` (lr the only searched parameter, a target on a swept
    axis beyond its range, a target run the model can be built for); load its objective."""
    from scaleplan.sweep.objective import load_objective
    from scaleplan.sweep.spec import load_spec
    from scaleplan.sweep.trial import TrialRequest

    spec = load_spec(spec_path)
    others = sorted(p.name for p in spec.search if p.name != "lr" and len(p.grid() or (0, 1)) > 1)
    if others:
        raise InputError(f"{spec_path}: validate transfers lr only; fix {', '.join(others)} to one value in the spec")
    point = resolve_target(spec, target, str(spec_path))
    objective = load_objective(spec, device)  # unknown task/model names fail here
    if hasattr(objective, "config"):  # the built-in trainer: the target run must be buildable (shape rules)
        from scaleplan.train.build import build_model, build_task

        cfg = objective.config(TrialRequest(point.grid_point(0), {**spec.fixed_search_values(), "lr": 1e-3}))
        build_model(cfg, build_task(cfg))
    width = point.coords.get("width")
    if hasattr(objective, "check_width") and width:  # a model whose forward diverges at init
        objective.check_width(int(width))  # at the target is refused now, not after the sweep
    return CheckedSpec(Path(spec_path), spec, objective, point)


def validate_spec(
    checked: CheckedSpec,
    seeds: tuple[int, ...] = tuple(range(DEFAULT_SEEDS)),
    device: str | None = None,
    workers: int = 1,
    out_dir: Path | None = None,
    step_log2: float = 0.5,
    n_boot: int = 200,
    log: Callable[[str], None] = print,
    storage: str | None = None,
    lr_form: str = "power",
) -> SpecValidation:
    """Run (or resume) the spec's sweep (in `storage` where given, else the spec's), fit the lr law (its form as
    `lr_form` says: scaleplan fit --lr-form), and measure regret at the checked target.

    Writes OUT/<spec name>.json (the fitted law), OUT/<spec name>-trials.csv (the sweep's trials) and the target's runs,
    OUT/<spec name>-target-<axis><value>....csv (a rerun trains only what is not there; `workers` also train them).
    """
    from scaleplan.fit.optimum import method_label
    from scaleplan.fit.pipeline import FitOptions, effective_options, fit_command, fit_sweep, spec_data
    from scaleplan.outputs import writing
    from scaleplan.sweep.runner import run_sweep

    spec_path, spec, point = checked.path, checked.spec, checked.point
    swept = {axis: tuple(getattr(spec, attr)) for axis, (attr, _) in AXES.items() if getattr(spec, attr)}
    log(f"[{spec.name}] sweep {'; '.join(f'{a} {list(v)}' for a, v in swept.items() if len(v) > 1)} ({spec.parametrization})")
    run_sweep(spec, storage, workers=workers, device=device)

    out_dir = Path(out_dir or "benchmarks/results")
    law_path = out_dir / f"{spec.name}.json"
    data = spec_data(spec, storage)
    options = effective_options(data, FitOptions(n_boot=n_boot, d_unit="tokens" if point.units_per_example > 1 else "samples",
                                                 lr_form=lr_form))
    fitted = fit_sweep(data, options, name=spec.name, title=f"lr law of {spec.name} (scaleplan validate)",
                       command=fit_command(spec_path, law_path, options, storage))
    law, hyper = fitted.law, fitted.hyper
    if hyper is None:
        raise ScaleplanError(f"[{spec.name}] the sweep's trials carry no learning rate: nothing to validate")
    lr_law = law.lr_law()
    assert lr_law is not None, "a fit with optima writes an lr law"
    variable = {"width": "W", "depth": "L", "steps": "D", "tokens": "D", "batch": "B"}
    absent = [axis for axis in point.target if variable[axis] not in lr_law.inputs()]
    if absent:
        raise ScaleplanError(f"[{spec.name}] the fitted lr law ({lr_law.formula()}) has no {variable[absent[0]]} exponent: "
                             f"it cannot predict --target {absent[0]} (sweep it at fixed other axes; batch sizes need "
                             "equal D, a [ladder] tokens)")
    law.save(law_path)
    with writing(out_dir / f"{spec.name}-trials.csv", "sweep trials") as part:
        fitted.data.frame.to_csv(part, index=False)  # the sweep itself, for refits
    prediction = law.evaluate(**law.taken(**point.law_inputs()))  # the axes the law takes; its warnings are logged below
    estimate = prediction.values["lr"]
    frame = fitted.trials.frame
    axis = next(iter(point.target))
    column = AXES[axis][1]
    others = {c: v for c, v in point.naive_filter().items() if c != column}
    along = frame[(frame[list(others)] == list(others.values())).all(axis=1)] if others else frame
    optima = [AxisOptimum(int(v), *_optimum(g, hyper.method)) for v, g in along.groupby(column)]
    naive_cell = frame[(frame[list(point.naive_filter())] == list(point.naive_filter().values())).all(axis=1)]
    naive_lr = _optimum(naive_cell, hyper.method)[0]
    inputs = {"W": point.coords["width"], "L": point.coords["depth"], "D": point.data(), "B": prediction.inputs.get("B")}
    boot_low, boot_high = hyper.bootstrap_interval("lr", {k: float(v) for k, v in inputs.items() if v is not None}) or (None, None)
    intervals = (
        Interval(estimate.low, estimate.high, "t, " + (f"{lr_law.dof} dof" if lr_law.dof else "no residual dof")),
        Interval(boot_low, boot_high, f"bootstrap, {hyper.n_boot} replicates"),
    )
    naive_at = ", ".join(f"{a} {point.naive[a]}" for a in point.target)
    log(f"[{spec.name}] law lr = {lr_law.formula()} ({hyper.label}); predicted lr at {point.label}: "
        f"{estimate.value:.4g}; naive ({naive_at} optimum): {naive_lr:.4g}")
    for warning in prediction.warnings:
        log(f"[{spec.name}] {warning}")

    record = target_record(checked, out_dir)

    def train(lrs: list[float]) -> list[tuple[float, int, float]]:
        return train_at(checked, spec.name, lrs, seeds, log, record, device, workers)

    grid_lrs = target_lr_grid(estimate.value, naive_lr, step_log2)
    rows = train([estimate.value, naive_lr, *grid_lrs])
    grid_lrs, extra_rows, on_edge = extend_grid(grid_lrs, rows, train, step_log2, lambda msg: log(f"[{spec.name}] {msg}"))
    points = group_by_lr([*rows, *extra_rows])
    by_lr = {p.lr: p for p in points}
    small = {int(v): group_by_lr(list(zip(g["lr"], g["seed"] if "seed" in g else [0] * len(g), g["loss"])))
             for v, g in along.groupby(column)}
    return SpecValidation(
        name=spec.name, parametrization=spec.parametrization, swept=swept, point=point, seeds=tuple(seeds),
        law_formula=lr_law.formula(), law_path=str(law_path), axis=axis, optima=optima, small_curves=small,
        target_points=points, predicted_lr=estimate.value, naive_lr=naive_lr,
        predicted=regret_of("fitted law", by_lr[estimate.value], points),
        naive=regret_of(f"naive ({naive_at} optimum reused)", by_lr[naive_lr], points),
        intervals=intervals, fit_method=hyper.label, optimum_method=method_label(hyper.method, hyper.band), best_on_edge=on_edge,
    )


def _optimum(cell: Any, method: str) -> tuple[float, float]:
    """(lr*, its loss) of one cell's trials, located as the fit locates it (`method`)."""
    from scaleplan.fit.optimum import locate_optimum

    o = locate_optimum(cell["lr"].to_numpy(float), cell["loss"].to_numpy(float), method=method)
    return o.lr, o.loss


def target_record(checked: CheckedSpec, out_dir: Path) -> RunRecord:
    """Where the target's runs are recorded, OUT/<spec name>-target-<axis><value>....csv, and the spec fingerprint
    and target they belong to."""
    point = checked.point
    path = out_dir / f"{checked.spec.name}-target-{'-'.join(f'{a}{v}' for a, v in point.target.items())}.csv"
    return RunRecord(path, ("lr",), {"spec": checked.spec.fingerprint, "target": point.coords})


def train_at(checked: CheckedSpec, name: str, lrs: list[float], seeds: tuple[int, ...], log: Callable[[str], None],
             runs: RunRecord, device: str | None = None, workers: int = 1) -> list[tuple[float, int, float]]:
    """Train every (lr, seed) at the target through the spec's objective, in populations where it allows (`workers`
    processes), recording each run in `runs` (validate/target_runs.py): a run already there is not trained again.

    Returns (lr, seed, held-out loss) rows; a diverged run's loss is inf.
    """
    from scaleplan.sweep.trial import TrialRequest

    objective, point = checked.objective, checked.point
    fixed = checked.spec.fixed_search_values()  # e.g. init_std = [0.02]: the target trains as every swept trial did
    requests = [TrialRequest(point.grid_point(seed), {**fixed, "lr": lr}) for seed in seeds for lr in lrs]
    done = runs.train(RunSource(objective, checked.spec, device), requests,
                      f"[{name}] target {point.label}: {len(lrs)} lrs x {len(seeds)} seeds", log, workers)
    return [(request.params["lr"], request.point.seed, done[runs.key(request)]) for request in requests]

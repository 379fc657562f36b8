"""The transfer experiment: sweep small widths, fit lr*(width), predict a wide target, measure regret.

At the target width the experiment trains a dense lr grid (the ground truth), the fitted law's
prediction, and the naive baseline (the optimum of the widest swept width, reused unchanged), all
with the same seeds, and reports regret = L(choice) / L(best) - 1 on held-out loss.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from scaleplan.errors import ScaleplanError
from scaleplan.validate.regret import LrPoint, Regret, best_point, group_by_lr, regret_of


@dataclass(frozen=True)
class WidthOptimum:
    """The located lr optimum of one swept width, with its bootstrap interval."""

    width: int
    lr: float
    low: float
    high: float
    loss: float


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
    target_grid: list[LrPoint]
    predicted_point: LrPoint
    naive_point: LrPoint
    predicted: Regret
    naive: Regret
    predicted_interval: tuple[float | None, float | None]
    fit_method: str
    best_on_edge: bool  # the target's best lr is an end of the (extended) grid: regrets are lower bounds

    @property
    def lr_drift_log2(self) -> float:
        """log2 of lr*(widest swept) / lr*(narrowest swept): how far the optimum moved."""
        return math.log2(self.optima[-1].lr / self.optima[0].lr)

    @property
    def target_drift_log2(self) -> float:
        """log2 of the target's best grid lr / lr*(narrowest swept)."""
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
    """A spec that can be validated at a target width, with its built-in objective (built once)."""

    path: Path
    spec: Any  # SweepSpec
    objective: Any  # BuiltinObjective


def check_spec(spec_path: str | Path, target_width: int, device: str = "cpu") -> CheckedSpec:
    """Load a spec and check it can be validated (built-in trainer, lr only, one budget, a wider target)."""
    from scaleplan.sweep.builtin import BuiltinObjective
    from scaleplan.sweep.spec import load_spec

    spec = load_spec(spec_path)
    if spec.objective.kind != "builtin":
        raise ScaleplanError(f"{spec_path}: validate trains the target itself, so it needs a built-in task/model spec")
    if len(spec.steps) != 1 or len(spec.batch_sizes) != 1:
        raise ScaleplanError(f"{spec_path}: validate needs one steps value and one batch size (the transfer is over width)")
    others = sorted(p.name for p in spec.search if p.name != "lr" and (p.grid() is None or len(p.grid()) > 1))
    if others:
        raise ScaleplanError(f"{spec_path}: validate transfers lr only; fix {', '.join(others)} to one value in the spec")
    if target_width <= max(spec.widths):
        raise ScaleplanError(f"--target-width {target_width} must be wider than the widest swept width {max(spec.widths)}")
    objective = BuiltinObjective(spec, device)  # unknown task/model names fail here
    objective.check_width(target_width)  # a model whose forward diverges at init at the target is refused now
    return CheckedSpec(Path(spec_path), spec, objective)


def validate_spec(
    checked: CheckedSpec,
    target_width: int,
    seeds: tuple[int, ...] = (0, 1, 2),
    device: str = "cpu",
    workers: int = 1,
    out_dir: Path | None = None,
    step_log2: float = 0.5,
    n_boot: int = 200,
    log: Callable[[str], None] = print,
) -> SpecValidation:
    """Run (or resume) the spec's sweep, fit lr*(width), and measure regret at `target_width`.

    Writes OUT/<spec name>.json (the fitted law) and OUT/<spec name>-trials.csv (the sweep's trials).
    """
    from scaleplan.fit.data import frame_sha256, prepare_trials
    from scaleplan.fit.hyperparameter_law import fit_hyperparameter_laws
    from scaleplan.fit.law_file import LawMetadata, build_law_file
    from scaleplan.outputs import writing
    from scaleplan.sweep.export import load_trials
    from scaleplan.sweep.runner import run_sweep

    spec_path, spec, objective = checked.path, checked.spec, checked.objective
    log(f"[{spec.name}] sweep widths {list(spec.widths)} ({spec.parametrization})")
    run_sweep(spec, workers=workers, device=device)

    frame = load_trials(spec)
    trials = prepare_trials(frame, x="width", source=str(spec_path))
    hyper = fit_hyperparameter_laws(trials, method="parabola", n_boot=n_boot)
    out_dir = Path(out_dir or "benchmarks/results")
    law_path = out_dir / f"{spec.name}.json"
    command = shlex.join(["scaleplan", "fit", str(spec_path), "-o", str(law_path), "--x", "width", "--bootstrap", str(n_boot)])
    meta = LawMetadata(
        name=spec.name, title=f"lr*(width) of {spec.name} (scaleplan validate)", command=command,
        data_sha256=frame_sha256(frame), d_unit="samples",
        batch_unit="samples", parametrization=spec.reference,
    )
    law = build_law_file(meta, trials, hyper, None)
    law.save(law_path)
    with writing(out_dir / f"{spec.name}-trials.csv", "sweep trials") as csv_path:
        frame.to_csv(csv_path, index=False)  # the sweep itself, for refits
    estimate = law.predict(width=target_width).values["lr"]
    optima = [
        WidthOptimum(int(o.size), o.lr, ci[0], ci[1], o.loss) for o, ci in zip(hyper.optima, hyper.cell_lr_ci)
    ]
    naive_lr = optima[-1].lr
    log(f"[{spec.name}] law lr = {law.power_laws[0].formula()} ({hyper.label}); predicted lr at width {target_width}: "
        f"{estimate.value:.4g}; naive (width {optima[-1].width} optimum): {naive_lr:.4g}")

    grid_lrs = target_lr_grid(estimate.value, naive_lr, step_log2)
    rows = _train_target(objective, spec, target_width, [estimate.value, naive_lr, *grid_lrs], seeds, device, log)
    grid_lrs, extra_rows, on_edge = extend_grid(
        grid_lrs, rows, lambda lrs: _train_target(objective, spec, target_width, lrs, seeds, device, log), step_log2,
        lambda msg: log(f"[{spec.name}] {msg}"),
    )
    rows += extra_rows
    points = {p.lr: p for p in group_by_lr(rows)}
    grid = [points[lr] for lr in grid_lrs]
    predicted = regret_of("fitted law", points[estimate.value], [*grid, points[naive_lr]])
    naive = regret_of("naive (reuse small-width optimum)", points[naive_lr], [*grid, points[estimate.value]])
    small = {
        int(w): group_by_lr(list(zip(g["lr"], g["seed"] if "seed" in g else [0] * len(g), g["loss"])))
        for w, g in trials.frame.groupby("width")
    }
    return SpecValidation(
        name=spec.name, parametrization=spec.parametrization, base_width=spec.reference.base_width or min(spec.widths),
        widths=tuple(spec.widths), target_width=target_width, seeds=tuple(seeds), steps=spec.steps[0],
        batch_size=spec.batch_sizes[0], law_formula=law.power_laws[0].formula(), law_path=str(law_path),
        optima=optima, small_curves=small, target_grid=grid,
        predicted_point=points[estimate.value], naive_point=points[naive_lr], predicted=predicted, naive=naive,
        predicted_interval=(estimate.low, estimate.high), fit_method=hyper.label,
        best_on_edge=on_edge,
    )


def _train_target(objective, spec, width: int, lrs: list[float], seeds: tuple[int, ...], device: str,
                  log: Callable[[str], None]) -> list[tuple[float, int, float]]:  # type: ignore[no-untyped-def]
    """Train every (lr, seed) at the target width; population-batched where the trainer says so."""
    from scaleplan.sweep.trial import TrialRequest
    from scaleplan.sweep.plan import GridPoint
    from scaleplan.train.loop import train_trial
    from scaleplan.train.population import population_size_for, train_population

    cfgs = []
    for seed in seeds:
        point = GridPoint(width, spec.steps[0], spec.batch_sizes[0], seed)
        for lr in lrs:
            cfg = objective.config(TrialRequest(point, {"lr": lr}))
            cfgs.append(cfg)
    k = population_size_for(cfgs[0])
    log(f"[{spec.name}] target width {width}: {len(lrs)} lrs x {len(seeds)} seeds = {len(cfgs)} runs "
        f"({'populations of ' + str(k) if k > 1 else 'one at a time'}, {device})")
    results = []
    for i in range(0, len(cfgs), k):
        chunk = cfgs[i : i + k]
        results += train_population(chunk) if len(chunk) > 1 else [train_trial(chunk[0])]
    return [(c.lr, c.seed, r.loss) for c, r in zip(cfgs, results)]

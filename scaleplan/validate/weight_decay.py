"""Weight-decay transfer: sweep (lr, lambda) small, fit tau*(D/N), predict (lr, lambda) at a wider, longer target,
and measure the regret there against a dense 2-D grid, beside the naive reuse of the small-scale lambda.

At the target (width, steps) every (lr, lambda) is trained with the same seeds: a grid around both choices (the
ground truth), the prediction (lr and lambda from the law file) and the naive choice (the predicted lr with the
lambda* measured at the small-scale proxy cell, reused unchanged). Regret = L(choice) / L(best) - 1 on held-out
loss, raw (seed means) and smoothed (the local 2-D quadratic of `fit.weight_decay` through the seed means, its
Hessian held positive semi-definite: its value at the choice over its minimum within the box of the points it was
fitted on), each with a jackknife standard error over seeds. A seed whose loss is not
finite diverged: a point with a diverged seed cannot be the best, and its regret is reported as diverged.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from scaleplan.core.weight_decay import timescale
from scaleplan.errors import InputError
from scaleplan.fit.optimum import DEFAULT_NEAR, FLAT_END, MIN_LRS, MIN_POINTS_2D, flat_ends
from scaleplan.fit.weight_decay import TPP, BoxMinimum, LocalQuadratic, local_quadratic
from scaleplan.validate.experiment import edge_side
from scaleplan.validate.regret import LrPoint, best_point, jackknife_se
from scaleplan.validate.regret import format_regret as format_value
from scaleplan.validate.target_runs import RunRecord, RunSource, read_runs

MIN_SEEDS = 5
MAX_EXTENSIONS = 4  # grid extensions (one lr and/or one lambda beyond the edge) while the minimum is not bracketed


@dataclass(frozen=True)
class DecayPoint(LrPoint):
    """Held-out losses of one (lr, lambda) at the target, one per seed in seed order (non-finite: diverged)."""

    weight_decay: float = 0.0

    def without_seed(self, i: int) -> DecayPoint:
        """The point with seed `i` left out (a jackknife replicate)."""
        return replace(self, losses=self.losses[:i] + self.losses[i + 1:])


@dataclass(frozen=True)
class DecayRegret:
    """Regret of one (lr, lambda) choice at the target, raw and smoothed with jackknife s.e. (None when diverged)."""

    label: str
    lr: float
    weight_decay: float
    tau: float
    loss: float
    best_lr: float
    best_weight_decay: float
    best_loss: float
    raw: float | None
    raw_se: float | None
    smoothed: float | None
    smoothed_se: float | None
    smoothed_basis: str  # "model" (inside the quadratic's window), "measured" (outside: measured mean / model minimum), "none"
    diverged: int
    n_seeds: int
    model: LocalQuadratic | None = None  # the quadratic behind `smoothed` (all seeds)


def model_of(points: list[DecayPoint]) -> LocalQuadratic | None:
    """The local quadratic through the seed means of the points where no seed diverged, its Hessian held positive
    semi-definite (the unconstrained fit when that one is convex)."""
    ok = [p for p in points if math.isfinite(p.mean)]
    if len(ok) < 6:
        return None
    arr = np.array([(p.lr, p.weight_decay, p.mean) for p in ok])
    return local_quadratic(arr[:, 0], arr[:, 1], arr[:, 2], np.ones(len(ok)), psd=True)


def _smoothed(choice: DecayPoint, model: LocalQuadratic | None) -> tuple[float | None, str]:
    """q(choice) / min over the window's box of q - 1 (the measured mean instead of q outside the window)."""
    if model is None or not math.isfinite(choice.mean):
        return None, "none"
    low = model.box_minimum().value
    if model.covers(choice.lr, choice.weight_decay):
        return model.value(choice.lr, choice.weight_decay) / low - 1.0, "model"
    return choice.mean / low - 1.0, "measured"


def _jackknife(points: list[DecayPoint], statistic: Callable[[list[DecayPoint]], float | None], full: float) -> float | None:
    """Jackknife s.e. of `statistic` with seed i left out of every point at once."""
    n = min(len(p.losses) for p in points)
    reps = [statistic([p.without_seed(i) for p in points]) for i in range(n)]
    if any(r is None for r in reps):
        return None
    return jackknife_se(full, [r for r in reps if r is not None])


def decay_regret(label: str, choice: DecayPoint, points: list[DecayPoint], steps: float, convention: str) -> DecayRegret:
    """Regret of `choice` against every (lr, lambda) trained at the target (`points`, the choice included)."""
    if choice not in points:
        points = [*points, choice]
    index = points.index(choice)
    finite = [p for p in points if math.isfinite(p.mean)]
    if not finite:
        raise InputError("every (lr, lambda) at the target diverged on some seed: the grid is too aggressive")
    best = best_point(finite)
    tau = timescale(choice.lr, choice.weight_decay, steps, convention)
    common: dict[str, Any] = dict(label=label, lr=choice.lr, weight_decay=choice.weight_decay, tau=tau, loss=choice.mean,
                  best_lr=best.lr, best_weight_decay=best.weight_decay, best_loss=best.mean,
                  diverged=choice.n_diverged, n_seeds=len(choice.losses))
    if choice.n_diverged:
        return DecayRegret(raw=None, raw_se=None, smoothed=None, smoothed_se=None, smoothed_basis="none", **common)
    model = model_of(points)
    smoothed, basis = _smoothed(choice, model)

    def raw_of(pts: list[DecayPoint]) -> float:
        return pts[index].mean / best_point(pts).mean - 1.0

    def smoothed_of(pts: list[DecayPoint]) -> float | None:
        return _smoothed(pts[index], model_of(pts))[0]

    raw = choice.mean / best.mean - 1.0
    return DecayRegret(raw=raw, raw_se=_jackknife(points, raw_of, raw), smoothed=smoothed,
                       smoothed_se=None if smoothed is None else _jackknife(points, smoothed_of, smoothed), smoothed_basis=basis,
                       model=model, **common)


def grid_extension(lrs: list[float], wds: list[float], best: DecayPoint, lr_step_log2: float, wd_step_log2: float,
                   smoothed: BoxMinimum | None = None) -> tuple[list[float], list[float]]:
    """The lr and lambda to add to the sorted grid axes `lrs` x `wds`: on each axis, one step beyond the edge the best
    point lies on, or that the smoothing quadratic's minimum over its box (`smoothed`) lies within half a step of
    (`edge_side`, the lr grid's rule); nothing when both are inside."""

    def beyond(axis: list[float], value: float, minimum: float | None, step: float) -> list[float]:
        sign = edge_side((axis[0], axis[-1]), value, minimum, step)
        return [(axis[-1] if sign > 0 else axis[0]) * 2 ** (sign * step)] if sign else []

    return (beyond(lrs, best.lr, None if smoothed is None else smoothed.lr, lr_step_log2),
            beyond(wds, best.weight_decay, None if smoothed is None else smoothed.weight_decay, wd_step_log2))


def flat_extension(lrs: list[float], wds: list[float], points: list[DecayPoint], best: DecayPoint, lr_step_log2: float,
                   wd_step_log2: float) -> tuple[list[float], list[float]]:
    """One lr / lambda beyond the end of the grid's row / column through the best point whose seed mean is within
    FLAT_END of the best's (`flat_ends`, the lr grid's rule): the curve was not seen rising there, and a plateau can
    hide a better basin beyond it. Nothing where both ends rise, or where both are flat: there the axis barely moves
    the loss over the grid (lambda on short runs often does), and the report's grid shows it."""

    def beyond(axis: list[float], line: list[tuple[float, float]], step: float) -> list[float]:
        inside = [(value, mean) for value, mean in line if axis[0] <= value <= axis[-1]]
        bottom, top = flat_ends(np.array([v for v, _ in inside]), np.array([m for _, m in inside]))
        return [] if bottom == top else [axis[-1] * 2**step] if top else [axis[0] * 2**-step]

    row = [(p.lr, p.mean) for p in points if p.weight_decay == best.weight_decay]
    column = [(p.weight_decay, p.mean) for p in points if p.lr == best.lr]
    return beyond(lrs, row, lr_step_log2), beyond(wds, column, wd_step_log2)


def extend_decay_grid(
    lrs: list[float],
    wds: list[float],
    pairs: list[tuple[float, float]],
    train: Callable[[list[tuple[float, float]]], dict[tuple[float, float], tuple[float, ...]]],
    lr_step_log2: float,
    wd_step_log2: float,
    log: Callable[[str], None],
) -> tuple[list[DecayPoint], bool]:
    """Train `pairs` (the grid `lrs` x `wds` and the choices beside it), then, while the best point lies on an edge of
    the grid or the smoothing quadratic's box minimum lies within half a step of one (`grid_extension`), or an end of
    the best point's row or column lies within FLAT_END of it (`flat_extension`), add one lr and/or one lambda beyond
    that edge, crossed with the other axis, and train those (at most MAX_EXTENSIONS times): the smoothed regret needs
    its minimum bracketed by measured points on each side, seen rising on each.

    `train` returns the seed losses of the pairs it is given. Returns every point trained, and whether the best point
    is still on the grid's edge (the regrets are then lower bounds).
    """
    for attempt in range(MAX_EXTENSIONS + 1):
        losses = train(pairs)
        points = [DecayPoint(a, losses[a, b], weight_decay=b) for a, b in pairs]
        best = min((p for p in points if math.isfinite(p.mean)), key=lambda p: p.mean)
        model = model_of(points)
        low = None if model is None else model.box_minimum()
        edge_lrs, edge_wds = grid_extension(lrs, wds, best, lr_step_log2, wd_step_log2, low)
        by_best = grid_extension(lrs, wds, best, lr_step_log2, wd_step_log2)
        on_edge = any(by_best)
        flat_lrs, flat_wds = flat_extension(lrs, wds, points, best, lr_step_log2, wd_step_log2)
        more_lrs, more_wds = edge_lrs or flat_lrs, edge_wds or flat_wds
        if not (more_lrs or more_wds) or attempt == MAX_EXTENSIONS:
            break
        what = [f"{name} (lr {p.lr:.4g}, lambda {p.weight_decay:.4g})" for name, p, on in (
            ("best target point", best, on_edge), ("smoothing quadratic's minimum", low, by_best != (edge_lrs, edge_wds)))
            if on and p is not None]
        reasons = [f"{' and '.join(what)} {'is' if len(what) == 1 else 'are'} on the grid's edge"] if what else []
        flat = [name for name, extra, edge in (("row", flat_lrs, edge_lrs), ("column", flat_wds, edge_wds)) if extra and not edge]
        if flat:
            reasons.append(f"an end of the best point's {' and '.join(flat)} is within {FLAT_END:.1%} of it")
        log(f"{'; '.join(reasons)}: adding lr {[f'{x:.3g}' for x in more_lrs]}, lambda {[f'{x:.3g}' for x in more_wds]}")
        lrs, wds = sorted([*lrs, *more_lrs]), sorted([*wds, *more_wds])
        pairs = list(dict.fromkeys([*pairs, *((a, b) for a in lrs for b in wds)]))
    if more_lrs or more_wds:
        log(f"warning: the minimum is still not bracketed after {MAX_EXTENSIONS} grid extensions"
            + ("; regrets are lower bounds" if on_edge else ""))
    return points, on_edge


def target_grid(lr: float, wd_predicted: float, wd_naive: float, lr_step_log2: float = 0.5, lr_points: int = 5,
                wd_step_log2: float = 0.75, margin_log2: float = 1.5) -> list[tuple[float, float]]:
    """(lr, lambda) pairs: `lr_points` lrs centred on `lr`, times lambdas anchored on the prediction that cover both
    choices with `margin_log2` octaves either side."""
    lrs = [lr * 2 ** (lr_step_log2 * (k - (lr_points - 1) / 2)) for k in range(lr_points)]
    lo = math.log2(min(wd_predicted, wd_naive)) - margin_log2 - math.log2(wd_predicted)
    hi = math.log2(max(wd_predicted, wd_naive)) + margin_log2 - math.log2(wd_predicted)
    wds = [wd_predicted * 2 ** (k * wd_step_log2) for k in range(math.floor(lo / wd_step_log2), math.ceil(hi / wd_step_log2) + 1)]
    return [(a, b) for a in lrs for b in wds]


@dataclass(frozen=True)
class DecayValidation:
    """Everything measured for one weight-decay spec."""

    name: str
    parametrization: str
    convention: str
    widths: tuple[int, ...]
    steps: tuple[int, ...]
    target_width: int
    target_steps: int
    target_params: int
    target_tokens: float
    batch_units: float  # batch size in D's unit
    seeds: tuple[int, ...]
    law_path: str
    fit: Any  # WeightDecayFit
    predicted_tau: tuple[float, float | None, float | None]  # value, low, high
    naive_source: tuple[float, float]  # (width, steps) of the proxy cell whose lambda* the naive choice reuses
    points: list[DecayPoint]
    predicted: DecayRegret
    naive: DecayRegret
    best_on_edge: bool  # the best point is still on the grid's boundary after the extensions: regrets are lower bounds


def check_decay_spec(spec: Any, target_width: int, target_steps: int, seeds: int) -> None:
    """Refuse what the weight-decay validation cannot do, before any training."""
    where = f"{spec.path or spec.name}"
    if spec.objective.kind != "builtin":
        raise InputError(f"{where}: the weight-decay validation trains the target itself: it needs a built-in task/model spec")
    names = {p.name for p in spec.search}
    if "lr" not in names or not names & {"weight_decay", "wd_tau"} or names - {"lr", "weight_decay", "wd_tau"}:
        raise InputError(f"{where}: a weight-decay validation sweeps lr and weight_decay (or wd_tau) only; got {sorted(names)}")
    if len(spec.batch_sizes) != 1:
        raise InputError(f"{where}: one batch size, please (the transfer is over width and tokens)")
    if spec.depths:  # the target runs are built at (width, steps): a depth ladder's depth would not reach them
        raise InputError(f"{where}: the weight-decay validation transfers over width and steps, not depth: drop "
                         "[ladder] depths (set one depth in [model] kwargs)")
    if len(spec.widths) < 2 or len(spec.steps) < 2:
        raise InputError(f"{where}: the timescale law tau*(D/N) needs at least 2 widths and 2 step counts")
    if target_width < 8 * min(spec.widths) or target_steps < 4 * max(spec.steps):
        raise InputError(f"target width {target_width} and steps {target_steps} must be >= 8x the base width "
                         f"{min(spec.widths)} and >= 4x the longest swept run {max(spec.steps)}")
    if seeds < MIN_SEEDS:
        raise InputError(f"--seeds {seeds}: a regret near 1% needs at least {MIN_SEEDS} seeds")


def validate_weight_decay(
    spec_path: str | Path,
    target_width: int,
    target_steps: int,
    seeds: int = MIN_SEEDS,
    out_dir: str | Path = "benchmarks/results",
    n_boot: int = 200,
    workers: int = 1,
    log: Callable[[str], None] = print,
    lr_step_log2: float = 0.5,
    device: str | None = None,
    storage: str | None = None,
) -> DecayValidation:
    """Run (or resume) the spec's sweep, fit the (lr, lambda) optima and tau*(D/N) (the `fit` pipeline), and measure
    regret at the target on a `target_grid` of 5 lrs `lr_step_log2` octaves apart by lambdas 1.5x as far apart.

    Writes OUT/<spec name>.json (the law), OUT/<spec name>-trials.csv (the sweep) and the target runs' cache.
    """
    from scaleplan.fit.pipeline import FitOptions, effective_options, fit_command, fit_sweep, spec_data
    from scaleplan.outputs import writing
    from scaleplan.sweep.objective import load_objective
    from scaleplan.sweep.runner import run_sweep
    from scaleplan.sweep.spec import load_spec

    spec = load_spec(spec_path)
    check_decay_spec(spec, target_width, target_steps, seeds)
    objective: Any = load_objective(spec, device)  # the built-in trainer (check_decay_spec): it has .config
    convention = str(spec.train.get("decay_convention", "torch"))
    log(f"[{spec.name}] sweep widths {list(spec.widths)} x steps {list(spec.steps)} over (lr, lambda), {convention} AdamW")
    run_sweep(spec, storage, workers=workers, device=device)
    out = Path(out_dir)
    law_path = out / f"{spec.name}.json"
    data = spec_data(spec, storage)
    options = effective_options(data, FitOptions(x="width", n_boot=n_boot, d_unit="tokens" if spec.task == "charlm" else "samples"))
    fitted = fit_sweep(data, options, name=spec.name, command=fit_command(spec_path, law_path, options, storage),
                       title=f"lr*(width, D) and weight-decay timescale tau*(D/N) of {spec.name} (scaleplan validate)")
    law, fit = fitted.law, fitted.decay
    if fit is None:
        raise InputError(f"{spec_path}: the sweep's trials do not vary lambda within a cell; nothing to validate")
    law.save(law_path)
    with writing(out / f"{spec.name}-trials.csv", "sweep trials") as part:
        fitted.data.frame.to_csv(part, index=False)

    batch = spec.batch_sizes[0]
    n_target, units = _target_size(objective.config(_request(target_width, target_steps, batch, 0, 1e-3, 0.0)))
    batch_units = float(batch * units)
    tokens = float(target_steps) * batch_units
    prediction = law.predict(width=target_width, params=n_target, tokens=tokens, batch_size=batch_units)
    lr, wd_pred = prediction.lr, prediction.weight_decay
    tau_est = prediction.values["wd_tau"]
    proxy = min((o for o in fit.optima if o.size == min(spec.widths)), key=lambda o: abs(math.log(o.tokens / tokens)))
    wd_naive = proxy.weight_decay
    log(f"[{spec.name}] tau* = {math.exp(fit.tau.intercept):.4g} (D/N)^{fit.tau.exponents[TPP]:.4f}; target width "
        f"{target_width} x {target_steps} steps (N={n_target}, D={tokens:.4g}): lr {lr:.4g}, lambda {wd_pred:.4g} "
        f"(tau {tau_est.value:.4g}); naive lambda {wd_naive:.4g} from width {proxy.size:g}, {proxy.steps:g} steps")

    grid_pairs = target_grid(lr, wd_pred, wd_naive, lr_step_log2=lr_step_log2, wd_step_log2=1.5 * lr_step_log2)
    lrs, wds = sorted({a for a, _ in grid_pairs}), sorted({b for _, b in grid_pairs})
    record = decay_record(spec, out, target_width, target_steps)
    pairs = list(dict.fromkeys([(lr, wd_pred), (lr, wd_naive), *grid_pairs]))
    points, on_edge = extend_decay_grid(
        lrs, wds, pairs, lambda todo: _train_target(RunSource(objective, spec, device), target_width, target_steps, batch, todo,
                                                    tuple(range(seeds)), log, spec.name, record, workers),
        lr_step_log2, 1.5 * lr_step_log2, lambda msg: log(f"[{spec.name}] {msg}"))
    predicted, naive = choice_regrets(points, lr, wd_pred, wd_naive, target_steps, convention)
    return DecayValidation(
        name=spec.name, parametrization=spec.parametrization, convention=convention, widths=spec.widths, steps=spec.steps,
        target_width=target_width, target_steps=target_steps, target_params=n_target, target_tokens=tokens,
        batch_units=batch_units, seeds=tuple(range(seeds)), law_path=str(law_path), fit=fit,
        predicted_tau=(tau_est.value, tau_est.low, tau_est.high), naive_source=(proxy.size, proxy.steps), points=points,
        predicted=predicted, naive=naive, best_on_edge=on_edge,
    )


PREDICTED_LABEL, NAIVE_LABEL = "predicted (lr, lambda)", "naive lambda (small-scale optimum)"


def choice_regrets(points: list[DecayPoint], lr: float, wd_predicted: float, wd_naive: float, steps: float,
                   convention: str) -> tuple[DecayRegret, DecayRegret]:
    """Regrets of the predicted (lr, lambda) and of the naive (lr, small-scale lambda*), both among `points`."""
    by_pair = {(p.lr, p.weight_decay): p for p in points}
    return (decay_regret(PREDICTED_LABEL, by_pair[lr, wd_predicted], points, steps, convention),
            decay_regret(NAIVE_LABEL, by_pair[lr, wd_naive], points, steps, convention))


def cached_points(cache: Path) -> list[DecayPoint]:
    """Every (lr, lambda) in a target cache with its losses in seed order (the seeds every pair has)."""
    done = read_runs(cache, ("lr", "weight_decay"))
    pairs = sorted({(a, b) for a, b, _ in done})
    seeds = sorted({s for *_, s in done})
    missing = [(a, b, s) for a, b in pairs for s in seeds if (a, b, s) not in done]
    if missing:
        raise InputError(f"{cache}: {len(missing)} (lr, lambda, seed) runs missing, e.g. {missing[0]}: an unfinished validation")
    return [DecayPoint(a, tuple(done[a, b, s] for s in seeds), weight_decay=b) for a, b in pairs]


def _request(width: int, steps: int, batch: int, seed: int, lr: float, wd: float) -> Any:
    """The trial request of one (lr, lambda) run at the target (lambda given directly, whatever the sweep searched)."""
    from scaleplan.sweep.plan import GridPoint
    from scaleplan.sweep.trial import TrialRequest

    return TrialRequest(GridPoint(width, steps, batch, seed), {"lr": lr, "weight_decay": wd})


def _target_size(cfg: Any) -> tuple[int, int]:
    """(N, units per example) of the target model."""
    from scaleplan.train.build import build_model, build_task, n_params

    task = build_task(cfg)
    return n_params(build_model(cfg, task)), task.units_per_example


def decay_record(spec: Any, out_dir: Path, width: int, steps: int) -> RunRecord:
    """Where a (width, steps) target's runs are recorded, OUT/<spec name>-target-w<width>-s<steps>.csv (CSV: lr,
    weight_decay, seed, loss), and the spec fingerprint and target they belong to."""
    return RunRecord(Path(out_dir) / f"{spec.name}-target-w{width}-s{steps}.csv", ("lr", "weight_decay"),
                     {"spec": spec.fingerprint, "target": {"width": width, "steps": steps, "batch": spec.batch_sizes[0]}})


def _train_target(source: RunSource, width: int, steps: int, batch: int, pairs: list[tuple[float, float]],
                  seeds: tuple[int, ...], log: Callable[[str], None], name: str, record: RunRecord,
                  workers: int = 1) -> dict[tuple[float, float], tuple[float, ...]]:
    """Train every (lr, lambda) x seed at the target through the spec's objective, in populations where it allows
    (`workers` processes), recording each run in `record` (validate/target_runs.py; decay_record):
    runs already there are not trained again, so an interrupted validation resumes and a finished one rewrites its report.
    """
    requests = [_request(width, steps, batch, seed, a, b) for a, b in pairs for seed in seeds]
    done = record.train(source, requests, f"[{name}] target width {width}, {steps} steps: {len(pairs)} (lr, lambda) x "
                        f"{len(seeds)} seeds", log, workers)
    return {pair: tuple(done[pair[0], pair[1], seed] for seed in seeds) for pair in pairs}


def format_regret(r: DecayRegret, smoothed: bool = False) -> str:
    """`0.42% ± 0.10%` (raw or smoothed, as regret.format_regret), or how many seeds diverged."""
    if r.diverged:
        return f"diverged on {r.diverged}/{r.n_seeds} seeds"
    text = format_value(*((r.smoothed, r.smoothed_se) if smoothed else (r.raw, r.raw_se)))
    return text + (" (measured: outside the quadratic's window)" if smoothed and r.smoothed_basis == "measured" else "")


def choice_row(r: DecayRegret) -> str:
    """One row of the report's choices table."""
    return (f"| {r.label} | {r.lr:.4g} | {r.weight_decay:.4g} | {r.tau:.4g} | {r.loss:.5g} | {format_regret(r)} | "
            f"{format_regret(r, smoothed=True)} |")


def regret_notes(r: DecayRegret, points: list[DecayPoint]) -> list[str]:
    """How the regrets are computed; where the smoothing quadratic of `r` (shared by both choices) has its minimum,
    and how far its fitted `points` lie from it against their seed noise."""
    lines = [
        "Regret = L(choice) / L(best) - 1. Raw: seed means, best over every point trained at the target. Smoothed: a "
        f"quadratic in (ln lr, ln lambda) fitted by weighted least squares to the seed means near the minimum (those "
        f"within {DEFAULT_NEAR:.0%} of the lowest, at least {MIN_POINTS_2D} spanning {MIN_LRS} lrs and 3 lambdas), its "
        "Hessian constrained positive semi-definite (H = L L^T; when the unconstrained fit is already convex it is that "
        "fit); its value at the choice over its minimum within the box of the points it was fitted on, never "
        "extrapolated beyond them (a choice outside the box: its measured mean over that minimum). Both ± a jackknife "
        "s.e. over seeds (seed i left out of every point, the quadratic refitted).",
    ]
    m = r.model
    if m is None:
        return lines
    low = m.box_minimum()
    u_lo, u_hi, v_lo, v_hi = (math.exp(x) for x in m.window)
    where = ("inside the box" if not low.edges else
             "on the box's " + " and ".join(low.edges) + " edge" + ("s" if len(low.edges) > 1 else ""))
    text = (f"Smoothing quadratic: {m.n_points} points, lr {u_lo:.4g}-{u_hi:.4g} x lambda {v_lo:.4g}-{v_hi:.4g}; "
            + ("the unconstrained fit was not convex, so the constraint holds the Hessian singular (flat along one "
               "direction); " if m.constrained else "unconstrained fit convex; ")
            + f"minimum {low.value:.5g} at lr {low.lr:.4g}, lambda {low.weight_decay:.4g}, {where}")
    advice = [f"optimum not bracketed in {axis}: sweep {side} {axis}" for side, axis in
              (("smaller", "lambda"), ("larger", "lambda"), ("smaller", "lr"), ("larger", "lr"))
              if f"{'low' if side == 'smaller' else 'high'} {axis}" in low.edges]
    text += ("" if not advice else " (" + "; ".join(advice) + ")") + "."
    return [*lines, "", text + _lack_of_fit(m, points)]


def _lack_of_fit(m: LocalQuadratic, points: list[DecayPoint]) -> str:
    """` Fit: chi^2/dof ...`: the quadratic's residuals at its window's seed means over their standard errors."""
    from scipy.stats import chi2

    window = set(m.fitted)
    z = [(p.mean - m.value(p.lr, p.weight_decay)) / (float(np.std(p.losses, ddof=1)) / math.sqrt(len(p.losses)))
         for p in points if (p.lr, p.weight_decay) in window and len(p.losses) > 1 and np.std(p.losses) > 0]
    dof = len(z) - 6
    if dof < 1:
        return ""
    stat = float(np.sum(np.square(z)))
    p_value = float(chi2.sf(stat, dof))
    return (f" Fit: residuals over the seed means' standard errors give chi^2/dof = {stat / dof:.2f} ({dof} dof, "
            f"p = {p_value:.2g})" + ("; the quadratic misses structure beyond the seed noise, which the s.e. does not "
                                     "include" if p_value < 0.01 else "") + ".")


def markdown(v: DecayValidation, command: str, figure: str | None = None) -> str:
    """The report of one weight-decay validation: the tau law, the choices, regrets, diverged fractions, the grid."""
    tau = v.fit.tau
    lo, hi = tau.conf_int[TPP]
    blo, bhi = tau.bootstrap_ci.get(TPP, (math.nan, math.nan))
    t_value, t_low, t_high = v.predicted_tau
    diverged = sum(p.n_diverged for p in v.points)
    n_runs = sum(len(p.losses) for p in v.points)
    lines = [
        f"# Weight-decay transfer: {v.name} ({v.parametrization}, {v.convention} AdamW decay)",
        "",
        f"Reproduce: `{command}`",
        "",
        f"Sweep: widths {list(v.widths)} x steps {list(v.steps)}, (lr, lambda) grid; each cell's optimum by a 2-D quadratic "
        f"in (ln lr, ln lambda); law file `{v.law_path}`.",
        "",
        "## The timescale law",
        "",
        f"tau* = {math.exp(tau.intercept):.4g} * (D/N)^b with b = **{tau.exponents[TPP]:.3f}**, {tau.level:.0%} CI "
        f"[{lo:.3f}, {hi:.3f}] ({tau.covariance_kind}, {tau.n_points} cells, dof {tau.dof}); bootstrap ({v.fit.n_boot}) "
        f"[{blo:.3f}, {bhi:.3f}].",
        "",
        *_interior_line(v.fit),
        "| width | steps | D/N | lr* | lambda* | tau* | tau* 95% bootstrap CI | flags |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in v.fit.optima:
        c_lo, c_hi = o.ci.get("tau", (math.nan, math.nan))
        flags = ", ".join(f for f, on in (("edge", o.at_edge), ("argmin-fallback", o.fallback)) if on)
        lines.append(f"| {o.size:g} | {o.steps:g} | {o.tokens_per_parameter:.3g} | {o.lr:.3g} | {o.weight_decay:.3g} | "
                     f"{o.tau:.3g} | [{c_lo:.3g}, {c_hi:.3g}] | {flags} |")
    lines += [
        "",
        f"## Target: width {v.target_width} x {v.target_steps} steps (N = {v.target_params}, D = {v.target_tokens:.4g}, "
        f"D/N = {v.target_tokens / v.target_params:.3g}), {len(v.seeds)} seeds",
        "",
        f"Predicted: lr {v.predicted.lr:.4g}, lambda {v.predicted.weight_decay:.4g}, tau {t_value:.4g} "
        f"(interval [{_num(t_low)}, {_num(t_high)}]). Naive: the same lr with lambda {v.naive.weight_decay:.4g}, the "
        f"lambda* of the proxy cell (width {v.naive_source[0]:g}, {v.naive_source[1]:g} steps), reused unchanged "
        f"(tau {v.naive.tau:.4g} at the target).",
        "",
        "| choice | lr | lambda | tau | seed-mean loss | raw regret | smoothed regret |",
        "|---|---|---|---|---|---|---|",
        *(choice_row(r) for r in (v.predicted, v.naive)),
    ]
    best = v.predicted
    lines += [
        "",
        f"Best point at the target: lr {best.best_lr:.4g}, lambda {best.best_weight_decay:.4g}, loss {best.best_loss:.5g}"
        + (f" (still on the grid's edge after {MAX_EXTENSIONS} extensions: regrets are lower bounds)" if v.best_on_edge
           else "") + ".",
        f"Diverged: {diverged} of {n_runs} target runs.",
        "",
        *regret_notes(v.predicted, v.points),
        "",
        "### Every (lr, lambda) at the target (seed mean, diverged seeds)",
        "",
        "| lr | lambda | tau | mean loss | diverged |",
        "|---|---|---|---|---|",
    ]
    for p in sorted(v.points, key=lambda p: (p.lr, p.weight_decay)):
        lines.append(f"| {p.lr:.4g} | {p.weight_decay:.4g} | {timescale(p.lr, p.weight_decay, v.target_steps, v.convention):.4g} "
                     f"| {p.mean:.5g} | {p.n_diverged}/{len(p.losses)} |")
    if figure:
        lines += ["", f"![weight-decay transfer]({figure})"]
    return "\n".join(lines) + "\n"


def rerender_regrets(report: str, cache: Path) -> str:
    """A report `markdown` wrote, with its choices' regrets and the notes on them recomputed from the target runs
    recorded in `cache`, everything else kept: how a report follows a change in the regret computation without
    training again (benchmarks/rerender_weight_decay.py). The choices are the cached (lr, lambda) pairs the
    report's choices table names (to its 4 significant digits)."""
    title = re.search(r"^# Weight-decay transfer: \S+ \(\S+, (\S+) AdamW decay\)$", report, re.M)
    target = re.search(r"^## Target: width \d+ x (\d+) steps", report, re.M)
    lines = report.splitlines()
    rows = {label: i for i, line in enumerate(lines) for label in (PREDICTED_LABEL, NAIVE_LABEL) if line.startswith(f"| {label} |")}
    notes = [i for i, line in enumerate(lines) if line.startswith("Regret = L(choice)")]
    grid = [i for i, line in enumerate(lines) if line.startswith("### Every (lr, lambda)")]
    if not (title and target and len(rows) == 2 and len(notes) == 1 and len(grid) == 1 and notes[0] < grid[0]):
        raise InputError("not a weight-decay validation report (its title, target, choices table or notes are missing)")
    points = cached_points(cache)

    def named(label: str) -> DecayPoint:
        cells = [c.strip() for c in lines[rows[label]].strip().strip("|").split("|")]
        found = [p for p in points if (f"{p.lr:.4g}", f"{p.weight_decay:.4g}") == (cells[1], cells[2])]
        if len(found) != 1:
            raise InputError(f"{cache}: {len(found)} cached (lr, lambda) pairs match the report's {label} "
                             f"(lr {cells[1]}, lambda {cells[2]}); expected one")
        return found[0]

    chosen, naive_point = named(PREDICTED_LABEL), named(NAIVE_LABEL)
    predicted, naive = choice_regrets(points, chosen.lr, chosen.weight_decay, naive_point.weight_decay,
                                      int(target.group(1)), title.group(1))
    lines[rows[PREDICTED_LABEL]], lines[rows[NAIVE_LABEL]] = choice_row(predicted), choice_row(naive)
    lines[notes[0]:grid[0]] = [*regret_notes(predicted, points), ""]
    return "\n".join(lines) + "\n"


def _interior_line(fit: Any) -> list[str]:
    """The sensitivity check without edge-flagged cells, when there are some."""
    inner = fit.interior_tau_law()
    if inner is None:
        return []
    lo, hi = inner.conf_int[TPP]
    return [f"Without the cells whose optimum touches the swept box: b = {inner.exponents[TPP]:.3f}, CI [{lo:.3f}, {hi:.3f}] "
            f"({inner.n_points} cells).", ""]


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def plot_decay(v: DecayValidation, path: str | Path) -> Path:
    """Left: tau* per cell vs D/N with the fitted law; right: seed-mean loss over the target's (lr, lambda) grid."""
    from scaleplan.outputs import pyplot, save_figure

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    tpp = np.array([o.tokens_per_parameter for o in v.fit.optima])
    taus = np.array([o.tau for o in v.fit.optima])
    err = np.array([[o.tau - o.ci["tau"][0], o.ci["tau"][1] - o.tau] for o in v.fit.optima]).T
    left.errorbar(tpp, taus, yerr=np.clip(err, 0, None), fmt="o", color="C0", label="cell optimum (bootstrap 95%)")
    grid = np.geomspace(min(tpp.min(), v.target_tokens / v.target_params) / 1.2, max(tpp.max(), v.target_tokens / v.target_params) * 1.2, 50)
    b = v.fit.tau.exponents[TPP]
    left.plot(grid, math.exp(v.fit.tau.intercept) * grid**b, color="C1", label=f"fit: b = {b:.3f}")
    left.scatter([v.target_tokens / v.target_params], [v.predicted_tau[0]], marker="*", s=120, color="C3", label="target prediction")
    left.set(xscale="log", yscale="log", xlabel="D / N", ylabel="optimal tau = B / (lr lambda D)", title="timescale law")
    left.legend(fontsize=8)
    finite = [p for p in v.points if math.isfinite(p.mean)]
    sc = right.scatter([p.lr for p in finite], [p.weight_decay for p in finite], c=[p.mean for p in finite], cmap="viridis", s=60)
    fig.colorbar(sc, ax=right, label="held-out loss (seed mean)")
    for r, marker, color in ((v.predicted, "*", "C3"), (v.naive, "X", "C1")):
        right.scatter([r.lr], [r.weight_decay], marker=marker, s=160, color=color, edgecolor="k", label=r.label)
    right.set(xscale="log", yscale="log", xlabel="lr", ylabel="lambda",
              title=f"target width {v.target_width}, {v.target_steps} steps")
    right.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, Path(path), dpi=110)


def run_decay_validations(specs: tuple[Path, ...], target_width: int, target_steps: int, seeds: int, out_dir: Path, name: str,
                          n_boot: int, workers: int, grid_step: float, command: str, log: Callable[[str], None],
                          device: str | None = None, storage: str | None = None) -> list[str]:
    """`scaleplan validate --target-steps`: every spec checked first, then validated; OUT/NAME-SPEC.md and .png each.

    Returns the summary lines to print.
    """
    from scaleplan.outputs import ensure_writable, writing
    from scaleplan.sweep.spec import load_spec
    from scaleplan.sweep.study import refuse_other_study

    stems = []
    for path in specs:  # every spec and report path checked before any training
        spec = load_spec(path)
        check_decay_spec(spec, target_width, target_steps, seeds)
        refuse_other_study(spec, storage)  # another spec's study or runs: refused before any sweep
        decay_record(spec, out_dir, target_width, target_steps).check()
        stems.append(f"{name}-{spec.name}")
        ensure_writable(Path(out_dir) / f"{stems[-1]}.md", "report")
    lines = []
    for path, stem in zip(specs, stems):
        report = Path(out_dir) / f"{stem}.md"
        v = validate_weight_decay(path, target_width, target_steps, seeds, out_dir, n_boot, workers, log, grid_step, device,
                                  storage)
        figure = plot_decay(v, Path(out_dir) / f"{stem}.png")
        with writing(report, "report") as part:
            part.write_text(markdown(v, command, figure.name))
        lines.append(f"{v.name}: predicted (lr, lambda) regret {format_regret(v.predicted)} raw, "
                     f"{format_regret(v.predicted, smoothed=True)} smoothed; naive lambda {format_regret(v.naive)} raw, "
                     f"{format_regret(v.naive, smoothed=True)} smoothed; wrote {report} and {figure}")
    return lines

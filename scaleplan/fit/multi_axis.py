"""Hyperparameter laws from sweeps over several axes: lr*(sizes, D[, B]), B*(D[, sizes]), the lr-batch exponent.

A cell is one combination of the swept axes' values: the size columns (width and depth as separate
regressors, or N), D, and, when the lr law takes it, the batch size. Each cell's lr optimum is located
with `fit.optimum.locate_optimum`; ln lr* is regressed on the logs of every axis that varies across the
cells (`fit_power_law`), each cell weighted by 1/var of its ln optimum over a bootstrap that resamples
trials within cells (as `hyperparameter_law` does for one size axis). An axis that does not vary is not
a regressor (a horizon sweep at one size gives lr*(D)).

With the batch size swept at equal D (a tokens ladder), B is a regressor of the lr law: its exponent is
the lr-batch relation at fixed (N, D), to compare with 1/2 (Adam, square-root scaling) and 1 (SGD,
linear scaling). B* comes from the profile over B of each (sizes, D) group's best losses (the cells'
located minima), located by the same parabola in ln B; ln B* is regressed on D (and the sizes, with
`batch_on_size`).

One B exponent for every D is an assumption the sweep can test: at fixed D a larger batch also means fewer
steps, and how much the optimum moves with that depends on the horizon. With B and D both regressors the lr
law can take a B:D term, c * ln(B / B0) * ln(D / D0) (core/interaction.py; `batch_interaction`: "off" by
default, "on", or "auto": when its t interval excludes 0); the B exponent at D is then e_B + c ln(D / D0).
It is off by default because on the GPT char-LM it fitted the swept D and failed beyond them (2.3-6.4%
regret at three targets outside the swept D, where the pooled law did better: benchmarks/results/batch-law-forms.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from scaleplan.core.interaction import Interaction
from scaleplan.errors import FitError, ScaleplanError
from scaleplan.fit.blas import single_blas_thread
from scaleplan.fit.critical_batch import CriticalBatch, StepsToTarget, fit_critical_batch, steps_to_target
from scaleplan.fit.data import Trials
from scaleplan.fit.hyperparameter_law import MIN_LOG_SD, MIN_REPLICATES
from scaleplan.fit.hyperparameter_law import _with_bootstrap as with_bootstrap_ci
from scaleplan.fit.optimum import (DEFAULT_BAND, DEFAULT_NEAR, CellOptimum, locate_optimum, method_label, min_lrs,
                                   refuse_unbracketed, replica)
from scaleplan.fit.power_law import PowerLawFit, fit_power_law, percentile_ci, replicate_interval
from scaleplan.fit.surge import SurgeFit, fit_surge
from scaleplan.laws.surge import FORMS

INTERACTION_MODES = ("auto", "on", "off")
BATCH_BY_D = ("B", "D")  # the lr law's interaction: the lr-batch exponent drifting with the horizon

# Each grid column as a law-file variable: N parameters, W width, L depth, D data, B batch size.
AXIS_VARIABLE = {"N": "N", "width": "W", "depth": "L", "D": "D", "batch_size": "B"}
SIZE_COLUMNS = ("N", "width", "depth")
BATCH_POINTS = 3  # batch sizes a (sizes, D) group needs to locate B*


@dataclass(frozen=True)
class Cell:
    """One cell of the grid: where it sits (`coords`: column -> value) and its trials' lr and loss."""

    coords: dict[str, float]
    lr: np.ndarray
    loss: np.ndarray
    steps: float | None = None  # training steps of the cell's runs (None when the trials do not say)

    def key(self, columns: tuple[str, ...]) -> tuple[float, ...]:
        return tuple(self.coords[c] for c in columns)


@dataclass(frozen=True)
class BatchOptimum:
    """B* of one (sizes, D) group from the profile over B of its cells' best losses."""

    coords: dict[str, float]
    optimum: CellOptimum  # `lr` holds B* (the 1-D locator is shared), `loss` the profile's minimum
    batches: tuple[float, ...]

    @property
    def batch(self) -> float:
        return self.optimum.lr


@dataclass(frozen=True)
class MultiAxisFit:
    """Cell optima and the power laws fitted on them; reads like `HyperparameterFit` for the law file and plots."""

    method: str
    band: float
    x: str
    columns: tuple[str, ...]  # the cell columns (sizes, D, batch_size)
    cells: list[Cell]
    optima: list[CellOptimum]
    lr: PowerLawFit
    batch_size: PowerLawFit | None
    batch_optima: list[BatchOptimum]
    n_boot: int
    n_boot_failed: int
    cell_lr_ci: list[tuple[float, float]]
    weighted: bool
    lr_replicates: np.ndarray | None = None
    batch_replicates: np.ndarray | None = None
    surge: SurgeFit | None = None  # the lr law in the surge or saturating form (--lr-form); `lr` stays the power law beside it

    @property
    def label(self) -> str:
        how = "WLS, weights 1/var(ln optimum) from the bootstrap" if self.weighted else "OLS"
        if self.surge is not None:
            how = f"the {self.surge.law.form} form by unweighted least squares in ln lr*"
        return f"{method_label(self.method, self.band)} per ({', '.join(self.columns)}) cell; {how}"

    @property
    def lr_batch_exponent(self) -> float | None:
        """The B exponent of the lr law (the lr-batch relation at fixed sizes and D; with a B:D term, at the
        centre D), when B is a regressor."""
        return self.lr.exponents.get("B")

    @property
    def batch_by_d(self) -> Interaction | None:
        """The lr law's B:D term, when it has one."""
        return next((i for i in self.lr.interactions if i.variables == BATCH_BY_D), None)

    def flags(self) -> list[str]:
        """What the multi-axis fit found doubtful beyond the cells' own flags: B* at the edge of the swept batch
        sizes (no batch law from those groups), an lr-batch exponent that differs between groups."""
        out = []
        edge = [b for b in self.batch_optima if b.optimum.at_edge]
        if edge:
            where = "; ".join(", ".join(f"{k}={v:.4g}" for k, v in b.coords.items()) + f": B* {b.batch:.4g}" for b in edge)
            kept = "no batch-size law written" if self.batch_size is None else "left out of the batch-size law"
            out.append(f"{len(edge)} of {len(self.batch_optima)} (size, D) groups have B* at the edge of the swept batch "
                       f"sizes ({kept}): {where}; sweep further batch sizes there")
        groups = lr_batch_by_group(self)
        if heterogeneous(groups) and self.batch_by_d is None and self.surge is None:
            each = "; ".join(", ".join(f"{k}={v:.4g}" for k, v in g.coords.items()) + f": {g.exponent:.3f} [{g.low:.3f}, {g.high:.3f}]"
                             for g in groups)
            out.append(f"the lr-batch exponent differs between groups (intervals do not overlap): {each}; the lr law's one "
                       "B exponent averages them, and a B:D term (--lr-batch-interaction on) holds only inside the swept D: "
                       "sweep at the D you will train, or fit the surge form (--lr-form surge)")
        return out + ([] if self.surge is None else self.surge.flags())

    def bootstrap_interval(self, target: str, values: dict[str, float], level: float = 0.95) -> tuple[float, float] | None:
        """Percentile interval of the law's prediction at `values` (law variable -> value) over the bootstrap."""
        if target == "lr" and self.surge is not None:
            return self.surge.bootstrap_interval(values, level)
        fit, reps = (self.lr, self.lr_replicates) if target == "lr" else (self.batch_size, self.batch_replicates)
        return replicate_interval(fit, reps, values, level)


def cells_of(trials: Trials, columns: tuple[str, ...]) -> list[Cell]:
    """The trials grouped by `columns`, in sorted order."""
    frame = trials.frame
    missing = [c for c in columns if c not in frame]
    if missing:
        raise FitError(f"cannot key cells by {missing}: the trials have no such column (found {list(frame.columns)})")
    cells = []
    for key, group in frame.groupby(list(columns), sort=True):
        values = key if isinstance(key, tuple) else (key,)
        steps = float(group["steps"].iloc[0]) if "steps" in group and group["steps"].nunique() == 1 else None
        cells.append(Cell({c: float(v) for c, v in zip(columns, values)}, group["lr"].to_numpy(float),
                          group["loss"].to_numpy(float), steps))
    return cells


def fit_multi_axis(
    trials: Trials,
    sizes: tuple[str, ...],
    by_batch: bool,
    method: str = "parabola",
    band: float = DEFAULT_BAND,
    near: float = DEFAULT_NEAR,
    batch_on_size: bool = False,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    weighting: str = "inverse-variance",
    batch_interaction: str = "off",
    lr_form: str = "power",
) -> MultiAxisFit:
    """Fit lr* over the cells (`sizes`, D[, batch_size]) and, with `by_batch`, B* over (sizes, D) groups; the lr
    law's B:D term as `batch_interaction` says (see the module docstring); with `lr_form` "surge" or "saturating",
    that form of lr*(D, B) (fit/surge.py) beside the power law."""
    bad = [s for s in sizes if s not in SIZE_COLUMNS]
    if bad:
        raise FitError(f"size axes must be among {', '.join(SIZE_COLUMNS)}; got {bad}")
    if batch_interaction not in INTERACTION_MODES:
        raise FitError(f"batch_interaction must be one of {', '.join(INTERACTION_MODES)}, got {batch_interaction!r}")
    if by_batch and not trials.has_batch:
        raise FitError("the lr-batch relation needs a swept batch size (several batch sizes at the same sizes and D; a batch "
                       "size that changes only with the size or D is confounded with it)")
    columns = (*sizes, *(["D"] if "D" in trials.frame else []), *(["batch_size"] if by_batch else []))
    cells = cells_of(trials, columns)
    need = min_lrs(method)
    for cell in cells:
        if np.unique(cell.lr).size < need:
            where = ", ".join(f"{c}={v:.4g}" for c, v in cell.coords.items())
            raise FitError(f"cell {where} has {np.unique(cell.lr).size} learning rate(s); the {method} method needs at "
                           f"least {need} per cell: sweep more learning rates there")
    optima = _locate(cells, columns, method, band, near)
    refuse_unbracketed(optima, sizes[0] if sizes else "D")
    lr_vars = _varying(cells, columns)
    if not lr_vars:
        raise FitError(f"no axis varies across the cells ({', '.join(columns)}): sweep at least two values of one")
    group_cols = tuple(c for c in columns if c != "batch_size")
    batch_vars = [v for v in group_cols if v == "D" or batch_on_size] if by_batch else []
    rng = np.random.default_rng(seed)
    with single_blas_thread():
        replicates = [_locate([_resampled(c, rng) for c in cells], columns, method, band, near, optima) for _ in range(n_boot)]
    weigh = weighting == "inverse-variance" and method != "band" and len(replicates) >= MIN_REPLICATES
    lr_w = _weights([[o.lr for o in rep] for rep in replicates]) if weigh else None
    lr_fit = _lr_law(optima, cells, lr_vars, level, lr_w, batch_interaction)
    batch_optima = _batch_profile(cells, optima, group_cols) if by_batch else []
    batch_fit, batch_reps = None, None
    inside = [i for i, b in enumerate(batch_optima) if not b.optimum.at_edge]  # an edge B* is a bound, not an optimum
    located = [batch_optima[i] for i in inside]
    kept = [v for v in batch_vars if len({b.coords[v] for b in located}) > 1]
    if located and (kept or len(located) == 1):  # one B* is its own constant; several need a regressor they vary over
        boot_batch = [[rep[i] for i in inside] for rep in (_batch_profile(cells, r, group_cols, False) for r in replicates)
                      if len(rep) == len(batch_optima)]
        batch_w = _weights([[b.batch for b in rep] for rep in boot_batch]) if weigh else None
        batch_fit = _regress_batch(located, kept, level, batch_w)
        batch_reps = _replicate_coefficients([[(b.coords, b.batch) for b in rep] for rep in boot_batch], batch_fit, batch_w)
        batch_fit = _with_bootstrap(batch_fit, batch_reps, level)
    lr_reps = _replicate_coefficients(
        [[(c.coords, o.lr) for c, o in zip(cells, rep)] for rep in replicates], lr_fit, lr_w)
    lr_fit = _with_bootstrap(lr_fit, lr_reps, level)
    failed = n_boot - (0 if lr_reps is None else len(lr_reps))
    surge = _surge(cells, optima, replicates, lr_vars, level, lr_form) if lr_form in FORMS else None
    cell_ci = ([percentile_ci(col, level) for col in np.array([[o.lr for o in rep] for rep in replicates]).T]
               if replicates else [(float("nan"), float("nan"))] * len(optima))
    return MultiAxisFit(method, band, sizes[0] if sizes else "D", columns, cells, optima, lr_fit, batch_fit, batch_optima,
                        n_boot, failed, cell_ci, weigh, lr_reps, batch_reps, surge)


def _surge(cells: list[Cell], optima: list[CellOptimum], replicates: list[list[CellOptimum]], variables: list[str],
           level: float, form: str) -> SurgeFit:
    """The surge or saturating form over the cells (refused without several batch sizes and D, or without the runs'
    steps)."""
    if not {"batch_size", "D"} <= set(variables):
        raise FitError(f"the {form} form (--lr-form {form}) needs cells at several batch sizes and several D (a tokens ladder "
                       "with --lr-batch)")
    if any(c.steps is None for c in cells):
        raise FitError(f"the {form} form (--lr-form {form}) needs each run's steps (a 'steps' column, one value per cell): "
                       "its S = D / (B u) is read from them")
    values = {AXIS_VARIABLE[v]: np.array([c.coords[v] for c in cells]) for v in variables}
    return fit_surge(values, np.array([o.lr for o in optima]), np.array([c.steps for c in cells], dtype=float),
                     [np.array([o.lr for o in rep]) for rep in replicates], level, form)


@dataclass(frozen=True)
class GroupBatchExponent:
    """The lr-batch exponent within one (sizes, D) group: ln lr* on ln B over its batch sizes, with its CI."""

    coords: dict[str, float]
    exponent: float
    low: float
    high: float
    n_batches: int


def lr_batch_by_group(fit: MultiAxisFit, level: float = 0.95) -> list[GroupBatchExponent]:
    """The lr-batch relation at each fixed (sizes, D) separately (groups with >= BATCH_POINTS batch sizes). The
    pooled lr law assumes one B exponent for every D; these show whether that holds (see `heterogeneous`)."""
    if "batch_size" not in fit.columns:
        return []
    group_cols = tuple(c for c in fit.columns if c != "batch_size")
    groups: dict[tuple[float, ...], list[tuple[float, float]]] = {}
    for cell, o in zip(fit.cells, fit.optima):
        groups.setdefault(cell.key(group_cols), []).append((cell.coords["batch_size"], o.lr))
    out = []
    for key, pairs in groups.items():
        if len(pairs) < BATCH_POINTS:
            continue
        b, lr = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        one = fit_power_law("lr", lr, {"B": b}, level=level, n_cell_boot=0)
        low, high = one.conf_int["B"]
        out.append(GroupBatchExponent(dict(zip(group_cols, key)), one.exponents["B"], low, high, len(pairs)))
    return out


def heterogeneous(groups: list[GroupBatchExponent]) -> bool:
    """True when two groups' exponent intervals do not overlap: one B exponent for all D does not fit."""
    return any(a.high < b.low or b.high < a.low for a in groups for b in groups)


@dataclass(frozen=True)
class SizeCriticalBatch:
    """The critical batch of one model size (its size coordinates), from its steps to a common target loss."""

    coords: dict[str, float]
    steps: StepsToTarget
    fit: CriticalBatch

    @property
    def side(self) -> int:
        """+1 / -1 when the fitted B_crit lies more than 10x above / below the batch sizes that reached the target
        (S(B) cannot pin it there); 0 within."""
        b = self.steps.batch
        return 1 if self.fit.b_crit > b.max() * 10 else -1 if self.fit.b_crit < b.min() / 10 else 0

    @property
    def determined(self) -> bool:
        """True when S(B) pins B_crit: within 10x of the batch sizes that reached the target, S_min >= 1 step."""
        return self.side == 0 and self.fit.s_min >= 1


def critical_batches(fit: MultiAxisFit) -> list[SizeCriticalBatch]:
    """Per model size: steps to a common target loss at each batch size (best lr of each run length), then
    S(B) = S_min (1 + B_crit / B). Needs the lr law per batch size, >= 3 batch sizes and >= 2 horizons (D)."""
    if "batch_size" not in fit.columns or "D" not in fit.columns:
        raise FitError("the critical batch needs cells per batch size and several horizons D (a tokens ladder)")
    sizes = tuple(c for c in fit.columns if c in SIZE_COLUMNS)
    curves: dict[tuple[float, ...], dict[float, list[tuple[float, float]]]] = {}
    for cell, o in zip(fit.cells, fit.optima):
        if cell.steps is None:
            raise FitError("the critical batch needs each run's steps (a 'steps' column)")
        by_batch = curves.setdefault(cell.key(sizes), {})
        by_batch.setdefault(cell.coords["batch_size"], []).append((cell.steps, o.loss))
    out = []
    for key, by_batch in curves.items():
        reached = steps_to_target(by_batch)
        size = key[0] if key else float("nan")  # a label for messages: the first size coordinate
        out.append(SizeCriticalBatch(dict(zip(sizes, key)), reached, fit_critical_batch(reached.batch, reached.steps, size)))
    return out


def _locate(cells: list[Cell], columns: tuple[str, ...], method: str, band: float, near: float,
            chosen: list[CellOptimum] | None = None) -> list[CellOptimum]:
    """Each cell's optimum; with the full data's optima `chosen`, a bootstrap replicate's (`optimum.replica`)."""
    out = []
    for i, cell in enumerate(cells):
        size = next((cell.coords[c] for c in columns if c in SIZE_COLUMNS), float("nan"))
        args = (cell.lr, cell.loss, None, method, band, near, size, cell.coords.get("D"))
        out.append(locate_optimum(*args) if chosen is None else replica(*args, None, chosen[i]))
    return out


def _resampled(cell: Cell, rng: np.random.Generator) -> Cell:
    idx = rng.integers(0, len(cell.lr), len(cell.lr))
    return replace(cell, lr=cell.lr[idx], loss=cell.loss[idx])


def _varying(cells: list[Cell], columns: tuple[str, ...]) -> list[str]:
    """The columns that take more than one value across the cells (the regressors)."""
    return [c for c in columns if len({cell.coords[c] for cell in cells}) > 1]


def _weights(values: list[list[float]]) -> np.ndarray | None:
    """1 / var(ln value) per cell over bootstrap replicates (rows), the sd floored at MIN_LOG_SD."""
    if not values:
        return None
    logs = np.log(np.array(values, dtype=float))
    sd = np.maximum(np.nanstd(logs, axis=0, ddof=1), MIN_LOG_SD)
    return 1.0 / sd**2


def _lr_law(optima: list[CellOptimum], cells: list[Cell], variables: list[str], level: float,
            weights: np.ndarray | None, batch_interaction: str) -> PowerLawFit:
    """The lr law over the cells, with the B:D term where B and D both vary and `batch_interaction` keeps it
    ("auto": when its t interval excludes 0)."""
    both = {"batch_size", "D"} <= set(variables)
    if batch_interaction == "on" and not both:
        raise FitError("a B:D term needs cells at several batch sizes and several D (a tokens ladder with "
                       "--lr-batch); drop --lr-batch-interaction on")
    if both and batch_interaction != "off":
        try:
            with_term = _regress("lr", optima, cells, variables, level, weights, (BATCH_BY_D,))
        except ScaleplanError:
            if batch_interaction == "on":
                raise
        else:  # auto keeps the term where its interval excludes 0
            low, high = with_term.conf_int[with_term.interactions[0].name]
            if batch_interaction == "on" or low > 0 or high < 0:
                return with_term
    return _regress("lr", optima, cells, variables, level, weights)


def _regress(target: str, optima: list[CellOptimum], cells: list[Cell], variables: list[str], level: float,
             weights: np.ndarray | None, interactions: tuple[tuple[str, str], ...] = ()) -> PowerLawFit:
    """ln y on the logs of `variables`, one point per cell (every band run of a cell, clustered, for the band method)."""
    ys: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    w: list[np.ndarray] = []
    cols: dict[str, list[np.ndarray]] = {AXIS_VARIABLE[v]: [] for v in variables}
    for i, (cell, o) in enumerate(zip(cells, optima)):
        pts = o.points_lr
        ys.append(pts)
        groups.append(np.full(len(pts), i))
        w.append(np.full(len(pts), 1.0 if weights is None else weights[i]))
        for v in variables:
            cols[AXIS_VARIABLE[v]].append(np.full(len(pts), cell.coords[v]))
    several = any(len(o.points_lr) > 1 for o in optima)
    return fit_power_law(target, np.concatenate(ys), {k: np.concatenate(c) for k, c in cols.items()},
                         weights=None if weights is None or several else np.concatenate(w),
                         groups=np.concatenate(groups) if several else None, level=level, interactions=interactions)


def _batch_profile(cells: list[Cell], optima: list[CellOptimum], group_cols: tuple[str, ...],
                   check_ends: bool = True) -> list[BatchOptimum]:
    """B* of every (sizes, D) group with at least BATCH_POINTS batch sizes: a parabola in ln B through the
    cells' located minimum losses. `check_ends=False` for bootstrap replicates, whose edges nobody reads (the located
    profile's decide which groups enter the B* law)."""
    groups: dict[tuple[float, ...], list[tuple[float, float]]] = {}
    for cell, o in zip(cells, optima):
        groups.setdefault(cell.key(group_cols), []).append((cell.coords["batch_size"], o.loss))
    out = []
    for key, pairs in groups.items():
        if len(pairs) < BATCH_POINTS:
            continue
        batches, losses = np.array([b for b, _ in pairs]), np.array([loss for _, loss in pairs])
        optimum = locate_optimum(batches, losses, method="parabola", check_ends=check_ends)  # at the edge too where its
        # best batch is an end one
        out.append(BatchOptimum(dict(zip(group_cols, key)), optimum, tuple(float(b) for b in batches)))
    return out


def _regress_batch(optima: list[BatchOptimum], variables: list[str], level: float, weights: np.ndarray | None) -> PowerLawFit:
    predictors = {AXIS_VARIABLE[v]: np.array([b.coords[v] for b in optima]) for v in variables}
    return fit_power_law("batch_size", np.array([b.batch for b in optima]), predictors, weights=weights, level=level)


def _replicate_coefficients(replicates: list[list[tuple[dict[str, float], float]]], law: PowerLawFit,
                            weights: np.ndarray | None) -> np.ndarray | None:
    """Least-squares coefficients of `law`'s terms (its `coefficients()` order) in every bootstrap replicate
    ((coords, y) per cell)."""
    rows = []
    for rep in replicates:
        if not rep:
            continue
        y = np.log(np.array([v for _, v in rep], dtype=float))
        values = {AXIS_VARIABLE[k]: np.array([c[k] for c, _ in rep]) for k in rep[0][0]}
        design = np.column_stack(np.broadcast_arrays(*law.terms(values)))
        root_w = np.ones_like(y) if weights is None or len(weights) != len(y) else np.sqrt(weights)
        coef, _, rank, _ = np.linalg.lstsq(design * root_w[:, None], y * root_w, rcond=None)
        if rank == design.shape[1] and np.all(np.isfinite(coef)):
            rows.append(coef)
    return np.array(rows) if rows else None


def _with_bootstrap(fit: PowerLawFit, samples: np.ndarray | None, level: float) -> PowerLawFit:
    return fit if samples is None else with_bootstrap_ci(fit, list(samples), level)

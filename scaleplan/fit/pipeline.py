"""Sweep -> law file: the one fitting pipeline behind `scaleplan fit` and `scaleplan validate`.

Given a sweep's trials (`SweepData`: from a spec's storage, or a CSV), prepare them, locate the optima,
fit the hyperparameter power laws (and the loss law where the cells allow it) and build the law file.
Data without an lr column gives a loss law on every run (loss-only); `isoflop` gives N*(C), D*(C).
Sweeps over several axes (width and depth, depth, a horizon or batch sweep, the batch size in the lr law)
go through `multi_axis`, with the critical batch where the grid allows it.
Both commands call `fit_sweep`, so a law written by `validate` is the law `fit` writes from the same
trials and options (`fit_command` gives that command). A sweep with unfinished slots is refused unless
`allow_incomplete`, and then flagged.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from scaleplan.errors import FitError, InputError
from scaleplan.laws.surge import FORMS

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from scaleplan.core.reference import ParametrizationRef
    from scaleplan.fit.data import Trials
    from scaleplan.fit.hyperparameter_law import HyperparameterFit
    from scaleplan.fit.isoflop import IsoflopFit
    from scaleplan.fit.loss_law import LossLawFit
    from scaleplan.fit.weight_decay import WeightDecayFit
    from scaleplan.fit.multi_axis import MultiAxisFit, SizeCriticalBatch
    from scaleplan.fit.power_sum import Constraints
    from scaleplan.laws import LawFile
    from scaleplan.sweep.spec import SweepSpec

MIN_LOSS_LAW_CELLS = 6
LOSS_LAW_OPTIONS = {"--fix": "fixed", "--tie": "tied", "--huber-delta": "huber_delta", "--loss-space": "loss_space",
                    "--starts": "starts"}  # flag -> FitOptions field: what only a loss law reads


@dataclass(frozen=True)
class FitOptions:
    """How to fit: the options of `scaleplan fit` (see its --help), with its defaults."""

    method: str | None = None  # how each cell's optimum is located; None: default_method of the data's sampler
    band: float = 0.0025
    near: float = 0.02
    x: str | None = None  # size axes, comma-separated ("width,depth"); None: the swept ones of a sweep, N for a CSV
    columns: tuple[str, ...] = ()
    batch_unit_scale: float = 1.0
    batch_unit: str = "samples"
    d_unit: str = "tokens"
    batch_on_size: bool = False
    loss_law: bool | None = None
    n_boot: int = 200
    seed: int = 0
    weighting: str = "inverse-variance"
    lr_in: tuple[str, ...] = ()  # predictors of the lr law (N, width, D, C = 6ND, R = D/N); () = the default
    batch_in: tuple[str, ...] = ()
    isoflop: int | None = None  # Chinchilla approach 1 or 2: fit N*(C), D*(C) instead of hyperparameter laws
    huber_delta: float = 1e-3  # loss law
    loss_space: str = "log"
    starts: int = 20
    fixed: tuple[str, ...] = ()  # NAME=VALUE
    tied: tuple[str, ...] = ()  # NAME=NAME
    allow_incomplete: bool = False
    lr_batch: bool | None = None  # the batch size as a regressor of the lr law (None: for a sweep's own tokens ladder)
    critical_batch: bool | None = None  # steps to target loss vs batch size (None: when the lr law has B and D varies)
    decay_convention: str | None = None  # a weight-decay sweep's AdamW convention; None: the spec's, else torch
    offsets: tuple[str, ...] = ()  # TARGET=VALUE: an additive constant of the lr or batch-size law, held fixed
    batch_interaction: str = "off"  # the lr law's B:D term: off, on, auto (when its interval excludes 0)
    lr_form: str = "power"  # the lr law's form: power, finite-width (c (size/size_min)^-1/2), surge or saturating (of D and B; laws/surge.py)


def fit_command(source: str | Path, output: str | Path, options: FitOptions, storage: str | None = None) -> str:
    """The `scaleplan fit` command that fits `source` (read from `storage` where given, its password redacted) with
    `options` into `output` (a law file's provenance)."""
    import shlex

    from scaleplan.redact import redact

    o, default = options, FitOptions()
    args = ["scaleplan", "fit", str(source), *(["--storage", redact(storage)] if storage else []), "-o", str(output),
            *(["--method", o.method] if o.method else [])]
    if o.x is not None:
        args += ["--x", o.x]
    args += [a for c in o.columns for a in ("--column", c)]
    if o.method == "band":
        args += ["--band", f"{o.band:g}"]
    if o.method == "parabola":
        args += ["--near", f"{o.near:g}"]
    for flag, value, fmt in (("--batch-unit-scale", o.batch_unit_scale, "{:g}"), ("--batch-unit", o.batch_unit, "{}"),
                             ("--d-unit", o.d_unit, "{}")):
        if value != getattr(default, flag[2:].replace("-", "_")):
            args += [flag, fmt.format(value)]
    args += ["--batch-on-size"] if o.batch_on_size else []
    args += [] if o.loss_law is None else ["--loss-law" if o.loss_law else "--no-loss-law"]
    args += [] if o.lr_batch is None else ["--lr-batch" if o.lr_batch else "--no-lr-batch"]
    args += [] if o.critical_batch is None else ["--critical-batch" if o.critical_batch else "--no-critical-batch"]
    args += [] if o.batch_interaction == default.batch_interaction else ["--lr-batch-interaction", o.batch_interaction]
    args += [] if o.lr_form == default.lr_form else ["--lr-form", o.lr_form]
    args += ["--bootstrap", str(o.n_boot), "--seed", str(o.seed), "--weighting", o.weighting]
    for flag, chosen in (("--lr-in", ",".join(o.lr_in)), ("--batch-in", ",".join(o.batch_in)), ("--isoflop", o.isoflop)):
        args += [flag, str(chosen)] if chosen else []
    for flag, value in (("--huber-delta", o.huber_delta), ("--loss-space", o.loss_space), ("--starts", o.starts)):
        args += [flag, f"{value:g}" if isinstance(value, float) else str(value)] if value != getattr(default, flag[2:].replace("-", "_")) else []
    args += [a for f in o.fixed for a in ("--fix", f)] + [a for t in o.tied for a in ("--tie", t)]
    args += ["--allow-incomplete"] if o.allow_incomplete else []
    args += [] if o.decay_convention is None else ["--decay-convention", o.decay_convention]
    args += [a for item in o.offsets for a in ("--offset", item)]
    return shlex.join(args)


@dataclass(frozen=True)
class SweepData:
    """A sweep's trials as read: the raw frame, its data hash, and (for a spec) its parametrization reference."""

    frame: pd.DataFrame
    source: str
    data_sha256: str | None
    parametrization: ParametrizationRef | None = None  # known for a sweep's own trials, None for a foreign CSV
    unfinished: str | None = None  # how far a sweep's plan is from done (None: finished, or not a sweep)
    decay_convention: str | None = None  # the spec's [train] decay_convention, where it names one
    sampler: str | None = None  # the sampler that chose the trials (a spec's or a storage's), None for a CSV
    overlap_noise: float | None = None  # a lse DenseAM over N: beta0 / sqrt(N) at the narrowest proxy (flags.py)
    code_changed: str | None = None  # the user objective's code changed while the sweep ran (code_changes)


@dataclass(frozen=True)
class SweepFit:
    """What the pipeline produced: the prepared trials, optima and power laws (or isoFLOP laws), loss law, flags,
    and the law file."""

    data: SweepData
    trials: Trials
    hyper: HyperparameterFit | MultiAxisFit | None  # None for loss-only data and isoFLOP fits
    loss: LossLawFit | None
    law: LawFile
    isoflop: IsoflopFit | None = None
    flags: tuple[str, ...] = ()
    critical: list[SizeCriticalBatch] = field(default_factory=list)
    decay: WeightDecayFit | None = None  # a weight-decay sweep's (lr, lambda) optima and timescale law


def spec_data(spec: SweepSpec, storage: str | None = None) -> SweepData:
    """The trials of a sweep spec's study (its storage, or `storage`), its parametrization reference and progress."""
    from scaleplan.fit.data import frame_sha256
    from scaleplan.sweep.export import open_study_readonly, trials_frame

    study = open_study_readonly(spec, storage=storage)
    frame = trials_frame(study)
    return SweepData(frame, str(spec.path or spec.name), frame_sha256(frame), spec.reference, unfinished(study),
                     spec.train.get("decay_convention"), study_sampler(study) or spec.sampler, overlap_noise(spec),
                     code_changes(study))


def overlap_noise(spec: SweepSpec) -> float | None:
    """beta0 / sqrt(N) at the spec's narrowest width for a built-in log-sum-exp DenseAM scaled over its features N
    (the random part of a memory overlap under the DenseAM rules), else None."""
    kwargs = spec.model_kwargs
    if spec.model != "denseam" or kwargs.get("energy", "lse") != "lse" or kwargs.get("width_axis", "features") != "features":
        return None
    return float(kwargs.get("beta0", 1.0)) / math.sqrt(min(spec.widths))


def study_sampler(study: optuna.Study) -> str | None:
    """The sampler a `scaleplan sweep` study was made with (None for a study it did not make)."""
    from scaleplan.sweep.study import SAMPLER_ATTR

    return study.user_attrs.get(SAMPLER_ATTR)


def code_changes(study: optuna.Study) -> str | None:
    """`the objective's code changed while the sweep ran: ...` where the study records more than one version of the
    user objective's code file with finished trials (scaleplan.sweep.study.note_objective_source), else None."""
    from scaleplan.sweep.study import SOURCES_ATTR

    versions = study.user_attrs.get(SOURCES_ATTR, [])
    if len(versions) < 2:
        return None
    return (f"the objective's code changed while the sweep ran ({len(versions)} versions of {versions[-1]['file']}, sha256 "
            f"{', '.join(v['sha256'][:12] for v in versions)}): trials from before and after a change are fitted together")


def unfinished(study: optuna.Study) -> str | None:
    """`the sweep is unfinished: 13 of 15 planned trials done, ...`, or None when every planned slot is done
    (or the study was not made by `scaleplan sweep`, so it has no plan)."""
    from scaleplan.sweep.progress import point_status, trials_done
    from scaleplan.sweep.study import PLANNED_ATTR

    planned = study.user_attrs.get(PLANNED_ATTR)
    if planned is None:
        return None
    rows = point_status(study.get_trials(deepcopy=False), planned)
    open_points = [r.point for r in rows if not r.finished]
    if not open_points:
        return None
    shown = ", ".join(open_points[:4]) + (", ..." if len(open_points) > 4 else "")
    return (f"the sweep is unfinished: {trials_done(rows)} of {sum(r.planned for r in rows)} planned trials done, "
            f"{len(open_points)} of {len(rows)} grid points open ({shown})")


def fit_sweep(data: SweepData, options: FitOptions, *, name: str, title: str | None, command: str,
              citation: str | None = None) -> SweepFit:
    """Prepare the trials, fit the hyperparameter laws (or isoFLOP laws) and the loss law where possible, build the law file."""
    from scaleplan.fit.asymmetry import asymmetric_optima
    from scaleplan.fit.data import parse_column_map, prepare_trials
    from scaleplan.fit.flags import fit_flags, lost_cells, pre_asymptotic, surge_optimizer, survivor_optima, without_a_limit
    from scaleplan.fit.law_file import LawMetadata, build_law_file
    from scaleplan.fit.power_sum import PowerSumModel
    from scaleplan.fit.weight_decay import fit_decay_if_swept

    if data.unfinished and not options.allow_incomplete:
        raise FitError(f"{data.source}: {data.unfinished}; finish it (scaleplan sweep), or fit it anyway with --allow-incomplete")
    loss_constraints = constraints(options.fixed, options.tied)
    PowerSumModel(("A", "B"), ("alpha", "beta"), loss_constraints)  # a bad --fix / --tie fails before any work
    columns = parse_column_map(options.columns)
    has_lr = "lr" in columns.values() or ("lr" in data.frame.columns and "lr" not in columns)
    mode = "isoflop" if options.isoflop else ("lr" if has_lr else "loss-only")
    required = {"lr": ("lr", "loss"), "loss-only": ("loss", "D"), "isoflop": ("loss",)}[mode]
    if mode == "lr":
        options = effective_options(data, options)
    sizes = size_axes(data, options.x)
    trials = prepare_trials(data.frame, x=sizes[0], columns=columns, batch_unit_scale=options.batch_unit_scale, source=data.source,
                            required=required, extra_sizes=sizes[1:] if mode == "lr" else ())
    hyper: HyperparameterFit | MultiAxisFit | None = None
    iso = None
    decay = None
    critical: list[SizeCriticalBatch] = []
    if mode == "lr":
        from scaleplan.fit.unread_axes import refuse_unread_axes

        refuse_unread_axes(trials.frame, sizes)
        method = options.method
        assert method is not None, "effective_options resolves the method"
        decay = fit_decay_if_swept(trials, method, options.decay_convention or data.decay_convention,
                                   near=options.near, n_boot=options.n_boot, seed=options.seed)
        hyper, critical = (decay.hyper, []) if decay is not None else _lr_laws(trials, sizes, options, method)
    elif mode == "isoflop":
        iso = _isoflop(trials, options)
    loss = _maybe_loss_law(trials, hyper, True if mode == "loss-only" else options.loss_law, options, loss_constraints)
    if loss is None:
        _refuse_loss_law_options(options)
    extra = ((f"fitted on an unfinished sweep: {data.unfinished}",) if data.unfinished else ()) + (
        (data.code_changed,) if data.code_changed else ()) + lost_cells(trials) + survivor_optima(trials) + asymmetric_optima(hyper, trials) + (
        tuple(hyper.flags()) if hyper is not None else ()) + pre_asymptotic(data.overlap_noise, options.lr_form) + (
        without_a_limit(data.parametrization.name if data.parametrization else None, options.lr_form) if mode == "lr" else ()) + (
        surge_optimizer(data.parametrization.optimizer if data.parametrization else None, options.lr_form))
    flags = tuple(fit_flags(hyper, loss, iso, extra=extra))
    how = {"lr": options.method, "loss-only": "loss-law", "isoflop": f"isoFLOP approach {options.isoflop}"}[mode]
    meta = LawMetadata(
        name=name, title=title or f"{how} fit of {Path(data.source).name}", command=command,
        data_sha256=data.data_sha256, d_unit=options.d_unit, batch_unit=options.batch_unit, citation=citation,
        parametrization=data.parametrization, swept=swept_values(trials),
    )
    law = build_law_file(meta, trials, hyper, loss, iso, flags, decay)
    if critical:
        from scaleplan.fit.law_file import with_critical_batch

        law = with_critical_batch(law, critical, options.batch_unit)
    return SweepFit(data, trials, hyper, loss, law, iso, flags, critical, decay)


def _lr_laws(trials: Trials, sizes: tuple[str, ...], options: FitOptions, method: str) -> tuple[HyperparameterFit | MultiAxisFit, list[SizeCriticalBatch]]:
    """One size axis (N or width) that varies, no batch size in the lr law: lr*(size[, D]) and B*(D) as
    `hyperparameter_law` fits them. Several size axes (width and depth), depth, a size that does not vary (a
    horizon or batch sweep), or the batch size as a regressor: `multi_axis`, and the critical batch where the
    grid allows it (by default; asked for, a grid that does not allow it is an error)."""
    from scaleplan.fit.hyperparameter_law import fit_hyperparameter_laws

    by_batch = bool(options.lr_batch)
    _refuse_one_cell(trials, sizes, options, method)
    if len(sizes) > 1 or sizes[0] == "depth" or by_batch or (trials.frame[sizes[0]].nunique() < 2 and trials.has_tokens):
        from scaleplan.errors import ScaleplanError
        from scaleplan.fit.multi_axis import critical_batches, fit_multi_axis

        if options.lr_in or options.batch_in or options.offsets or options.lr_form == "finite-width":
            raise InputError("--lr-in / --batch-in / --offset / --lr-form finite-width apply to a one-size law; this fit's cells "
                             "span several axes (their predictors are the axes that vary): drop them")
        if options.lr_form in FORMS and options.batch_interaction != "off":
            raise InputError(f"--lr-form {options.lr_form} models how the lr-batch relation moves with D itself: drop "
                             "--lr-batch-interaction")
        fit = fit_multi_axis(trials, sizes, by_batch, method=method, band=options.band, near=options.near,
                             batch_on_size=options.batch_on_size, n_boot=options.n_boot, seed=options.seed,
                             weighting=options.weighting, batch_interaction=options.batch_interaction, lr_form=options.lr_form)
        if options.critical_batch:
            return fit, critical_batches(fit)
        if options.critical_batch is None and by_batch and trials.has_tokens:
            try:
                return fit, critical_batches(fit)
            except ScaleplanError:
                pass  # not measurable from this grid (too few batch sizes or horizons)
        return fit, []
    if options.critical_batch:
        raise InputError("--critical-batch needs the batch size in the lr law (--lr-batch) and several D")
    if options.lr_form in FORMS:
        raise InputError(f"--lr-form {options.lr_form} is a law of D and the batch size: it needs a tokens ladder over batch sizes, "
                         "fitted with the batch size in the lr law (--lr-batch)")
    if options.batch_interaction == "on":
        raise InputError("--lr-batch-interaction on needs the batch size in the lr law (--lr-batch) and several D")
    return fit_hyperparameter_laws(trials, method=method, band=options.band, near=options.near,
                                   batch_on_size=options.batch_on_size, n_boot=options.n_boot, seed=options.seed,
                                   weighting=options.weighting, lr_in=list(options.lr_in), batch_in=list(options.batch_in),
                                   offsets=offset_values(options.offsets), lr_form=options.lr_form), []


def offset_values(items: tuple[str, ...]) -> dict[str, float]:
    """--offset lr=VALUE / batch_size=VALUE as {target: constant} (a constant >= 0 under the power law)."""
    values = {}
    for item in items:
        name, sep, value = (t.strip() for t in item.partition("="))
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or name not in ("lr", "batch_size") or not (math.isfinite(number) and number >= 0):
            raise InputError(f"--offset expects lr=NUMBER or batch_size=NUMBER (a finite number >= 0), got '{item}'")
        values[name] = number
    return values


def effective_options(data: SweepData, options: FitOptions) -> FitOptions:
    """`options` with the defaults that depend on the data made explicit (the size axes `x`, whether the lr law
    takes the batch size, the optimum method: `default_method` of the sampler that chose the trials), so the
    recorded command refits the same law from a CSV of the same trials."""
    from scaleplan.fit.optimum import default_method

    sizes = size_axes(data, options.x)
    resolved = replace(options, x=",".join(sizes), method=options.method or default_method(data.sampler))
    if options.lr_batch is None:
        by_batch = data.parametrization is not None and _batch_varies_at_fixed_d(_prepared(data, resolved), sizes)
        resolved = replace(resolved, lr_batch=by_batch or None)
    return resolved


def _prepared(data: SweepData, options: FitOptions) -> Trials:
    from scaleplan.fit.data import parse_column_map, prepare_trials

    sizes = size_axes(data, options.x)
    return prepare_trials(data.frame, x=sizes[0], columns=parse_column_map(options.columns), extra_sizes=sizes[1:],
                          batch_unit_scale=options.batch_unit_scale, source=data.source)


def _refuse_one_cell(trials: Trials, sizes: tuple[str, ...], options: FitOptions, method: str) -> None:
    """A sweep that varies no size, D or batch size has one cell: say where its optimum is, then refuse the law."""
    from scaleplan.errors import FitError
    from scaleplan.fit.optimum import locate_optimum, min_lrs

    frame = trials.frame
    if any(c in frame and frame[c].nunique() > 1 for c in (*sizes, "D", "batch_size")):
        return
    where = ", ".join(f"{c}={frame[c].iloc[0]:.4g}" for c in (*sizes, "D", "batch_size") if c in frame)
    found = ""
    if frame["lr"].nunique() >= min_lrs(method):
        o = locate_optimum(frame["lr"].to_numpy(float), frame["loss"].to_numpy(float), method=method,
                           band=options.band, near=options.near)
        found = f"; its optimum ({method}): lr {o.lr:.4g}, loss {o.loss:.5g}" + (" (at the edge of the lrs swept)" if o.at_edge else "")
    raise FitError(f"need at least 2 distinct sizes ({sizes[0]}) to fit a power law: the sweep has one cell ({where}){found}; "
                   "sweep more sizes (or several D or batch sizes)")


def size_axes(data: SweepData, x: str | None) -> tuple[str, ...]:
    """The size columns of the laws: `x` split at commas, else the swept width and/or depth of a sweep's own
    trials (width when neither varies), else N (a foreign CSV)."""
    from scaleplan.fit.data import SIZE_VARIABLES

    if x:
        sizes = tuple(part.strip() for part in x.split(","))
        bad = [s for s in sizes if s not in SIZE_VARIABLES] or ([] if len(set(sizes)) == len(sizes) else list(sizes))
        if bad or not sizes:
            raise InputError(f"--x takes size columns among {', '.join(SIZE_VARIABLES)}, comma-separated "
                                 f"(e.g. width,depth); got '{x}'")
        return sizes
    if data.parametrization is None:
        return ("N",)
    frame = data.frame
    varying = tuple(c for c in ("width", "depth") if c in frame and frame[c].nunique() > 1)
    return varying or ("width",)


def swept_values(trials: Trials) -> dict[str, list[float]]:
    """Every grid axis the trials vary, with its values: what the law was fitted over."""
    frame = trials.frame
    return {c: sorted(float(v) for v in frame[c].unique()) for c in ("width", "depth", "N", "D", "steps", "batch_size")
            if c in frame and frame[c].nunique() > 1}


def _batch_varies_at_fixed_d(trials: Trials, sizes: tuple[str, ...]) -> bool:
    """True when some cell (sizes, D) holds several batch sizes: the lr-batch relation is measurable at fixed D."""
    if not trials.has_batch:
        return False
    keys = [*sizes, *(["D"] if "D" in trials.frame else [])]
    return bool((trials.frame.groupby(keys)["batch_size"].nunique() > 1).any())


def constraints(fixed: tuple[str, ...], tied: tuple[str, ...]) -> Constraints:
    """--fix NAME=VALUE and --tie NAME=NAME as loss-law constraints (checked against the parameters in the fit)."""
    from scaleplan.fit.power_sum import Constraints

    values = {}
    for item in fixed:
        name, sep, value = item.partition("=")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--fix expects NAME=NUMBER (e.g. E=1.69), got '{item}'") from None
        if not sep:
            raise InputError(f"--fix expects NAME=NUMBER (e.g. E=1.69), got '{item}'")
    pairs = []
    for item in tied:
        left, sep, right = (t.strip() for t in item.partition("="))
        if not (sep and left and right):
            raise InputError(f"--tie expects NAME=NAME (e.g. alpha=beta), got '{item}'")
        pairs.append((right, left))  # (follower, leader): --tie alpha=beta makes beta follow alpha
    return Constraints(fixed=values, tied=tuple(pairs))


def _isoflop(trials: Trials, options: FitOptions) -> IsoflopFit:
    """N*(C), D*(C) with budgets from a C column, else C = 6ND."""
    from scaleplan.fit.isoflop import fit_isoflop

    assert options.isoflop is not None, "fit_sweep fits isoFLOP profiles only when --isoflop gives the approach"
    frame = trials.frame
    if trials.x != "N":
        raise InputError("--isoflop needs --x N (profiles of loss against model size)")
    if "C" in frame:
        compute = frame["C"].to_numpy(float)
    elif "D" in frame:
        compute = 6.0 * frame["N"].to_numpy(float) * frame["D"].to_numpy(float)
    else:
        raise InputError(f"--isoflop needs a compute column C (or D, for C = 6ND); found {list(frame.columns)}: "
                         "map yours with --column C=flops")
    return fit_isoflop(compute, frame["N"].to_numpy(float), frame["loss"].to_numpy(float), options.isoflop, options.near,
                       options.n_boot, options.seed)


def _refuse_loss_law_options(options: FitOptions) -> None:
    """Refuse a loss-law option on a fit that fits no loss law: it would be recorded in the law file's command and read
    as applied (a probe: --fix E=0 --tie alpha=beta accepted on lr data, silently)."""
    default = FitOptions()
    given = [flag for flag, name in LOSS_LAW_OPTIONS.items() if getattr(options, name) != getattr(default, name)]
    if given:
        raise InputError(f"{given[0]} sets the loss law, and this fit fits none (it needs --x N, several D and sizes, and "
                         f"{MIN_LOSS_LAW_CELLS} cells by default): drop {', '.join(given)}, or ask for the loss law with --loss-law")


def _maybe_loss_law(trials: Trials, hyper: HyperparameterFit | MultiAxisFit | None, wanted: bool | None, options: FitOptions,
                    loss_constraints: Constraints) -> LossLawFit | None:
    """Fit the loss law on the cells' best losses (every run for loss-only data) when asked, or by default when possible."""
    import numpy as np

    from scaleplan.fit.loss_law import fit_loss_law

    if hyper is not None:
        points = [(o.size, o.tokens, o.loss) for o in hyper.optima]
    else:
        frame = trials.frame
        points = list(zip(frame["N"], frame["D"], frame["loss"])) if trials.x == "N" and "D" in frame else []
    possible = (trials.x == "N" and trials.has_tokens and len({p[0] for p in points}) >= 2 and all(p[2] > 0 for p in points))
    if wanted is False or (wanted is None and not (possible and len(points) >= MIN_LOSS_LAW_CELLS)):
        return None  # by default only with MIN_LOSS_LAW_CELLS points; asked for, the fit itself checks the count
    if not possible:
        raise FitError(
            "a loss law needs --x N, a D column with several values, at least 2 sizes and positive losses; "
            f"this data has {len(points)} point(s)"
        )
    n, d, loss = (np.array(col, dtype=float) for col in zip(*points))
    try:
        return fit_loss_law(n, d, loss, delta=options.huber_delta, space=options.loss_space, starts=options.starts,
                            constraints=loss_constraints, n_boot=options.n_boot, seed=options.seed)
    except FitError as exc:
        if wanted:
            raise
        # fitted by default, not asked for: its refusal must not cost the lr laws
        warnings.warn(f"loss law not fitted: {exc} (--loss-law to require it, --no-loss-law to skip it)", stacklevel=2)
        return None

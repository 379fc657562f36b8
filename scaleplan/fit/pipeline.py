"""Sweep -> law file: the one fitting pipeline behind `scaleplan fit` and `scaleplan validate`.

Given a sweep's trials (`SweepData`: from a spec's storage, or a CSV), prepare them, locate the optima,
fit the hyperparameter power laws (and the loss law where the cells allow it) and build the law file.
Both commands call `fit_sweep`, so a law written by `validate` is the law `fit` writes from the same
trials and options (`fit_command` gives that command).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from scaleplan.errors import ScaleplanError

if TYPE_CHECKING:
    import pandas as pd

    from scaleplan.core.reference import ParametrizationRef
    from scaleplan.fit.data import Trials
    from scaleplan.fit.hyperparameter_law import HyperparameterFit
    from scaleplan.fit.loss_law import LossLawFit
    from scaleplan.fit.multi_axis import MultiAxisFit, SizeCriticalBatch
    from scaleplan.laws import LawFile
    from scaleplan.sweep.spec import SweepSpec

MIN_LOSS_LAW_CELLS = 6


@dataclass(frozen=True)
class FitOptions:
    """How to fit: the options of `scaleplan fit` (see its --help), with its defaults."""

    method: str = "parabola"
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
    lr_batch: bool | None = None  # the batch size as a regressor of the lr law (None: for a sweep's own tokens ladder)
    critical_batch: bool | None = None  # steps to target loss vs batch size (None: when the lr law has B and D varies)


def fit_command(source: str | Path, output: str | Path, options: FitOptions) -> str:
    """The `scaleplan fit` command that fits `source` with `options` into `output` (a law file's provenance)."""
    import shlex

    o, default = options, FitOptions()
    args = ["scaleplan", "fit", str(source), "-o", str(output), "--method", o.method]
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
    args += ["--bootstrap", str(o.n_boot), "--seed", str(o.seed), "--weighting", o.weighting]
    return shlex.join(args)


@dataclass(frozen=True)
class SweepData:
    """A sweep's trials as read: the raw frame, its data hash, and (for a spec) its parametrization reference."""

    frame: pd.DataFrame
    source: str
    data_sha256: str | None
    parametrization: ParametrizationRef | None = None  # known for a sweep's own trials, None for a foreign CSV


@dataclass(frozen=True)
class SweepFit:
    """What the pipeline produced: the prepared trials, optima and power laws, loss law, and the law file."""

    data: SweepData
    trials: Trials
    hyper: HyperparameterFit | MultiAxisFit
    loss: LossLawFit | None
    law: LawFile
    critical: list[SizeCriticalBatch] = field(default_factory=list)


def spec_data(spec: SweepSpec, storage: str | None = None) -> SweepData:
    """The trials of a sweep spec's study (its storage, or `storage`), with its parametrization reference."""
    from scaleplan.fit.data import frame_sha256
    from scaleplan.sweep.export import load_trials

    frame = load_trials(spec, storage=storage)
    return SweepData(frame, str(spec.path or spec.name), frame_sha256(frame), spec.reference)


def fit_sweep(data: SweepData, options: FitOptions, *, name: str, title: str | None, command: str,
              citation: str | None = None) -> SweepFit:
    """Prepare the trials, fit the hyperparameter laws (and the loss law where possible), build the law file.

    One size axis (N or width) that varies, and no batch size in the lr law: lr*(size[, D]) and B*(D) as
    `hyperparameter_law` fits them. Several size axes (width and depth), depth, a size that does not vary (a
    horizon or batch sweep), or the batch size as a regressor: `multi_axis`, and, where the sweep allows it,
    the critical batch.
    """
    from scaleplan.fit.hyperparameter_law import fit_hyperparameter_laws
    from scaleplan.fit.law_file import LawMetadata, build_law_file

    options = effective_options(data, options)
    trials = _prepared(data, options)
    sizes, by_batch = tuple(str(options.x).split(",")), bool(options.lr_batch)
    _refuse_one_cell(trials, sizes, options)
    multi = len(sizes) > 1 or sizes[0] == "depth" or by_batch or (trials.frame[sizes[0]].nunique() < 2 and trials.has_tokens)
    hyper: HyperparameterFit | MultiAxisFit
    critical = []
    if multi:
        from scaleplan.fit.multi_axis import critical_batches, fit_multi_axis

        hyper = fit_multi_axis(trials, sizes, by_batch, method=options.method, band=options.band, near=options.near,
                               batch_on_size=options.batch_on_size, n_boot=options.n_boot, seed=options.seed,
                               weighting=options.weighting)
        wanted = options.critical_batch
        if wanted:
            critical = critical_batches(hyper)
        elif wanted is None and by_batch and trials.has_tokens:
            try:
                critical = critical_batches(hyper)
            except ScaleplanError:
                critical = []  # not measurable from this grid (too few batch sizes or horizons): only when asked
    else:
        if options.critical_batch:
            raise ScaleplanError("--critical-batch needs the batch size in the lr law (--lr-batch) and several D")
        hyper = fit_hyperparameter_laws(trials, method=options.method, band=options.band, near=options.near,
                                        batch_on_size=options.batch_on_size, n_boot=options.n_boot, seed=options.seed,
                                        weighting=options.weighting)
    loss = _maybe_loss_law(trials, hyper, options.loss_law, options.n_boot, options.seed)
    meta = LawMetadata(
        name=name, title=title or f"{options.method} fit of {Path(data.source).name}", command=command,
        data_sha256=data.data_sha256, d_unit=options.d_unit, batch_unit=options.batch_unit, citation=citation,
        parametrization=data.parametrization, swept=swept_values(trials),
    )
    law = build_law_file(meta, trials, hyper, loss)
    if critical:
        from scaleplan.fit.law_file import with_critical_batch

        law = with_critical_batch(law, critical, options.batch_unit)
    return SweepFit(data, trials, hyper, loss, law, critical)


def effective_options(data: SweepData, options: FitOptions) -> FitOptions:
    """`options` with the defaults that depend on the data made explicit (the size axes `x`, whether the lr law
    takes the batch size), so the recorded command refits the same law from a CSV of the same trials."""
    sizes = size_axes(data, options.x)
    resolved = replace(options, x=",".join(sizes))
    if options.lr_batch is None:
        by_batch = data.parametrization is not None and _batch_varies_at_fixed_d(_prepared(data, resolved), sizes)
        resolved = replace(resolved, lr_batch=by_batch or None)
    return resolved


def _prepared(data: SweepData, options: FitOptions) -> Trials:
    from scaleplan.fit.data import parse_column_map, prepare_trials

    sizes = size_axes(data, options.x)
    return prepare_trials(data.frame, x=sizes[0], columns=parse_column_map(options.columns), extra_sizes=sizes[1:],
                          batch_unit_scale=options.batch_unit_scale, source=data.source)


def _refuse_one_cell(trials: Trials, sizes: tuple[str, ...], options: FitOptions) -> None:
    """A sweep that varies no size, D or batch size has one cell: say where its optimum is, then refuse the law."""
    from scaleplan.errors import FitError
    from scaleplan.fit.optimum import locate_optimum

    frame = trials.frame
    if any(c in frame and frame[c].nunique() > 1 for c in (*sizes, "D", "batch_size")):
        return
    where = ", ".join(f"{c}={frame[c].iloc[0]:.4g}" for c in (*sizes, "D", "batch_size") if c in frame)
    found = ""
    if frame["lr"].nunique() >= (3 if options.method == "parabola" else 2):
        o = locate_optimum(frame["lr"].to_numpy(float), frame["loss"].to_numpy(float), method=options.method,
                           band=options.band, near=options.near)
        found = f"; its optimum ({options.method}): lr {o.lr:.4g}, loss {o.loss:.5g}" + (" (at the edge of the lrs swept)" if o.at_edge else "")
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
            raise ScaleplanError(f"--x takes size columns among {', '.join(SIZE_VARIABLES)}, comma-separated "
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


def _maybe_loss_law(trials: Trials, hyper: HyperparameterFit | MultiAxisFit, wanted: bool | None, n_boot: int, seed: int) -> LossLawFit | None:
    """Fit the loss law on the cells' best losses when asked, or by default when the cells allow it."""
    import numpy as np

    from scaleplan.fit.loss_law import fit_loss_law

    optima = hyper.optima
    possible = (trials.x == "N" and trials.has_tokens and len({o.size for o in optima}) >= 2
                and len(optima) >= MIN_LOSS_LAW_CELLS and all(o.loss > 0 for o in optima))
    if wanted is False or (wanted is None and not possible):
        return None
    if not possible:
        raise ScaleplanError(
            f"--loss-law needs --x N, a D column, at least 2 sizes, {MIN_LOSS_LAW_CELLS} (N, D) cells and positive losses; "
            f"this data has {len(optima)} cell(s)"
        )
    return fit_loss_law(np.array([o.size for o in optima]), np.array([o.tokens for o in optima], dtype=float),
                        np.array([o.loss for o in optima]), n_boot=n_boot, seed=seed)

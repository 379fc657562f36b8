"""Sweep -> law file: the one fitting pipeline behind `scaleplan fit` and `scaleplan validate`.

Given a sweep's trials (`SweepData`: from a spec's storage, or a CSV), prepare them, locate the optima,
fit the hyperparameter power laws (and the loss law where the cells allow it) and build the law file.
Both commands call `fit_sweep`, so a law written by `validate` is the law `fit` writes from the same
trials and options (`fit_command` gives that command).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scaleplan.errors import ScaleplanError

if TYPE_CHECKING:
    import pandas as pd

    from scaleplan.core.reference import ParametrizationRef
    from scaleplan.fit.data import Trials
    from scaleplan.fit.hyperparameter_law import HyperparameterFit
    from scaleplan.fit.loss_law import LossLawFit
    from scaleplan.laws import LawFile
    from scaleplan.sweep.spec import SweepSpec

MIN_LOSS_LAW_CELLS = 6


@dataclass(frozen=True)
class FitOptions:
    """How to fit: the options of `scaleplan fit` (see its --help), with its defaults."""

    method: str = "parabola"
    band: float = 0.0025
    near: float = 0.02
    x: str | None = None  # None: width for a sweep spec, N for a CSV
    columns: tuple[str, ...] = ()
    batch_unit_scale: float = 1.0
    batch_unit: str = "samples"
    d_unit: str = "tokens"
    batch_on_size: bool = False
    loss_law: bool | None = None
    n_boot: int = 200
    seed: int = 0
    weighting: str = "inverse-variance"


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
    hyper: HyperparameterFit
    loss: LossLawFit | None
    law: LawFile


def spec_data(spec: SweepSpec, storage: str | None = None) -> SweepData:
    """The trials of a sweep spec's study (its storage, or `storage`), with its parametrization reference."""
    from scaleplan.fit.data import frame_sha256
    from scaleplan.sweep.export import load_trials

    frame = load_trials(spec, storage=storage)
    return SweepData(frame, str(spec.path or spec.name), frame_sha256(frame), spec.reference)


def fit_sweep(data: SweepData, options: FitOptions, *, name: str, title: str | None, command: str,
              citation: str | None = None) -> SweepFit:
    """Prepare the trials, fit the hyperparameter laws (and the loss law where possible), build the law file."""
    from scaleplan.fit.data import parse_column_map, prepare_trials
    from scaleplan.fit.hyperparameter_law import fit_hyperparameter_laws
    from scaleplan.fit.law_file import LawMetadata, build_law_file

    x = options.x or ("width" if data.parametrization is not None else "N")
    trials = prepare_trials(data.frame, x=x, columns=parse_column_map(options.columns),
                            batch_unit_scale=options.batch_unit_scale, source=data.source)
    hyper = fit_hyperparameter_laws(trials, method=options.method, band=options.band, near=options.near,
                                    batch_on_size=options.batch_on_size, n_boot=options.n_boot, seed=options.seed,
                                    weighting=options.weighting)
    loss = _maybe_loss_law(trials, hyper, options.loss_law, options.n_boot, options.seed)
    meta = LawMetadata(
        name=name, title=title or f"{options.method} fit of {Path(data.source).name}", command=command,
        data_sha256=data.data_sha256, d_unit=options.d_unit, batch_unit=options.batch_unit, citation=citation,
        parametrization=data.parametrization,
    )
    return SweepFit(data, trials, hyper, loss, build_law_file(meta, trials, hyper, loss))


def _maybe_loss_law(trials: Trials, hyper: HyperparameterFit, wanted: bool | None, n_boot: int, seed: int) -> LossLawFit | None:
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

"""`scaleplan fit SPEC|CSV -o fits/NAME.json`: optima per cell, lr/batch power laws, loss law, isoFLOP laws, plots.

Data with an lr column gives lr (and batch) laws plus a loss law; data without one gives a loss law
(loss-only); `--isoflop` gives N*(C), D*(C). Heavy imports happen inside the command body.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from scaleplan.cli_types import POSITIVE, SEED
from scaleplan.errors import InputError
from scaleplan.fit.pipeline import MIN_LOSS_LAW_CELLS, offset_values
from scaleplan.laws.surge import FORMS
from scaleplan.limits import MAX_BOOTSTRAP
from scaleplan.outputs import TRIALS_SUFFIXES, ensure_writable
from scaleplan.provenance import command_line

if TYPE_CHECKING:
    from scaleplan.fit.pipeline import SweepData

METHOD_CHOICES = ("parabola", "argmin", "band", "vertex")
BATCH_UNITS = ("tokens", "samples", "sequences")
LR_FORMS = ("power", "finite-width", *FORMS)
D_UNITS = ("tokens", "samples")


@click.command("fit")
@click.argument("source", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--storage", default=None,
              help="Read the sweep from this storage (a .journal/.db path, sqlite:///FILE or postgresql://...): "
                   "the spec's study there, or with no SOURCE the study named by --study (or the only one).")
@click.option("--study", default=None, help="Study name in --storage (default: the spec's name, or the only study).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Law file to write (default: fits/<source or study name>.json).")
@click.option("--method", type=click.Choice(METHOD_CHOICES), default=None,
              help="How each cell's optimum is located: weighted parabola in log-lr (and log-B) through the points within "
                   "--near of the best loss, the argmin, every run within --band of the cell's minimum loss (Step Law / "
                   "DeepSeek), or vertex: the adaptive search's estimator, a parabola in log-lr through the points within "
                   "a window in lr around its vertex. Default: vertex for the trials of an adaptive sweep (its spec or "
                   "storage says so), else parabola.")
@click.option("--band", type=POSITIVE, default=0.0025, show_default=True,
              help="Relative width of the near-optimal band for --method band (0.0025 = 0.25%).")
@click.option("--near", type=POSITIVE, default=0.02, show_default=True,
              help="Parabola: use points within this relative loss gap of the minimum (at least 5, 9 with batch).")
@click.option("--x", "x", default=None, metavar="AXES",
              help="Size variable(s) of the law: N (parameters), width, depth, or several comma-separated as separate "
                   "regressors (width,depth). Default: the width and/or depth a sweep varies (width if neither; a spec, "
                   "a storage, or a CSV it exported), N for other CSVs.")
@click.option("--column", "columns", multiple=True, metavar="CANONICAL=SOURCE",
              help="Map a column of the data to a canonical name (N, D, lr, batch_size, loss, width, state, "
                   "diverged, seed, model (cells keyed by it), C), e.g. --column batch_size=bs --column 'loss=smooth loss'. "
                   "Repeatable.")
@click.option("--batch-unit-scale", type=POSITIVE, default=1.0, show_default=True,
              help="Multiply batch_size by this (e.g. 2048 for sequences of 2048 tokens -> tokens).")
@click.option("--batch-unit", type=click.Choice(BATCH_UNITS), default="samples", show_default=True,
              help="Unit of batch_size after scaling (tokens lets predict give the batch in sequences).")
@click.option("--d-unit", type=click.Choice(D_UNITS), default="tokens", show_default=True, help="Unit of D.")
@click.option("--batch-on-size", is_flag=True, help="Also regress ln B* on ln N (ln B* = c + gamma ln D + delta ln N).")
@click.option("--loss-law/--no-loss-law", default=None,
              help="Fit L(N, D) = E + A/N^a + B/D^b on the cells' minimum losses (default: when N and D both vary "
                   f"over >= {MIN_LOSS_LAW_CELLS} cells; always for data without an lr column).")
@click.option("--lr-batch/--no-lr-batch", default=None,
              help="Put the batch size in the lr law (one lr optimum per (size, D, batch) cell): its exponent is the "
                   "lr-batch relation at fixed N and D. Default: for a sweep whose batch sizes share D (a tokens ladder).")
@click.option("--critical-batch/--no-critical-batch", default=None,
              help="Critical batch from steps to a common target loss vs batch size (needs --lr-batch and several D). "
                   "Default: when both hold.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=0, max=MAX_BOOTSTRAP), default=200, show_default=True,
              help=f"Bootstrap replicates (trials resampled within each cell), at most {MAX_BOOTSTRAP}; 0 turns it off.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--weighting", type=click.Choice(["inverse-variance", "none"]), default="inverse-variance", show_default=True,
              help="Weight each cell by 1/var of its optimum over the bootstrap (parabola/argmin), or plain OLS.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write PNG plots (optima.png, lr_law.png, batch_size_law.png) into this folder.")
@click.option("--decay-convention", type=click.Choice(["torch", "independent"]), default=None,
              help="AdamW decay of a weight-decay sweep: torch (p *= 1 - lr*lambda) or independent (p *= 1 - lambda). "
                   "Default: the spec's [train] decay_convention, else torch.")
@click.option("--name", default=None, help="Law name (default: the output file's stem).")
@click.option("--title", default=None, help="One-line title of the law file.")
@click.option("--citation", default=None, help="Where the data comes from, recorded in the provenance.")
@click.option("--lr-in", default=None, metavar="VARS",
              help="Predictors of the lr law, comma-separated: N (or width), D, C (= 6ND, DeepSeek's lr = a*C^b), R (= D/N).")
@click.option("--batch-in", default=None, metavar="VARS", help="Predictors of the batch-size law, as --lr-in.")
@click.option("--isoflop", type=click.Choice(["1", "2"]), default=None,
              help="Fit compute-optimal N*(C), D*(C) from isoFLOP profiles (a C column, or C = 6ND): Chinchilla "
                   "approach 1 (lowest loss per budget) or 2 (parabola in ln N per budget).")
@click.option("--huber-delta", type=POSITIVE, default=1e-3, show_default=True,
              help="Huber delta of the loss-law fit.")
@click.option("--loss-space", type=click.Choice(["log", "linear"]), default="log", show_default=True,
              help="Loss law residuals: log L (Chinchilla, Epoch) or L itself (with a large --huber-delta: least "
                   "squares, as Gadre et al.).")
@click.option("--starts", type=click.IntRange(min=1, max=1000), default=20, show_default=True,
              help="Loss law: L-BFGS runs from the best points of a dense start grid (48 values per exponent, "
                   "coefficients profiled).")
@click.option("--fix", "fixed", multiple=True, metavar="NAME=VALUE",
              help="Loss law: hold a parameter (E, A, B, alpha, beta) fixed, e.g. --fix E=0 (no irreducible loss).")
@click.option("--tie", "tied", multiple=True, metavar="NAME=NAME",
              help="Loss law: tie two exponents, --tie alpha=beta (one exponent, as Gadre et al. 2024).")
@click.option("--offset", "offsets", multiple=True, metavar="TARGET=VALUE",
              help="An additive constant of a one-size law, held fixed: --offset lr=1e-4 fits lr* = 1e-4 + a*N^alpha "
                   "(lr or batch_size).")
@click.option("--lr-batch-interaction", "batch_interaction", type=click.Choice(["auto", "on", "off"]), default="off",
              show_default=True,
              help="With the batch size and D both in the lr law: a B:D term (the lr-batch exponent drifting with "
                   "ln D). auto: kept when its t interval excludes 0. It fits the swept D and can fail beyond them.")
@click.option("--lr-form", type=click.Choice(LR_FORMS), default="power", show_default=True,
              help="The lr law's form. power: lr* = a * prod v^e. finite-width (one size axis): ln lr* = a + c * "
                   "(size/size_min)^-1/2, a size-independent asymptote plus the leading finite-width correction (for "
                   "proxies off their asymptote, e.g. a DenseAM with beta0/sqrt(N) > 1; README, DenseAM). surge (a tokens "
                   "ladder over batch sizes, --lr-batch; Adam): lr* = lr_max(S) / cosh(1/2 ln(B / B_noise(S))), S = D / (B u) "
                   "the steps, lr_max and B_noise power laws of S (README, batch size). saturating: the same, levelling off past "
                   "the noise scale: lr* = lr_max(S) * sqrt(B / (B + B_noise(S))).")
@click.option("--allow-incomplete", is_flag=True,
              help="Fit a sweep whose planned trials are not all finished (flagged in the summary and the law file).")
def fit(source: Path | None, storage: str | None, study: str | None, output: Path | None, method: str | None, band: float, near: float,
        x: str | None, columns: tuple[str, ...], batch_unit_scale: float, batch_unit: str, d_unit: str, batch_on_size: bool,
        loss_law: bool | None, lr_batch: bool | None, critical_batch: bool | None, n_boot: int, seed: int, weighting: str,
        plot_dir: Path | None, decay_convention: str | None, name: str | None, title: str | None, citation: str | None,
        lr_in: str | None, batch_in: str | None, isoflop: str | None, huber_delta: float, loss_space: str, starts: int,
        fixed: tuple[str, ...], tied: tuple[str, ...], offsets: tuple[str, ...], batch_interaction: str, lr_form: str,
        allow_incomplete: bool) -> None:
    """Fit lr (and batch-size) power laws, and a loss law, from a sweep SPEC (.toml), a CSV of trials, or --storage.

    \b
    Columns: N (or width), D, lr, batch_size, loss; optional state (COMPLETE kept), diverged (True dropped),
    seed, model (cells keyed by it), C (compute, for --isoflop). Without lr: a loss law on every run.
    A sweep of weight decay (a weight_decay or wd_tau column; needs steps, N and D) is fitted in (lr, lambda):
    each cell's optimum by a 2-D quadratic, then the timescale law tau*(D/N) beside the lr law.
    Example (Step Law's released grid):
      scaleplan fit dense_lr_bs_loss.csv -o fits/steplaw-refit.json --method band \\
        --column batch_size=bs --column 'loss=smooth loss' --batch-unit-scale 2048 --batch-unit tokens
    """
    from scaleplan.fit.hyperparameter_law import HyperparameterFit
    from scaleplan.fit.multi_axis import MultiAxisFit
    from scaleplan.fit.pipeline import FitOptions, fit_sweep
    from scaleplan.fit.summary import format_summary

    _check_source(source, storage, study)
    if output is not None and output.suffix != ".json":  # -o replaces what it names: never a CSV, a spec or a journal
        raise InputError(f"law file must end in .json, got '{output.name}'")
    data, stem = _load(source, storage, study)
    # before the fit, not after; an -o FILE goes into an existing folder, the default fits/ is made
    output = ensure_writable(output or _default_law_path(stem), "law file", make_folder=output is None)
    if plot_dir is not None:
        ensure_writable(plot_dir / "optima.png", "plot")
    offset_values(offsets)  # a malformed --offset is refused before any data is read
    options = FitOptions(method=method, band=band, near=near, x=x, columns=columns, batch_unit_scale=batch_unit_scale,
                         batch_unit=batch_unit, d_unit=d_unit, batch_on_size=batch_on_size, loss_law=loss_law,
                         n_boot=n_boot, seed=seed, weighting=weighting, lr_in=_names(lr_in), batch_in=_names(batch_in),
                         isoflop=int(isoflop) if isoflop else None, huber_delta=huber_delta, loss_space=loss_space,
                         starts=starts, fixed=fixed, tied=tied, allow_incomplete=allow_incomplete, lr_batch=lr_batch,
                         critical_batch=critical_batch, decay_convention=decay_convention, offsets=offsets,
                         batch_interaction=batch_interaction, lr_form=lr_form)
    fitted = fit_sweep(data, options, name=name or output.stem, title=title, command=command_line(click.get_current_context()),
                       citation=citation)
    trials, hyper, loss, law = fitted.trials, fitted.hyper, fitted.loss, fitted.law
    if isinstance(hyper, MultiAxisFit):
        from scaleplan.fit.axes_summary import format_multi_axis

        click.echo(format_multi_axis(trials, hyper, fitted.critical, None if law.parametrization is None
                                     else law.parametrization.optimizer))
        for flag in fitted.flags:
            click.echo(f"flag: {flag}")
        if plot_dir is not None:
            click.echo(f"no plots: --plot draws fits over one size axis; this fit's cells span {', '.join(hyper.columns)}")
            plot_dir = None
    else:
        click.echo(format_summary(trials, hyper, loss, fitted.isoflop, fitted.flags))
    if fitted.decay is not None:
        from scaleplan.fit.weight_decay import format_weight_decay

        click.echo(format_weight_decay(fitted.decay))
    if plot_dir is not None and hyper is None:
        click.echo("plots: drawn for lr fits only; none written")
    if plot_dir is not None and isinstance(hyper, HyperparameterFit):  # a multi-axis fit has no plots (above)
        from scaleplan.fit.plots import plot_fit

        for path in plot_fit(trials, hyper, plot_dir):
            click.echo(f"plot: {path}")
    click.echo(f"wrote {law.save(output)}")


def _names(text: str | None) -> tuple[str, ...]:
    """`"N,D"` -> ("N", "D")."""
    return () if not text else tuple(v.strip() for v in text.split(",") if v.strip())


def _default_law_path(stem: str) -> Path:
    """fits/<stem>.json, refused where a law that `scaleplan fit` did not write (a published one) lies already:
    a sweep named like a shipped law would otherwise replace it without being asked (-o FILE says so)."""
    from scaleplan.errors import ScaleplanError
    from scaleplan.laws.schema import LawFile

    path = Path("fits") / f"{stem}.json"
    if not path.is_file():
        return path
    try:
        source = LawFile.load(path).provenance.source
    except ScaleplanError:
        source = "not a law file"
    if source != "scaleplan fit":
        raise InputError(f"{path} already holds a law that scaleplan fit did not write ({source}); name this fit's law file "
                         "with -o FILE (or remove that file)")
    return path


def _check_source(source: Path | None, storage: str | None, study: str | None) -> None:
    """Exactly one kind of input: a spec (optionally with --storage), a CSV, or --storage alone."""
    if source is None and storage is None:
        raise InputError("give a sweep spec (.toml), a CSV of trials (.csv), or --storage URL")
    if source is not None and source.suffix.lower() not in (".toml", *TRIALS_SUFFIXES):
        raise InputError(f"cannot fit '{source}': give a sweep spec (.toml) or a CSV of trials (.csv, or .parquet)")
    if source is not None and source.suffix.lower() in TRIALS_SUFFIXES and (storage is not None or study is not None):
        raise InputError("--storage and --study read a sweep's storage; a CSV is read as it is: drop them")


def _load(source: Path | None, storage: str | None, study: str | None) -> tuple[SweepData, str]:
    """The sweep's data and the name for the default output.

    A .csv is read directly, a spec through its study, a storage through the study named (or the only one);
    the parametrization reference comes with a sweep's trials, and with the columns of a CSV a sweep exported."""
    from scaleplan.fit.data import file_sha256, frame_sha256, read_trials
    from scaleplan.fit.pipeline import SweepData, code_changes, spec_data, study_sampler, unfinished
    from scaleplan.sweep.export import frame_reference, open_study_readonly, trials_frame

    if source is not None and source.suffix.lower() in TRIALS_SUFFIXES:
        frame = read_trials(source)
        return SweepData(frame, str(source), file_sha256(source), frame_reference(frame, str(source))), source.stem
    if source is not None:
        from scaleplan.sweep.spec import load_spec

        return spec_data(load_spec(source), storage), source.stem
    assert storage is not None, "_check_source refuses neither a source nor --storage"
    opened = open_study_readonly(storage, study)
    frame = trials_frame(opened)
    origin = f"study '{opened.study_name}'"
    return SweepData(frame, origin, frame_sha256(frame), frame_reference(frame, origin), unfinished(opened),
                     sampler=study_sampler(opened), code_changed=code_changes(opened)), opened.study_name

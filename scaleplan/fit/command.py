"""`scaleplan fit SPEC|CSV -o fits/NAME.json`: optima per cell, lr/batch power laws, loss law, isoFLOP laws, plots.

Data with an lr column gives lr (and batch) laws plus a loss law; data without one gives a loss law
(loss-only); `--isoflop` gives N*(C), D*(C). Heavy imports happen inside the command body.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from scaleplan.errors import FitError, InputError, ScaleplanError
from scaleplan.outputs import ensure_writable

METHOD_CHOICES = ("parabola", "argmin", "band")
MIN_LOSS_LAW_CELLS = 6
BATCH_UNITS = ("tokens", "samples", "sequences")
D_UNITS = ("tokens", "samples")


@click.command("fit")
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Law file to write (default: fits/<source name>.json).")
@click.option("--method", type=click.Choice(METHOD_CHOICES), default="parabola", show_default=True,
              help="How each cell's optimum is located: weighted parabola in log-lr (and log-B), the argmin, "
                   "or every run within --band of the cell's minimum loss (Step Law / DeepSeek).")
@click.option("--band", type=click.FloatRange(min=0, min_open=True), default=0.0025, show_default=True,
              help="Relative width of the near-optimal band for --method band (0.0025 = 0.25%).")
@click.option("--near", type=click.FloatRange(min=0, min_open=True), default=0.02, show_default=True,
              help="Parabola: use points within this relative loss gap of the minimum (at least 5, 9 with batch).")
@click.option("--x", "x", type=click.Choice(["N", "width"]), default=None,
              help="Size variable of the law: parameters N, or width (muP transfer: lr*(width)). "
                   "Default: width for a sweep spec, N for a CSV.")
@click.option("--column", "columns", multiple=True, metavar="CANONICAL=SOURCE",
              help="Map a column of the data to a canonical name (N, D, lr, batch_size, loss, width, state, "
                   "diverged), e.g. --column batch_size=bs --column 'loss=smooth loss'. Repeatable.")
@click.option("--batch-unit-scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Multiply batch_size by this (e.g. 2048 for sequences of 2048 tokens -> tokens).")
@click.option("--batch-unit", type=click.Choice(BATCH_UNITS), default="samples", show_default=True,
              help="Unit of batch_size after scaling (tokens lets predict give the batch in sequences).")
@click.option("--d-unit", type=click.Choice(D_UNITS), default="tokens", show_default=True, help="Unit of D.")
@click.option("--batch-on-size", is_flag=True, help="Also regress ln B* on ln N (ln B* = c + gamma ln D + delta ln N).")
@click.option("--loss-law/--no-loss-law", default=None,
              help="Fit L(N, D) = E + A/N^a + B/D^b on the cells' minimum losses (default: when N and D both vary "
                   f"over >= {MIN_LOSS_LAW_CELLS} cells; always for data without an lr column).")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=0), default=200, show_default=True,
              help="Bootstrap replicates (trials resampled within each cell); 0 turns it off.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--weighting", type=click.Choice(["inverse-variance", "none"]), default="inverse-variance", show_default=True,
              help="Weight each cell by 1/var of its optimum over the bootstrap (parabola/argmin), or plain OLS.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write PNG plots (optima.png, lr_law.png, batch_size_law.png) into this folder.")
@click.option("--name", default=None, help="Law name (default: the output file's stem).")
@click.option("--title", default=None, help="One-line title of the law file.")
@click.option("--citation", default=None, help="Where the data comes from, recorded in the provenance.")
@click.option("--lr-in", default=None, metavar="VARS",
              help="Predictors of the lr law, comma-separated: N (or width), D, C (= 6ND, DeepSeek's lr = a*C^b), R (= D/N).")
@click.option("--batch-in", default=None, metavar="VARS", help="Predictors of the batch-size law, as --lr-in.")
@click.option("--isoflop", type=click.Choice(["1", "2"]), default=None,
              help="Fit compute-optimal N*(C), D*(C) from isoFLOP profiles (a C column, or C = 6ND): Chinchilla "
                   "approach 1 (lowest loss per budget) or 2 (parabola in ln N per budget).")
@click.option("--huber-delta", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="Huber delta of the loss-law fit (on log L).")
@click.option("--loss-space", type=click.Choice(["log", "linear"]), default="log", show_default=True,
              help="Loss law residuals: log L (Chinchilla, Epoch) or L itself (with a large --huber-delta: least "
                   "squares, as Gadre et al.).")
@click.option("--starts", type=click.IntRange(min=1), default=20, show_default=True,
              help="Loss law: L-BFGS runs from the best points of a dense start grid (48 values per exponent, "
                   "coefficients profiled).")
@click.option("--fix", "fixed", multiple=True, metavar="NAME=VALUE",
              help="Loss law: hold a parameter (E, A, B, alpha, beta) fixed, e.g. --fix E=0 (no irreducible loss).")
@click.option("--tie", "tied", multiple=True, metavar="NAME=NAME",
              help="Loss law: tie two parameters, e.g. --tie alpha=beta (one exponent, as Gadre et al. 2024).")
@click.option("--allow-incomplete", is_flag=True,
              help="Fit a sweep whose planned trials are not all finished (flagged in the summary and the law file).")
def fit(source: Path, output: Path | None, method: str, band: float, near: float, x: str, columns: tuple[str, ...],
        batch_unit_scale: float, batch_unit: str, d_unit: str, batch_on_size: bool, loss_law: bool | None,
        n_boot: int, seed: int, weighting: str, plot_dir: Path | None, name: str | None, title: str | None, citation: str | None,
        lr_in: str | None, batch_in: str | None, isoflop: str | None, huber_delta: float, loss_space: str, starts: int,
        fixed: tuple[str, ...], tied: tuple[str, ...], allow_incomplete: bool) -> None:
    """Fit lr (and batch-size) power laws, and a loss law, from a sweep SPEC (.toml) or a CSV of trials.

    \b
    Columns: N (or width), D, lr, batch_size, loss; optional state (COMPLETE kept), diverged (True dropped),
    model (cells keyed by it), seed, C (compute, for --isoflop). Without lr: a loss law on every run.
    Example (Step Law's released grid):
      scaleplan fit dense_lr_bs_loss.csv -o fits/steplaw-refit.json --method band \\
        --column batch_size=bs --column 'loss=smooth loss' --batch-unit-scale 2048 --batch-unit tokens
    """
    from scaleplan.fit.data import parse_column_map, prepare_trials
    from scaleplan.fit.flags import fit_flags
    from scaleplan.fit.hyperparameter_law import fit_hyperparameter_laws
    from scaleplan.fit.law_file import LawMetadata, build_law_file
    from scaleplan.fit.summary import format_summary

    output = ensure_writable(output or Path("fits") / f"{source.stem}.json", "law file")  # before the work, not after
    if plot_dir is not None:
        ensure_writable(plot_dir / "optima.png", "plot")
    constraints = _constraints(fixed, tied)
    raw, data_hash, parametrization, unfinished = _load(source)
    if unfinished and not allow_incomplete:
        raise FitError(f"{source}: {unfinished}; finish it (scaleplan sweep), or fit it anyway with --allow-incomplete")
    x = x or ("width" if source.suffix.lower() == ".toml" else "N")
    column_map = parse_column_map(columns)
    has_lr = "lr" in column_map.values() or ("lr" in raw.columns and "lr" not in column_map)
    mode = "isoflop" if isoflop else ("lr" if has_lr else "loss-only")
    required = ("lr", "loss") if mode == "lr" else (("loss", "D") if mode == "loss-only" else ("loss",))
    trials = prepare_trials(raw, x=x, columns=column_map, batch_unit_scale=batch_unit_scale, source=str(source), required=required)
    hyper = iso = None
    if mode == "lr":
        hyper = fit_hyperparameter_laws(trials, method=method, band=band, near=near, batch_on_size=batch_on_size,
                                        n_boot=n_boot, seed=seed, weighting=weighting, lr_in=_names(lr_in), batch_in=_names(batch_in))
    elif mode == "isoflop":
        iso = _isoflop(trials, int(isoflop), near, n_boot, seed)
    loss = _maybe_loss_law(trials, hyper, True if mode == "loss-only" else loss_law, n_boot, seed,
                           dict(delta=huber_delta, space=loss_space, starts=starts, constraints=constraints))
    flags = fit_flags(hyper, loss, iso, extra=(f"fitted on an unfinished sweep: {unfinished}",) if unfinished else ())
    command = shlex.join([
        "scaleplan", "fit", str(source), "-o", str(output), "--method", method, "--x", x,
        *[a for c in columns for a in ("--column", c)],
        *(["--band", f"{band:g}"] if method == "band" else []), *(["--near", f"{near:g}"] if method == "parabola" else []),
        *(["--batch-unit-scale", f"{batch_unit_scale:g}"] if batch_unit_scale != 1.0 else []),
        *(["--batch-on-size"] if batch_on_size else []), "--bootstrap", str(n_boot), "--seed", str(seed), "--weighting", weighting,
        *(["--lr-in", lr_in] if lr_in else []), *(["--batch-in", batch_in] if batch_in else []),
        *(["--isoflop", isoflop] if isoflop else []), *(["--allow-incomplete"] if unfinished else []),
        *([] if loss is None else ["--huber-delta", f"{huber_delta:g}", "--loss-space", loss_space, "--starts", str(starts),
                                   *[a for f in fixed for a in ("--fix", f)], *[a for t in tied for a in ("--tie", t)]]),
    ])
    meta = LawMetadata(
        name=name or output.stem, title=title or f"{method} fit of {source.name}", command=command,
        data_sha256=data_hash, d_unit=d_unit, batch_unit=batch_unit, citation=citation, parametrization=parametrization,
    )
    law = build_law_file(meta, trials, hyper, loss, iso, flags)
    click.echo(format_summary(trials, hyper, loss, iso, flags))
    if plot_dir is not None and hyper is None:
        click.echo("plots: drawn for lr fits only; none written")
    if plot_dir is not None and hyper is not None:
        from scaleplan.fit.plots import plot_fit

        for path in plot_fit(trials, hyper, plot_dir):
            click.echo(f"plot: {path}")
    click.echo(f"wrote {law.save(output)}")


def _load(source: Path):  # -> (DataFrame, sha256 hex, ParametrizationRef | None, unfinished: str | None)
    """A .csv is read directly; a .toml spec is loaded through the sweep's export, with how far its plan got."""
    from scaleplan.fit.data import file_sha256, frame_sha256, read_csv

    suffix = source.suffix.lower()
    if suffix == ".csv":
        return read_csv(source), (file_sha256(source) if source.is_file() else None), None, None
    if suffix == ".toml":
        from scaleplan.sweep.export import open_study_readonly, trials_frame
        from scaleplan.sweep.spec import load_spec

        spec = load_spec(source)
        study = open_study_readonly(spec)
        frame = trials_frame(study)
        return frame, frame_sha256(frame), spec.reference, _unfinished(study)
    raise ScaleplanError(f"cannot fit '{source}': give a sweep spec (.toml) or a CSV of trials (.csv)")


def _unfinished(study) -> str | None:  # study: optuna.Study
    """`the sweep is unfinished: 30 of 40 planned trials done (...)`, or None when every planned slot is done."""
    from scaleplan.sweep.progress import study_status, trials_done

    rows = study_status(study)
    open_points = [r.point for r in rows if not r.finished]
    if not open_points:
        return None
    shown = ", ".join(open_points[:4]) + (", ..." if len(open_points) > 4 else "")
    return (f"the sweep is unfinished: {trials_done(rows)} of {sum(r.planned for r in rows)} planned trials done, "
            f"{len(open_points)} of {len(rows)} grid points open ({shown})")


def _names(text: str | None) -> list[str] | None:
    """`"N,D"` -> ["N", "D"] (None when not given)."""
    return None if not text else [v.strip() for v in text.split(",") if v.strip()]


def _constraints(fixed: tuple[str, ...], tied: tuple[str, ...]):  # -> power_sum.Constraints
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


def _isoflop(trials, approach: int, near: float, n_boot: int, seed: int):  # -> IsoflopFit
    """Budgets from a C column, else C = 6ND."""
    from scaleplan.fit.isoflop import fit_isoflop

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
    return fit_isoflop(compute, frame["N"].to_numpy(float), frame["loss"].to_numpy(float), approach, near, n_boot, seed)


def _maybe_loss_law(trials, hyper, wanted: bool | None, n_boot: int, seed: int, options: dict):  # -> LossLawFit | None
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
            f"a loss law needs --x N, a D column with several values, at least 2 sizes and positive losses; "
            f"this data has {len(points)} point(s)"
        )
    n, d, loss = (np.array(col, dtype=float) for col in zip(*points))
    return fit_loss_law(n, d, loss, n_boot=n_boot, seed=seed, **options)

"""`scaleplan fit SPEC|CSV -o fits/NAME.json`: optima per cell, lr/batch power laws, loss law, plots.

Heavy imports (pandas, statsmodels, scipy, matplotlib) happen inside the command body.
"""

from __future__ import annotations

from pathlib import Path

import click

from scaleplan.errors import ScaleplanError
from scaleplan.fit.pipeline import MIN_LOSS_LAW_CELLS
from scaleplan.outputs import ensure_writable

METHOD_CHOICES = ("parabola", "argmin", "band")
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
                   f"over >= {MIN_LOSS_LAW_CELLS} cells).")
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
def fit(source: Path, output: Path | None, method: str, band: float, near: float, x: str, columns: tuple[str, ...],
        batch_unit_scale: float, batch_unit: str, d_unit: str, batch_on_size: bool, loss_law: bool | None,
        n_boot: int, seed: int, weighting: str, plot_dir: Path | None, name: str | None, title: str | None, citation: str | None) -> None:
    """Fit lr (and batch-size) power laws, and a loss law, from a sweep SPEC (.toml) or a CSV of trials.

    \b
    Columns: N (or width), D, lr, batch_size, loss; optional state (COMPLETE kept), diverged (True dropped).
    Example (Step Law's released grid):
      scaleplan fit dense_lr_bs_loss.csv -o fits/steplaw-refit.json --method band \\
        --column batch_size=bs --column 'loss=smooth loss' --batch-unit-scale 2048 --batch-unit tokens
    """
    from scaleplan.fit.pipeline import FitOptions, fit_command, fit_sweep
    from scaleplan.fit.summary import format_summary

    output = ensure_writable(output or Path("fits") / f"{source.stem}.json", "law file")  # before the work, not after
    if plot_dir is not None:
        ensure_writable(plot_dir / "optima.png", "plot")
    data = _load(source)
    x = x or ("width" if data.parametrization is not None else "N")
    options = FitOptions(method=method, band=band, near=near, x=x, columns=columns, batch_unit_scale=batch_unit_scale,
                         batch_unit=batch_unit, d_unit=d_unit, batch_on_size=batch_on_size, loss_law=loss_law,
                         n_boot=n_boot, seed=seed, weighting=weighting)
    command = fit_command(source, output, options)
    fitted = fit_sweep(data, options, name=name or output.stem, title=title, command=command, citation=citation)
    trials, hyper, loss, law = fitted.trials, fitted.hyper, fitted.loss, fitted.law
    click.echo(format_summary(trials, hyper, loss))
    if plot_dir is not None:
        from scaleplan.fit.plots import plot_fit

        for path in plot_fit(trials, hyper, plot_dir):
            click.echo(f"plot: {path}")
    click.echo(f"wrote {law.save(output)}")


def _load(source: Path):  # -> SweepData
    """A .csv is read directly; a .toml spec is loaded through the sweep's export."""
    from scaleplan.fit.data import file_sha256, read_csv
    from scaleplan.fit.pipeline import SweepData, spec_data

    suffix = source.suffix.lower()
    if suffix == ".csv":
        return SweepData(read_csv(source), str(source), file_sha256(source) if source.is_file() else None)
    if suffix == ".toml":
        from scaleplan.sweep.spec import load_spec

        return spec_data(load_spec(source))
    raise ScaleplanError(f"cannot fit '{source}': give a sweep spec (.toml) or a CSV of trials (.csv)")

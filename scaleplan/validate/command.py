"""`scaleplan validate SPEC [SPEC ...] --target-width W`: the transfer experiment and its report."""

from __future__ import annotations

from pathlib import Path

import click

from scaleplan.errors import InputError
from scaleplan.validate.experiment import DEFAULT_SEEDS


@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target-width", required=True, type=click.IntRange(min=1), help="Width to transfer to (8-16x the swept widths).")
@click.option("--seeds", default=DEFAULT_SEEDS, show_default=True, type=click.IntRange(min=1),
              help="Seeds per lr at the target (5 or more resolve regrets near 1%).")
@click.option("--device", default=None, help="Where the built-in trainer trains: cpu (default), cuda, cuda:1.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="Worker processes for the small-width sweep.")
@click.option("--out", "out_dir", default=Path("benchmarks/results"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder for report.md, transfer.png and the law files.")
@click.option("--name", default="transfer", show_default=True, help="Report name: OUT/NAME.md and OUT/NAME.png.")
@click.option("--grid-step", default=0.5, show_default=True, type=click.FloatRange(min=0.05), help="Target lr grid spacing in octaves.")
@click.option("--bootstrap", "n_boot", default=200, show_default=True, type=click.IntRange(min=0))
def validate(specs: tuple[Path, ...], target_width: int, seeds: int, device: str | None, workers: int, out_dir: Path,
             name: str, grid_step: float, n_boot: int) -> None:
    """Sweep small widths, predict a wide target, measure the regret.

    \b
    For each SPEC: run (or resume) its sweep, fit lr*(width) with a parabola per width, predict the
    lr at --target-width, then train there (through the spec's objective: the built-in trainer or your
    own code) with the prediction, with the naive choice (the widest swept width's optimum) and with a
    dense lr grid, all with the same seeds. Writes OUT/NAME.md (raw and smoothed regrets with jackknife
    standard errors, diverged seeds per lr, lr drift) and OUT/NAME.png (loss vs lr per width).
    Example:
      scaleplan validate sweeps/mlp-sp.toml sweeps/mlp-mup.toml --target-width 1024
    """
    from scaleplan.outputs import ensure_writable, writing
    from scaleplan.provenance import command_line
    from scaleplan.validate.experiment import check_spec, validate_spec
    from scaleplan.validate.regret import describe
    from scaleplan.validate.report import markdown, plot_transfer

    def log(msg: str) -> None:
        click.echo(msg, err=True)

    report = ensure_writable(out_dir / f"{name}.md", "report")
    checked = [check_spec(spec, target_width, device) for spec in specs]  # every spec checked before any training
    names = [c.spec.name for c in checked]
    if len(set(names)) != len(names):
        raise InputError(f"two specs share the sweep name '{next(n for n in names if names.count(n) > 1)}'; give each its own")
    results = [
        validate_spec(c, target_width, tuple(range(seeds)), device=device, workers=workers, out_dir=out_dir,
                      step_log2=grid_step, n_boot=n_boot, log=log)
        for c in checked
    ]
    figure = plot_transfer(results, out_dir / f"{name}.png")
    with writing(report, "report"):
        report.write_text(markdown(results, figure.name, command_line(click.get_current_context())))
    for r in results:
        click.echo(f"{r.name} ({r.parametrization}): predicted regret {describe(r.predicted)} raw, "
                   f"{describe(r.predicted, smoothed=True)} smoothed; naive {describe(r.naive)} raw, "
                   f"{describe(r.naive, smoothed=True)} smoothed; lr* drift over swept widths {r.lr_drift_log2:+.2f} octaves")
    click.echo(f"wrote {report} and {figure}")

"""`scaleplan validate SPEC [SPEC ...] --target-width W`: the transfer experiment and its report."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from scaleplan.errors import ScaleplanError


@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target-width", required=True, type=click.IntRange(min=1), help="Width to transfer to (8-16x the swept widths).")
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(min=1), help="Seeds per lr at the target.")
@click.option("--device", default="cpu", show_default=True, help="Where to train: cpu, cuda, cuda:1.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="Worker processes for the small-width sweep.")
@click.option("--out", "out_dir", default=Path("benchmarks/results"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder for report.md, transfer.png and the law files.")
@click.option("--name", default="transfer", show_default=True, help="Report name: OUT/NAME.md and OUT/NAME.png.")
@click.option("--grid-step", default=0.5, show_default=True, type=click.FloatRange(min=0.05),
              help="Target lr grid spacing in octaves (with --target-steps: lambdas 1.5x as far apart).")
@click.option("--bootstrap", "n_boot", default=200, show_default=True, type=click.IntRange(min=0))
@click.option("--target-steps", type=click.IntRange(min=1), default=None,
              help="Weight-decay target: steps at the target (>= 4x the longest swept). The specs must sweep lr and "
                   "weight_decay or wd_tau; the prediction (lr, lambda), the naive small-scale lambda and a dense 2-D grid are "
                   "trained there with --seeds (>= 5) seeds.")
def validate(specs: tuple[Path, ...], target_width: int, seeds: int, device: str, workers: int, out_dir: Path,
             name: str, grid_step: float, n_boot: int, target_steps: int | None) -> None:
    """Sweep small widths, predict a wide target, measure the regret.

    \b
    For each SPEC: run (or resume) its sweep, fit lr*(width) with a parabola per width, predict the
    lr at --target-width, then train there with the prediction, with the naive choice (the widest
    swept width's optimum) and with a dense lr grid, all with the same seeds. Writes OUT/NAME.md
    (regret table, lr drift table) and OUT/NAME.png (loss vs lr per width).
    With --target-steps, the target is a (width, steps) pair and the transferred hyperparameters are
    (lr, weight decay): see scaleplan/validate/weight_decay.py; OUT/NAME-SPEC.md per spec.
    Example:
      scaleplan validate sweeps/mlp-sp.toml sweeps/mlp-mup.toml --target-width 1024
      scaleplan validate sweeps/transfer/mlp-mup-wd.toml --target-width 256 --target-steps 2000 --seeds 5
    """
    if target_steps is not None:
        from scaleplan.validate.weight_decay import run_decay_validations

        command = shlex.join(["scaleplan", "validate", *map(str, specs), "--target-width", str(target_width), "--target-steps",
                              str(target_steps), "--seeds", str(seeds), "--workers", str(workers), "--out", str(out_dir),
                              "--name", name, "--grid-step", f"{grid_step:g}", "--bootstrap", str(n_boot)])
        for line in run_decay_validations(specs, target_width, target_steps, seeds, out_dir, name, n_boot, workers, grid_step, command,
                                          lambda msg: click.echo(msg, err=True)):
            click.echo(line)
        return
    from scaleplan.outputs import ensure_writable, writing
    from scaleplan.validate.experiment import check_spec, validate_spec
    from scaleplan.validate.report import markdown, plot_transfer

    def log(msg: str) -> None:
        click.echo(msg, err=True)

    report = ensure_writable(out_dir / f"{name}.md", "report")
    checked = [check_spec(spec, target_width, device) for spec in specs]  # every spec checked before any training
    names = [c.spec.name for c in checked]
    if len(set(names)) != len(names):
        raise ScaleplanError(f"two specs share the sweep name '{next(n for n in names if names.count(n) > 1)}'; give each its own")
    results = [
        validate_spec(c, target_width, tuple(range(seeds)), device=device, workers=workers, out_dir=out_dir,
                      step_log2=grid_step, n_boot=n_boot, log=log)
        for c in checked
    ]
    figure = plot_transfer(results, out_dir / f"{name}.png")
    command = shlex.join([
        "scaleplan", "validate", *map(str, specs), "--target-width", str(target_width), "--seeds", str(seeds),
        "--device", device, "--workers", str(workers), "--out", str(out_dir), "--name", name,
        "--grid-step", f"{grid_step:g}", "--bootstrap", str(n_boot),
    ])
    with writing(report, "report"):
        report.write_text(markdown(results, figure.name, command))
    for r in results:
        click.echo(f"{r.name:>14s} ({r.parametrization}): predicted regret {r.predicted.regret:7.2%}   "
                   f"naive regret {r.naive.regret:7.2%}   lr* drift over swept widths {r.lr_drift_log2:+.2f} octaves")
    click.echo(f"wrote {report} and {figure}")

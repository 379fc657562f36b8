"""`scaleplan validate SPEC [SPEC ...] --target AXIS=VALUE`: the transfer experiment and its report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from scaleplan.cli_types import FiniteFloat
from scaleplan.errors import InputError
from scaleplan.fit.command import LR_FORMS
from scaleplan.laws.surge import FORMS, MIN_BATCH_SIZES, MIN_D
from scaleplan.limits import MAX_BOOTSTRAP, MAX_GRID_STEP, MAX_NAME_BYTES, MAX_STEPS, MAX_TRIALS_PER_POINT, MAX_WIDTH, MAX_WORKERS
from scaleplan.validate.experiment import DEFAULT_SEEDS

def _utf8(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Click callback: refuse a path that is not UTF-8 text (the report quotes the command line) before any training."""
    for text in value if isinstance(value, tuple) else (value,):
        try:
            str(text or "").encode("utf-8")
        except UnicodeEncodeError:
            raise click.BadParameter(f"{str(text)!r} is not UTF-8 text, which the report quotes; rename it or choose a "
                                     "UTF-8 path") from None
    return value


def _file_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Click callback: --name is one file name inside --out (not empty, no folder, no '..'), UTF-8, not too long."""
    _utf8(ctx, param, value)
    separators = [s for s in ("/", os.sep, os.altsep) if s]
    if value in ("", ".", "..") or any(s in value for s in separators):
        raise click.BadParameter(f"{value!r} must be a file name written inside --out (not empty, no '/', not '..'), "
                                 "e.g. --name transfer")
    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
        raise click.BadParameter(f"a name of {len(value.encode('utf-8'))} bytes is too long for a file name (at most "
                                 f"{MAX_NAME_BYTES}); choose a shorter one")
    return value


@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path), callback=_utf8)
@click.option("--target", "targets", multiple=True, metavar="AXIS=VALUE",
              help="Where to transfer to, on an axis the spec sweeps: width=1024, depth=16, steps=4800 (a steps ladder), "
                   "tokens=4000000 (a tokens ladder) or batch=512; repeat (or comma-separate) for several. Other axes "
                   "keep their largest swept value.")
@click.option("--target-width", type=click.IntRange(1, MAX_WIDTH), default=None, help="Same as --target width=W.")
@click.option("--seeds", default=DEFAULT_SEEDS, show_default=True, type=click.IntRange(1, MAX_TRIALS_PER_POINT),
              help="Seeds per lr at the target (5 or more resolve regrets near 1%).")
@click.option("--device", default=None, help="Where the built-in trainer trains: cpu (default), cuda, cuda:1.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1, max=MAX_WORKERS), help="Worker processes for the small-width sweep and the target's runs (on a CPU, one core each).")
@click.option("--out", "out_dir", default=Path("benchmarks/results"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path), callback=_utf8,
              help="Folder for report.md, transfer.png and the law files.")
@click.option("--name", default="transfer", show_default=True, callback=_file_name,
              help="Report name: OUT/NAME.md and OUT/NAME.png (a file name, no folder).")
@click.option("--grid-step", default=0.5, show_default=True, type=FiniteFloat(0.05, MAX_GRID_STEP),
              help=f"Target lr grid spacing in octaves, at most {MAX_GRID_STEP:g}.")
@click.option("--bootstrap", "n_boot", default=200, show_default=True, type=click.IntRange(0, MAX_BOOTSTRAP),
              help=f"Bootstrap replicates of the fit, at most {MAX_BOOTSTRAP}; 0 turns it off.")
@click.option("--storage", default=None, callback=_utf8,
              help="Where the small-width sweeps live instead of each spec's [sweep] storage: a .journal/.db path, "
                   "sqlite:///FILE or postgresql://... (workers on other machines may share it: scaleplan sweep SPEC --storage).")
@click.option("--target-steps", type=click.IntRange(1, MAX_STEPS), default=None,
              help="Weight-decay target: steps at the target (>= 4x the longest swept), with --target-width. The specs must "
                   "sweep lr and weight_decay or wd_tau; the prediction (lr, lambda), the naive small-scale lambda and a dense "
                   "2-D grid (lambdas 1.5 x --grid-step apart) are trained there.")
@click.option("--lr-form", type=click.Choice(LR_FORMS), default="power", show_default=True,
              help="The fitted lr law's form, as scaleplan fit --lr-form: finite-width for one swept size axis, surge "
                   "or saturating for a tokens ladder over batch sizes.")
def validate(specs: tuple[Path, ...], targets: tuple[str, ...], target_width: int | None, seeds: int, device: str | None,
             workers: int, out_dir: Path, name: str, grid_step: float, n_boot: int, storage: str | None,
             target_steps: int | None, lr_form: str) -> None:
    """Sweep, fit the lr law, predict a target beyond the swept axes, measure the regret.

    \b
    For each SPEC: run (or resume) its sweep, fit its lr law (a parabola per cell; width, depth, D and
    batch size as the sweep varies them), predict the lr at the --target, then train there (through the
    spec's objective: the built-in trainer or your own code) with the prediction, with the naive choice
    (the optimum of the swept cell nearest the target) and with a dense lr grid, all with the same seeds; the
    grid grows past an end while the best lr sits on it or the end's loss is within 0.5% of the best.
    Writes OUT/NAME.md (raw and smoothed regrets with jackknife standard errors, diverged seeds per lr,
    lr drift) and OUT/NAME.png (loss vs lr along the target's axis). The target's runs are recorded as they
    finish (OUT/SPEC-target-AXISVALUE.csv): the same command resumes an interrupted validation.
    With --target-steps, the target is a (width, steps) pair and the transferred hyperparameters are
    (lr, weight decay): scaleplan/validate/weight_decay.py; one report OUT/NAME-SPEC.md (and .png) per spec; its 2-D
    grid grows by the same rules along the best point's row and column.
    Examples:
      scaleplan validate sweeps/mlp-sp.toml sweeps/mlp-mup.toml --target width=1024
      scaleplan validate sweeps/transfer/gpt-depth-completep.toml --target depth=16
      scaleplan validate sweeps/transfer/mlp-mup-wd.toml --target-width 256 --target-steps 2000
    """
    if storage is not None:  # a bad URL or a missing driver: one line now, before any sweep
        from scaleplan.sweep.storage import resolve_storage

        resolve_storage(storage)
    if target_steps is not None:
        if lr_form != "power":
            raise InputError("--lr-form applies to the lr law's transfer; a --target-steps validation fits (lr, lambda) per cell")
        if target_width is None or targets:
            raise InputError("--target-steps takes the target's width as --target-width W (not --target)")
        from scaleplan.provenance import command_line
        from scaleplan.validate.weight_decay import run_decay_validations

        for line in run_decay_validations(specs, target_width, target_steps, seeds, out_dir, name, n_boot, workers, grid_step,
                                          command_line(click.get_current_context()), lambda msg: click.echo(msg, err=True),
                                          device, storage):
            click.echo(line)
        return
    from scaleplan.outputs import ensure_writable, writing
    from scaleplan.provenance import command_line
    from scaleplan.sweep.study import refuse_other_study
    from scaleplan.validate.experiment import check_spec, target_record, validate_spec
    from scaleplan.validate.regret import describe
    from scaleplan.validate.report import markdown, plot_transfer
    from scaleplan.validate.target import parse_targets

    def log(msg: str) -> None:
        click.echo(msg, err=True)

    target = parse_targets(targets, target_width)
    report = ensure_writable(out_dir / f"{name}.md", "report")
    checked = [check_spec(spec, target, device) for spec in specs]  # every spec checked before any training
    names = [c.spec.name for c in checked]
    if len(set(names)) != len(names):
        raise InputError(f"two specs share the sweep name '{next(n for n in names if names.count(n) > 1)}'; give each its own")
    for c in checked:  # another spec's study or runs are refused now, before any sweep trains or law file is replaced
        if lr_form in FORMS and (len(c.spec.tokens) < MIN_D or len(c.spec.batch_sizes) < MIN_BATCH_SIZES):
            raise InputError(f"--lr-form {lr_form} is a law of D and the batch size: {c.spec.name} needs a tokens ladder "
                             f"(several tokens) over {MIN_BATCH_SIZES} or more batch sizes; it sweeps {', '.join(c.spec.swept_axes) or 'one cell'}")
        refuse_other_study(c.spec, storage)
        target_record(c, out_dir).check()
    results = [
        validate_spec(c, tuple(range(seeds)), device=device, workers=workers, out_dir=out_dir,
                      step_log2=grid_step, n_boot=n_boot, log=log, storage=storage, lr_form=lr_form)
        for c in checked
    ]
    figure = plot_transfer(results, out_dir / f"{name}.png")
    with writing(report, "report") as part:
        part.write_text(markdown(results, figure.name, command_line(click.get_current_context())))
    for r in results:
        click.echo(f"{r.name} ({r.parametrization}): predicted regret {describe(r.predicted)} raw, "
                   f"{describe(r.predicted, smoothed=True)} smoothed; naive {describe(r.naive)} raw, "
                   f"{describe(r.naive, smoothed=True)} smoothed; lr* drift over the swept {r.axis} values {r.lr_drift_log2:+.2f} octaves")
    click.echo(f"wrote {report} and {figure}")

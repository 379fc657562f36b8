"""`scaleplan sweep`: run a sweep from a spec, show its status, export its trials.

`scaleplan sweep SPEC` is short for `scaleplan sweep run SPEC`. Heavy imports (optuna, pandas,
torch) happen inside the commands, so `scaleplan --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from scaleplan.errors import ScaleplanError
from scaleplan.limits import MAX_WORKERS

if TYPE_CHECKING:
    import optuna


class SweepGroup(click.Group):
    """A group whose first argument may be a spec path: `sweep SPEC ...` means `sweep run SPEC ...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=SweepGroup)
def sweep() -> None:
    """Run a small-width sweep from a spec (Optuna), or inspect/export one.

    \b
      scaleplan sweep sweeps/mlp-mup.toml                  # = scaleplan sweep run ...
      scaleplan sweep sweeps/mlp-mup.toml --workers 2
      scaleplan sweep SPEC --storage postgresql://u:p@host/db   # join from other machines
      scaleplan sweep status sweeps/mlp-mup.toml
      scaleplan sweep export sweeps/mlp-mup.toml -o trials.csv
    """


@sweep.command("run")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--workers", "-w", type=click.IntRange(min=1, max=MAX_WORKERS), default=1, show_default=True, help="Local worker processes (one torch thread each).")
@click.option("--storage", default=None, help="Optuna storage: a .journal/.db path (relative to the current directory), sqlite:///FILE or postgresql://... (default: the spec's storage key, relative to the spec's folder, else <spec folder>/<name>.journal).")
@click.option("--n-trials", type=click.IntRange(min=1), default=None, help="Run at most this many trials now; a later run does the rest.")
@click.option("--device", default=None, help="Train built-in models on this device (cpu, cuda, cuda:1); not part of the plan.")
def run(spec: str, workers: int, storage: str | None, n_trials: int | None, device: str | None) -> None:
    """Run the missing trials of SPEC (resumes a killed or partial sweep; repeats none)."""
    from scaleplan.sweep.progress import ProgressDisplay
    from scaleplan.sweep.runner import run_sweep
    from scaleplan.sweep.spec import load_spec

    summary = run_sweep(load_spec(spec), storage, workers, n_trials, ProgressDisplay(), device=device)
    line = f"{summary.complete}/{summary.planned} planned trials complete"
    if summary.diverged:
        line += (f"; every one diverged (NaN/inf loss): nothing to fit, lower the [search] lrs" if summary.diverged == summary.complete
                 else f"; {summary.diverged} diverged")
    if summary.running:
        line += f"; {summary.running} running on other workers"
    click.echo(line)


def _study_source(spec: str | None, storage: str | None, study: str | None) -> optuna.Study:
    from scaleplan.sweep.export import open_study_readonly

    if spec is not None:
        return open_study_readonly(spec, study, storage)
    if storage is None:
        raise ScaleplanError("give a sweep spec, or --storage URL (and --study NAME)")
    return open_study_readonly(storage, study)


@sweep.command("status")
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@click.option("--storage", default=None, help="Storage URL or path, relative to the current directory (instead of, or overriding, the spec's).")
@click.option("--study", default=None, help="Study name (default: the spec's name, or the only study in the storage).")
def status(spec: str | None, storage: str | None, study: str | None) -> None:
    """Show trials done/planned, failures, divergences and the best loss per grid point."""
    from rich.console import Console

    from scaleplan.sweep.liveness import GRACE_S, stale_trials
    from scaleplan.sweep.progress import status_table, study_status, trials_done

    opened = _study_source(spec, storage, study)
    rows = study_status(opened)
    done = trials_done(rows)
    console = Console()
    if not console.is_terminal:  # a pipe or file: wide enough that no column is cut
        console = Console(width=120)
    console.print(status_table(rows, title=f"{opened.study_name}: {done}/{sum(r.planned for r in rows)} trials complete"))
    stale = stale_trials(opened)
    if stale:  # counted as running above; a killed sweep leaves them so until its next run
        click.echo(f"{stale} of the running trials have no live worker (its process is gone, or no heartbeat for "
                   f"{GRACE_S:.0f} s): the next `scaleplan sweep` run re-runs them")


@sweep.command("export")
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output file: .csv or .parquet.")
@click.option("--storage", default=None, help="Storage URL or path, relative to the current directory (instead of, or overriding, the spec's).")
@click.option("--study", default=None, help="Study name (default: the spec's name, or the only study in the storage).")
def export(spec: str | None, output: str, storage: str | None, study: str | None) -> None:
    """Write one row per trial (width, N, D, lr, batch_size, loss, state, diverged, ...) to CSV or parquet."""
    from scaleplan.sweep.export import check_export_path, trials_frame, write_trials

    check_export_path(output)
    frame = trials_frame(_study_source(spec, storage, study))
    path = write_trials(frame, output)
    click.echo(f"wrote {len(frame)} trials to {path}")

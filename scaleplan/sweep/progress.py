"""Sweep progress: per-grid-point status from a study's trials, shown live (TTY) or as plain lines.

`study_status` serves both the live display during a run and `scaleplan sweep status`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from scaleplan.errors import ScaleplanError
from scaleplan.sweep.study import PLANNED_ATTR


@dataclass(frozen=True)
class PointStatus:
    """Counts and best result of one grid point (`best_*` are None until a finite loss exists)."""

    point: str
    width: int
    planned: int
    complete: int
    running: int
    failed: int
    diverged: int
    best_loss: float | None
    best_lr: float | None
    pruned: int = 0

    @property
    def done(self) -> int:
        """Finished trials: COMPLETE or PRUNED (a pruned slot is not run again)."""
        return self.complete + self.pruned

    @property
    def finished(self) -> bool:
        return self.done >= self.planned


def point_status(trials: Sequence[FrozenTrial], planned: dict[str, int]) -> list[PointStatus]:
    """Status of every planned grid point, in plan order, from the study's trials."""
    rows = []
    for point, n_planned in planned.items():
        mine = [t for t in trials if t.user_attrs.get("point") == point]
        complete = [t for t in mine if t.state == TrialState.COMPLETE]
        finite = [t for t in complete if not t.user_attrs.get("diverged") and t.value is not None]
        best = min(finite, key=lambda t: t.value) if finite else None  # type: ignore[arg-type, return-value]
        width = int(mine[0].user_attrs["width"]) if mine else int(point[1:].split("-")[0])
        rows.append(
            PointStatus(
                point=point,
                width=width,
                planned=n_planned,
                complete=len(complete),
                running=sum(t.state == TrialState.RUNNING for t in mine),
                failed=sum(t.state == TrialState.FAIL for t in mine),
                diverged=sum(bool(t.user_attrs.get("diverged")) for t in complete),
                best_loss=None if best is None else best.value,
                best_lr=None if best is None else best.params.get("lr"),
                pruned=sum(t.state == TrialState.PRUNED for t in mine),
            )
        )
    return rows


def study_status(study: optuna.Study) -> list[PointStatus]:
    """`point_status` of a study made by `scaleplan sweep` (its plan is recorded on the study)."""
    planned = study.user_attrs.get(PLANNED_ATTR)
    if planned is None:
        raise ScaleplanError(f"study '{study.study_name}' was not made by `scaleplan sweep` (no plan recorded)")
    return point_status(study.get_trials(deepcopy=False), planned)


def trials_done(rows: Sequence[PointStatus]) -> int:
    """Finished trials over all grid points, each point counted up to its plan."""
    return sum(min(r.done, r.planned) for r in rows)


def _fmt(x: float | None, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def format_duration(seconds: float | None) -> str:
    """`1h02m`, `3m05s` or `42s`; '-' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def status_table(rows: list[PointStatus], title: str | None = None) -> Table:
    """One row per grid point: trials done/planned, running, failed, diverged, best loss and its lr."""
    table = Table(title=title)
    for header in ("grid point", "done", "running", "failed", "diverged", "best loss", "lr@best"):
        table.add_column(header, justify="left" if header == "grid point" else "right", no_wrap=header == "grid point")
    for r in rows:
        table.add_row(
            r.point, f"{r.done}/{r.planned}", str(r.running), str(r.failed), str(r.diverged),
            _fmt(r.best_loss), _fmt(r.best_lr, ".2e"),
        )
    return table


class ProgressDisplay:
    """Live table with a progress bar and ETA on a terminal; one line per finished grid point otherwise."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._start = time.monotonic()
        self._done_at_start: int | None = None
        self._announced: set[str] = set()
        self._first = True
        self._live: Live | None = None

    def _eta(self, done: int, planned: int) -> float | None:
        if self._done_at_start is None:
            self._done_at_start = done
        rate = (done - self._done_at_start) / max(time.monotonic() - self._start, 1e-9)
        return (planned - done) / rate if rate > 0 else None

    def update(self, rows: list[PointStatus]) -> None:
        done = trials_done(rows)
        planned = sum(r.planned for r in rows)
        eta = self._eta(done, planned)
        if self._first:  # points finished before this run started are not announced again
            self._announced = {r.point for r in rows if r.finished}
            self._first = False
        header = f"{done}/{planned} trials, {sum(r.running for r in rows)} running, ETA {format_duration(eta)}"
        if self._console.is_terminal:
            view = Group(Text(header), ProgressBar(total=max(planned, 1), completed=done, width=60), status_table(rows))
            if self._live is None:
                self._live = Live(view, console=self._console, refresh_per_second=2)
                self._live.start()
            else:
                self._live.update(view)
            return
        for r in rows:
            if r.finished and r.point not in self._announced:
                self._announced.add(r.point)
                self._console.print(
                    f"{r.point} done: {r.done}/{r.planned} trials, best loss {_fmt(r.best_loss)} "
                    f"at lr {_fmt(r.best_lr, '.3e')} ({header})",
                    soft_wrap=True, highlight=False,
                )

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

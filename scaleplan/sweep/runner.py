"""Run a sweep on this machine: one in-process worker, or N worker processes (one torch thread each).

The parent loads the objective, then opens the study (so bad input and unreachable storage fail
before any worker starts, and a bad objective leaves no study behind), then shows progress by
reading the storage. Worker processes die with the parent.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from queue import Empty

from scaleplan.errors import ScaleplanError
from scaleplan.sweep.objective import load_objective
from scaleplan.sweep.progress import PointStatus, ProgressDisplay, study_status, trials_done
from scaleplan.sweep.spec import SweepSpec
from scaleplan.sweep.study import SweepSession, open_sweep
from scaleplan.sweep.worker import run_worker

POLL_S = 1.0


@dataclass(frozen=True)
class RunSummary:
    """What a run left behind: trials finished (COMPLETE or PRUNED) / planned, and how many still run elsewhere."""

    complete: int
    planned: int
    running: int


def _summary(rows: list[PointStatus]) -> RunSummary:
    return RunSummary(
        complete=trials_done(rows),
        planned=sum(r.planned for r in rows),
        running=sum(r.running for r in rows),
    )


def die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies, so a killed sweep leaves no orphans."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_process(spec: SweepSpec, storage: str | None, device: str | None, index: int, workers: int,
                    max_trials: int | None, errors: multiprocessing.Queue) -> None:
    die_with_parent()
    try:
        session = open_sweep(spec, storage, worker_index=index)
        run_worker(session, load_objective(spec, device), max_trials, workers=workers)
    except ScaleplanError as exc:
        errors.put(str(exc))
        raise SystemExit(2) from None


def _shares(total: int | None, workers: int) -> list[int | None]:
    if total is None:
        return [None] * workers
    return [total // workers + (i < total % workers) for i in range(workers)]


def run_sweep(
    spec: SweepSpec,
    storage: str | None = None,
    workers: int = 1,
    max_trials: int | None = None,
    display: ProgressDisplay | None = None,
    device: str | None = None,
) -> RunSummary:
    """Run the sweep's missing trials here with `workers` workers (`max_trials` caps this run).

    `device` moves built-in training (e.g. to "cuda") without changing the plan or its fingerprint.
    """
    if workers < 1:
        raise ScaleplanError(f"--workers must be at least 1, got {workers}")
    objective = load_objective(spec, device)  # before the study exists: a typo'd objective must not pin its fingerprint
    session = open_sweep(spec, storage)
    show = display.update if display is not None else (lambda rows: None)
    show(study_status(session.study))
    failure: str | None = None
    crashed: list[int] = []
    try:
        if workers == 1:
            run_worker(session, objective, max_trials, on_batch=lambda: show(study_status(session.study)))
        else:
            failure, crashed = _run_processes(session, storage, device, workers, max_trials, show)
        rows = study_status(session.study)
        show(rows)
    finally:
        if display is not None:
            display.close()
    summary = _summary(rows)
    if crashed and summary.complete < summary.planned:
        raise ScaleplanError(failure or (
            f"{len(crashed)} worker process(es) exited with status {crashed[0]}; finished trials are kept, "
            "re-run the same command to resume (SCALEPLAN_TRACEBACK=1 with --workers 1 shows the error)"
        ))
    if crashed:  # the other workers ran its trials: the sweep is done, but say what happened
        warnings.warn(f"{len(crashed)} worker process(es) exited with status {crashed[0]}"
                      f"{f' ({failure})' if failure else ''}; every planned trial finished nonetheless")
    return summary


def _run_processes(session: SweepSession, storage: str | None, device: str | None, workers: int, max_trials: int | None,
                   show: Callable[[list[PointStatus]], None]) -> tuple[str | None, list[int]]:
    """Run the worker processes to the end; returns a failed worker's message (if any) and the non-zero exit codes."""
    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    procs = [
        ctx.Process(target=_worker_process, args=(session.spec, storage, device, i, workers, share, errors), daemon=True)
        for i, share in enumerate(_shares(max_trials, workers))
        if share is None or share > 0
    ]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            show(study_status(session.study))
            time.sleep(POLL_S)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
    crashed = [p.exitcode for p in procs if p.exitcode]
    try:
        message = errors.get(timeout=0.5) if crashed else None
    except Empty:
        message = None
    return message, crashed

"""Run a sweep on this machine: one in-process worker, or N worker processes (one torch thread each).

The parent loads the objective, then opens the study (so bad input and unreachable storage fail
before any worker starts, and a bad objective leaves no study behind), then shows progress by
reading the storage. Worker processes die with the parent.

Ctrl-C and SIGTERM stop a run alike: every worker marks the trials it was running failed (so status
shows none running, and a re-run repeats them) and the run ends with one `Interrupted` line. A second
signal to the parent ends it at once (stale-trial detection then recovers its trials on resume).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from queue import Empty
from typing import Any

from scaleplan.errors import Interrupted, ScaleplanError
from scaleplan.sweep.objective import load_objective
from scaleplan.sweep.progress import PointStatus, ProgressDisplay, study_status, trials_done
from scaleplan.sweep.spec import SweepSpec
from scaleplan.sweep.storage import database_failures, resolve_storage
from scaleplan.sweep.study import SweepSession, note_objective_source, open_sweep
from scaleplan.sweep.trial import Objective
from scaleplan.sweep.worker import run_worker

POLL_S = 1.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
WORKER_EXIT_S = 30.0  # how long an interrupted worker process may take to mark its trials failed before it is killed


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so that workers clean up after either alike."""


@dataclass(frozen=True)
class RunSummary:
    """What a run left behind: trials finished (COMPLETE or PRUNED) / planned, how many still run elsewhere, and how
    many of the finished diverged."""

    complete: int
    planned: int
    running: int
    diverged: int = 0


def _summary(rows: list[PointStatus]) -> RunSummary:
    return RunSummary(
        complete=trials_done(rows),
        planned=sum(r.planned for r in rows),
        running=sum(r.running for r in rows),
        diverged=sum(r.diverged for r in rows),
    )


def die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies, so a killed sweep leaves no orphans."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop_handler(then: Any) -> Callable[[int, Any], None]:
    """A signal handler that stops the run (KeyboardInterrupt, or Terminated for SIGTERM) and sets `then` for the next."""

    def stop(signum: int, frame: Any) -> None:
        for other in STOP_SIGNALS:
            signal.signal(other, then)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    return stop


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Run the block so that Ctrl-C or SIGTERM ends it as one `Interrupted` line (exit 130 or 143); a second
    signal then ends the process at once (its default action). Outside the main thread, signals are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop_handler(signal.SIG_DFL))
    try:
        yield
    except KeyboardInterrupt as exc:  # handlers stay at their default: the process is on its way out
        signum = _signal_of(exc)
        raise Interrupted(
            f"interrupted by {signum.name}: the storage is intact, with finished trials kept and the running ones "
            "marked failed; re-run the same command to resume", signum) from None
    except BaseException:
        _restore(previous)
        raise
    _restore(previous)


def _signal_of(exc: KeyboardInterrupt) -> signal.Signals:
    return signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT


def _restore(handlers: dict[signal.Signals, Any]) -> None:
    for signum, handler in handlers.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def ignore_signal(signum: int, frame: Any) -> None:
    """Drop a signal. Unlike SIG_IGN, a signal already pending when this is installed (Ctrl-C reaches a worker with its
    process group, then the parent's SIGTERM) is dropped silently, not printed as "ignored due to race condition"."""


def worker_signals() -> None:
    """A worker process's handlers: the first Ctrl-C or SIGTERM stops it; the rest are dropped while it marks its
    trials failed."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop_handler(ignore_signal))


def _worker_process(spec: SweepSpec, storage: str | None, device: str | None, index: int, workers: int,
                    max_trials: int | None, errors: multiprocessing.Queue) -> None:
    die_with_parent()
    worker_signals()
    try:
        with database_failures(resolve_storage(storage, spec)):
            session = open_sweep(spec, storage, worker_index=index)
            run_worker(session, load_objective(spec, device), max_trials, workers=workers)
    except ScaleplanError as exc:
        errors.put(str(exc))
        raise SystemExit(2) from None
    except KeyboardInterrupt as exc:  # the parent reports it; no traceback from each worker
        raise SystemExit(128 + _signal_of(exc)) from None


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
    with stopped_by_signals():
        objective = load_objective(spec, device)  # before the study exists: a typo'd objective must not pin its fingerprint
        with database_failures(resolve_storage(storage, spec)):
            rows, failure, crashed = _run(spec, storage, workers, max_trials, display, device, objective)
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


def _run(spec: SweepSpec, storage: str | None, workers: int, max_trials: int | None, display: ProgressDisplay | None,
         device: str | None, objective: Objective) -> tuple[list[PointStatus], str | None, list[int]]:
    """Open the study and run its trials; returns the final status, a failed worker's message and its exit codes."""
    session = open_sweep(spec, storage)
    show = display.update if display is not None else (lambda rows: None)
    rows = study_status(session.study)
    left = sum(r.planned for r in rows) - trials_done(rows)  # stale 'running' ones included: a worker re-runs them
    if left > 0:  # a finished sweep runs no code: a version that trains nothing is not recorded
        note_objective_source(session, objective.source)
    show(rows)
    failure: str | None = None
    crashed: list[int] = []
    try:
        # no more processes than trials left, none when finished
        workers = min(workers, left)
        if workers == 1:
            run_worker(session, objective, max_trials, on_batch=lambda: show(study_status(session.study)))
        elif workers > 1:
            failure, crashed = _run_processes(session, storage, device, workers, max_trials, show)
        rows = study_status(session.study)
        show(rows)
    finally:
        if display is not None:
            display.close()
    return rows, failure, crashed


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
    finally:  # on an interrupt each worker marks its trials failed, then exits (or is killed if it hangs)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(WORKER_EXIT_S)
            if p.is_alive():
                p.kill()
                p.join()
    crashed = [p.exitcode for p in procs if p.exitcode]
    try:
        message = errors.get(timeout=0.5) if crashed else None
    except Empty:
        message = None
    return message, crashed

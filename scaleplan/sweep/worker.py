"""A sweep worker: claim WAITING trials, evaluate them (K at once for a population), record results.

Any number of workers, on any machines, can run this loop on one study. Diverged trials are
COMPLETE with a finite penalty value and `diverged=True` (Optuna's samplers ignore NaN trials, so
a NaN would hide the divergence); an objective that raises FAILs its trials and stops the worker.
With a pruner, each checkpoint's held-out loss is reported to the trial and trials the pruner
stops are PRUNED (a finished slot, never re-run) with `pruned=True` and `pruned_loss`.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import optuna
from optuna.trial import TrialState

from scaleplan.errors import ScaleplanError
from scaleplan.sweep.liveness import Heartbeat, owned_here, stamp_owner
from scaleplan.sweep.trial import Objective, ObjectiveFailed, Outcome, TrialRequest
from scaleplan.sweep.plan import GridPoint
from scaleplan.sweep.spec import SearchParam
from scaleplan.sweep.storage import open_storage
from scaleplan.sweep.study import SweepSession, reconcile, trial_id
from scaleplan.train.config import Checkpoint

DIVERGED_FALLBACK = 1e3
ROUND_WAIT_S = 0.5
ERROR_ATTR = "error"
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def point_of(trial: optuna.Trial | optuna.trial.FrozenTrial) -> GridPoint:
    """The grid point stored in a trial's user attrs."""
    return GridPoint.from_attrs(trial.user_attrs)


def _pop(session: SweepSession, trial_id: int) -> bool:
    with signals_held():  # a claimed trial without its owner's stamp would show as running until stale
        try:
            claimed = session.storage.set_trial_state_values(trial_id, TrialState.RUNNING)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        if claimed:
            stamp_owner(session.storage, trial_id)
    return claimed


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then act on the first as the handler in place would."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[signal.Signals] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: caught.append(signal.Signals(signum))) for signum in HELD_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        handler = previous[caught[0]] if caught else signal.SIG_IGN
        if callable(handler):
            handler(caught[0], None)
        elif handler != signal.SIG_IGN:  # the default action (None: a handler not set from Python)
            os.kill(os.getpid(), caught[0])


def claim(session: SweepSession, objective: Objective, limit: int, workers: int = 1) -> list[int]:
    """Pop up to `limit` WAITING trials that can train together (one population); [] when none wait.

    With `workers` workers on this machine sharing the queue, one claim takes at most its share of the
    unfinished trials (ceil((waiting + running) / workers)): a single width's trials are split between the
    workers instead of one worker claiming the whole population while the others find nothing left.
    """
    unfinished = session.storage.get_all_trials(session.study_id, deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    waiting = [t for t in unfinished if t.state == TrialState.WAITING]
    claimed: list[int] = []
    first: GridPoint | None = None
    size = min(limit, -(-len(unfinished) // max(1, workers)))
    for trial in waiting:
        if first is not None and point_of(trial).population_key != first.population_key:
            continue
        tid = trial_id(session, trial)
        if not _pop(session, tid):
            continue
        if first is None:
            first = point_of(trial)
            size = max(1, min(size, objective.population_size(first)))
        claimed.append(tid)
        if len(claimed) >= size:
            break
    return claimed


def suggest(trial: optuna.Trial, param: SearchParam) -> float:
    """Draw one searched parameter (a fixed value when the trial was enqueued with it)."""
    if param.values is not None:
        return trial.suggest_categorical(param.name, list(param.values))
    assert param.low is not None and param.high is not None
    return trial.suggest_float(param.name, param.low, param.high, log=param.log)


def diverged_penalty(session: SweepSession, point: GridPoint) -> float:
    """The spec's `diverged_value`, else the worst finite loss so far at this grid point (1e3 before any)."""
    if session.spec.objective.diverged_value is not None:
        return session.spec.objective.diverged_value
    losses = [
        t.value
        for t in session.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("point") == point.key and not t.user_attrs.get("diverged") and t.value is not None
    ]
    return max(losses) if losses else DIVERGED_FALLBACK


def report_checkpoints(trials: list[optuna.Trial]) -> Checkpoint:
    """A `Checkpoint` that reports each trial's held-out loss at the step and asks its pruner whether to stop."""

    def report(steps_done: int, losses: list[float]) -> list[bool]:
        stop = []
        for trial, loss in zip(trials, losses):
            if not math.isfinite(loss):  # already stopped or diverged: nothing to report
                stop.append(False)
                continue
            try:
                trial.report(loss, steps_done)
                stop.append(trial.should_prune())
            except optuna.exceptions.UpdateFinishedTrialError:  # failed as stale meanwhile: stop training it
                stop.append(True)
        return stop

    return report


def record(session: SweepSession, trial: optuna.Trial, outcome: Outcome) -> bool:
    """Store a result; False when the trial was meanwhile failed as stale (its slot is re-run elsewhere).

    A pruned trial is told PRUNED (Optuna's value: its last reported loss) with an empty `loss`.
    """
    diverged = not outcome.pruned and (outcome.diverged or not math.isfinite(outcome.loss))
    point = point_of(trial)
    attrs = {
        "N": outcome.n_params,
        "D": outcome.tokens,
        "loss": None if diverged or outcome.pruned else outcome.loss,
        "diverged": diverged,
        **({"pruned": True, "pruned_loss": outcome.loss} if outcome.pruned else {}),
        **outcome.extras,
    }
    value = diverged_penalty(session, point) if diverged else outcome.loss
    try:
        for key, v in attrs.items():
            trial.set_user_attr(key, v if v is None or not isinstance(v, float) or math.isfinite(v) else None)
        if outcome.pruned:
            session.study.tell(trial, state=TrialState.PRUNED)
        else:
            session.study.tell(trial, value)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        if session.storage.get_trial(trial_id(session, trial)).state != TrialState.RUNNING:
            return False
        raise
    return True


def _fail(session: SweepSession, trials: list[optuna.Trial], message: str) -> None:
    for trial in trials:
        try:
            trial.set_user_attr(ERROR_ATTR, message)
            session.study.tell(trial, state=TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            continue  # already failed as stale by another worker


def run_worker(
    session: SweepSession,
    objective: Objective,
    max_trials: int | None = None,
    on_batch: Callable[[], None] | None = None,
    workers: int = 1,
) -> int:
    """Evaluate WAITING trials until none are left (or `max_trials` are done); returns how many were done.

    `workers`: how many workers on this machine share the queue (each claims its share of a population).
    """
    heartbeat = Heartbeat(session.storage)
    done = 0
    try:
        while max_trials is None or done < max_trials:
            limit = max_trials - done if max_trials is not None else 1 << 30
            ids = claim(session, objective, limit, workers)
            if not ids:
                if reconcile(session) == 0:
                    if not session.growing:
                        break
                    time.sleep(ROUND_WAIT_S)  # other workers' trials decide the next round
                continue
            heartbeat.watch(ids)
            # Optuna's cache of an RDB study knows only the trials it has read: trials that other workers
            # enqueued since (adaptive and tpe/gp rounds, re-enqueued stale slots) must be read before use.
            session.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            trials = [optuna.Trial(session.study, trial_id) for trial_id in ids]
            requests = [TrialRequest(point_of(t), {p.name: suggest(t, p) for p in session.spec.search}) for t in trials]
            checkpoint = report_checkpoints(trials) if session.spec.pruner != "none" else None
            try:
                outcomes = objective.evaluate(requests, checkpoint)
            except ObjectiveFailed as exc:
                message = " ".join(str(exc).split())
                _fail(session, trials, message)
                first = requests[0]
                where = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in first.values().items())
                raise ScaleplanError(
                    f"objective failed on trial {trials[0].number} ({where}): {message} - "
                    "finished trials are kept; fix the objective and re-run the same command to resume"
                ) from exc
            except ScaleplanError as exc:  # the built-in trainer rejected the config: bad input
                _fail(session, trials, str(exc))
                raise
            for trial, outcome in zip(trials, outcomes):
                done += record(session, trial, outcome)
            heartbeat.watch([])
            if on_batch is not None:
                on_batch()
    except ScaleplanError:  # bad input (its trials are failed above) or storage that cannot be written
        raise
    except BaseException as exc:  # Ctrl-C, SIGTERM or a bug, anywhere from claim to record: a re-run repeats its trials
        _fail_own_running(session, f"interrupted: {type(exc).__name__}")
        raise
    finally:
        heartbeat.close()
    return done


def _fail_own_running(session: SweepSession, message: str) -> None:
    """Fail the RUNNING trials this process claimed (by its owner stamp), so status shows none running; best effort
    (storage that cannot be written leaves them to stale-trial detection)."""
    try:
        storage = open_storage(session.target)  # replayed afresh: the interrupt may have cut the session's replay short
        study_id = storage.get_study_id_from_name(session.spec.name)
        for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            if not owned_here(trial):
                continue
            tid = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                storage.set_trial_user_attr(tid, ERROR_ATTR, message)
                storage.set_trial_state_values(tid, TrialState.FAIL)
    except Exception:  # noqa: BLE001 - the error being raised matters more than this cleanup's
        pass

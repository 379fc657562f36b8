"""Which RUNNING trials still have a live worker: owner stamps, a heartbeat thread, a staleness test.

Optuna's journal storage has no heartbeat, so sweeps keep their own: each claimed trial records
its host, pid and a heartbeat time. A trial is stale when its process is gone (same host) or its
heartbeat is older than the grace period (any host); stale trials are failed and their slots re-run.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

HOST_ATTR = "scaleplan:host"
PID_ATTR = "scaleplan:pid"
HEARTBEAT_ATTR = "scaleplan:heartbeat"
HEARTBEAT_INTERVAL_S = 10.0
GRACE_S = 60.0


def stamp_owner(storage: optuna.storages.BaseStorage, trial_id: int) -> None:
    """Record this process as the owner of a just-claimed trial."""
    storage.set_trial_system_attr(trial_id, HOST_ATTR, socket.gethostname())
    storage.set_trial_system_attr(trial_id, PID_ATTR, os.getpid())
    storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())


def owned_here(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether this process claimed the trial (its `stamp_owner` host and pid)."""
    attrs = trial.system_attrs
    return attrs.get(HOST_ATTR) == socket.gethostname() and attrs.get(PID_ATTR) == os.getpid()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped by its parent is a zombie: dead for our purposes
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def is_stale(trial: optuna.trial.FrozenTrial, now: float, grace_s: float = GRACE_S) -> bool:
    """True when a RUNNING trial's worker is dead (same host) or silent for longer than `grace_s`."""
    attrs = trial.system_attrs
    if attrs.get(HOST_ATTR) == socket.gethostname() and isinstance(attrs.get(PID_ATTR), int):
        if not _process_alive(attrs[PID_ATTR]):
            return True
    beat = attrs.get(HEARTBEAT_ATTR)
    if beat is None:
        started = trial.datetime_start
        beat = started.timestamp() if started is not None else now
    return now - float(beat) > grace_s


def stale_trials(study: optuna.Study) -> int:
    """How many of the study's RUNNING trials are stale (`is_stale`) now."""
    from optuna.trial import TrialState

    now = time.time()
    return sum(is_stale(t, now) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


class Heartbeat:
    """A daemon thread that refreshes the heartbeat of the trials this worker is running."""

    def __init__(self, storage: optuna.storages.BaseStorage, interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        self._storage = storage
        self._interval = interval_s
        self._trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scaleplan-heartbeat", daemon=True)
        self._thread.start()

    def watch(self, trial_ids: list[int]) -> None:
        with self._lock:
            self._trial_ids = set(trial_ids)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                ids = sorted(self._trial_ids)
            for trial_id in ids:
                try:
                    self._storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
                except Exception:  # the trial finished meanwhile, or a transient storage error
                    continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 1)

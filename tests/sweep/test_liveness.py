"""Liveness: the heartbeat thread keeps a running trial fresh; once it stops, the trial goes stale."""

from __future__ import annotations

import time
from pathlib import Path

from optuna.trial import TrialState

from scaleplan.sweep.liveness import HEARTBEAT_ATTR, HOST_ATTR, Heartbeat, is_stale
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.study import open_sweep, trial_id

SPEC = """
[sweep]
name = "beat"
trials_per_point = 1
[ladder]
widths = [8]
steps = [10]
[search]
lr = {low = 1e-4, high = 1e-1}
[objective]
callable = "sweep_objectives:quadratic"
"""


def test_a_short_heartbeat_keeps_the_trial_live_and_stops_with_the_worker(tmp_path: Path) -> None:
    spec = tmp_path / "beat.toml"
    spec.write_text(SPEC)
    session = open_sweep(load_spec(spec))
    (waiting,) = session.study.get_trials(states=(TrialState.WAITING,))
    tid = trial_id(session, waiting)
    session.storage.set_trial_state_values(tid, TrialState.RUNNING)
    session.storage.set_trial_system_attr(tid, HOST_ATTR, "another-machine")  # judged by its heartbeat alone
    session.storage.set_trial_system_attr(tid, HEARTBEAT_ATTR, time.time())
    grace = 1.0
    heartbeat = Heartbeat(session.storage, interval_s=0.05)
    heartbeat.watch([tid])
    try:
        beats = []
        for _ in range(8):  # 2 s: twice the grace period
            time.sleep(0.25)
            trial = session.storage.get_trial(tid)
            beats.append(trial.system_attrs[HEARTBEAT_ATTR])
            assert not is_stale(trial, time.time(), grace)
        assert beats == sorted(beats) and len(set(beats)) >= 6  # refreshed between (nearly) every look
    finally:
        heartbeat.close()
    time.sleep(grace + 0.2)
    assert is_stale(session.storage.get_trial(tid), time.time(), grace)  # silent for longer than the grace period

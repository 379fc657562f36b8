"""Liveness: the heartbeat thread keeps a running trial fresh; once it stops, the trial goes stale."""

from __future__ import annotations

import time
from pathlib import Path

from optuna.trial import TrialState

from scaleplan.sweep.liveness import HEARTBEAT_ATTR, HOST_ATTR, Heartbeat, is_stale
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.study import SweepSession, open_sweep, trial_id

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


def running_trial(tmp_path: Path) -> tuple[Path, SweepSession, int]:
    """The spec, its opened sweep and the id of its one trial, set RUNNING (no owner stamped yet)."""
    spec = tmp_path / "beat.toml"
    spec.write_text(SPEC)
    session = open_sweep(load_spec(spec))
    (waiting,) = session.study.get_trials(states=(TrialState.WAITING,))
    tid = trial_id(session, waiting)
    session.storage.set_trial_state_values(tid, TrialState.RUNNING)
    return spec, session, tid


def test_a_short_heartbeat_keeps_the_trial_live_and_stops_with_the_worker(tmp_path: Path) -> None:
    _, session, tid = running_trial(tmp_path)
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


def test_status_names_running_trials_whose_worker_is_gone(tmp_path: Path) -> None:
    """After a kill -9 the journal still says RUNNING; status showed them as running until the next run."""
    import os
    import socket
    import subprocess
    import sys

    from click.testing import CliRunner

    from scaleplan.cli import cli
    from scaleplan.sweep.liveness import PID_ATTR

    spec, session, tid = running_trial(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for key, value in ((HOST_ATTR, socket.gethostname()), (PID_ATTR, dead.pid), (HEARTBEAT_ATTR, time.time())):
        session.storage.set_trial_system_attr(tid, key, value)
    out = CliRunner().invoke(cli, ["sweep", "status", str(spec)])
    assert out.exit_code == 0, out.output
    assert "1 of the running trials have no live worker (its process is gone, or no heartbeat for 60 s)" in out.output
    session.storage.set_trial_system_attr(tid, PID_ATTR, os.getpid())  # this process: alive
    assert "no live worker" not in CliRunner().invoke(cli, ["sweep", "status", str(spec)]).output

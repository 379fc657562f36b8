"""Resumability: kill -9 a running sweep, run the same command again: planned trials, no duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from optuna.trial import TrialState

from scaleplan.errors import ScaleplanError
from scaleplan.sweep.export import open_study_readonly
from scaleplan.sweep.liveness import HEARTBEAT_ATTR, HOST_ATTR, PID_ATTR
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.study import open_sweep, reconcile, trial_id

TESTS = Path(__file__).resolve().parents[1]

SPEC = """
[sweep]
name = "resume"
sampler = "tpe"
trials_per_point = 6
[ladder]
widths = [8, 16]
steps = [10]
[search]
lr = {low = 1e-4, high = 1e-1}
batch_size = [4]
[objective]
callable = "sweep_objectives:slow_logged"
"""


def test_kill_9_then_rerun_completes_the_plan_without_duplicates(tmp_path: Path) -> None:
    spec_path = tmp_path / "resume.toml"
    spec_path.write_text(SPEC)
    log = tmp_path / "calls.log"
    env = {**os.environ, "PYTHONPATH": f"{TESTS}:{TESTS.parent}", "SWEEP_TEST_LOG": str(log), "SWEEP_TEST_SLEEP": "0.3"}
    command = [sys.executable, "-m", "scaleplan.cli", "sweep", str(spec_path)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    complete = 0
    while complete < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        try:
            complete = sum(t.state == TrialState.COMPLETE for t in open_study_readonly(load_spec(spec_path)).get_trials())
        except ScaleplanError:  # no journal yet, or the journal exists and the study is not created in it yet
            continue
    assert proc.poll() is None, "the sweep finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = open_study_readonly(load_spec(spec_path)).get_trials()
    assert 3 <= sum(t.state == TrialState.COMPLETE for t in before) < 12
    running_at_kill = sum(t.state == TrialState.RUNNING for t in before)  # 0 when the kill fell between two trials
    assert running_at_kill in (0, 1)

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip() == "12/12 planned trials complete"
    trials = open_study_readonly(load_spec(spec_path)).get_trials()
    complete_slots = Counter(t.user_attrs["slot"] for t in trials if t.state == TrialState.COMPLETE)
    assert complete_slots == {f"w{w}-s10-b4-seed0#{i}": 1 for w in (8, 16) for i in range(6)}
    # the trial that was running when the process died is failed as stale, and only it
    assert [t.system_attrs.get("scaleplan:stale") for t in trials if t.state == TrialState.FAIL] == [True] * running_at_kill
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    calls = log.read_text().splitlines()
    assert 12 <= len(calls) <= 13  # 13 only if the kill landed between the objective's return and the tell


def test_stale_and_live_foreign_trials(tmp_path: Path) -> None:
    spec_path = tmp_path / "resume.toml"
    spec_path.write_text(SPEC.replace("trials_per_point = 6", "trials_per_point = 1"))
    session = open_sweep(load_spec(spec_path))
    waiting = session.study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 2
    for trial, beat in zip(waiting, (0.0, time.time())):  # one silent for decades, one beating now
        tid = trial_id(session, trial)
        session.storage.set_trial_state_values(tid, TrialState.RUNNING)
        session.storage.set_trial_system_attr(tid, HOST_ATTR, "another-machine")
        session.storage.set_trial_system_attr(tid, PID_ATTR, 1)
        session.storage.set_trial_system_attr(tid, HEARTBEAT_ATTR, beat)
    assert reconcile(session) == 1  # only the silent trial's slot is enqueued again
    states = [(t.user_attrs["slot"], t.state) for t in session.study.get_trials()]
    assert states == [
        ("w8-s10-b4-seed0#0", TrialState.FAIL),
        ("w16-s10-b4-seed0#0", TrialState.RUNNING),
        ("w8-s10-b4-seed0#0", TrialState.WAITING),
    ]
    assert reconcile(session) == 0


ADAPTIVE = """
[sweep]
name = "adaptive-resume"
sampler = "adaptive"
seeds = [0, 1]
[ladder]
widths = [8, 16]
steps = [10]
[search]
lr = {low = 1e-5, high = 1e-1}
batch_size = [4]
[objective]
callable = "sweep_objectives:slow_logged"
"""


def _slots(spec_path: Path) -> dict[str, tuple[float, str]]:
    """Slot -> (lr, state) of every trial; fails if a slot has two finished trials."""
    out: dict[str, tuple[float, str]] = {}
    for t in open_study_readonly(load_spec(spec_path)).get_trials():
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs["slot"] not in out, f"slot {t.user_attrs['slot']} finished twice"
            out[t.user_attrs["slot"]] = (t.params["lr"], t.state.name)
    return out


def test_adaptive_kill_9_then_rerun_gives_every_proposal_once_and_the_same_search(tmp_path: Path) -> None:
    """Killed mid-search and re-run, the adaptive sweep finishes with the proposals of an uninterrupted run."""
    env = {**os.environ, "PYTHONPATH": f"{TESTS}:{TESTS.parent}", "SWEEP_TEST_SLEEP": "0.2"}
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    for folder in (clean, killed):
        folder.mkdir()
        (folder / "a.toml").write_text(ADAPTIVE)
    command = lambda folder: [sys.executable, "-m", "scaleplan.cli", "sweep", str(folder / "a.toml")]  # noqa: E731
    done = subprocess.run(command(clean), env={**env, "SWEEP_TEST_LOG": str(clean / "calls.log"), "SWEEP_TEST_SLEEP": "0"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    expected = _slots(clean / "a.toml")

    log = killed / "calls.log"
    proc = subprocess.Popen(command(killed), env={**env, "SWEEP_TEST_LOG": str(log)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        if log.is_file() and len(log.read_text().splitlines()) >= 7:  # past the first round of the first width
            break
    assert proc.poll() is None, "the sweep finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = subprocess.run(command(killed), env={**env, "SWEEP_TEST_LOG": str(log)}, capture_output=True, text=True,
                           timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip() == f"{len(expected)}/{len(expected)} planned trials complete"
    got = _slots(killed / "a.toml")
    assert got.keys() == expected.keys()
    assert all(got[k][0] == pytest.approx(expected[k][0], rel=1e-12) for k in got)  # the same lrs: the same search
    calls = log.read_text().splitlines()
    assert len(expected) <= len(calls) <= len(expected) + 1  # +1 only if the kill landed between return and tell

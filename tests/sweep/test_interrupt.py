"""Ctrl-C and SIGTERM stop a sweep alike: one line, exit 128 + the signal, the running trials marked failed
(so `sweep status` shows none running), and a re-run finishes the sweep. A second signal quits at once,
without a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from scaleplan.sweep.export import open_study_readonly
from scaleplan.sweep.spec import load_spec

TESTS = Path(__file__).resolve().parents[1]
SPEC = """
[sweep]
name = "stop"
sampler = "grid"
[ladder]
widths = [8, 16]
steps = [10]
[search]
lr = [1e-3, 3e-3, 1e-2, 3e-2]
[objective]
callable = "sweep_objectives:slow_logged"
"""
MESSAGE = ("the storage is intact, with finished trials kept and the running ones marked failed; re-run the same "
           "command to resume")


def start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path, Path]:
    """`scaleplan sweep SPEC ARGS` with a 0.3 s objective, once its first trial has finished."""
    spec, log = tmp_path / "stop.toml", tmp_path / "calls.log"
    spec.write_text(SPEC)
    env = {**os.environ, "PYTHONPATH": f"{TESTS}:{TESTS.parent}", "SWEEP_TEST_LOG": str(log), "SWEEP_TEST_SLEEP": "0.3"}
    proc = subprocess.Popen([sys.executable, "-m", "scaleplan.cli", "sweep", str(spec), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not (log.is_file() and log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc, spec, log


def states(spec: Path) -> list[TrialState]:
    return [t.state for t in open_study_readonly(load_spec(spec)).get_trials()]


@pytest.mark.parametrize(("signum", "workers"), [(signal.SIGINT, "1"), (signal.SIGTERM, "1"), (signal.SIGTERM, "2")])
def test_a_signal_stops_the_sweep_cleanly_and_it_resumes(tmp_path: Path, signum: signal.Signals, workers: str) -> None:
    proc, spec, log = start(tmp_path, "--workers", workers)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert err.splitlines()[-1] == f"error: interrupted by {signum.name}: {MESSAGE}" and "Traceback" not in err
    assert TrialState.RUNNING not in states(spec)  # status shows nothing running (what ran is FAIL, or it had finished)
    assert all(t.user_attrs.get("error", "").startswith("interrupted")
               for t in open_study_readonly(load_spec(spec)).get_trials() if t.state == TrialState.FAIL)
    env = {**os.environ, "PYTHONPATH": f"{TESTS}:{TESTS.parent}", "SWEEP_TEST_LOG": str(log), "SWEEP_TEST_SLEEP": "0"}
    rerun = subprocess.run([sys.executable, "-m", "scaleplan.cli", "sweep", str(spec)], capture_output=True, text=True,
                           env=env, timeout=120)
    assert rerun.returncode == 0 and rerun.stdout.strip() == "8/8 planned trials complete", rerun.stderr


def test_a_second_ctrl_c_quits_at_once_without_a_traceback(tmp_path: Path) -> None:
    proc, _, _ = start(tmp_path)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (130, -signal.SIGINT), err  # the second ended it by its default action, or came too late
    assert "Traceback" not in err and "Exception ignored" not in err


def test_the_signal_handlers_are_put_back_unless_interrupted() -> None:
    from scaleplan.errors import Interrupted
    from scaleplan.sweep.runner import STOP_SIGNALS, Terminated, stopped_by_signals

    before = [signal.getsignal(s) for s in STOP_SIGNALS]
    with stopped_by_signals():
        assert [signal.getsignal(s) for s in STOP_SIGNALS] != before
    with pytest.raises(ValueError), stopped_by_signals():
        raise ValueError("a bug")
    assert [signal.getsignal(s) for s in STOP_SIGNALS] == before
    try:
        with pytest.raises(Interrupted, match="interrupted by SIGTERM") as info, stopped_by_signals():
            raise Terminated()
        assert info.value.exit_code == 143
    finally:  # interrupted: left at their default (the process is on its way out); this test process goes on
        for signum, handler in zip(STOP_SIGNALS, before):
            signal.signal(signum, handler)


def test_claiming_a_trial_is_not_cut_between_its_steps() -> None:
    """A signal during `signals_held` (popping a trial and stamping its owner) acts only once the block is done."""
    from scaleplan.sweep.worker import signals_held

    seen: list[str] = []

    def handler(signum: int, frame: object) -> None:
        seen.append("handled")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            seen.append("block done")
        assert seen == ["block done", "handled"] and signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_worker_drops_a_signal_pending_behind_the_first_silently() -> None:
    """Before: Ctrl-C reaches each worker with its process group and the parent's SIGTERM follows at once; with both
    pending, the SIGINT handler set SIGTERM to SIG_IGN and Python printed `Exception ignored ... OSError: Signal 15
    ignored due to race condition` with a traceback from every worker. Both signals are made pending here at once."""
    code = """
import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # before any thread starts: all inherit it
from scaleplan.sweep.runner import worker_signals
worker_signals()
os.kill(os.getpid(), signal.SIGINT)
os.kill(os.getpid(), signal.SIGTERM)
try:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    for _ in range(1000):
        pass
except KeyboardInterrupt:
    print("stopped")
for _ in range(1000):
    pass
os.kill(os.getpid(), signal.SIGTERM)
print("still here")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=TESTS.parent)
    assert out.returncode == 0 and out.stdout.splitlines() == ["stopped", "still here"], out.stderr
    assert "race condition" not in out.stderr and "Traceback" not in out.stderr, out.stderr

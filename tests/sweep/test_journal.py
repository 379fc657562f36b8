"""Journal files: a cut-off last record is set aside (never appended to), and a worker killed while
holding the journal lock does not stall the others."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from scaleplan.errors import ScaleplanError, StorageError
from scaleplan.sweep import journal
from scaleplan.sweep.export import open_study_readonly
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.storage import open_storage, resolve_storage
from scaleplan.sweep.study import open_sweep

TESTS = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{TESTS}:{TESTS.parent}"}
SPEC = """
[sweep]
name = "cut"
sampler = "grid"
[ladder]
widths = [8, 16]
steps = [10]
[search]
lr = [1e-3, 1e-2, 1e-1]
[objective]
callable = "sweep_objectives:slow_logged"
"""


def sweep(spec: Path, log: Path) -> subprocess.CompletedProcess:
    env = {**ENV, "SWEEP_TEST_LOG": str(log), "SWEEP_TEST_SLEEP": "0"}
    return subprocess.run([sys.executable, "-m", "scaleplan.cli", "sweep", str(spec)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_a_cut_off_last_record_is_set_aside_and_the_sweep_resumes(tmp_path: Path) -> None:
    spec, log, path = tmp_path / "cut.toml", tmp_path / "calls.log", tmp_path / "cut.journal"
    spec.write_text(SPEC)
    assert sweep(spec, log).returncode == 0
    whole = path.read_bytes()
    last = whole[whole.rstrip(b"\n").rfind(b"\n") + 1 :]  # the last record: the sixth trial's COMPLETE
    assert json.loads(last)["op_code"] is not None
    path.write_bytes(whole[: len(whole) - len(last) // 2])  # a crash in the middle of writing it
    partial = last[: len(last) - len(last) // 2]

    rerun = sweep(spec, log)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip() == "6/6 planned trials complete"
    warned = [line for line in rerun.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "its last record was cut off" in warned[0]
    sides = list(tmp_path.glob("cut.journal.partial-*"))
    assert len(sides) == 1 and sides[0].read_bytes() == partial  # kept aside, byte for byte, and never appended to
    for line in path.read_bytes().splitlines():  # every record of the journal is whole again
        json.loads(line)
    states = [t.state.name for t in open_study_readonly(load_spec(spec)).get_trials()]
    # the trial whose COMPLETE was cut off was running for a dead process: failed as stale and re-run once
    assert sorted(states) == ["COMPLETE"] * 6 + ["FAIL"]
    assert len(log.read_text().splitlines()) == 7


@pytest.mark.parametrize("content", [b"my notes, no newline at the end", b"my notes\n{not json\n"])
def test_a_file_that_is_not_a_journal_is_refused_and_left_alone(tmp_path: Path, content: bytes) -> None:
    notes = tmp_path / "notes.journal"
    notes.write_bytes(content)
    with pytest.raises(ScaleplanError, match="is not an Optuna journal file"):
        open_storage(resolve_storage(str(notes)))
    assert notes.read_bytes() == content and list(tmp_path.iterdir()) == [notes]


def test_a_side_file_that_cannot_be_written_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.journal"
    content = b'{"op_code":0,"worker_id":"w","study_name":"s","directions":[1]}\n{"op_code":2,"wor'
    path.write_bytes(content)
    monkeypatch.setattr(journal, "_side_file", lambda p: tmp_path / "full-disk" / "side")  # the write fails
    with pytest.raises(StorageError, match="setting it aside in side failed"):
        journal.check_journal(path)
    assert path.read_bytes() == content


HOLD_LOCK = """
import os, sys, time
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.study import open_sweep
session = open_sweep(load_spec(sys.argv[1]))
def stuck(fd):  # a worker that dies in the middle of an append, holding the journal's lock
    print("appending", flush=True)
    time.sleep(600)
os.fsync = stuck
session.study.set_user_attr("x", 1)
"""


def test_a_worker_killed_while_appending_does_not_stall_the_others(tmp_path: Path) -> None:
    spec = tmp_path / "cut.toml"
    spec.write_text(SPEC)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(spec)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "appending"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "taking longer than 10 seconds to acquire the lock" either
        session = open_sweep(load_spec(spec))
        session.study.set_user_attr("after", 1)
    assert time.monotonic() - start < 10  # Optuna's lock file would stall every worker 30 s first
    assert open_study_readonly(load_spec(spec)).user_attrs["after"] == 1

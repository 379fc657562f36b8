"""The target's runs are recorded as they finish: an interrupted validation resumes without retraining, a record of
another spec or target is refused, and worker processes train exactly the runs one process would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scaleplan.errors import InputError, ScaleplanError
from scaleplan.sweep.objective import load_objective
from scaleplan.sweep.plan import GridPoint
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.trial import ObjectiveFailed, Outcome, TrialRequest
from scaleplan.validate.target_runs import RunRecord, RunSource, read_runs
from scaleplan.validate.weight_decay import _request
from tiny_specs import WEIGHT_DECAY_MLP


def loss_of(lr: float, seed: int) -> float:
    return 2.0 + (lr - 0.01) ** 2 + seed / 1000


class Counting:
    """A fake objective in populations of 2 that records what it trained and fails after `fail_after` populations."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.trained: list[tuple[float, int]] = []
        self.fail_after = fail_after

    def population_size(self, point: GridPoint) -> int:
        return 2

    def evaluate(self, chunk: list[TrialRequest]) -> list[Outcome]:
        if self.fail_after is not None and len(self.trained) >= 2 * self.fail_after:
            raise ObjectiveFailed("out of memory")
        self.trained += [(r.params["lr"], r.point.seed) for r in chunk]
        return [Outcome(loss_of(r.params["lr"], r.point.seed), False, None, None) for r in chunk]


def requests(lrs: list[float], seeds: range) -> list[TrialRequest]:
    return [TrialRequest(GridPoint(width=64, steps=6, batch_size=16, seed=s), {"lr": lr}) for s in seeds for lr in lrs]


def record(tmp_path: Path, target: int = 64) -> RunRecord:
    return RunRecord(tmp_path / "tiny-target-width64.csv", ("lr",), {"spec": "abc", "target": {"width": target}})


def test_an_interrupted_target_resumes_without_training_a_run_twice(tmp_path: Path) -> None:
    todo = requests([0.005, 0.01, 0.02], range(3))  # 9 runs: populations of 2
    failing, lines = Counting(fail_after=2), []
    with pytest.raises(ScaleplanError, match="training failed: out of memory"):
        record(tmp_path).train(RunSource(failing, None, None), todo, "[tiny] target", lines.append)
    assert len(read_runs(record(tmp_path).path, ("lr",))) == 4  # the two finished populations are kept
    again = Counting()
    done = record(tmp_path).train(RunSource(again, None, None), todo, "[tiny] target", lines.append)
    assert sorted(again.trained) == sorted(set((r.params["lr"], r.point.seed) for r in todo) - set(failing.trained))
    assert done == {(lr, s): loss_of(lr, s) for lr in (0.005, 0.01, 0.02) for s in range(3)}
    assert lines[-4:] == [f"[tiny] target = 9 runs, 4 of them already in {record(tmp_path).path}; 5 to train (populations of 2)",
                          "[tiny] target: 2/5 runs trained", "[tiny] target: 4/5 runs trained", "[tiny] target: 5/5 runs trained"]
    assert read_runs(record(tmp_path).path, ("lr",)) == done  # floats written exactly


def test_a_record_of_another_target_or_spec_is_refused(tmp_path: Path) -> None:
    record(tmp_path).train(RunSource(Counting(), None, None), requests([0.01], range(2)), "[tiny] target", print)
    kept = record(tmp_path).path.read_text()
    with pytest.raises(InputError, match="trained for another target than this validation's; move it away"):
        record(tmp_path, target=128).train(RunSource(Counting(), None, None), requests([0.01], range(2)), "x", print)
    other = RunRecord(record(tmp_path).path, ("lr",), {"spec": "def", "target": {"width": 64}})
    with pytest.raises(InputError, match="another spec than"):
        other.train(RunSource(Counting(), None, None), requests([0.01], range(2)), "x", print)
    assert record(tmp_path).path.read_text() == kept


def test_a_record_from_before_identities_is_adopted_and_says_so(tmp_path: Path) -> None:
    path = record(tmp_path).path
    path.write_text("lr,seed,loss\n0.01,0,7.0\n")
    fake, lines = Counting(), []
    done = record(tmp_path).train(RunSource(fake, None, None), requests([0.01], range(2)), "[tiny] target", lines.append)
    assert done[0.01, 0] == 7.0 and fake.trained == [(0.01, 1)]
    assert "no record of the spec and target" in lines[0]
    assert path.read_text().splitlines()[:3] == ['# identity: {"spec": "abc", "target": {"width": 64}}', "lr,seed,loss", "0.01,0,7.0"]


def test_worker_processes_train_the_runs_one_process_would(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(WEIGHT_DECAY_MLP)
    spec = load_spec(tmp_path / "tiny.toml")
    source = RunSource(load_objective(spec, "cpu"), spec, "cpu")
    todo = [_request(16, 6, 16, seed, lr, 0.1) for lr in (3e-3, 1e-2, 3e-2) for seed in range(3)]
    params = ("lr", "weight_decay")
    one = RunRecord(tmp_path / "one.csv", params, {"spec": spec.fingerprint}).train(source, todo, "one", print)
    lines: list[str] = []
    two = RunRecord(tmp_path / "two.csv", params, {"spec": spec.fingerprint}).train(source, todo, "two", lines.append, workers=2)
    assert "2 worker processes" in lines[0]
    assert two == one and len(one) == 9


def test_a_line_torn_by_a_kill_is_trained_again_not_read(tmp_path: Path) -> None:
    path = record(tmp_path).path
    record(tmp_path).train(RunSource(Counting(), None, None), requests([0.01], range(1)), "x", print)
    with path.open("a") as f:
        f.write("0.01,1,2.0")  # the kill came before the rest of the loss and the newline
    assert read_runs(path, ("lr",)) == {(0.01, 0): loss_of(0.01, 0)}
    fake = Counting()
    done = record(tmp_path).train(RunSource(fake, None, None), requests([0.01], range(2)), "x", print)
    assert fake.trained == [(0.01, 1)] and done[0.01, 1] == loss_of(0.01, 1)
    assert path.read_text().splitlines()[1:] == ["lr,seed,loss", f"0.01,0,{loss_of(0.01, 0)!r}", f"0.01,1,{loss_of(0.01, 1)!r}"]


def test_a_file_that_is_not_a_record_is_one_line(tmp_path: Path) -> None:
    path = record(tmp_path).path
    path.write_text("lr,seed,loss\n0.01,zero,2.0\n")
    with pytest.raises(InputError, match="not a record of runs .lr, seed, loss.*move it away"):
        read_runs(path, ("lr",))


def test_a_kill_while_a_legacy_record_is_adopted_loses_none_of_its_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = record(tmp_path).path
    path.write_text("lr,seed,loss\n0.01,0,7.0\n")
    real = Path.write_text

    def killed_mid_write(self: Path, text: str, *args: Any, **kwargs: Any) -> int:
        real(self, text[: len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        record(tmp_path).train(RunSource(Counting(), None, None), requests([0.01], range(2)), "x", print)
    monkeypatch.undo()
    assert read_runs(path, ("lr",)) == {(0.01, 0): 7.0}
    fake = Counting()
    done = record(tmp_path).train(RunSource(fake, None, None), requests([0.01], range(2)), "x", print)
    assert done[0.01, 0] == 7.0 and fake.trained == [(0.01, 1)]


@pytest.mark.parametrize(
    "content, why",
    [
        (bytes(range(128, 256)) * 4, "byte 0 is not UTF-8 text"),
        (b'# identity: {"spec": "abc", "target"\nlr,seed,loss\n', "its identity line is not JSON"),
        (b'# identity: ["abc"]\nlr,seed,loss\n', "its identity line is not a JSON object"),
        (b"lr,seed,loss\n0.01,\x000,2.0\n", "invalid literal for int()"),
        (b"lr,seed,loss\n0.01,0,2.0\n\xff\xfe\n", "is not UTF-8 text"),
    ],
)
def test_a_record_of_garbage_is_one_line_and_left_as_it_was(tmp_path: Path, content: bytes, why: str) -> None:
    """Before: random bytes were a UnicodeDecodeError, a torn identity a JSONDecodeError (internal errors), and a
    legacy-looking file of garbage was adopted (rewritten) before it was found unreadable."""
    path = record(tmp_path).path
    path.write_bytes(content)
    fake = Counting()
    with pytest.raises(InputError) as err:
        record(tmp_path).train(RunSource(fake, None, None), requests([0.01], range(2)), "x", print)
    message = str(err.value)
    assert message.startswith(f"{path}: not a record of runs (lr, seed, loss): ") and why in message and "\n" not in message
    assert message.endswith("; move it away (or delete it to train its runs again)")
    assert path.read_bytes() == content and fake.trained == []


SLOW_SPEC = """
[sweep]
name = "slow"
[ladder]
widths = [8, 16]
steps = [10]
[search]
lr = {low = 1e-4, high = 1e-1}
[objective]
callable = "sweep_objectives:slow_logged"
"""
TRAIN_SLOWLY = """
import sys
from pathlib import Path
from scaleplan.sweep.objective import load_objective
from scaleplan.sweep.plan import GridPoint
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.trial import TrialRequest
from scaleplan.validate.target_runs import RunRecord, RunSource
spec = load_spec(sys.argv[1])
todo = [TrialRequest(GridPoint(64, 10, 32, seed), {"lr": lr}) for lr in (1e-3, 1e-2) for seed in range(20)]
try:
    RunRecord(Path(sys.argv[2]), ("lr",), {"spec": "slow"}).train(RunSource(load_objective(spec, None), spec, None), todo,
                                                                 "slow", print, workers=2)
except KeyboardInterrupt:
    print("interrupted")
"""


def test_ctrl_c_stops_worker_processes_without_a_traceback_from_each(tmp_path: Path) -> None:
    """Before: Ctrl-C reaches the pool's workers with their process group, and each printed `Process SpawnPoolWorker-N:`
    and its KeyboardInterrupt traceback while the parent stopped the pool."""
    import os
    import signal
    import subprocess
    import sys
    import time

    tests = Path(__file__).resolve().parents[1]
    (tmp_path / "slow.toml").write_text(SLOW_SPEC)
    record, log = tmp_path / "slow-target.csv", tmp_path / "calls.log"
    env = {**os.environ, "PYTHONPATH": f"{tests}:{tests.parent}", "SWEEP_TEST_LOG": str(log), "SWEEP_TEST_SLEEP": "0.3"}
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_SLOWLY, str(tmp_path / "slow.toml"), str(record)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while len(read_runs(record, ("lr",))) < 2 and time.monotonic() < deadline:  # both workers are training
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert out.splitlines()[-1] == "interrupted" and "Traceback" not in err, err
    assert 2 <= len(read_runs(record, ("lr",))) < 40

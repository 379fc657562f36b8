"""Values that used to end a sweep as "internal error" (a bug) now end it as one line naming the key and
the fix: spec values of the wrong type or range, a user objective's malformed result, a journal with a
bad record, a full disk. Storage stays intact and the sweep resumable."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runs import one_line_error
from optuna.trial import TrialState
from tiny_specs import MLP_GRID as MLP

from scaleplan.cli import main
from scaleplan.errors import StorageError
from scaleplan.sweep.export import open_study_readonly
from scaleplan.sweep.runner import run_sweep
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.storage import open_storage, resolve_storage

TESTS = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{TESTS}:{TESTS.parent}"}
GPT = """
[sweep]
name = "gpt"
sampler = "grid"
[task]
name = "charlm"
kwargs = {seq_len = 8, n_eval = 16}
[model]
name = "gpt"
parametrization = "mup"
base_width = 8
kwargs = {depth = 1, n_heads = 2}
[ladder]
widths = [8, 16]
steps = [3]
[search]
lr = [1e-3, 1e-2]
batch_size = [4]
"""
USER = """
[sweep]
name = "{name}"
sampler = "grid"
[ladder]
widths = [8, 16]
steps = [10]
[search]
lr = [1e-3, 1e-2]
[objective]
callable = "{callable}"
"""


@pytest.mark.parametrize(
    ("spec", "old", "new", "message"),
    [
        (MLP, "in_dim = 8", 'in_dim = "8"', "[task]: kwargs 'in_dim' is the string '8', not a number; write in_dim = 8 (no quotes)"),
        (MLP, "in_dim = 8", "in_dim = 8.5", "task 'teacher-student': option in_dim must be an integer, got 8.5"),
        (MLP, "in_dim = 8", 'noise_std = "loud"', "task 'teacher-student': option noise_std must be a finite number, got 'loud'"),
        (GPT, "depth = 1", 'depth = "1"', "[model]: kwargs 'depth' is the string '1', not a number; write depth = 1"),
        (GPT, "depth = 1", "depth = 0", "GPT needs positive sizes and width divisible by n_heads (width=8, depth=0, n_heads=2"),
        (GPT, "seq_len = 8", "seq_len = 0", "[task]: kwargs seq_len must be a positive integer (characters per example of the charlm task), got 0"),
        (GPT, "seq_len = 8", 'seq_len = "abc"', "kwargs seq_len must be a positive integer (characters per example of the charlm task), got 'abc'"),
        (GPT, "seq_len = 8", "seq_len = 1.5", "kwargs seq_len must be a positive integer (characters per example of the charlm task), got 1.5"),
        (GPT.replace("steps = [3]", "tokens = [768]"), "seq_len = 8", "seq_len = 0", "kwargs seq_len must be a positive integer"),
        (GPT.replace("steps = [3]", "tokens = [768]"), "seq_len = 8", "seq_len = -4", "kwargs seq_len must be a positive integer (characters per example of the charlm task), got -4"),
        (MLP, "seeds = [0]", "seeds = [18446744073709551616]", "'seeds' value 18446744073709551616 is above the largest scaleplan sweeps (4294967295)"),
        (MLP, "seeds = [0]", "seeds = [-1]", "'seeds' values must be >= 0, got [-1]"),
    ],
)
def test_a_spec_value_of_the_wrong_type_or_range_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, spec: str, old: str, new: str, message: str
) -> None:
    assert old in spec
    path = tmp_path / "bad.toml"
    path.write_text(spec.replace(old, new))
    assert message in one_line_error(["sweep", str(path)], capsys)
    assert list(tmp_path.iterdir()) == [path]  # refused before any storage was made


@pytest.mark.parametrize("device", ["meta", "mps", "cuda:x", "CPU"])
def test_a_device_scaleplan_does_not_train_on_is_refused_before_any_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture, device: str
) -> None:
    path = tmp_path / "mlp.toml"
    path.write_text(MLP)
    line = one_line_error(["sweep", str(path), "--device", device], capsys)
    assert f"unknown device '{device}': scaleplan trains on cpu, cuda or cuda:N" in line
    assert list(tmp_path.iterdir()) == [path]


OBJECTIVES = """
import math


def huge(params):
    return 10**400


def huge_string(params):
    return {"loss": "1e999", "N": 10, "other": 10**400}


def bad_n(params):
    return {"loss": 1.0, "N": "abc"}


def nan_n(params):
    return {"loss": 1.0, "N": math.nan}


def inf_d(params):
    return {"loss": 1.0, "D": math.inf}


def huge_n(params):
    return {"loss": 1.0, "N": 10**400}


def diverged_no(params):
    return {"loss": 1.0, "diverged": "no"}


def exits(params):
    raise SystemExit(3)
"""


@pytest.fixture
def objectives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module of user objectives (`bad_objectives:NAME`) importable by the in-process worker."""
    (tmp_path / "bad_objectives.py").write_text(OBJECTIVES)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name", ["huge", "huge_string"])
def test_a_loss_too_large_for_a_float_is_a_diverged_trial(objectives: Path, name: str) -> None:
    path = objectives / f"{name}.toml"
    path.write_text(USER.format(name=name, callable=f"bad_objectives:{name}"))
    assert run_sweep(load_spec(path)).complete == 4
    trials = open_study_readonly(load_spec(path)).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert all(t.user_attrs["diverged"] and t.user_attrs["loss"] is None for t in trials)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad_n", "the returned 'N' must be a positive whole number up to 1e+15, got 'abc'"),
        ("nan_n", "the returned 'N' must be a positive whole number up to 1e+15, got nan"),
        ("huge_n", "the returned 'N' must be a positive whole number up to 1e+15, got 1000"),
        ("inf_d", "the returned 'D' must be a positive whole number up to 1e+17, got inf"),
        ("diverged_no", "the returned 'diverged' must be true or false, got 'no'"),
        ("exits", "the objective called sys.exit(3)"),
    ],
)
def test_a_malformed_objective_result_fails_its_trial_with_one_line(
    objectives: Path, capsys: pytest.CaptureFixture, name: str, message: str
) -> None:
    path = objectives / f"{name}.toml"
    path.write_text(USER.format(name=name, callable=f"bad_objectives:{name}"))
    line = one_line_error(["sweep", str(path)], capsys)
    assert line.startswith("error: objective failed on trial 0 (width=8, steps=10, batch_size=32, seed=0, lr=0.001): ")
    assert message in line and line.endswith("re-run the same command to resume") and len(line) < 400
    states = [t.state for t in open_study_readonly(load_spec(path)).get_trials()]
    assert states == [TrialState.FAIL, TrialState.WAITING, TrialState.WAITING, TrialState.WAITING]


@pytest.fixture
def finished(tmp_path: Path) -> Path:
    """A finished sweep's journal (callable objective, four trials)."""
    spec = tmp_path / "done.toml"
    spec.write_text(USER.format(name="done", callable="sweep_objectives:quadratic"))
    run_sweep(load_spec(spec))
    return tmp_path / "done.journal"


def bad_line(journal: Path, number: int, text: bytes) -> bytes:
    """Replace line `number` (1-based; one past the end appends) of the journal; returns the new content."""
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[number - 1 : number] = [text + b"\n"]
    journal.write_bytes(b"".join(lines))
    return journal.read_bytes()


@pytest.mark.parametrize(
    ("where", "text", "reason"),
    [
        ("end", b'{"op_code": 999}', "AssertionError"),  # an operation Optuna does not know
        ("end", b'{"op_code": 4, garbage', "JSONDecodeError"),  # Optuna would skip it, then fail once a record follows
        (5, b'{"op_code": 4, garbage', "JSONDecodeError"),
        (5, b'{"op_code": 4}', "KeyError: 'study_id'"),
        (5, b"[1, 2]", "TypeError"),
        (5, b'{"op_code": "x"}', "AssertionError"),
    ],
)
def test_a_bad_journal_record_is_named_by_its_line_and_left_alone(
    finished: Path, capsys: pytest.CaptureFixture, where: int | str, text: bytes, reason: str
) -> None:
    number = len(finished.read_bytes().splitlines()) + 1 if where == "end" else int(where)
    content = bad_line(finished, number, text)
    line = one_line_error(["sweep", "status", "--storage", str(finished)], capsys)
    assert line.startswith(f"error: {finished}, line {number}: not a valid Optuna journal record ({reason}")
    assert "the file is unchanged - repair or remove that line" in line
    assert finished.read_bytes() == content
    assert sorted(p.name for p in finished.parent.iterdir()) == ["done.journal", "done.journal.plan-lock", "done.toml"]


@pytest.mark.parametrize("suffix", [".db", ".journal"])
def test_a_storage_path_that_is_a_directory_says_so(tmp_path: Path, suffix: str) -> None:
    folder = tmp_path / f"runs{suffix}"
    folder.mkdir()
    with pytest.raises(StorageError, match=f"storage {folder} is a directory; point --storage at a file in it"):
        open_storage(resolve_storage(str(folder)))


FULL_DISK = """
import errno, sys
from optuna.storages.journal import JournalFileBackend
from scaleplan.cli import main

path, room = sys.argv[1], int(sys.argv[2])
append = JournalFileBackend.append_logs
calls = []

def append_until_full(self, logs):  # the disk fills up in the middle of a record
    calls.append(1)
    if len(calls) < room:
        return append(self, logs)
    with open(path, "ab") as handle:
        handle.write(b'{"op_code":8,"worker_id":"w","trial_id":3,"us')
    raise OSError(errno.ENOSPC, "No space left on device")

JournalFileBackend.append_logs = append_until_full
main(["sweep", path.replace(".journal", ".toml")])
"""


def test_a_full_disk_is_one_line_and_the_sweep_resumes(tmp_path: Path) -> None:
    spec = tmp_path / "full.toml"
    spec.write_text(USER.format(name="full", callable="sweep_objectives:quadratic"))
    journal = tmp_path / "full.journal"
    full = subprocess.run([sys.executable, "-c", FULL_DISK, str(journal), "40"], capture_output=True, text=True, env=ENV,
                          timeout=120)
    assert full.returncode == 2, full.stderr
    assert full.stderr.splitlines()[-1] == (  # after the progress lines of the grid points it finished
        f"error: cannot write to the sweep journal {journal}: No space left on device (disk full?); the finished trials "
        "are kept - free some space and re-run the same command to resume")
    assert "Traceback" not in full.stderr
    rerun = subprocess.run([sys.executable, "-m", "scaleplan.cli", "sweep", str(spec)], capture_output=True, text=True,
                           env=ENV, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip() == "4/4 planned trials complete"
    assert "its last record was cut off" in rerun.stderr and len(list(tmp_path.glob("full.journal.partial-*"))) == 1
    states = [t.state for t in open_study_readonly(load_spec(spec)).get_trials()]
    assert states.count(TrialState.COMPLETE) == 4 and TrialState.RUNNING not in states


def test_a_relative_storage_is_the_same_file_with_or_without_the_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`--storage runs/x.journal` is relative to the current directory for run, status and export alike."""
    (tmp_path / "sweeps").mkdir(), (tmp_path / "runs").mkdir()
    spec = tmp_path / "sweeps" / "rel.toml"
    spec.write_text(USER.format(name="rel", callable="sweep_objectives:quadratic"))
    monkeypatch.chdir(tmp_path)
    main(["sweep", "sweeps/rel.toml", "--storage", "runs/rel.journal"])  # returns: exit 0
    assert (tmp_path / "runs" / "rel.journal").is_file() and not (tmp_path / "sweeps" / "runs").exists()
    for argv in (["sweep", "status", "--storage", "runs/rel.journal"], ["sweep", "status", "sweeps/rel.toml", "--storage", "runs/rel.journal"]):
        capsys.readouterr()
        main(argv)
        assert "rel: 4/4 trials complete" in capsys.readouterr().out


def test_the_storage_rule_is_in_the_help() -> None:
    from click.testing import CliRunner

    from scaleplan.sweep.command import sweep

    for command in ("run", "status", "export"):
        text = " ".join(CliRunner().invoke(sweep, [command, "--help"]).output.split())
        assert "relative to the current directory" in text, command



def test_after_a_failed_write_nothing_more_is_appended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record after a cut-off one would merge with it into one invalid line: the backend writes nothing more."""
    from optuna.storages.journal import JournalFileBackend

    from scaleplan.sweep.journal import CheckedBackend

    path = tmp_path / "s.journal"
    backend = CheckedBackend(path)
    record = {"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}
    backend.append_logs([record])
    append = JournalFileBackend.append_logs

    def fails_once(self: JournalFileBackend, logs: list) -> None:
        monkeypatch.setattr(JournalFileBackend, "append_logs", append)  # space is freed right after
        with open(path, "ab") as handle:
            handle.write(b'{"op_code":2,"wor')
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(JournalFileBackend, "append_logs", fails_once)
    with pytest.raises(StorageError, match="disk full"):
        backend.append_logs([record])
    with pytest.raises(StorageError, match="disk full"):
        backend.append_logs([record])
    assert path.read_bytes().endswith(b'\n{"op_code":2,"wor')  # the cut-off record is still last, for check_journal


def test_a_database_that_fails_mid_sweep_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite on a full disk (or a PostgreSQL server gone) fails a commit: a StorageError naming the database's reason."""
    import sqlite3

    import optuna
    import sqlalchemy.exc

    spec = tmp_path / "db.toml"
    spec.write_text(USER.format(name="db", callable="sweep_objectives:quadratic"))
    tell = optuna.storages.RDBStorage.set_trial_state_values

    def full(self: optuna.storages.RDBStorage, trial_id: int, state: TrialState, values: object = None) -> bool:
        if state == TrialState.COMPLETE and trial_id >= 2:
            orig = sqlite3.OperationalError("database or disk is full")
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from \
                sqlalchemy.exc.OperationalError("COMMIT", None, orig)
        return tell(self, trial_id, state, values)

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", full)
    with pytest.raises(StorageError) as info:
        run_sweep(load_spec(spec), storage=str(tmp_path / "db.db"))
    assert str(info.value).startswith(f"storage sqlite:///{tmp_path}/db.db failed: database or disk is full; the finished "
                                      "trials are kept")
    monkeypatch.undo()
    states = [t.state for t in open_study_readonly(load_spec(spec), storage=str(tmp_path / "db.db")).get_trials()]
    assert states[:2] == [TrialState.COMPLETE, TrialState.FAIL] and TrialState.RUNNING not in states  # kept, and resumable

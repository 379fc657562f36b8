"""Running sweeps: every planned slot done once, grid mode, divergence, failing objectives, commands, CLI."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from optuna.trial import TrialState

from scaleplan.errors import ScaleplanError
from scaleplan.sweep.runner import RunSummary, run_sweep
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.export import open_study_readonly
from scaleplan.sweep.worker import DIVERGED_FALLBACK

TESTS = Path(__file__).resolve().parents[1]


def make_spec(tmp_path: Path, objective: str = 'callable = "sweep_objectives:quadratic"', sampler: str = "tpe",
              lr: str = "{low = 1e-4, high = 1e-1}", trials: int = 4, name: str = "toy") -> Path:
    per_point = "" if sampler == "grid" else f"trials_per_point = {trials}"
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""
[sweep]
name = "{name}"
sampler = "{sampler}"
{per_point}
[ladder]
widths = [8, 16]
steps = [10]
[search]
lr = {lr}
batch_size = [4]
[objective]
{objective}
""")
    return path


def trials_of(path: Path):
    return open_study_readonly(load_spec(path)).get_trials()


def test_run_completes_every_slot_once(tmp_path: Path) -> None:
    path = make_spec(tmp_path)
    assert run_sweep(load_spec(path)) == RunSummary(complete=8, planned=8, running=0)
    trials = trials_of(path)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8
    assert Counter(t.user_attrs["slot"] for t in trials) == {f"w{w}-s10-b4-seed0#{i}": 1 for w in (8, 16) for i in range(4)}
    t = trials[0]
    assert (t.user_attrs["D"], t.user_attrs["N"], t.user_attrs["diverged"]) == (40, None, False)
    assert t.value == pytest.approx((math.log10(t.params["lr"]) + 2.5) ** 2 + 1 / 8)
    assert run_sweep(load_spec(path)) == RunSummary(8, 8, 0)  # a re-run finds nothing to do
    assert len(trials_of(path)) == 8


def test_grid_mode_evaluates_each_grid_value(tmp_path: Path) -> None:
    path = make_spec(tmp_path, sampler="grid", lr="{low = 1e-4, high = 1e-2, points = 3}")
    run_sweep(load_spec(path))
    trials = trials_of(path)
    for width in (8, 16):
        lrs = sorted(t.params["lr"] for t in trials if t.user_attrs["width"] == width)
        assert lrs == pytest.approx([1e-4, 1e-3, 1e-2], rel=1e-12)


def test_diverged_trials_get_the_worst_finite_loss_of_their_point(tmp_path: Path) -> None:
    path = make_spec(tmp_path, 'callable = "sweep_objectives:diverging"', sampler="grid", lr="[1e-3, 3e-3, 1e-1]")
    run_sweep(load_spec(path))
    by_lr = {(t.user_attrs["width"], t.params["lr"]): t for t in trials_of(path)}
    for width in (8, 16):
        worse, better, bad = by_lr[(width, 1e-3)], by_lr[(width, 3e-3)], by_lr[(width, 1e-1)]
        assert bad.state == TrialState.COMPLETE and bad.user_attrs["diverged"] is True and bad.user_attrs["loss"] is None
        assert better.value < worse.value  # two different finite losses at the point: the penalty is the worse
        assert bad.value == worse.value == pytest.approx(0.25 + 1 / width)
        assert not worse.user_attrs["diverged"] and not better.user_attrs["diverged"]


def test_a_point_whose_first_trial_diverges_gets_the_fallback_penalty(tmp_path: Path) -> None:
    path = make_spec(tmp_path, 'callable = "sweep_objectives:diverging"', sampler="grid", lr="[1e-1, 1e-3]")
    run_sweep(load_spec(path))
    for width in (8, 16):
        first, second = sorted((t for t in trials_of(path) if t.user_attrs["width"] == width), key=lambda t: t.number)
        assert first.user_attrs["diverged"] is True and first.value == DIVERGED_FALLBACK == 1e3
        assert second.value == pytest.approx(0.25 + 1 / width) and second.value < first.value  # ranks below any loss


def test_diverged_value_from_spec(tmp_path: Path) -> None:
    obj = 'callable = "sweep_objectives:diverging"\ndiverged_value = 42.0'
    path = make_spec(tmp_path, obj, sampler="grid", lr="[1e-1]")
    run_sweep(load_spec(path))
    assert {t.value for t in trials_of(path)} == {42.0}


def test_mapping_results_are_recorded(tmp_path: Path) -> None:
    path = make_spec(tmp_path, 'callable = "sweep_objectives:with_components"', trials=1)
    run_sweep(load_spec(path))
    t = trials_of(path)[1]
    assert (t.user_attrs["N"], t.user_attrs["D"], t.user_attrs["penalty_term"]) == (160, 70, 0.5)


def test_raising_objective_stops_with_one_line_and_keeps_storage(tmp_path: Path) -> None:
    path = make_spec(tmp_path, 'callable = "sweep_objectives:raising"')
    with pytest.raises(ScaleplanError) as info:
        run_sweep(load_spec(path))
    text = str(info.value)
    assert text.startswith("objective failed on trial 0 (width=8, steps=10, batch_size=4, seed=0, lr=")
    assert "ValueError: boom at lr" in text and "re-run the same command to resume" in text and "\n" not in text
    trials = trials_of(path)
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["error"] == "ValueError: boom at lr"
    assert Counter(t.state for t in trials[1:]) == {TrialState.WAITING: 3}  # tpe: each point's 2 startup trials


def test_fixed_objective_resumes_after_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flag = tmp_path / "fail"
    flag.touch()
    monkeypatch.setenv("SWEEP_TEST_FAIL", str(flag))
    path = make_spec(tmp_path, 'callable = "sweep_objectives:flaky"')
    with pytest.raises(ScaleplanError, match="RuntimeError: flaky objective failed"):
        run_sweep(load_spec(path))
    flag.unlink()
    assert run_sweep(load_spec(path)) == RunSummary(8, 8, 0)
    trials = trials_of(path)
    complete = [t.user_attrs["slot"] for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == len(set(complete)) == 8
    assert [t.state for t in trials].count(TrialState.FAIL) == 1


def test_command_objective(tmp_path: Path) -> None:
    command = f"command = \"{sys.executable} -c 'print({{lr}} * {{width}})'\""
    path = make_spec(tmp_path, command, sampler="grid", lr="[0.25, 0.5]")
    run_sweep(load_spec(path))
    assert sorted(t.value for t in trials_of(path)) == [2.0, 4.0, 4.0, 8.0]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("{python} -c 'import sys; sys.exit(3)'", "command exited with status 3"),
        ("{python} -c 'print(\\\"not a loss\\\")'", "cannot read a loss from the command's last line 'not a loss'"),
        ("{python} -c 'print({{lrr}})'", "command uses {lrr}, which is not a parameter"),
        ("/nonexistent/trainer --lr {{lr}}", "command not found: /nonexistent/trainer"),
        ("{python} train.py --name \\\"abc --lr {{lr}}", "command template is malformed: No closing quotation"),
    ],
)
def test_command_failures(tmp_path: Path, command: str, message: str) -> None:
    path = make_spec(tmp_path, f'command = "{command.format(python=sys.executable)}"')
    with pytest.raises(ScaleplanError, match=message.replace("(", r"\(").replace("{", r"\{")):
        run_sweep(load_spec(path))


def test_adaptive_command_objective_gets_the_tokens_of_its_cell(tmp_path: Path) -> None:
    """Before: the adaptive search dropped `tokens` from its trials, and a command using {tokens} failed with
    `internal error: KeyError: 'tokens'` (exit 1)."""
    path = tmp_path / "t.toml"
    path.write_text(f"""
[sweep]
name = "t"
sampler = "adaptive"
trials_per_point = 6
[ladder]
widths = [8]
tokens = [160]
[search]
lr = {{low = 1e-3, high = 1e-1}}
batch_size = [4, 8]
[objective]
command = "{sys.executable} -c 'import math; print((math.log({{lr}}) + 4) ** 2 + {{tokens}} / {{steps}})'"
""")
    summary = run_sweep(load_spec(path))
    trials = trials_of(path)
    assert summary.complete == len(trials) and {t.user_attrs["tokens"] for t in trials} == {160}
    for t in trials:  # the command got the D of its cell: tokens / steps is the batch size
        assert t.value == pytest.approx((math.log(t.params["lr"]) + 4) ** 2 + t.user_attrs["batch_size"], rel=1e-9)


def test_a_command_field_a_trial_has_no_value_for_is_one_line() -> None:
    """The template is checked against the spec's fields; a trial built without one of them (a caller's bug) is a
    one-line error naming the field, not `internal error: KeyError`."""
    from scaleplan.sweep.objective import CommandObjective
    from scaleplan.sweep.plan import GridPoint
    from scaleplan.sweep.trial import TrialRequest

    objective = CommandObjective("train --lr {lr} --depth {depth}", ["depth", "lr"], None)
    with pytest.raises(ScaleplanError, match=r"^\[objective\] command uses \{depth\}, which this trial has no value for "
                                             r"\(it has: width, steps, batch_size, seed, lr\)$"):
        objective.evaluate([TrialRequest(GridPoint(8, 10, 4, 0), {"lr": 0.1})])


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        ('callable = "no_such_module:fn"', "cannot import objective module 'no_such_module'"),
        ('callable = "sweep_objectives:no_such_fn"', "module 'sweep_objectives' has no function 'no_such_fn'"),
    ],
)
def test_bad_objective_leaves_no_study_so_the_fixed_spec_runs(tmp_path: Path, objective: str, message: str) -> None:
    path = make_spec(tmp_path, objective, trials=1)
    with pytest.raises(ScaleplanError, match=message):
        run_sweep(load_spec(path))
    assert not (tmp_path / "toy.journal").exists()
    make_spec(tmp_path, trials=1)  # the user fixes the typo: the sweep runs, not "made from a different spec"
    assert run_sweep(load_spec(path)) == RunSummary(2, 2, 0)


def test_n_trials_caps_one_run(tmp_path: Path) -> None:
    path = make_spec(tmp_path)
    assert run_sweep(load_spec(path), max_trials=3) == RunSummary(3, 8, 0)
    assert run_sweep(load_spec(path)) == RunSummary(8, 8, 0)


def test_workers_are_no_more_than_the_trials_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished sweep starts no worker process, and one trial left runs here (a finished sweep with --workers 16 took
    89 s to return, and --workers 100000 ran the machine out of memory)."""
    import scaleplan.sweep.runner as runner

    def no_processes(*args: object) -> None:
        raise AssertionError("worker processes started")

    path = make_spec(tmp_path)
    assert run_sweep(load_spec(path), max_trials=7) == RunSummary(7, 8, 0)
    monkeypatch.setattr(runner, "_run_processes", no_processes)
    assert run_sweep(load_spec(path), workers=16) == RunSummary(8, 8, 0)
    assert run_sweep(load_spec(path), workers=16) == RunSummary(8, 8, 0)


def test_two_worker_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "calls.log"
    monkeypatch.setenv("SWEEP_TEST_LOG", str(log))
    monkeypatch.setenv("SWEEP_TEST_SLEEP", "0.05")
    path = make_spec(tmp_path, 'callable = "sweep_objectives:slow_logged"', trials=6)
    assert run_sweep(load_spec(path), workers=2) == RunSummary(12, 12, 0)
    slots = [t.user_attrs["slot"] for t in trials_of(path) if t.state == TrialState.COMPLETE]
    assert len(slots) == len(set(slots)) == 12
    assert len(log.read_text().splitlines()) == 12  # the objective ran once per slot: no trial evaluated twice


def test_a_killed_worker_whose_trial_another_finished_is_a_warning_not_a_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "calls.log"
    monkeypatch.setenv("SWEEP_TEST_DIE", str(tmp_path / "die"))
    monkeypatch.setenv("SWEEP_TEST_LOG", str(log))
    monkeypatch.setenv("SWEEP_TEST_SLEEP", "0.3")
    (tmp_path / "die").touch()
    path = make_spec(tmp_path, 'callable = "sweep_objectives:dies_once"', trials=3)
    with pytest.warns(UserWarning, match=r"1 worker process\(es\) exited with status -9; every planned trial finished"):
        assert run_sweep(load_spec(path), workers=2) == RunSummary(6, 6, 0)
    trials = trials_of(path)
    assert sorted(t.user_attrs["slot"] for t in trials if t.state == TrialState.COMPLETE) == sorted(
        f"w{w}-s10-b4-seed0#{i}" for w in (8, 16) for i in range(3))
    assert [t.state for t in trials].count(TrialState.FAIL) == 1  # the killed worker's trial, failed as stale
    assert len(log.read_text().splitlines()) == 6  # each planned trial evaluated once to the end


def test_changed_spec_is_refused(tmp_path: Path) -> None:
    path = make_spec(tmp_path, trials=1)
    run_sweep(load_spec(path))
    path.write_text(path.read_text().replace("high = 1e-1", "high = 1e-2"))
    with pytest.raises(ScaleplanError, match=r"was made from a different spec \(\[search\] changed\)"):
        run_sweep(load_spec(path))


def test_cli_runs_status_and_reports_bad_input(tmp_path: Path) -> None:
    path = make_spec(tmp_path, trials=1)
    env = {"PYTHONPATH": f"{TESTS}:{TESTS.parent}", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "scaleplan.cli", "sweep", str(path)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "2/2 planned trials complete"
    status = subprocess.run([sys.executable, "-m", "scaleplan.cli", "sweep", "status", str(path)], capture_output=True, text=True, env=env)
    assert "toy: 2/2 trials complete" in status.stdout and "w16-s10-b4-seed0" in status.stdout
    path.write_text(path.read_text().replace("[ladder]", "[ladder]\nwidth = [3]"))
    bad = subprocess.run([sys.executable, "-m", "scaleplan.cli", "sweep", str(path)], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [f"error: {path}: [ladder]: unknown key 'width' - did you mean 'widths'? (valid keys: widths, depths, steps, tokens)"]


@pytest.mark.parametrize("lrs, line", [("[1e-1]", "2/2 planned trials complete; every one diverged (NaN/inf loss): nothing to "
                                                   "fit, lower the [search] lrs"),
                                        ("[1e-3, 1e-1]", "4/4 planned trials complete; 2 diverged")])
def test_the_last_line_of_a_sweep_says_how_many_trials_diverged(tmp_path: Path, lrs: str, line: str) -> None:
    path = make_spec(tmp_path, 'callable = "sweep_objectives:diverging"', sampler="grid", lr=lrs)
    env = {"PYTHONPATH": f"{TESTS}:{TESTS.parent}", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "scaleplan.cli", "sweep", str(path)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == line, run.stderr


def test_device_with_a_user_objective_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScaleplanError, match="--device applies to the built-in trainer"):
        run_sweep(load_spec(make_spec(tmp_path)), device="cuda")
    assert not list(tmp_path.glob("*.journal"))  # refused before any storage was made

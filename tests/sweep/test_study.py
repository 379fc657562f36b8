"""The sweep study: what it records (the spec without passwords, the parametrization reference, the objective's code)."""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path

import pytest

from scaleplan.core.reference import ParametrizationRef
from scaleplan.errors import ScaleplanError
from scaleplan.sweep.objective import CommandObjective
from scaleplan.sweep.runner import run_sweep
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.study import SOURCES_ATTR, SPEC_ATTR, open_sweep, study_reference

SPEC = """
[sweep]
name = "creds"
storage = "postgresql://sweeper:s3cret@db-host/scaleplan"
trials_per_point = 1
[model]
parametrization = "mup"
base_width = 16
[ladder]
widths = [8, 16]
steps = [10]
[search]
lr = {low = 1e-4, high = 1e-1}
[objective]
callable = "sweep_objectives:quadratic"
"""


def test_the_study_keeps_the_spec_without_its_password(tmp_path: Path) -> None:
    spec = tmp_path / "creds.toml"
    spec.write_text(SPEC)
    session = open_sweep(load_spec(spec), str(tmp_path / "local.journal"))  # the spec's server, overridden here
    attrs = session.study.user_attrs
    assert "s3cret" not in json.dumps(attrs) and "s3cret" not in (tmp_path / "local.journal").read_text()
    assert attrs[SPEC_ATTR]["sweep"]["storage"] == "postgresql://sweeper:***@db-host/scaleplan"
    assert study_reference(session.study) == ParametrizationRef("mup", base_width=16)
    assert open_sweep(load_spec(spec), str(tmp_path / "local.journal")).study.user_attrs == attrs  # resumes: same plan


def test_a_study_stored_with_a_password_is_scrubbed_when_reopened(tmp_path: Path) -> None:
    spec = tmp_path / "creds.toml"
    spec.write_text(SPEC)
    session = open_sweep(load_spec(spec), str(tmp_path / "old.db"))
    session.study.set_user_attr(SPEC_ATTR, load_spec(spec).raw)  # as the first release stored it
    assert "s3cret" in json.dumps(session.study.user_attrs)
    again = open_sweep(load_spec(spec), str(tmp_path / "old.db"))
    assert "s3cret" not in json.dumps(again.study.user_attrs)


def test_a_study_with_trials_but_no_spec_is_refused_and_left_alone(tmp_path: Path) -> None:
    """Before: a study of that name made outside `scaleplan sweep` (plain Optuna) was stamped with this spec and its
    plan enqueued beside its own trials; the sweep then failed with `internal error: ValueError` (exit 1), and
    status, export and fit read the foreign trials as this spec's."""
    import optuna
    import pytest

    from scaleplan.errors import ScaleplanError
    from scaleplan.sweep.export import open_study_readonly

    spec = tmp_path / "creds.toml"
    spec.write_text(SPEC)
    storage = str(tmp_path / "mine.db")
    study = optuna.create_study(study_name="creds", storage=f"sqlite:///{storage}")
    study.optimize(lambda trial: trial.suggest_float("lr", 0.1, 1.0, log=False), n_trials=2)
    message = r"study 'creds' in sqlite:///.*mine\.db holds 2 trials that no scaleplan sweep spec made"
    with pytest.raises(ScaleplanError, match=message):
        open_sweep(load_spec(spec), storage)
    with pytest.raises(ScaleplanError, match=message):
        open_study_readonly(load_spec(spec), storage=storage)
    kept = optuna.load_study(study_name="creds", storage=f"sqlite:///{storage}")
    assert kept.user_attrs == {} and len(kept.get_trials()) == 2


def test_a_study_without_a_spec_or_trials_is_taken(tmp_path: Path) -> None:
    """A sweep killed between creating its study and recording its spec resumes."""
    import optuna

    spec = tmp_path / "creds.toml"
    spec.write_text(SPEC)
    storage = str(tmp_path / "killed.journal")
    open_sweep(load_spec(spec), storage)  # the storage, then the study as a kill would leave it:
    optuna.create_study(study_name="other", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(storage)))
    spec.write_text(SPEC.replace('name = "creds"', 'name = "other"'))
    session = open_sweep(load_spec(spec), storage)
    assert session.study.user_attrs[SPEC_ATTR]["sweep"]["name"] == "other" and session.study.get_trials()  # its plan


def run_quietly(path: Path, max_trials: int) -> list[str]:
    """Run `max_trials` more trials of the sweep at `path`; the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_sweep(load_spec(path), max_trials=max_trials)
    return [str(w.message) for w in caught]


def objective_sweep(tmp_path: Path, monkeypatch, name: str, code: str, trials: int = 1) -> tuple[Path, Path]:
    """(the objective's file `<name>_objective.py` holding `code`, a local spec sweeping its `train` with `trials` per
    width), from tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    source = tmp_path / f"{name}_objective.py"
    source.write_text(code)
    spec = tmp_path / f"{name}.toml"
    spec.write_text(SPEC.replace('name = "creds"', f'name = "{name}"').replace("trials_per_point = 1", f"trials_per_point = {trials}").replace('storage = "postgresql://sweeper:s3cret@db-host/scaleplan"\n', "")
                    .replace("sweep_objectives:quadratic", f"{name}_objective:train"))
    return source, spec


def test_a_sweep_resumed_after_its_objective_code_changed_warns_once(tmp_path: Path, monkeypatch) -> None:
    code, spec = objective_sweep(tmp_path, monkeypatch, "edited", "def train(params):\n    return params['lr']\n", trials=4)
    assert run_quietly(spec, 1) == []
    assert run_quietly(spec, 1) == []  # resumed with the same code
    code.write_text("def train(params):\n    return 2 * params['lr']  # edited\n")
    warned = run_quietly(spec, 1)
    assert len(warned) == 1 and warned[0].startswith("the objective's code changed since this sweep last ran (edited_objective.py: sha256 ")
    assert "its 2 finished trials ran the old code" in warned[0] and "new [sweep] name" in warned[0]
    assert run_quietly(spec, 1) == []  # said once per change
    open_sweep(load_spec(spec)).study.set_user_attr(SOURCES_ATTR, [])  # as a sweep started before code was recorded
    code.write_text("def train(params):\n    return 3 * params['lr']\n")
    assert run_quietly(spec, 1) == []  # its old code is unknown: nothing to compare
    sources = open_sweep(load_spec(spec)).study.user_attrs[SOURCES_ATTR]
    assert [s["file"] for s in sources] == ["edited_objective.py"] and sources[0]["sha256"] == hashlib.sha256(code.read_bytes()).hexdigest()


def test_code_edited_after_the_sweep_finished_is_not_a_version_of_its_trials(tmp_path: Path, monkeypatch) -> None:
    """Re-running a finished sweep (validate does) runs no code: recording the edited version made every later fit say
    that trials from before and after a change were fitted together, though none ran the new code."""
    code, spec = objective_sweep(tmp_path, monkeypatch, "done", "def train(params):\n    return params['lr']\n")
    assert run_quietly(spec, 10) == []  # finished
    code.write_text("def train(params):\n    return params['lr']\n\n\ndef helper():\n    return 0\n")
    assert run_quietly(spec, 10) == []
    assert len(open_sweep(load_spec(spec)).study.user_attrs[SOURCES_ATTR]) == 1


def test_a_command_objective_records_its_python_script(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("print(1.0)\n")
    assert CommandObjective("python train.py --lr {lr}", ["lr"], None).source == {
        "file": "train.py", "sha256": hashlib.sha256(b"print(1.0)\n").hexdigest()}
    assert CommandObjective("./train.sh {lr}", ["lr"], None).source is None


def test_code_fixed_before_any_trial_completed_is_not_a_change(tmp_path: Path, monkeypatch) -> None:
    """An objective that failed at once and was then fixed ran no trial the fit would use: no warning, one version."""
    code, spec = objective_sweep(tmp_path, monkeypatch, "fixed", "def train(params):\n    raise ValueError('a bug')\n")
    with pytest.raises(ScaleplanError, match="a bug"):
        run_sweep(load_spec(spec), max_trials=1)
    code.write_text("def train(params):\n    return params['lr']\n")
    monkeypatch.delitem(sys.modules, "fixed_objective")  # a new command imports it afresh
    assert run_quietly(spec, 1) == []
    sources = open_sweep(load_spec(spec)).study.user_attrs[SOURCES_ATTR]
    assert [s["sha256"] for s in sources] == [hashlib.sha256(code.read_bytes()).hexdigest()]

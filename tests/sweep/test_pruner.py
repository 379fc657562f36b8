"""Pruning in sweeps: per-grid-point pruners, PRUNED trials as finished slots, excluded from fits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from scaleplan.errors import ScaleplanError
from scaleplan.fit.data import prepare_trials
from scaleplan.sweep.builtin import BuiltinObjective
from scaleplan.sweep.export import load_trials
from scaleplan.sweep.pruner import PointPruner, make_pruner
from scaleplan.sweep.plan import plan_slots
from scaleplan.sweep.runner import RunSummary, run_sweep
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.study import open_sweep, reconcile
from scaleplan.sweep.worker import run_worker

# Explicit grid values are enqueued in this order: good lrs first, then lrs too small to learn in 40 steps
# (unpruned final held-out losses: 0.77, 0.53, 0.56, 0.86, then 1.21, 1.37, 1.38, 1.38).
SPEC = """
[sweep]
name = "pruned"
sampler = "grid"
pruner = "median"
prune_every = 10
[task]
name = "teacher-student"
kwargs = {in_dim = 8, out_dim = 2, teacher_width = 16, n_eval = 64}
[model]
name = "mlp"
parametrization = "mup"
base_width = 8
[ladder]
widths = [8]
steps = [40]
[search]
lr = [1e-2, 2e-2, 3e-2, 1e-1, 3e-3, 1e-5, 3e-6, 1e-6]
batch_size = [8]
"""


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    path = tmp_path / "pruned.toml"
    path.write_text(SPEC)
    return path


class _Recorder(optuna.pruners.BasePruner):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        self.seen = [t.user_attrs["point"] for t in study.get_trials(deepcopy=False)]
        return False


def test_point_pruner_sees_only_the_trials_of_the_trials_point() -> None:
    study = optuna.create_study()
    for point in ("a", "b", "a", "b", "b"):
        study.enqueue_trial({}, user_attrs={"point": point})
    trials = [study.ask() for _ in range(5)]
    recorder = _Recorder()
    PointPruner(recorder).prune(study, study.get_trials()[trials[1].number])
    assert recorder.seen == ["b", "b", "b"]


def test_pruner_off_is_optunas_nop_pruner(spec_path: Path) -> None:
    spec_path.write_text(SPEC.replace('pruner = "median"\nprune_every = 10\n', ""))
    assert isinstance(make_pruner(load_spec(spec_path)), optuna.pruners.NopPruner)


def test_successive_halving_without_prune_every_is_refused(spec_path: Path) -> None:
    # the spec parser refuses it; a spec changed in code must not fall back to Optuna's guessed rungs
    spec = dataclasses.replace(load_spec(spec_path), pruner="successive-halving", prune_every=None)
    with pytest.raises(ScaleplanError, match="prune_every"):
        make_pruner(spec)


def test_median_pruning_one_trial_at_a_time(spec_path: Path) -> None:
    spec = load_spec(spec_path)
    session = open_sweep(spec)
    objective = BuiltinObjective(spec)
    while run_worker(session, objective, max_trials=1):  # populations of one: each trial sees the ones before
        pass
    trials = session.study.get_trials()
    assert sorted(t.user_attrs["slot"] for t in trials) == sorted(s.key for s in plan_slots(session.spec))  # each slot once
    assert reconcile(session) == 0 and run_sweep(spec) == RunSummary(8, 8, 0)  # a re-run repeats nothing
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert sorted(t.params["lr"] for t in pruned) == [1e-6, 3e-6, 1e-5, 3e-3]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and not t.user_attrs["diverged"]]
    best = min(complete, key=lambda t: t.value)
    for t in pruned:
        last = max(t.intermediate_values)
        assert t.user_attrs["pruned"] and t.user_attrs["loss"] is None and t.user_attrs["steps_run"] == last
        assert t.user_attrs["pruned_loss"] == t.value == t.intermediate_values[last] > best.value

    frame = load_trials(spec_path)
    assert sorted(frame.loc[frame.state == "PRUNED", "lr"]) == [1e-6, 3e-6, 1e-5, 3e-3]
    assert frame.loc[frame.state == "PRUNED", "loss"].isna().all()
    kept = prepare_trials(frame, x="width")
    assert len(kept.frame) == 4 and kept.dropped["not COMPLETE"] == 4


def test_successive_halving_prunes_within_one_population(spec_path: Path) -> None:
    spec_path.write_text(SPEC.replace('pruner = "median"', 'pruner = "successive-halving"'))
    assert run_sweep(load_spec(spec_path)) == RunSummary(8, 8, 0)  # width 8: one population of 8 members
    frame = load_trials(spec_path)
    states = dict(zip(frame.lr, frame.state))
    assert set(states.values()) == {"COMPLETE", "PRUNED"}
    best = frame.loc[frame.loss.idxmin()]
    assert best.state == "COMPLETE" and (frame.loc[frame.state == "PRUNED", "pruned_loss"] > best.loss).all()

"""Slots released round by round: tpe/gp per grid point, adaptive per cell, each slot exactly once."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
from optuna.trial import TrialState

from scaleplan.sweep.adaptive import Observation, next_round, prior_from
from scaleplan.sweep.export import load_trials, open_study_readonly
from scaleplan.sweep.rounds import released, replay, search_settings
from scaleplan.sweep.runner import RunSummary, run_sweep
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.study import PLANNED_ATTR, open_sweep, reconcile
from scaleplan.sweep.trial import Outcome


def write_spec(tmp_path: Path, sweep: str, widths: str = "[8, 16, 32]") -> Path:
    path = tmp_path / "r.toml"
    path.write_text(f"""
[sweep]
name = "r"
{sweep}
[ladder]
widths = {widths}
steps = [10]
[search]
lr = {{low = 1e-5, high = 1e-1}}
batch_size = [4]
[objective]
callable = "sweep_objectives:quadratic"
""")
    return path


def waiting(session) -> Counter:
    return Counter(t.user_attrs["point"] for t in session.study.get_trials(states=(TrialState.WAITING,)))


def finish_waiting(session, loss: float = 1.0) -> None:
    for t in session.study.get_trials(states=(TrialState.WAITING,)):
        session.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING)
        session.study.tell(t.number, loss)


def test_tpe_releases_startup_then_rounds_per_point(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, 'sampler = "tpe"\ntrials_per_point = 7\nstartup_trials = 3\nround_size = 2', "[8, 16]"))
    session = open_sweep(spec)
    assert waiting(session) == {"w8-s10-b4-seed0": 3, "w16-s10-b4-seed0": 3} and session.growing
    finish_waiting(session)
    assert reconcile(session) == 4 and waiting(session) == {"w8-s10-b4-seed0": 2, "w16-s10-b4-seed0": 2}
    finish_waiting(session)
    assert reconcile(session) == 4
    finish_waiting(session)
    assert reconcile(session) == 0 and not session.growing  # 3 + 2 + 2 = 7 per point: the plan is out
    slots = Counter(t.user_attrs["slot"] for t in session.study.get_trials())
    assert slots == {f"w{w}-s10-b4-seed0#{i}": 1 for w in (8, 16) for i in range(7)}


def test_grid_and_random_release_everything_at_once(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, 'sampler = "random"\ntrials_per_point = 5', "[8]"))
    release = released(spec, [])
    assert len(release.slots) == 5 and not release.growing


class Population:
    """A population objective: K trials per call, loss minimal at lr = 10**-2.5 (as sweep_objectives:quadratic)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.calls: list[list[tuple[int, int, float]]] = []

    def population_size(self, point) -> int:
        return self.k

    def evaluate(self, requests, checkpoint=None) -> list[Outcome]:
        self.calls.append([(r.point.width, r.point.seed, r.params["lr"]) for r in requests])
        return [Outcome((math.log10(r.params["lr"]) + 2.5) ** 2 + 1 / r.point.width, False, None, None) for r in requests]


def test_adaptive_runs_rounds_as_populations_small_widths_first(tmp_path: Path) -> None:
    from scaleplan.sweep.worker import run_worker

    spec = load_spec(write_spec(tmp_path, 'sampler = "adaptive"\nseeds = [0, 1, 2]'))
    session = open_sweep(spec)
    objective = Population(k=16)
    done = run_worker(session, objective)
    trials = session.study.get_trials()
    assert done == len(trials) and all(t.state == TrialState.COMPLETE for t in trials)
    assert Counter(t.user_attrs["slot"] for t in trials).most_common(1)[0][1] == 1  # every slot once
    # one population per round, every member of one width, seeds in rotation
    assert [len({w for w, _, _ in call}) for call in objective.calls] == [1] * len(objective.calls)
    widths = [call[0][0] for call in objective.calls]
    assert widths == sorted(widths) and set(widths) == {8, 16, 32}
    # the proposals are exactly what the search decides, round after round, from the results
    settings = search_settings(spec)
    optima, cursor = [], 0
    for width in (8, 16, 32):
        history: list[Observation] = []
        prior = prior_from(optima, width)
        while True:
            step = next_round(history, settings, prior)
            if step.stopped:
                break
            call = objective.calls[cursor]
            cursor += 1
            assert [lr for _, _, lr in call] == pytest.approx(list(step.lrs), rel=1e-12)
            assert [seed for _, seed, _ in call] == [(len(history) + i) % 3 for i in range(len(call))]
            history += [Observation(lr, (math.log10(lr) + 2.5) ** 2 + 1 / width) for lr in step.lrs]
        assert step.reason == "converged" and step.estimate is not None
        assert step.estimate.lr == pytest.approx(10**-2.5, rel=1e-3)
        optima.append((width, step.estimate))
    assert cursor == len(objective.calls)
    # once every cell stopped, the plan records what each point actually got
    planned = session.study.user_attrs[PLANNED_ATTR]
    assert planned == dict(Counter(t.user_attrs["point"] for t in trials)) and not session.growing


def test_adaptive_slot_keeps_its_lr_when_its_trial_fails(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, 'sampler = "adaptive"', "[8]"))
    session = open_sweep(spec)
    first = session.study.get_trials(states=(TrialState.WAITING,))
    assert len(first) == 5  # a cold bracket: round size + 1 lrs over the range
    victim = first[2]
    session.storage.set_trial_state_values(victim._trial_id, TrialState.FAIL)
    assert reconcile(session) == 1
    again = session.study.get_trials()[-1]
    assert again.user_attrs["slot"] == victim.user_attrs["slot"]
    assert again.system_attrs["fixed_params"] == victim.system_attrs["fixed_params"]
    cells = replay(spec, session.study.get_trials())
    assert [c.round for c in cells.values()] == [None]  # unfinished slots: no next round yet


def test_adaptive_sweep_through_the_runner_reports_the_plan_it_made(tmp_path: Path) -> None:
    path = write_spec(tmp_path, 'sampler = "adaptive"\nseeds = [0, 1]', "[8, 16]")
    summary = run_sweep(load_spec(path))
    frame = load_trials(path)
    assert summary == RunSummary(len(frame), len(frame), 0)
    assert set(frame["state"]) == {"COMPLETE"} and frame["slot"].is_unique
    assert run_sweep(load_spec(path)) == summary  # a re-run finds nothing to do


def test_a_study_made_before_the_adaptive_default_keeps_its_sampler(tmp_path: Path) -> None:
    """A spec without `sampler` meant tpe before; its study (no sampler recorded) resumes with tpe."""
    import optuna

    from scaleplan.sweep.rounds import planned_counts
    from scaleplan.sweep.storage import open_storage, resolve_storage
    from scaleplan.sweep.study import FINGERPRINT_ATTR, SPEC_ATTR

    spec = load_spec(write_spec(tmp_path, "trials_per_point = 4", "[8]"))
    assert spec.sampler == "adaptive"
    old = optuna.create_study(storage=open_storage(resolve_storage(None, spec)), study_name=spec.name)
    for key, value in ((SPEC_ATTR, spec.raw), (FINGERPRINT_ATTR, spec.fingerprint), (PLANNED_ATTR, {"w8-s10-b4-seed0": 4})):
        old.set_user_attr(key, value)
    old.enqueue_trial({}, user_attrs={"width": 8, "steps": 10, "batch_size": 4, "seed": 0, "point": "w8-s10-b4-seed0",
                                      "slot": "w8-s10-b4-seed0#0"})
    session = open_sweep(spec)
    assert session.spec.sampler == "tpe" and planned_counts(session.spec) == {"w8-s10-b4-seed0": 4}
    assert sorted(t.user_attrs["slot"] for t in session.study.get_trials()) == ["w8-s10-b4-seed0#0", "w8-s10-b4-seed0#1"]


def test_adaptive_searches_every_depth_and_tokens_cell_at_its_own_values(tmp_path: Path) -> None:
    """Before: the adaptive cells kept only width, steps and batch size, so a depth ladder trained every trial at the
    model's default depth (the user's code got no `depth`) and a tokens ladder lost `tokens`, silently or with a
    KeyError; a re-run trained nothing more. Each (width, depth, D) cell now gets its own search at its own values."""
    from sweep_objectives import multi_axis_bowl, multi_axis_optimum

    path = tmp_path / "m.toml"
    path.write_text("""
[sweep]
name = "m"
sampler = "adaptive"
[ladder]
widths = [64, 128]
depths = [2, 4]
tokens = [16384, 65536]
[search]
lr = {low = 1e-4, high = 1e-1}
batch_size = [16]
[objective]
callable = "sweep_objectives:multi_axis_bowl"
""")
    spec = load_spec(path)
    summary = run_sweep(spec)
    frame = load_trials(path)
    assert set(frame["state"]) == {"COMPLETE"} and frame["slot"].is_unique and summary.complete == len(frame)
    assert set(zip(frame["width"], frame["depth"], frame["tokens"])) == {
        (w, depth, d) for w in (64, 128) for depth in (2, 4) for d in (16384, 65536)}
    assert (frame["steps"] == frame["tokens"] // 16).all()
    for row in frame.itertuples():  # each trial ran at the depth and D its row records
        params = {"width": row.width, "depth": row.depth, "tokens": row.tokens, "batch_size": 16, "lr": row.lr}
        assert row.loss == pytest.approx(multi_axis_bowl(params)["loss"], rel=1e-12)
    cells = replay(spec, open_study_readonly(spec).get_trials())
    found = {(c.width, c.depth, c.tokens): s.round.estimate for c, s in cells.items() if s.round is not None}
    for cell, search in cells.items():  # each cell found its own optimum, from a prior of its own depth and D
        assert found[cell.width, cell.depth, cell.tokens] is not None
        assert found[cell.width, cell.depth, cell.tokens].lr == pytest.approx(
            multi_axis_optimum(cell.width, cell.depth, cell.tokens, cell.batch_size), rel=0.05)
        if cell.width == 128:
            assert search.prior is not None and search.prior.lr == found[64, cell.depth, cell.tokens].lr
    assert run_sweep(load_spec(path)) == summary and len(load_trials(path)) == len(frame)  # a re-run trains nothing

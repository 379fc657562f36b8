"""PointSampler: the inner sampler sees only the trials of the grid point being sampled; populations drawn
by tpe/gp are distinct and depend on earlier results (random search as the contrast)."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution

from scaleplan.sweep.sampler import PointSampler, make_sampler
from scaleplan.sweep.spec import parse_spec


class Recorder(optuna.samplers.RandomSampler):
    def __init__(self) -> None:
        super().__init__(seed=0)
        self.seen: list[list[int]] = []

    def sample_independent(self, study, trial, name, distribution):  # type: ignore[no-untyped-def]
        self.seen.append(sorted(t.number for t in study.get_trials(deepcopy=False)))
        return super().sample_independent(study, trial, name, distribution)


def test_point_sampler_filters_trials_by_point() -> None:
    inner = Recorder()
    study = optuna.create_study(sampler=PointSampler(lambda seed: inner))
    dist = FloatDistribution(1e-3, 1.0, log=True)
    for i, point in enumerate(["a", "b", "a", "b", "a"]):
        study.add_trial(optuna.trial.create_trial(params={"lr": 0.01 * (i + 1)}, distributions={"lr": dist}, value=float(i), user_attrs={"point": point}))
    study.enqueue_trial({}, user_attrs={"point": "b"})
    trial = study.ask()
    trial.suggest_float("lr", 1e-3, 1.0, log=True)
    assert inner.seen == [[1, 3, 5]]


@pytest.mark.parametrize(
    ("spec_seed", "worker", "expected"),
    [(0, 0, 0), (7, 3, 7003), (20240101, 1, (20240101 * 1000 + 1) % 2**32), (-1, 2, 2**32 - 998)],
)
def test_worker_seed_is_in_numpy_range(monkeypatch: pytest.MonkeyPatch, spec_seed: int, worker: int, expected: int) -> None:
    seeds: list[int] = []

    class Capture(optuna.samplers.RandomSampler):
        def __init__(self, seed: int) -> None:
            seeds.append(seed)
            super().__init__(seed=seed)  # raises for a seed outside [0, 2**32)

    monkeypatch.setattr(optuna.samplers, "RandomSampler", Capture)
    raw = {"sweep": {"sampler": "random", "seed": spec_seed}, "ladder": {"widths": [8], "steps": [1]},
           "search": {"lr": {"low": 1e-3, "high": 1e-1}}, "objective": {"callable": "m:f"}}
    sampler = make_sampler(parse_spec(raw, path=Path("s.toml")), worker)
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial({}, user_attrs={"point": "w8-s1-b32-seed0"})
    study.ask().suggest_float("lr", 1e-3, 1e-1, log=True)
    assert seeds == [(expected + zlib.crc32(b"w8-s1-b32-seed0")) % 2**32]  # per grid point, from the worker's seed


class PopulationObjective:
    """K trials per call, loss (log10(lr / optimum))^2; records the lrs of every population it is given."""

    def __init__(self, optimum: float, k: int = 16) -> None:
        self.optimum, self.k = optimum, k
        self.calls: list[list[float]] = []
        self.seeds: list[int] = []  # each proposal's grid point (its seed), in the order of `calls`

    def population_size(self, point) -> int:  # type: ignore[no-untyped-def]
        return self.k

    def evaluate(self, requests, checkpoint=None):  # type: ignore[no-untyped-def]
        from scaleplan.sweep.trial import Outcome

        self.calls.append([r.params["lr"] for r in requests])
        self.seeds += [r.point.seed for r in requests]
        return [Outcome(math.log10(r.params["lr"] / self.optimum) ** 2, False, None, None) for r in requests]


def population_proposals(tmp_path: Path, sampler: str, optimum: float) -> PopulationObjective:
    """The lrs of each population a one-worker sweep trains: 2 seeds (2 grid points, one population key)."""
    from scaleplan.sweep.study import open_sweep
    from scaleplan.sweep.worker import run_worker

    raw = {"sweep": {"name": f"p-{sampler}-{optimum:g}", "sampler": sampler, "seeds": [0, 1], "trials_per_point": 12},
           "ladder": {"widths": [8], "steps": [10]}, "search": {"lr": {"low": 1e-5, "high": 1.0}},
           "objective": {"callable": "sweep_objectives:quadratic"}}
    spec = parse_spec(raw, path=tmp_path / "p.toml")
    objective = PopulationObjective(optimum)
    run_worker(open_sweep(spec, str(tmp_path / f"{spec.name}.journal")), objective)
    return objective


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_population_proposals_are_distinct_and_depend_on_earlier_results(tmp_path: Path, sampler: str) -> None:
    low_run, high_run = (population_proposals(tmp_path, sampler, optimum) for optimum in (1e-4, 1e-1))
    low, high = low_run.calls, high_run.calls
    for run in (low_run, high_run):  # 12 distinct lrs at each grid point (two points may share one: GP proposes the
        lrs = [lr for call in run.calls for lr in call]  # range's bound for each)
        assert len(lrs) == 24 and all(len({lr for lr, s in zip(lrs, run.seeds) if s == seed}) == 12 for seed in (0, 1))
        assert len(run.calls) > 2 and max(len(call) for call in run.calls) <= 8  # startup (4 per point), then rounds of 4
    assert low[0] == high[0]  # the startup draws are the sampler's own
    later_low, later_high = [lr for c in low[1:] for lr in c], [lr for c in high[1:] for lr in c]
    assert later_low != later_high  # later draws depend on the results ...
    assert np.median(np.log10(later_low)) < np.median(np.log10(later_high))  # ... towards each objective's optimum


def test_random_population_proposals_ignore_results(tmp_path: Path) -> None:
    """What the test above rules out: random search draws the same lrs whatever the objective."""
    low, high = (population_proposals(tmp_path, "random", optimum).calls for optimum in (1e-4, 1e-1))
    assert low == high and len(low) == 2  # one population of 16, then the remaining 8

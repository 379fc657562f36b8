"""PointSampler: the inner sampler sees only the trials of the grid point being sampled."""

from __future__ import annotations

from pathlib import Path

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
    study = optuna.create_study(sampler=PointSampler(inner))
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
    make_sampler(parse_spec(raw, path=Path("s.toml")), worker)
    assert seeds == [expected]

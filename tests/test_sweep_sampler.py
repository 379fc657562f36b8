"""PointSampler: the inner sampler sees only the trials of the grid point being sampled."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution

from scaleplan.sweep.sampler import PointSampler


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

"""Samplers that model each grid point on its own: one study per sweep, one sampler history per point.

Losses at different widths are not comparable (wider is lower), so a TPE or GP model fed the whole
study would chase the widest width. `PointSampler` hands its inner sampler a view of the study that
holds only the trials of the grid point being sampled.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from scaleplan.sweep.spec import SweepSpec


class _PointStudy(optuna.Study):
    """A read-only view of a study restricted to the trials of one grid point (as Optuna's brackets)."""

    def __init__(self, study: optuna.Study, point: str | None, sampler: optuna.samplers.BaseSampler) -> None:
        super().__init__(study_name=study.study_name, storage=study._storage, sampler=sampler)
        self._point = point

    def _get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None, use_cache: bool = False
    ) -> list[FrozenTrial]:
        trials = super()._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return [t for t in trials if t.user_attrs.get("point") == self._point]

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)


class PointSampler(optuna.samplers.BaseSampler):
    """Delegate to `inner`, showing it only the trials that share the sampled trial's grid point."""

    def __init__(self, inner: optuna.samplers.BaseSampler) -> None:
        self._inner = inner

    def _view(self, study: optuna.Study, trial: FrozenTrial) -> optuna.Study:
        return _PointStudy(study, trial.user_attrs.get("point"), self._inner)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._inner.infer_relative_search_space(self._view(study, trial), trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._inner.sample_relative(self._view(study, trial), trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._inner.sample_independent(self._view(study, trial), trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._inner.before_trial(self._view(study, trial), trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._inner.after_trial(self._view(study, trial), trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def startup_trials(spec: SweepSpec) -> int:
    """Trials per grid point before TPE/GP model it (and before the median pruner compares with them)."""
    return spec.startup_trials or max(2, min(10, spec.trials_per_point // 3))


def make_sampler(spec: SweepSpec, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded per worker so parallel workers do not draw identical points."""
    seed = (spec.seed * 1000 + worker_index) % 2**32  # numpy's 32-bit range: seed = 20240101 or -1 must work too
    startup = startup_trials(spec)
    if spec.sampler == "tpe":
        inner: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup, constant_liar=True
        )
    elif spec.sampler == "gp":
        inner = optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
    else:  # "random", and "grid" (whose trials arrive with every parameter fixed)
        inner = optuna.samplers.RandomSampler(seed=seed)
    return PointSampler(inner)

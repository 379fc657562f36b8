"""Samplers that model each grid point on its own: one study per sweep, one sampler history per point.

Losses at different widths are not comparable (wider is lower), so a TPE or GP model fed the whole
study would chase the widest width. `PointSampler` hands its inner sampler a view of the study that
holds only the trials of the grid point being sampled. The view includes the point's RUNNING trials,
so the members of a population drawn one after another are told apart: TPE's constant liar counts
them as bad results, GP's batch acquisition (qLogEI) as pending points. That only helps once the
point has finished trials to model: sweep/rounds.py releases a point's trials in rounds for that.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Container, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from scaleplan.sweep.spec import SweepSpec

ADAPTIVE_ROUND = 4


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
    """One inner sampler per grid point (`make_inner(seed)`), shown only the trials of that point.

    One sampler per point, not one shared: Optuna's samplers cache per study (the intersection search
    space that GP needs caches by trial number, GP caches its kernel), and each point is its own study here.
    Each point's sampler is seeded with `seed` plus a hash of the point, so every worker draws alike.
    """

    def __init__(self, make_inner: Callable[[int], optuna.samplers.BaseSampler], seed: int = 0) -> None:
        self._make_inner = make_inner
        self._seed = seed
        self._inners: dict[str | None, optuna.samplers.BaseSampler] = {}

    def _view(self, study: optuna.Study, trial: FrozenTrial) -> tuple[optuna.samplers.BaseSampler, optuna.Study]:
        point = trial.user_attrs.get("point")
        if point not in self._inners:
            self._inners[point] = self._make_inner((self._seed + zlib.crc32(str(point).encode())) % 2**32)
        inner = self._inners[point]
        return inner, _PointStudy(study, point, inner)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        inner, view = self._view(study, trial)
        return inner.infer_relative_search_space(view, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        inner, view = self._view(study, trial)
        return inner.sample_relative(view, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        inner, view = self._view(study, trial)
        return inner.sample_independent(view, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        inner, view = self._view(study, trial)
        inner.before_trial(view, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        inner, view = self._view(study, trial)
        inner.after_trial(view, trial, state, values)

    def reseed_rng(self) -> None:
        for inner in self._inners.values():
            inner.reseed_rng()


def startup_trials(spec: SweepSpec) -> int:
    """Trials per grid point before TPE/GP model it (and before the median pruner compares with them)."""
    return spec.startup_trials or max(2, min(10, spec.trials_per_point // 3))


def round_size(spec: SweepSpec) -> int:
    """Trials of one grid point drawn together: tpe/gp after their startup trials (default: startup_trials),
    or lrs per adaptive round (default 4: a bracket plus points either side of the vertex)."""
    if spec.round_size is not None:
        return spec.round_size
    return ADAPTIVE_ROUND if spec.sampler == "adaptive" else startup_trials(spec)


def make_sampler(spec: SweepSpec, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded per worker so parallel workers do not draw identical points."""
    seed = (spec.seed * 1000 + worker_index) % 2**32  # numpy's 32-bit range: seed = 20240101 or -1 must work too
    startup = startup_trials(spec)

    def make_inner(point_seed: int) -> optuna.samplers.BaseSampler:
        if spec.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=point_seed, n_startup_trials=startup, constant_liar=True)
        if spec.sampler == "gp":
            return optuna.samplers.GPSampler(seed=point_seed, n_startup_trials=startup, warn_independent_sampling=False)
        return optuna.samplers.RandomSampler(seed=point_seed)  # random; grid and adaptive fix every parameter

    return PointSampler(make_inner, seed)

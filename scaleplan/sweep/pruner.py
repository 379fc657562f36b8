"""Pruners that compare a trial only with trials of its own grid point (as `PointSampler` samples).

Held-out losses at different widths, step counts or batch sizes are not comparable, so the inner
Optuna pruner sees a view of the study that holds only the trials of the pruned trial's grid point.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial

from scaleplan.errors import ScaleplanError
from scaleplan.sweep.sampler import _PointStudy, startup_trials
from scaleplan.sweep.spec import SweepSpec


class PointPruner(optuna.pruners.BasePruner):
    """Delegate to `inner`, showing it only the trials that share the trial's grid point."""

    def __init__(self, inner: optuna.pruners.BasePruner) -> None:
        self._inner = inner

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self._inner.prune(_PointStudy(study, trial.user_attrs.get("point"), study.sampler), trial)


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    """The spec's pruner per grid point; Optuna's NopPruner when `pruner = "none"`."""
    if spec.pruner == "none":
        return optuna.pruners.NopPruner()
    if spec.pruner == "median":  # compares with the point's COMPLETE trials at the same step
        inner: optuna.pruners.BasePruner = optuna.pruners.MedianPruner(
            n_startup_trials=startup_trials(spec), n_warmup_steps=0
        )
    else:  # "successive-halving": rungs at prune_every * 4^k steps, running trials compete too
        if spec.prune_every is None:
            raise ScaleplanError(f"pruner '{spec.pruner}' needs 'prune_every' (steps between held-out checks)")
        inner = optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.prune_every)
    return PointPruner(inner)

"""The built-in objective: train scaleplan's reference models with scaleplan.train.

A population (K trials of one width, depth, batch size and step count) trains in one batched call when
`population_size_for` says K > 1; otherwise trials train one at a time. One torch thread each.
With a pruner, the held-out loss is checked every `prune_every` steps through a `Checkpoint`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from scaleplan.errors import ScaleplanError
from scaleplan.sweep.trial import ObjectiveFailed, Outcome, TrialRequest
from scaleplan.sweep.plan import GridPoint, grid_points
from scaleplan.sweep.spec import SweepSpec
from scaleplan.train.config import Checkpoint


class BuiltinObjective:
    """Builds a `TrialConfig` per trial from the spec, its grid point and the sampled params."""

    source: dict[str, str] | None = None  # scaleplan's own trainer

    def __init__(self, spec: SweepSpec, device: str = "cpu") -> None:
        self._spec = spec
        self._device = device
        points, ends, probe_params = grid_points(spec), self._search_ends(), self._probe_params()
        for point in points:  # every grid point with every end of every search range: bad values fail now
            for name, values in ends.items():
                for value in values:
                    self.config(TrialRequest(point, {**probe_params, name: value}))
        # unknown task/model names, kwargs, base width > width fail here; a model whose forward diverges at
        # init (a DenseAM's descent) is refused at every width, since every trial there would diverge
        if self.check_width(min(spec.widths)):
            for width in sorted(spec.widths)[1:]:
                self.check_width(width)

    def check_width(self, width: int) -> bool:
        """Build the model at `width` (first grid point, the low end of every search range: the gentlest
        beta0 and tau) and run its init check; returns whether the model has one (see train.build.check_init)."""
        from scaleplan.train.build import build_task, check_init

        point = dataclasses.replace(min(grid_points(self._spec)), width=width)
        gentlest = {name: min(values) for name, values in self._search_ends().items()}
        cfg = self.config(TrialRequest(point, gentlest))
        return check_init(cfg, build_task(cfg))

    def _search_ends(self) -> dict[str, tuple[float, ...]]:
        """The values that bound each searched parameter: its grid values, or its range's low and high."""
        return {p.name: p.grid() or (p.low, p.high) for p in self._spec.search}  # type: ignore[misc]

    def _probe_params(self) -> dict[str, float]:
        return {name: values[0] for name, values in self._search_ends().items()}

    def config(self, request: TrialRequest) -> Any:
        """The `TrialConfig` of one trial (task, model, parametrization, budget and sampled params)."""
        from scaleplan.train.config import TrialConfig

        spec, point = self._spec, request.point
        sampled: dict[str, Any] = request.params  # TrialConfig's float SEARCHABLE_FIELDS, by name (the spec parser checks)
        return TrialConfig(
            task=spec.task,  # type: ignore[arg-type]  # required for the built-in trainer by the spec parser
            model=spec.model,  # type: ignore[arg-type]
            width=point.width,
            parametrization=spec.parametrization,
            base_width=spec.reference.base_width or min(spec.widths),
            task_kwargs=spec.task_kwargs,
            model_kwargs=spec.model_kwargs if point.depth is None else {**spec.model_kwargs, "depth": point.depth},
            batch_size=point.batch_size,
            steps=point.steps,
            seed=point.seed,
            threads=1 if self._device == "cpu" else None,
            device=self._device,
            completep=spec.reference.completep,
            base_depth=spec.reference.base_depth,
            **spec.train,
            **sampled,
        )

    def population_size(self, point: GridPoint) -> int:
        from scaleplan.train.population import population_size_for

        cfg = self.config(TrialRequest(point, self._probe_params()))
        return population_size_for(cfg)

    def evaluate(self, requests: list[TrialRequest], checkpoint: Checkpoint | None = None) -> list[Outcome]:
        from scaleplan.train.loop import train_trial
        from scaleplan.train.population import train_population

        cfgs = [self.config(r) for r in requests]
        every = self._spec.prune_every or 0
        single = None if checkpoint is None else (lambda steps, loss: checkpoint(steps, [loss])[0])
        try:
            if len(cfgs) > 1:
                results = train_population(cfgs, checkpoint, every)
            else:
                results = [train_trial(cfgs[0], single, every)]
        except ScaleplanError:
            raise
        except Exception as exc:  # a crash in training is reported like a user objective's
            raise ObjectiveFailed(f"{type(exc).__name__}: {exc}") from exc
        return [
            Outcome(
                loss=r.loss,
                diverged=r.diverged,
                n_params=r.n_non_embedding,
                tokens=r.tokens_or_samples,
                extras={"train_loss": r.train_loss, "seconds": r.seconds, "steps_run": float(r.steps_run),
                        "N_total": float(r.n_params),
                        **({} if r.clipped_fraction is None else {"clipped_fraction": r.clipped_fraction})},
                pruned=r.pruned,
            )
            for r in results
        ]

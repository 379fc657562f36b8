"""Which slots of a sweep exist so far, rebuilt from the study's trials on every reconcile.

`grid` and `random` release every slot at once. `tpe` and `gp` release a grid point's slots in rounds:
its first `startup_trials`, then at most `round_size` at a time, so a population drawn together is
drawn from a model of finished results (TPE's constant liar and GP's batch acquisition keep the
members of a round apart). `adaptive` creates its slots round by round from `sweep.adaptive`: slot
`<point>#j` is the cell's j-th proposal, trained at seed `seeds[j % len(seeds)]`, with its lr fixed.

Exactly once: a new round is computed only when every slot of the cell is finished, under the
storage lock, from finished trials alone (which never change), so every worker computes the same
round; a slot that already exists keeps the lr recorded on its first trial (a failed or stale
trial is re-enqueued with it), and `reconcile` enqueues a slot only when no live trial holds it.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from scaleplan.sweep.adaptive import Estimate, Observation, Prior, Round, SearchSettings, next_round, prior_from
from scaleplan.sweep.plan import GridPoint, Slot, grid_points, plan_slots
from scaleplan.sweep.spec import SweepSpec

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # states that fill their slot for good
STAGED = ("tpe", "gp")
PriorGroup = tuple[int | None, int | None, int, int]  # (depth, D, steps, batch size): cells one width law spans


@dataclass(frozen=True)
class Release:
    """The slots that exist now, trials planned per grid point, and whether finishing trials can add slots."""

    slots: list[Slot]
    planned: dict[str, int]
    growing: bool


@dataclass(frozen=True)
class CellSearch:
    """One adaptive cell replayed from the study: its slots, its rounds' decision, and the prior it used."""

    slots: list[Slot]
    round: Round | None  # None while earlier slots of the cell are unfinished, or smaller widths run
    prior: Prior | None


def planned_counts(spec: SweepSpec) -> dict[str, int]:
    """Trials planned per grid point before any run: the plan's slots, or the budget for `adaptive`."""
    if spec.sampler == "adaptive":
        return {point.key: spec.trials_per_point for point in grid_points(spec)}
    return dict(Counter(slot.point.key for slot in plan_slots(spec)))


def released(spec: SweepSpec, trials: Sequence[FrozenTrial]) -> Release:
    """Every slot that should exist now, given the study's trials (see the module docstring)."""
    if spec.sampler == "adaptive":
        return _adaptive(spec, trials)
    slots = plan_slots(spec)
    planned = planned_counts(spec)
    if spec.sampler not in STAGED:
        return Release(slots, planned, growing=False)
    from scaleplan.sweep.sampler import round_size, startup_trials

    finished = Counter(t.user_attrs.get("point") for t in trials if t.state in FINISHED and "slot" in t.user_attrs)
    startup, size = startup_trials(spec), round_size(spec)
    opened = {
        point: planned[point] if finished[point] >= planned[point] else
        min(planned[point], startup if finished[point] < startup else finished[point] + size)
        for point in planned
    }
    kept = [slot for slot in slots if slot.index < opened[slot.point.key]]
    return Release(kept, planned, growing=len(kept) < len(slots))


def search_settings(spec: SweepSpec) -> SearchSettings:
    """The adaptive search of every cell of `spec` (its lr range, tolerance, round size and budget)."""
    from scaleplan.sweep.sampler import round_size

    lr = spec.search_param("lr")
    assert lr is not None and lr.low is not None and lr.high is not None  # the spec parser checks this
    return SearchSettings(low=lr.low, high=lr.high, tolerance=spec.tolerance, regret=spec.max_regret,
                          round_size=round_size(spec), budget=spec.trials_per_point * len(spec.seeds))


def _cells(spec: SweepSpec) -> list[GridPoint]:
    """One grid point per cell (seed = the first seed), smallest width first."""
    return sorted({dataclasses.replace(p, seed=spec.seeds[0]) for p in grid_points(spec)})


def _cell_of(spec: SweepSpec, trial: FrozenTrial) -> GridPoint:
    """The cell a trial belongs to: its grid point (every axis: width, depth, D, steps, batch size) at the first seed."""
    return dataclasses.replace(GridPoint.from_attrs(trial.user_attrs), seed=spec.seeds[0])


def _prior_group(cell: GridPoint) -> PriorGroup:
    """The cells whose optima fit one law of width: every axis of the cell but its width (and seed)."""
    return cell.depth, cell.tokens, cell.steps, cell.batch_size


def replay(spec: SweepSpec, trials: Sequence[FrozenTrial]) -> dict[GridPoint, CellSearch]:
    """Every adaptive cell's slots and next step, smallest width first (each width's prior needs the smaller ones)."""
    settings = search_settings(spec)
    by_cell: dict[GridPoint, list[FrozenTrial]] = defaultdict(list)
    for t in trials:
        if "slot" in t.user_attrs:
            by_cell[_cell_of(spec, t)].append(t)
    done: dict[PriorGroup, list[tuple[int, Estimate]]] = defaultdict(list)
    blocked: set[PriorGroup] = set()
    out: dict[GridPoint, CellSearch] = {}
    for cell in _cells(spec):
        key = _prior_group(cell)
        slots, history, complete = _existing(spec, cell, by_cell[cell])
        if key in blocked:  # a smaller width of this (depth, D, steps, batch) is still searching: no prior yet
            out[cell] = CellSearch(slots, None, None)
            continue
        prior = prior_from(done[key], cell.width)
        step = next_round(history, settings, prior) if complete else None
        if step is not None and step.lrs:
            slots += [_slot(spec, cell, len(slots) + i, lr) for i, lr in enumerate(step.lrs)]
        if step is not None and step.stopped:
            if step.estimate is not None:
                done[key].append((cell.width, step.estimate))
        else:
            blocked.add(key)
        out[cell] = CellSearch(slots, step, prior)
    return out


def _existing(spec: SweepSpec, cell: GridPoint, trials: list[FrozenTrial]) -> tuple[list[Slot], list[Observation], bool]:
    """The cell's slots so far (lr from each slot's first trial), its finished results, and whether all are finished."""
    lrs: dict[int, float] = {}
    results: dict[int, Observation] = {}
    for t in sorted(trials, key=lambda t: t.number):
        index = int(str(t.user_attrs["slot"]).rsplit("#", 1)[1])
        lr = float(t.system_attrs.get("fixed_params", t.params)["lr"])
        lrs.setdefault(index, lr)
        if t.state in FINISHED and index not in results:
            loss = t.user_attrs.get("loss")
            if loss is None or t.user_attrs.get("diverged") or not math.isfinite(float(loss)):
                loss = None
            results[index] = Observation(lrs[index], None if loss is None else float(loss))
    slots = [_slot(spec, cell, index, lrs[index]) for index in range(len(lrs))]
    history = [results[index] for index in sorted(results)]
    return slots, history, len(results) == len(lrs)


def _slot(spec: SweepSpec, cell: GridPoint, index: int, lr: float) -> Slot:
    """Proposal `index` of a cell: trained at seed `seeds[index % len(seeds)]`, lr fixed."""
    seed = spec.seeds[index % len(spec.seeds)]
    fixed = tuple((p.name, lr if p.name == "lr" else p.grid()[0]) for p in spec.search)  # type: ignore[index]
    return Slot(dataclasses.replace(cell, seed=seed), index, fixed)


def _adaptive(spec: SweepSpec, trials: Sequence[FrozenTrial]) -> Release:
    cells = replay(spec, trials)
    slots = [slot for search in cells.values() for slot in search.slots]
    planned = planned_counts(spec)
    growing = False
    for cell, search in cells.items():
        if search.round is not None and search.round.stopped:  # the cell's plan is now known exactly
            counts = Counter(slot.point.key for slot in search.slots)
            for key in (dataclasses.replace(cell, seed=seed).key for seed in spec.seeds):
                planned[key] = counts[key]
        else:
            growing = True
    return Release(slots, planned, growing)

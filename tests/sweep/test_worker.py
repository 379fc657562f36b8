"""Claiming trials: a lost race is never a claim (made deterministic by a storage that lets another
claimer in between listing and popping), and workers on one machine share a population."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from scaleplan.sweep.plan import GridPoint
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.study import SweepSession, open_sweep
from scaleplan.sweep.worker import claim

SPEC = """
[sweep]
name = "claims"
sampler = "random"  # every slot enqueued at once (adaptive, tpe and gp release theirs in rounds)
trials_per_point = {n}
[ladder]
widths = [8]
steps = [10]
[search]
lr = {{low = 1e-4, high = 1e-1}}
[objective]
callable = "sweep_objectives:quadratic"
"""


class Population:
    """An objective stand-in that trains up to `k` trials of one width together."""

    def __init__(self, k: int) -> None:
        self.k = k

    def population_size(self, point: GridPoint) -> int:
        return self.k

    def evaluate(self, requests: list, checkpoint: Any = None) -> list:
        raise AssertionError("not evaluated in these tests")


class OtherClaimsFirst:
    """A storage that, right after listing the WAITING trials, lets another worker claim before returning."""

    def __init__(self, storage: Any, other: Callable[[], None]) -> None:
        self._storage = storage
        self._other: Callable[[], None] | None = other

    def get_all_trials(self, *args: Any, **kwargs: Any) -> Any:
        listed = self._storage.get_all_trials(*args, **kwargs)
        if self._other is not None:
            other, self._other = self._other, None
            other()  # the other worker pops while this one still holds the (now stale) list
        return listed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


def session_for(tmp_path: Path, n: int) -> SweepSession:
    spec = tmp_path / "claims.toml"
    spec.write_text(SPEC.format(n=n))
    return open_sweep(load_spec(spec))


def test_a_claim_that_lost_the_race_is_not_a_claim(tmp_path: Path) -> None:
    mine = session_for(tmp_path, 4)
    theirs = open_sweep(mine.spec)  # a second worker on the same journal
    their_ids: list[int] = []
    raced = dataclasses.replace(mine, storage=OtherClaimsFirst(mine.storage, lambda: their_ids.extend(claim(theirs, Population(4), 2))))
    my_ids = claim(raced, Population(4), 4)
    waiting = [t.number for t in mine.study.get_trials() if t.state == TrialState.WAITING]
    assert len(their_ids) == 2 and len(my_ids) == 2  # they popped two first; both of those were refused to me
    assert not set(my_ids) & set(their_ids) and waiting == []
    running = [t for t in mine.study.get_trials() if t.state == TrialState.RUNNING]
    assert len(running) == 4


def test_workers_on_one_width_share_its_population(tmp_path: Path) -> None:
    session = session_for(tmp_path, 16)
    first = claim(session, Population(16), 1 << 30, workers=2)
    second = claim(session, Population(16), 1 << 30, workers=2)
    assert len(first) == len(second) == 8  # each takes half of the unfinished trials: nobody idles
    assert not set(first) & set(second)


def test_one_worker_claims_a_whole_population(tmp_path: Path) -> None:
    session = session_for(tmp_path, 16)
    assert len(claim(session, Population(16), 1 << 30)) == 16
    assert claim(session, Population(16), 1 << 30) == []

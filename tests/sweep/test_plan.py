"""Sweep plans: grid points and slots."""

from __future__ import annotations

import pytest

from scaleplan.sweep.plan import GridPoint, grid_points, plan_slots
from scaleplan.sweep.spec import parse_spec


def spec(sampler: str = "tpe", **search: object):
    raw = {
        "sweep": {"name": "p", "sampler": sampler, "seeds": [0, 1], **({"trials_per_point": 3} if sampler != "grid" else {})},
        "ladder": {"widths": [8, 16], "steps": [10, 20]},
        "search": {"batch_size": [4], **search},
        "objective": {"callable": "m:f"},
    }
    return parse_spec(raw)


def test_grid_points_order_and_keys() -> None:
    points = grid_points(spec(lr={"low": 1e-3, "high": 1e-1}))
    assert len(points) == 8
    assert points[0] == GridPoint(8, 10, 4, 0) and points[-1] == GridPoint(16, 20, 4, 1)
    assert points[0].key == "w8-s10-b4-seed0" and points[0].population_key == "w8-s10-b4"


@pytest.mark.parametrize(("sampler", "n_slots"), [("tpe", 24), ("random", 24)])
def test_slots_per_point(sampler: str, n_slots: int) -> None:
    slots = plan_slots(spec(sampler, lr={"low": 1e-3, "high": 1e-1}))
    assert len(slots) == n_slots and len({s.key for s in slots}) == n_slots
    assert all(s.fixed_params == () for s in slots)


def test_grid_slots_carry_fixed_params() -> None:
    slots = plan_slots(spec("grid", lr={"low": 1e-3, "high": 1e-1, "points": 3}, beta0=[1.0, 2.0]))
    assert len(slots) == 8 * 6
    first = [s.fixed_params for s in slots if s.point == GridPoint(8, 10, 4, 0)]
    assert first[0] == (("lr", 1e-3), ("beta0", 1.0)) and first[-1] == (("lr", 1e-1), ("beta0", 2.0))
    assert slots[0].user_attrs() == {"width": 8, "steps": 10, "batch_size": 4, "seed": 0, "point": "w8-s10-b4-seed0", "slot": "w8-s10-b4-seed0#0"}

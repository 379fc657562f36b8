"""Sweep progress: per-point status and plain-line output when not on a terminal."""

from __future__ import annotations

import io

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console

from scaleplan.sweep.progress import PointStatus, ProgressDisplay, format_duration, point_status


def trial(point: str, state: TrialState, lr: float, value: float | None, diverged: bool = False):
    return create_trial(
        state=state, value=value, params={"lr": lr}, distributions={"lr": FloatDistribution(1e-4, 1.0, log=True)},
        user_attrs={"point": point, "width": int(point[1:].split("-")[0]), "diverged": diverged},
    )


def test_point_status_counts_and_best() -> None:
    trials = [
        trial("w8-s1-b4-seed0", TrialState.COMPLETE, 1e-2, 0.5),
        trial("w8-s1-b4-seed0", TrialState.COMPLETE, 1e-1, 0.1, diverged=True),  # penalty, not a best
        trial("w8-s1-b4-seed0", TrialState.COMPLETE, 1e-3, 0.7),
        trial("w8-s1-b4-seed0", TrialState.FAIL, 1e-3, None),
        trial("w16-s1-b4-seed0", TrialState.WAITING, 1e-3, None),
    ]
    rows = point_status(trials, {"w8-s1-b4-seed0": 3, "w16-s1-b4-seed0": 3})
    assert rows == [
        PointStatus("w8-s1-b4-seed0", 8, 3, 3, 0, 1, 1, 0.5, 1e-2),
        PointStatus("w16-s1-b4-seed0", 16, 3, 0, 0, 0, 0, None, None),
    ]
    assert rows[0].finished and not rows[1].finished


@pytest.mark.parametrize(("seconds", "text"), [(None, "-"), (42.4, "42s"), (185, "3m05s"), (3720, "1h02m"), (float("inf"), "-")])
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_plain_lines_announce_each_finished_point_once() -> None:
    out = io.StringIO()
    display = ProgressDisplay(Console(file=out, force_terminal=False, width=200))
    done = PointStatus("w8-s1-b4-seed0", 8, 1, 1, 0, 0, 0, 0.5, 1e-2)
    fresh = PointStatus("w16-s1-b4-seed0", 16, 1, 0, 1, 0, 0, None, None)
    display.update([done, fresh])  # w8 was finished before this run: not announced
    display.update([done, PointStatus("w16-s1-b4-seed0", 16, 1, 1, 0, 0, 0, 0.25, 3e-3)])
    display.update([done, PointStatus("w16-s1-b4-seed0", 16, 1, 1, 0, 0, 0, 0.25, 3e-3)])
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("w16-s1-b4-seed0 done: 1/1 trials, best loss 0.25 at lr 3.000e-03 (2/2 trials, 0 running, ETA")

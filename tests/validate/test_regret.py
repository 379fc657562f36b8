import math

import pytest

from scaleplan.validate.experiment import target_lr_grid
from scaleplan.validate.regret import LrPoint, best_point, group_by_lr, regret_of


def test_group_by_lr_orders_lrs_and_seeds():
    rows = [(0.1, 1, 2.0), (0.01, 0, 3.0), (0.1, 0, 1.0), (0.01, 1, 5.0)]
    assert group_by_lr(rows) == [LrPoint(0.01, (3.0, 5.0)), LrPoint(0.1, (1.0, 2.0))]


def test_mean_and_stderr():
    p = LrPoint(0.1, (1.0, 2.0, 3.0))
    assert p.mean == 2.0
    assert math.isclose(p.stderr, 1.0 / math.sqrt(3))
    assert LrPoint(0.1, (1.0, math.inf)).mean == math.inf


def test_regret_against_best_grid_point():
    grid = [LrPoint(0.01, (2.0, 2.2)), LrPoint(0.02, (1.9, 2.1)), LrPoint(0.04, (math.nan, 2.0))]
    r = regret_of("x", LrPoint(0.03, (2.02, 2.02)), grid)
    assert (r.best_lr, r.best_loss) == (0.02, 2.0)
    assert math.isclose(r.regret, 0.01)


def test_choice_that_beats_the_grid_has_zero_regret():
    r = regret_of("x", LrPoint(0.03, (1.5,)), [LrPoint(0.01, (2.0,))])
    assert r.regret == 0.0 and r.best_lr == 0.03


def test_all_diverged_grid_is_an_error():
    with pytest.raises(ValueError, match="diverged"):
        best_point([LrPoint(0.1, (math.inf,))])


def test_target_grid_covers_both_choices_with_margin():
    grid = target_lr_grid(predicted=1e-3, naive=8e-3, step_log2=0.5, margin_log2=1.5)
    logs = sorted(math.log2(g / 1e-3) for g in grid)
    assert logs[0] == -1.5 and logs[-1] == 3 + 1.5
    assert all(math.isclose(b - a, 0.5) or math.isclose(b - a, 1.0) for a, b in zip(logs, logs[1:]))
    assert 0.0 not in logs  # the prediction itself is trained separately, not twice
    assert len(grid) == 12

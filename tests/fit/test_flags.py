"""What the fit flags from the trials themselves: the seeds an optimum's lr lost to divergence."""

from __future__ import annotations

import itertools

import pandas as pd

from scaleplan.fit.data import prepare_trials
from scaleplan.fit.flags import survivor_optima


def sweep(diverged_at: dict[int, float]) -> pd.DataFrame:
    """4 seeds at 5 lrs per width; at width w, the seeds 0-1 of lr diverged_at[w] diverged, and the two that finished
    there drew the lowest losses (the survivors of an unstable lr)."""
    rows = []
    for width, lr, seed in itertools.product((16, 64), (1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2), range(4)):
        lost = diverged_at.get(width) == lr and seed < 2
        loss = (0.9 if lr == diverged_at.get(width) else 1.0 + abs(lr - 4e-3) * 10) + 0.01 * seed
        rows.append(dict(width=width, lr=lr, seed=seed, D=1e6, loss=float("nan") if lost else loss, diverged=lost))
    return pd.DataFrame(rows)


def test_an_optimum_at_an_lr_that_lost_seeds_is_flagged_with_the_count() -> None:
    (flag,) = survivor_optima(prepare_trials(sweep({64: 8e-3}), x="width"))
    assert flag.startswith("1 cell(s) lost seeds to divergence at their best lr (width=64, D=1e+06: 2 of 4 at lr 0.008)")
    assert "survivors" in flag


def test_seeds_lost_away_from_the_best_lr_or_none_lost_are_not_flagged() -> None:
    assert survivor_optima(prepare_trials(sweep({}), x="width")) == ()
    lost_far = sweep({})  # the highest lr lost seeds, the best lr lost none: no survivor bias there
    far = (lost_far["width"] == 64) & (lost_far["lr"] == 1.6e-2) & (lost_far["seed"] < 2)
    lost_far.loc[far, "diverged"], lost_far.loc[far, "loss"] = True, float("nan")
    assert survivor_optima(prepare_trials(lost_far, x="width")) == ()

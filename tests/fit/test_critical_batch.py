"""Tests of scaleplan.fit.critical_batch: exact recovery and Zhang et al.'s steps-to-target data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaleplan.errors import ScaleplanError
from scaleplan.fit.critical_batch import fit_critical_batch, fit_critical_batch_law
from scaleplan.plan.sizes import parse_size

DATA = Path(__file__).resolve().parents[1] / "data"
BATCHES = np.geomspace(32768, 8388608, 9)


@pytest.mark.parametrize("s_min, b_crit", [(1000.0, 2e5), (2500.0, 3e6), (40.0, 1e7)])
def test_exact_recovery(s_min: float, b_crit: float) -> None:
    fit = fit_critical_batch(BATCHES, s_min * (1 + b_crit / BATCHES))
    assert fit.s_min == pytest.approx(s_min, rel=1e-6)
    assert fit.b_crit == pytest.approx(b_crit, rel=1e-6)


def test_zhang_critical_batch_grows_with_model_size() -> None:
    data = pd.read_csv(DATA / "zhang_cbs_steps_to_target_loss.csv")
    sizes = data["model_size"].str.replace("-ablation", "").map(parse_size).to_numpy()
    law = fit_critical_batch_law(sizes, data["batch_size_tokens"].to_numpy(), data["min_steps_to_goal"].to_numpy())
    assert [c.size for c in law.per_size] == [85e6, 151e6, 302e6, 604e6, 1.2e9]
    assert law.monotone
    assert [round(c.b_crit / 1e6, 2) for c in law.per_size] == [1.14, 1.69, 2.78, 4.05, 5.70]
    lo, hi = law.law.conf_int["N"]
    assert law.law.exponents["N"] == pytest.approx(0.610, abs=0.001)
    assert (round(lo, 3), round(hi, 3)) == (0.522, 0.698)
    assert law.law.dof == 3


@pytest.mark.parametrize(
    "batch, steps, message",
    [(BATCHES[:2], [10.0, 5.0], "at least 3 distinct batch sizes"), (BATCHES[:3], [10.0, 0.0, 5.0], "positive and finite")],
)
def test_errors(batch: np.ndarray, steps: list, message: str) -> None:
    with pytest.raises(ScaleplanError, match=message):
        fit_critical_batch(batch, np.asarray(steps))


def test_law_needs_two_sizes() -> None:
    with pytest.raises(ScaleplanError, match="at least 2 distinct model sizes"):
        fit_critical_batch_law(np.full(9, 1e8), BATCHES, 100 * (1 + 1e6 / BATCHES))

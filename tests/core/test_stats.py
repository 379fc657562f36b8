"""Pure-Python Student-t quantiles against scipy's (the reference implementation)."""

from __future__ import annotations

import pytest
from scipy import stats

from scaleplan.core.stats import student_t_cdf, student_t_quantile, two_sided_quantile


@pytest.mark.parametrize("dof", [1, 2, 3, 4.5, 7, 12, 30, 100, 1000])
@pytest.mark.parametrize("p", [0.001, 0.025, 0.3, 0.5001, 0.75, 0.9, 0.975, 0.995, 0.9995])
def test_quantile_matches_scipy(p: float, dof: float) -> None:
    assert student_t_quantile(p, dof) == pytest.approx(stats.t.ppf(p, dof), rel=1e-7, abs=1e-9)
    assert student_t_cdf(stats.t.ppf(p, dof), dof) == pytest.approx(p, rel=1e-9)


def test_two_sided_quantile() -> None:
    assert two_sided_quantile(0.95, 1) == pytest.approx(12.7062047, rel=1e-7)  # the 1-dof interval of 3 widths
    assert two_sided_quantile(0.95, None) == pytest.approx(1.959963985, rel=1e-9)


def test_bad_levels_raise() -> None:
    with pytest.raises(ValueError):
        student_t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        student_t_quantile(0.5, 0)

"""Regret statistics: raw and smoothed regret, jackknife standard errors over seeds, diverged seeds."""

import math

import pytest

from scaleplan.validate.regret import (
    LrPoint, OptimumReplicates, best_point, describe, group_by_lr, interval_of_optima, jackknife_se, optimum_interval, regret_of,
)


def test_group_by_lr_orders_lrs_and_seeds():
    rows = [(0.1, 1, 2.0), (0.01, 0, 3.0), (0.1, 0, 1.0), (0.01, 1, 5.0)]
    assert group_by_lr(rows) == [LrPoint(0.01, (3.0, 5.0), (0, 1)), LrPoint(0.1, (1.0, 2.0), (0, 1))]


def test_a_seed_trained_twice_at_one_lr_counts_once():
    """The prediction trained beside an equal naive lr gives each (lr, seed) twice: 10 'seeds' of 5 would shrink the s.e."""
    rows = [(0.1, seed, 1.0 + seed) for seed in range(3)] * 2 + [(0.2, 0, 3.0)]
    assert group_by_lr(rows) == [LrPoint(0.1, (1.0, 2.0, 3.0), (0, 1, 2)), LrPoint(0.2, (3.0,), (0,))]


def test_lrs_trained_on_different_seeds_get_no_paired_error():
    points = group_by_lr([(0.01, 0, 2.0), (0.01, 1, 2.1), (0.01, 2, 2.2), (0.02, 1, 2.05), (0.02, 2, 2.1), (0.02, 3, 2.3)])
    r = regret_of("x", points[1], points)
    assert r.raw is not None and r.raw_se is None and describe(r) == f"{r.raw:.2%}"


def test_mean_stderr_and_diverged_seeds():
    p = LrPoint(0.1, (1.0, 2.0, 3.0))
    assert p.mean == 2.0 and p.finite and p.n_diverged == 0
    assert math.isclose(p.stderr, 1.0 / math.sqrt(3))
    q = LrPoint(0.1, (1.0, math.inf, math.nan, 3.0))
    assert q.mean == math.inf and q.n_diverged == 2 and q.diverged_fraction == 0.5 and q.finite_mean == 2.0
    assert q.stderr is None and LrPoint(0.1, (1.0,)).stderr is None


def jackknife_by_hand(choice: tuple[float, ...], best: tuple[float, ...]) -> float:
    """sqrt((n-1)/n * sum_i (r_(-i) - mean r)^2), r_(-i) the ratio of means without seed i, minus 1."""
    n = len(choice)
    reps = [(sum(choice) - choice[i]) / (sum(best) - best[i]) - 1 for i in range(n)]
    centre = sum(reps) / n
    return math.sqrt((n - 1) / n * sum((r - centre) ** 2 for r in reps))


def test_raw_regret_and_its_paired_jackknife_error():
    best = LrPoint(0.02, (1.90, 2.00, 2.10, 1.95, 2.05))
    choice = LrPoint(0.03, (1.95, 2.00, 2.20, 2.00, 2.05))
    far = LrPoint(0.5, (3.0, math.nan, 3.1, 3.0, 3.0))  # a seed diverged: never the best
    r = regret_of("x", choice, [LrPoint(0.01, (2.2, 2.3, 2.4, 2.2, 2.3)), best, far])
    assert (r.best_lr, r.best_loss) == (0.02, 2.0)
    assert r.raw == pytest.approx(10.2 / 5 / 2.0 - 1)  # 2.04 / 2.00 - 1 = 2%
    # the seeds are shared, so the error is that of the paired ratio (differences 0.05, 0, 0.1, 0.05, 0:
    # s.e. 0.0187 / 2.0 = 0.94%), not the unpaired hypot of the two means' errors (2.8%)
    assert r.raw_se == pytest.approx(jackknife_by_hand(choice.losses, best.losses), rel=1e-12)
    assert r.raw_se == pytest.approx(0.0093621, rel=1e-4)


def test_the_best_lr_is_picked_again_in_each_jackknife_replicate():
    """The choice is the lowest mean with every seed, but not with seed 0 left out: its raw regret is 0 and its
    s.e. is not (a fixed best would give 0.00% ± 0.00%)."""
    choice = LrPoint(0.02, (1.80, 2.10, 2.10, 2.10))
    other = LrPoint(0.04, (2.30, 2.00, 2.00, 2.00))
    r = regret_of("x", choice, [choice, other])
    assert r.raw == 0.0 and r.raw_se == pytest.approx(math.sqrt(3 / 4 * ((2.1 / 2.0 - 1) * 3 / 4) ** 2 * 4 / 3), rel=1e-9)
    assert describe(r) == f"0.00% ± {r.raw_se:.2%}"


def test_a_choice_that_is_best_with_any_seed_left_out_is_reported_as_the_best_lr():
    choice = LrPoint(0.02, (1.9, 2.0, 2.1))
    r = regret_of("x", choice, [choice, LrPoint(0.04, (2.4, 2.5, 2.6))])
    assert (r.raw, r.raw_se) == (0.0, 0.0) and describe(r) == "0.00% (best lr)"


def test_jackknife_of_a_mean_is_its_standard_error():
    values = [1.0, 2.0, 4.0, 7.0]
    mean = sum(values) / 4
    reps = [(sum(values) - v) / 3 for v in values]
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    assert jackknife_se(mean, reps) == pytest.approx(sd / 2)
    assert jackknife_se(mean, [1.0]) is None


def test_smoothed_regret_is_exact_on_an_asymmetric_bowl():
    """A noise-free asymmetric curve: the local model recovers its minimum and the true regret, which a
    plain parabola through the same points does not (it dips below the minimum)."""
    def loss(lr: float) -> float:
        d = math.log2(lr / 0.01)
        return 2.0 * (1 + (0.02 if d < 0 else 0.08) * d * d)

    lrs = [0.01 * 2 ** (k / 2 + 0.15) for k in range(-6, 6)]  # the optimum falls between grid points
    points = [LrPoint(lr, (loss(lr),) * 3) for lr in lrs]
    choice = LrPoint(0.01 * 2**0.6, (loss(0.01 * 2**0.6),) * 3)
    r = regret_of("x", choice, points)
    assert r.smoothed_basis == "model"
    assert r.smoothed == pytest.approx(0.08 * 0.36, abs=1e-5)  # the truth: 2.88%
    assert r.raw == pytest.approx(loss(choice.lr) / loss(0.01 * 2**0.15) - 1)  # against the best grid point: lower
    assert r.raw < r.smoothed and r.smoothed_se == 0.0 and r.raw_se == 0.0


def test_a_choice_outside_the_local_window_is_measured_against_the_model_minimum():
    points = [LrPoint(0.01 * 2 ** (k / 2), (1.0 + 0.01 * (k / 2) ** 2,) * 2) for k in range(-4, 5)]
    choice = LrPoint(0.01 * 2**3, (1.5, 1.5))  # 3 octaves away
    r = regret_of("x", choice, points)
    assert r.smoothed_basis == "measured" and r.smoothed == pytest.approx(0.5, abs=1e-6)


def test_a_choice_with_diverged_seeds_is_reported_as_diverged():
    points = [LrPoint(0.01, (1.0, 1.1)), LrPoint(0.02, (0.9, 1.0)), LrPoint(0.04, (1.2, 1.3))]
    r = regret_of("x", LrPoint(0.08, (math.inf, 1.9)), points)
    assert (r.raw, r.raw_se, r.smoothed, r.diverged, r.n_seeds) == (None, None, None, 1, 2)
    assert r.finite_raw == pytest.approx(1.9 / 0.95 - 1)
    assert describe(r) == "diverged on 1/2 seeds; its finite seeds, survivors: 100.00%"
    assert "inf" not in describe(r, smoothed=True)


def test_choice_that_beats_the_grid_has_zero_regret():
    r = regret_of("x", LrPoint(0.03, (1.5,)), [LrPoint(0.01, (2.0,))])
    assert r.raw == 0.0 and r.best_lr == 0.03 and r.raw_se is None
    assert describe(r) == "0.00%"


def test_all_diverged_is_an_error():
    with pytest.raises(ValueError, match="diverged"):
        best_point([LrPoint(0.1, (math.inf, 1.0))])


def seed_bowls(centres: list[float]) -> list[LrPoint]:
    """Nine lrs a half octave apart; seed i's loss a bowl in log2 lr around its own optimum `centres[i]`."""
    lrs = [0.02 * 2 ** (k / 2) for k in range(-4, 5)]
    return [LrPoint(lr, tuple(2.0 + 0.05 * math.log2(lr / c) ** 2 for c in centres)) for lr in lrs]


def test_the_optimum_interval_spans_how_far_the_seeds_move_the_optimum():
    """Seeds whose own optima agree pin the optimum (a zero-width interval at it); seeds whose optima spread over
    an octave give an interval inside that spread that excludes neither end's neighbourhood of the centre."""
    low, high = optimum_interval(seed_bowls([0.02] * 6))
    assert low == pytest.approx(0.02, rel=1e-6) and high == pytest.approx(0.02, rel=1e-6)
    spread = [0.02 * 2 ** (k / 5 - 0.5) for k in range(6)]  # 0.0141 to 0.0283: one octave
    low, high = optimum_interval(seed_bowls(spread))
    assert spread[0] < low < 0.02 < high < spread[-1]
    assert math.log2(high / low) > 0.3


def test_the_optimum_interval_needs_five_seeds_and_skips_diverged_lrs():
    assert optimum_interval(seed_bowls([0.015, 0.02, 0.025, 0.018])) is None  # 4 seeds: too few distinct resamples
    points = seed_bowls([0.015, 0.02, 0.025, 0.018, 0.022]) + [LrPoint(0.5, (math.inf, 3.0, 3.0, 3.0, 3.0))]
    low, high = optimum_interval(points)
    assert 0.015 * 0.999 <= low <= high <= 0.025 * 1.001  # the seed optima, up to the local model's fit


def test_the_optimum_interval_needs_95_percent_of_the_replicates_to_give_a_model() -> None:
    """The replicates carry how many were drawn, so the interval cannot be judged against another count."""
    optima = [0.01 * 1.01**k for k in range(95)]
    assert interval_of_optima(OptimumReplicates(optima, attempted=100)) is not None
    assert interval_of_optima(OptimumReplicates(optima, attempted=101)) is None

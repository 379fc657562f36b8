"""The adaptive lr search of one cell: bracket, refine, stop on the interval, cap at divergence, priors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaleplan.sweep.adaptive import (
    HALF_MIN, Estimate, Observation, Prior, SearchSettings, estimate, next_round, prior_from,
)

SETTINGS = SearchSettings(low=1e-5, high=1e-1, tolerance=0.1, regret=0.003, round_size=4, budget=40)


def rounds(loss, settings: SearchSettings = SETTINGS, prior: Prior | None = None):
    """Drive `next_round` to its end with `loss(lr)` (None = diverged); returns every round and the last step."""
    history: list[Observation] = []
    done: list[list[Observation]] = []
    while True:
        step = next_round(history, settings, prior)
        if step.stopped:
            return done, step
        assert len(step.lrs) <= settings.round_size + 1
        done.append([Observation(lr, loss(lr)) for lr in step.lrs])
        history += done[-1]


def run(loss, settings: SearchSettings = SETTINGS, prior: Prior | None = None):
    """The history (every trial, in order) and the last step."""
    done, last = rounds(loss, settings, prior)
    return [o for r in done for o in r], last


def parabola(opt: float, curvature: float = 0.05):
    return lambda lr: 1.0 + curvature * math.log(lr / opt) ** 2


def test_noiseless_parabola_is_found_from_a_cold_start() -> None:
    history, last = run(parabola(3e-3))
    assert last.reason == "converged"
    assert last.estimate is not None and last.estimate.lr == pytest.approx(3e-3, rel=1e-6)
    assert len(history) <= 13  # a bracket of 5, then one refinement round
    assert all(SETTINGS.low <= o.lr <= SETTINGS.high for o in history)


def test_noisy_optimum_is_located_within_tolerance_and_its_interval_mostly_covers_it() -> None:
    """Loss 1 + 0.1 (cosh(ln(lr / 3e-3)) - 1) (a parabola near the optimum, steeper far away) plus 1% noise."""
    settings = SearchSettings(low=1e-5, high=1e-1, tolerance=0.1, regret=1e-9, round_size=4, budget=200)
    errors, covered, sizes = [], 0, []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        history, last = run(lambda lr: 1 + 0.1 * (math.cosh(math.log(lr / 3e-3)) - 1) + 0.01 * rng.standard_normal(),
                            settings)
        assert last.reason == "converged"  # on the lr interval (regret is switched off)
        found = last.estimate
        assert found is not None and math.log(found.high / found.lr) <= math.log1p(0.1)
        errors.append(abs(math.log(found.lr / 3e-3)))
        covered += found.low < 3e-3 < found.high
        sizes.append(len(history))
    assert np.median(errors) < 0.05 and max(errors) < 0.2
    assert covered >= 7  # a 95% interval of a local model: misses when the design is lopsided
    assert 9 <= min(sizes) and max(sizes) < 100


def test_budget_caps_the_trials() -> None:
    rng = np.random.default_rng(1)
    settings = SearchSettings(low=1e-5, high=1e-1, tolerance=0.001, regret=1e-9, round_size=4, budget=11)
    history, last = run(lambda lr: parabola(3e-3)(lr) + 0.01 * rng.standard_normal(), settings)
    assert len(history) == 11 and last.reason == "budget"


def test_a_flat_optimum_stops_early_on_regret() -> None:
    """Where the loss barely depends on lr, any lr in the interval costs < 0.3%: the search stops early."""
    rng = np.random.default_rng(2)
    flat = lambda lr: parabola(3e-3, 0.004)(lr) + 0.001 * rng.standard_normal()  # noqa: E731
    strict = SearchSettings(low=1e-5, high=1e-1, tolerance=0.1, regret=1e-9, round_size=4, budget=60)
    loose = SearchSettings(low=1e-5, high=1e-1, tolerance=0.1, regret=0.003, round_size=4, budget=60)
    rng = np.random.default_rng(2)
    history_loose, last = run(flat, loose)
    assert last.reason == "converged" and last.estimate is not None and last.estimate.regret <= 0.003
    rng = np.random.default_rng(2)
    history_strict, _ = run(flat, strict)
    assert len(history_loose) < len(history_strict)


def test_diverged_trials_cap_every_later_proposal() -> None:
    cliff = 5e-3
    loss = lambda lr: None if lr > cliff else 1.0 + 0.05 * math.log(lr / 4e-3) ** 2  # noqa: E731
    done, last = rounds(loss)
    first = next(i for i, r in enumerate(done) if any(o.loss is None for o in r))
    smallest = min(o.lr for o in done[first] if o.loss is None)
    later = [o.lr for r in done[first + 1:] for o in r]
    assert later and max(later) < smallest
    assert last.estimate is not None and last.estimate.lr == pytest.approx(4e-3, rel=1e-6)


def test_warm_start_brackets_the_prior_and_extends_when_the_optimum_lies_outside() -> None:
    prior = Prior(lr=1e-3, factor=2.0)
    first = next_round([], SETTINGS, prior)
    assert first.reason == "bracket"
    assert min(first.lrs) == pytest.approx(5e-4) and max(first.lrs) == pytest.approx(2e-3)
    history = [Observation(lr, parabola(1e-4)(lr)) for lr in first.lrs]  # the optimum is 10x below the prior
    second = next_round(history, SETTINGS, prior)
    assert second.reason == "extend-down" and max(second.lrs) < min(first.lrs)
    history, last = run(parabola(1e-4), prior=prior)
    assert last.estimate is not None and last.estimate.lr == pytest.approx(1e-4, rel=1e-6)


def test_optimum_beyond_the_range_stops_at_its_edge() -> None:
    history, last = run(parabola(1.0))  # optimum at lr = 1, the range ends at 0.1
    assert last.reason == "range-edge"
    assert last.estimate is None or not last.estimate.bracketed
    assert max(o.lr for o in history) == pytest.approx(0.1)


def test_everything_diverged_steps_down() -> None:
    step = next_round([Observation(1e-2, None), Observation(3e-2, None)], SETTINGS)
    assert step.reason == "no-finite-loss" and max(step.lrs) < 1e-2


def test_estimate_needs_three_lrs_and_reports_no_interval_without_residual_dof() -> None:
    assert estimate([Observation(1e-3, 1.0), Observation(2e-3, 0.9)]) is None
    three = estimate([Observation(lr, parabola(2e-3)(lr)) for lr in (1e-3, 2e-3, 4e-3)])
    assert three is not None and three.lr == pytest.approx(2e-3) and (three.low, three.high) == (0.0, math.inf)


def test_prior_from_one_width_allows_lr_proportional_to_width_to_the_plus_minus_one() -> None:
    one = [(64, Estimate(2e-3, 1.9e-3, 2.1e-3, True))]
    prior = prior_from(one, 256)
    assert prior is not None and prior.lr == pytest.approx(2e-3) and prior.factor == pytest.approx(4.0)


def test_prior_from_widths_follows_the_power_law_and_weights_by_precision() -> None:
    law = lambda w: 0.1 * w ** -0.5  # noqa: E731
    tight = [(w, Estimate(law(w), law(w) / 1.05, law(w) * 1.05, True)) for w in (32, 64, 128)]
    prior = prior_from(tight, 512)
    assert prior is not None and prior.lr == pytest.approx(law(512), rel=1e-9)
    assert prior.factor == pytest.approx(math.exp(HALF_MIN))  # a tight law: the narrowest bracket
    wild = Estimate(law(64) * 20, law(64) * 20 / 30, law(64) * 20 * 30, True)  # a loose optimum barely counts
    mixed = prior_from([tight[0], (64, wild), tight[2]], 512)
    assert mixed is not None and abs(math.log(mixed.lr / law(512))) < 0.05
    unknown = [(64, Estimate(1e-3, 0.0, math.inf, True))]
    assert prior_from(unknown, 128) is None


def test_estimate_reports_its_parabola_in_ln_lr() -> None:
    """The last fit's coefficients in ln lr itself (what `scaleplan fit --method vertex` draws and reads its loss from)."""
    lrs = 2e-3 * np.exp(np.linspace(-1.5, 1.5, 9))
    found = estimate([Observation(lr, 1.0 + 0.05 * math.log(lr / 2e-3) ** 2) for lr in lrs])
    assert found is not None and found.parabola is not None
    c0, c1, c2 = found.parabola
    assert c2 == pytest.approx(0.05) and -c1 / (2 * c2) == pytest.approx(math.log(found.lr))
    assert c0 + c1 * math.log(2e-3) + c2 * math.log(2e-3) ** 2 == pytest.approx(1.0)
    concave = estimate([Observation(lr, 1.0 - 0.05 * math.log(lr / 2e-3) ** 2) for lr in lrs])
    assert concave is not None and concave.parabola is None


@pytest.mark.parametrize("optimum", [1.0, 1e-7])
def test_proposals_at_a_range_end_are_that_end_exactly(optimum: float) -> None:
    """The search works in ln lr and exp(ln 0.1) is 0.10000000000000002: before, the proposal at the top of the range
    lay above it, and Optuna warned that the fixed lr was out of its range."""
    history, last = run(parabola(optimum))
    assert last.reason == "range-edge"
    assert all(SETTINGS.low <= o.lr <= SETTINGS.high for o in history)
    assert (SETTINGS.high if optimum > SETTINGS.high else SETTINGS.low) in {o.lr for o in history}

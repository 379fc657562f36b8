"""Weight-decay validation: regrets of (lr, lambda) choices on a known bowl, the target grid, bad input, a tiny run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from scaleplan.errors import InputError
from scaleplan.laws import LawFile
from scaleplan.validate.weight_decay import (
    DecayPoint, decay_regret, format_regret, target_grid, validate_weight_decay,
)
from tiny_specs import WEIGHT_DECAY_MLP as SPEC


def bowl(lr: float, wd: float) -> float:
    return 2.0 + 0.05 * math.log(lr / 1e-2) ** 2 + 0.02 * math.log(wd / 0.1) ** 2


def points(noise: float = 0.0, seeds: int = 5) -> list[DecayPoint]:
    rng = np.random.default_rng(0)
    pairs = [(lr, wd) for lr in np.geomspace(2.5e-3, 4e-2, 5) for wd in np.geomspace(0.025, 0.4, 5)]
    return [DecayPoint(lr, tuple(bowl(lr, wd) + noise * rng.standard_normal(seeds)), weight_decay=wd) for lr, wd in pairs]


def test_regrets_on_an_exact_bowl() -> None:
    grid = points()
    choice = DecayPoint(1e-2, (bowl(1e-2, 0.2),) * 5, weight_decay=0.2)
    r = decay_regret("c", choice, grid, steps=100, convention="torch")
    truth = bowl(1e-2, 0.2) / 2.0 - 1.0  # the grid's best point is the bowl's minimum (1e-2, 0.1)
    assert r.raw == pytest.approx(truth, rel=1e-9) and r.smoothed == pytest.approx(truth, rel=1e-6)
    assert r.smoothed_basis == "model" and r.raw_se == pytest.approx(0.0, abs=1e-12)
    assert r.tau == pytest.approx(1 / (1e-2 * 0.2 * 100)) and (r.best_lr, r.best_weight_decay) == pytest.approx((1e-2, 0.1))


def test_noisy_seeds_give_a_standard_error_and_diverged_seeds_are_reported() -> None:
    grid = points(noise=0.004)
    r = decay_regret("c", grid[13], grid, steps=100, convention="torch")  # lambda 0.2: one octave above the optimum
    truth = bowl(grid[13].lr, 0.2) / 2.0 - 1.0
    assert 0 < r.raw_se < 0.005 and 0 < r.smoothed_se < 0.005
    assert abs(r.smoothed - truth) < 3 * r.smoothed_se and abs(r.raw - truth) < 3 * r.raw_se + 0.004
    blown = DecayPoint(4e-2, (2.1, math.inf, 2.2, 2.1, 2.0), weight_decay=0.4)
    d = decay_regret("d", blown, grid, steps=100, convention="torch")
    assert (d.raw, d.smoothed, d.diverged) == (None, None, 1) and format_regret(d) == "diverged on 1/5 seeds"


def test_a_choice_outside_the_quadratic_window_is_measured() -> None:
    far = DecayPoint(1e-2, (bowl(1e-2, 3.0),) * 5, weight_decay=3.0)
    r = decay_regret("far", far, points(), steps=100, convention="torch")
    assert r.smoothed_basis == "measured" and r.smoothed == pytest.approx(bowl(1e-2, 3.0) / 2.0 - 1.0, rel=1e-6)
    assert "measured" in format_regret(r, smoothed=True)


def test_target_grid_covers_both_choices() -> None:
    grid = target_grid(1e-2, 0.1, 0.8)
    lrs, wds = sorted({a for a, _ in grid}), sorted({b for _, b in grid})
    assert lrs == pytest.approx([5e-3, 5e-3 * 2**0.5, 1e-2, 1e-2 * 2**0.5, 2e-2])
    assert wds[0] <= 0.1 * 2**-1.5 and wds[-1] >= 0.8 * 2**1.5 and 0.1 in wds  # anchored on the prediction
    assert len(grid) == len(lrs) * len(wds)


@pytest.mark.parametrize(
    "change, kwargs, message",
    [
        ("", {"target_width": 8}, "target width 8 and steps 24 must be >= 8x the base width 2 and >= 4x"),
        ("", {"seeds": 3}, "--seeds 3: a regret near 1% needs at least 5 seeds"),
        ('steps = [3, 6]', {}, "needs at least 2 widths and 2 step counts"),
        ('wd_tau = [0.4, 1.0, 2.5]', {}, "sweeps lr and weight_decay (or wd_tau) only"),
        ("steps = [3, 6]\n", {}, "transfers over width and steps, not depth: drop [ladder] depths"),
    ],
)
def test_what_cannot_be_validated_is_refused_before_training(tmp_path: Path, change: str, kwargs: dict, message: str) -> None:
    text = SPEC
    if change == "steps = [3, 6]":
        text = SPEC.replace(change, "steps = [10]")
    elif change == "steps = [3, 6]\n":
        text = SPEC.replace(change, change + "depths = [2]\n")
    elif change:
        text = SPEC.replace(change, "init_std = [0.5, 1.0]")
    path = tmp_path / "wd.toml"
    path.write_text(text)
    args = {"target_width": 16, "target_steps": 24, "seeds": 5, **kwargs}
    with pytest.raises(InputError) as info:
        validate_weight_decay(path, out_dir=tmp_path / "out", n_boot=0, log=lambda m: None, **args)
    assert message in str(info.value)
    assert not (tmp_path / "wd-tiny.journal").exists()


def test_a_tiny_weight_decay_validation_runs_end_to_end(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from scaleplan.cli import cli

    path = tmp_path / "wd.toml"
    path.write_text(SPEC)
    out = tmp_path / "out"
    args = ["validate", str(path), "--target-width", "16", "--target-steps", "24", "--seeds", "5", "--out", str(out),
            "--name", "wd", "--bootstrap", "10", "--grid-step", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "wd-tiny: predicted (lr, lambda) regret" in result.output and "naive lambda" in result.output
    report = (out / "wd-wd-tiny.md").read_text()
    assert "tau* = " in report and "| predicted (lr, lambda) |" in report and "--target-steps 24" in report
    assert (out / "wd-wd-tiny.png").stat().st_size > 10_000 and (out / "wd-tiny.json").is_file()
    rows = [line for line in report.splitlines() if line.startswith("| ") and line.count("/5 |") == 1]
    assert len(rows) >= 5 * 3  # every (lr, lambda) at the target (5 lrs x 3+ lambdas), 5 seeds each
    law = LawFile.load(out / "wd-tiny.json")
    assert law.weight_decay.convention == "torch" and law.parametrization.optimizer == "adamw"
    cached = (out / "wd-tiny-target-w16-s24.csv").read_text().splitlines()
    assert cached[0].startswith("# identity: ") and cached[1] == "lr,weight_decay,seed,loss" and len(cached) - 2 == 5 * len(rows)
    again = CliRunner().invoke(cli, args)  # resumes: the sweep and the target runs are all there
    assert again.exit_code == 0 and "of them already in" in again.output and "; 0 to train" in again.output
    assert (out / "wd-wd-tiny.md").read_text() == report


def test_the_smoothed_regret_reads_the_quadratic_not_the_choice_s_own_noise() -> None:
    grid = points()
    wd = 0.1 * 2**0.5  # between grid lambdas, inside the quadratic's window
    truth = bowl(1e-2, wd) / 2.0 - 1.0
    unlucky = DecayPoint(1e-2, (bowl(1e-2, wd) + 0.01,) * 5, weight_decay=wd)  # its seeds ran 0.5% high
    r = decay_regret("unlucky", unlucky, grid, steps=100, convention="torch")
    assert r.raw == pytest.approx(truth + 0.005, abs=1e-9)
    assert r.smoothed_basis == "model" and abs(r.smoothed - truth) < 0.001


@pytest.mark.parametrize(
    "best, more_lrs, more_wds",
    [((1e-2, 0.1), [], []), ((4e-2, 0.1), [8e-2], []), ((1e-2, 0.025), [], [0.025 / 2**1.5]), ((2.5e-3, 0.4), [1.25e-3], [0.4 * 2**1.5])],
)
def test_grid_extension_steps_beyond_the_edges_the_best_point_touches(best, more_lrs, more_wds) -> None:
    from scaleplan.validate.weight_decay import grid_extension

    lrs, wds = [2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2], [0.025, 0.1, 0.4]
    got = grid_extension(lrs, wds, DecayPoint(best[0], (2.0,), weight_decay=best[1]), 1.0, 1.5)
    assert got[0] == pytest.approx(more_lrs) and got[1] == pytest.approx(more_wds)


@pytest.mark.parametrize(
    "smoothed, more_lrs, more_wds",
    [((1e-2, 0.1), [], []), ((4e-2, 0.025), [8e-2], [0.025 / 2**1.5]), ((4e-2 / 2**0.4, 0.4 / 2**0.7), [8e-2], [0.4 * 2**1.5]),
     ((4e-2 / 2**0.6, 0.4 / 2**0.8), [], [])],
)
def test_grid_extension_steps_beyond_the_edges_the_smoothed_minimum_is_within_half_a_step_of(smoothed, more_lrs, more_wds) -> None:
    """The best point inside; the smoothing quadratic's box minimum on an edge, within half a step of one (lr step 1,
    lambda step 1.5 octaves), or further in."""
    from scaleplan.fit.weight_decay import BoxMinimum
    from scaleplan.validate.weight_decay import grid_extension

    lrs, wds = [2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2], [0.025, 0.1, 0.4]
    low = BoxMinimum(smoothed[0], smoothed[1], 2.0, ())
    got = grid_extension(lrs, wds, DecayPoint(1e-2, (2.0,), weight_decay=0.1), 1.0, 1.5, low)
    assert got[0] == pytest.approx(more_lrs) and got[1] == pytest.approx(more_wds)


def kinked_in_lambda(lr: float, wd: float) -> float:
    """A bowl in lr (minimum at lr 2, rising 1% by the grid's ends) whose lambda profile is lowest at 0.1 * 2^-1.1, between the grid's two smallest
    lambdas (0.1 * 2^-1.5 and 0.1 * 2^-0.75), steep below it and rising linearly above: the lowest mean is at the
    second-smallest lambda, but the quadratic through the points, pulled by the long linear side, is lowest at the
    smallest."""
    v = math.log2(wd / 0.1) + 1.1
    return 2.0 + 0.02 * (math.log2(lr) - 1) ** 2 + (0.02 * v * v if v < 0 else 0.008 * v)


def test_the_target_grid_is_extended_when_the_smoothed_minimum_sits_on_its_edge() -> None:
    """The best point is inside the grid, the smoothing quadratic's box minimum is on its low-lambda edge: one lambda
    below it is added across every lr (the smoothed regret needs its minimum bracketed), after which it is inside."""
    from scaleplan.validate.weight_decay import extend_decay_grid, grid_extension, model_of

    lrs, wds = [2.0 ** (k / 2) for k in range(5)], [0.1 * 2 ** (0.75 * k) for k in range(-2, 3)]
    grid = [(a, b) for a in lrs for b in wds]
    first = [DecayPoint(a, (kinked_in_lambda(a, b),) * 5, weight_decay=b) for a, b in grid]
    best, low = min(first, key=lambda p: p.mean), model_of(first).box_minimum()
    assert (best.lr, best.weight_decay) == pytest.approx((2.0, wds[1])) and low.edges == ("low lambda",)
    assert grid_extension(lrs, wds, best, 0.5, 0.75) == ([], [])  # the best point alone would not extend it

    asked: list[list[tuple[float, float]]] = []

    def train(pairs: list[tuple[float, float]]) -> dict[tuple[float, float], tuple[float, ...]]:
        asked.append(pairs)
        return {(a, b): (kinked_in_lambda(a, b),) * 5 for a, b in pairs}

    messages: list[str] = []
    points, on_edge = extend_decay_grid(lrs, wds, grid, train, 0.5, 0.75, messages.append)
    added = wds[0] * 2**-0.75
    assert len(asked) == 2 and not on_edge
    new = sorted(set(asked[1]) - set(grid))
    assert [a for a, _ in new] == lrs and [b for _, b in new] == pytest.approx([added] * 5)
    assert len(points) == 30 and messages == [
        "smoothing quadratic's minimum (lr 2, lambda 0.03536) is on the grid's edge: adding lr [], lambda ['0.021']"]
    assert model_of(points).box_minimum().edges == ()


RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


@pytest.mark.parametrize("name", ["wd-mlp-mup", "wd-gpt-mup"])
def test_committed_weight_decay_law_refits_from_its_committed_trials(tmp_path: Path, name: str) -> None:
    """The weight-decay results' law files follow from their sweeps: refitting the trials CSV gives the same laws."""
    import json

    from click.testing import CliRunner

    from scaleplan.cli import cli

    committed = json.loads((RESULTS / f"{name}.json").read_text())["power_laws"]
    out = CliRunner().invoke(cli, ["fit", str(RESULTS / f"{name}-trials.csv"), "--x", "width", "-o", str(tmp_path / "refit.json")])
    assert out.exit_code == 0, out.output
    refit = json.loads((tmp_path / "refit.json").read_text())["power_laws"]
    assert [p["target"] for p in refit] == [p["target"] for p in committed] == ["lr", "wd_tau"]
    for new, old in zip(refit, committed):
        tol = {"rel": 1e-7, "abs": 1e-9}  # as test_results' refits: another CPU's BLAS rounds the fits ~1e-9 apart
        assert new["exponents"] == pytest.approx(old["exponents"], **tol) and new["intercept"] == pytest.approx(old["intercept"], **tol)


def _grid_of(loss: Callable[[float, float], float], seeds: int = 5) -> list[DecayPoint]:
    pairs = [(lr, wd) for lr in np.geomspace(2.5e-3, 4e-2, 5) for wd in np.geomspace(0.025, 0.4, 5)]
    return [DecayPoint(lr, (loss(lr, wd),) * seeds, weight_decay=wd) for lr, wd in pairs]


def flat_in_lambda(lr: float, wd: float) -> float:
    """A bowl in lr that is flat in lambda but for a small rise: lowest at the grid's smallest lambda, 0.025."""
    return 2.0 + 0.05 * math.log(lr / 1e-2) ** 2 + 0.004 * math.log(wd / 0.025)


def test_a_bowl_flat_in_lambda_has_its_smoothed_regret_at_the_box_edge() -> None:
    """The quadratic's Hessian is singular here (no vertex): the smoothed regret is still defined, against the minimum
    on the box's low-lambda edge, and the report says the optimum is not bracketed in lambda."""
    from scaleplan.validate.weight_decay import regret_notes

    grid = _grid_of(flat_in_lambda)
    choice = next(p for p in grid if p.lr == pytest.approx(1e-2) and p.weight_decay == pytest.approx(0.1))
    r = decay_regret("c", choice, grid, steps=100, convention="torch")
    truth = 0.004 * math.log(0.1 / 0.025) / 2.0  # the bowl's minimum over the grid is 2.0 at (1e-2, 0.025)
    assert r.smoothed == pytest.approx(truth, rel=1e-6) and r.raw == pytest.approx(truth, rel=1e-9)
    low = r.model.box_minimum()
    assert (low.lr, low.weight_decay, low.value) == pytest.approx((1e-2, 0.025, 2.0), rel=1e-6) and low.edges == ("low lambda",)
    assert "optimum not bracketed in lambda: sweep smaller lambda" in "\n".join(regret_notes(r, grid))


def saddle(lr: float, wd: float) -> float:
    """Curved up in lr, rising and slightly concave in lambda: no convex quadratic fits it exactly."""
    v = math.log(wd / 0.025)
    return 2.0 + 0.05 * math.log(lr / 1e-2) ** 2 + 0.004 * v - 0.0006 * v * v + 0.001 * math.log(lr / 1e-2) * v


def test_the_smoothing_quadratic_is_the_best_convex_fit_and_its_minimum_stays_in_the_box() -> None:
    """Where the unconstrained quadratic is a saddle, the smoothing quadratic is the weighted least-squares fit among
    convex ones (checked by its optimality conditions) and the regret's denominator is its minimum over the fitted box
    (checked on a dense grid); without the constraint there is no regret, and a vertex would lie outside the box."""
    from scaleplan.fit.optimum import near_window
    from scaleplan.fit.weight_decay import mean_by_pair

    grid = _grid_of(saddle)
    choice = grid[12]  # (1e-2, 0.1)
    r = decay_regret("c", choice, grid, steps=100, convention="torch")
    m = r.model
    assert m is not None and m.constrained and r.smoothed is not None
    c = m.coef
    hess = np.array([[2 * c[3], c[5]], [c[5], 2 * c[4]]])
    eig = np.linalg.eigvalsh(hess)
    assert eig[0] > -1e-9 * eig[1] and eig[0] < 1e-6 * eig[1]  # PSD, and the constraint binds: singular
    # KKT of min sum w (X c - y)^2 over H >= 0: zero gradient in (c0, c1, c2); the gradient G in H is PSD with <G, H> = 0
    lr, wd, loss, counts = mean_by_pair(np.array([p.lr for p in grid]), np.array([p.weight_decay for p in grid]),
                                        np.array([p.mean for p in grid]))
    sel, w = near_window(lr, loss, 0.02, 9)
    assert {(float(lr[i]), float(wd[i])) for i in sel} == set(m.fitted)
    du, dv = np.log(lr[sel]) - m.u0, np.log(wd[sel]) - m.v0
    resid = w * counts[sel] * (np.array([m.value(a, b) for a, b in zip(lr[sel], wd[sel])]) - loss[sel])
    assert np.abs([resid.sum(), (resid * du).sum(), (resid * dv).sum()]).max() < 1e-8 * np.abs(resid).sum()
    g = np.array([[(resid * du * du).sum() / 2, (resid * du * dv).sum() / 2], [(resid * du * dv).sum() / 2, (resid * dv * dv).sum() / 2]])
    scale = np.abs(g).max()
    assert np.linalg.eigvalsh(g)[0] > -1e-6 * scale and abs(np.sum(g * hess)) < 1e-6 * scale * np.abs(hess).max()
    u_lo, u_hi, v_lo, v_hi = m.window
    dense = min(m.value(math.exp(u), math.exp(v)) for u in np.linspace(u_lo, u_hi, 201) for v in np.linspace(v_lo, v_hi, 201))
    low = m.box_minimum()
    assert low.value == pytest.approx(dense, abs=1e-9) and low.value <= dense + 1e-12
    assert r.smoothed == pytest.approx(m.value(choice.lr, choice.weight_decay) / low.value - 1.0, rel=1e-9)
    from scaleplan.fit.weight_decay import local_quadratic
    assert local_quadratic(lr, wd, loss, counts) is None  # the unconstrained fit: a saddle, no vertex


@pytest.mark.parametrize("seed", range(20))
def test_the_box_minimum_of_any_quadratic_is_its_lowest_value_in_the_box(seed: int) -> None:
    from scaleplan.fit.weight_decay import LocalQuadratic

    rng = np.random.default_rng(seed)
    m = LocalQuadratic(rng.normal(size=6), 0.3, -0.2, (-1.0, 0.5, -0.7, 1.2), (-1.0, 0.5, -0.7, 1.2))
    low = m.box_minimum()
    dense = min(m.value(math.exp(u), math.exp(v)) for u in np.linspace(-1.0, 0.5, 301) for v in np.linspace(-0.7, 1.2, 301))
    assert dense - 1e-3 <= low.value <= dense + 1e-12
    inside = -1.0 < math.log(low.lr) < 0.5 and -0.7 < math.log(low.weight_decay) < 1.2
    assert inside == (low.edges == ())


@pytest.mark.parametrize("report, cache", [("weight-decay-wd-mlp-mup.md", "wd-mlp-mup-target-w256-s2000.csv"),
                                           ("weight-decay-wd-gpt-mup.md", "wd-gpt-mup-target-w128-s400.csv")])
def test_committed_weight_decay_reports_follow_from_their_target_runs(report: str, cache: str) -> None:
    """The regrets (raw and smoothed) and notes in the committed reports are what the committed target runs give now
    (benchmarks/rerender_weight_decay.py rewrites them)."""
    from scaleplan.validate.weight_decay import rerender_regrets

    text = (RESULTS / report).read_text()
    assert rerender_regrets(text, RESULTS / cache) == text


def test_the_target_grid_grows_past_a_flat_lr_end_of_the_best_row() -> None:
    """Along lr the loss is lowest at lr 2 and rises only 0.3% by the grid's top lr 4, then falls into a basin 1% lower
    at lr 8; lambda is a clean bowl. The best point and the smoothed minimum are inside the grid, but the row through
    the best point is flat at its top end, so one lr above it is added across every lambda, and then another."""
    from scaleplan.validate.weight_decay import extend_decay_grid, flat_extension, grid_extension, model_of

    def surface(lr: float, wd: float) -> float:
        u = math.log2(lr)
        return (2.0 + 0.03 * (u - 1) ** 2 * (u < 1) + 0.006 * (1 - math.exp(-(u - 1))) * (u >= 1)
                - 0.03 * math.exp(-((u - 3) ** 2) / 0.3) + 0.02 * math.log2(wd / 0.1) ** 2)

    lrs, wds = [2.0 ** (k / 2) for k in range(5)], [0.1 * 2 ** (0.75 * k) for k in range(-2, 3)]
    grid = [(a, b) for a in lrs for b in wds]
    first = [DecayPoint(a, (surface(a, b),) * 5, weight_decay=b) for a, b in grid]
    best = min(first, key=lambda p: p.mean)
    assert grid_extension(lrs, wds, best, 0.5, 0.75, model_of(first).box_minimum()) == ([], [])
    assert flat_extension(lrs, wds, first, best, 0.5, 0.75) == ([pytest.approx(4 * 2**0.5)], [])

    messages: list[str] = []
    points, on_edge = extend_decay_grid(lrs, wds, grid, lambda pairs: {(a, b): (surface(a, b),) * 5 for a, b in pairs},
                                        0.5, 0.75, messages.append)
    assert messages[0] == "an end of the best point's row is within 0.5% of it: adding lr ['5.66'], lambda []"
    lowest = min(points, key=lambda p: p.mean)
    assert lowest.lr == pytest.approx(8.0) and lowest.weight_decay == pytest.approx(0.1) and not on_edge


def test_a_line_flat_at_both_ends_does_not_grow_the_grid() -> None:
    """Lambda moves the loss by 0.2% over the whole grid (as on the MLP's short runs): both ends of the best point's
    column are within 0.5% of it, so the axis barely matters there, and the flat rule adds nothing along it."""
    from scaleplan.validate.weight_decay import flat_extension

    lrs, wds = [2.0 ** (k / 2) for k in range(5)], [0.1 * 2 ** (0.75 * k) for k in range(-2, 3)]
    points = [DecayPoint(a, (2.0 + 0.05 * (math.log2(a) - 1) ** 2 + 0.001 * (math.log2(b / 0.1) / 1.5) ** 2,) * 5,
                         weight_decay=b) for a in lrs for b in wds]
    best = min(points, key=lambda p: p.mean)
    assert flat_extension(lrs, wds, points, best, 0.5, 0.75) == ([], [])


def test_a_record_of_another_spec_is_refused_before_the_sweep(tmp_path: Path) -> None:
    """Before: the sweep ran and OUT/wd-tiny.json was replaced by the new spec's law, and only then was the target's
    record of the other spec's runs refused."""
    from click.testing import CliRunner

    from scaleplan.cli import cli

    path, out = tmp_path / "wd.toml", tmp_path / "out"
    path.write_text(SPEC)
    out.mkdir()
    (out / "wd-tiny.json").write_text("the other spec's law")
    (out / "wd-tiny-target-w16-s24.csv").write_text('# identity: {"spec": "other", "target": {}}\nlr,weight_decay,seed,loss\n')
    result = CliRunner().invoke(cli, ["validate", str(path), "--target-width", "16", "--target-steps", "24", "--seeds", "5",
                                      "--out", str(out), "--bootstrap", "0"])
    assert isinstance(result.exception, InputError) and "its runs were trained for another spec, target" in str(result.exception)
    assert not (tmp_path / "wd-tiny.journal").exists() and (out / "wd-tiny.json").read_text() == "the other spec's law"


def test_a_study_of_another_spec_is_refused_before_any_sweep(tmp_path: Path) -> None:
    """Before: the first spec's sweep, fit and target runs ran before the second spec's study, made from an earlier
    version of it, was refused."""
    from click.testing import CliRunner

    from scaleplan.cli import cli
    from scaleplan.errors import ScaleplanError
    from scaleplan.sweep.spec import load_spec
    from scaleplan.sweep.study import open_sweep

    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text(SPEC)
    second.write_text(SPEC.replace('name = "wd-tiny"', 'name = "second"'))
    open_sweep(load_spec(second))
    second.write_text(SPEC.replace('name = "wd-tiny"', 'name = "second"').replace("lr = [3e-3,", "lr = [2e-3,"))
    result = CliRunner().invoke(cli, ["validate", str(first), str(second), "--target-width", "16", "--target-steps", "24",
                                      "--seeds", "5", "--out", str(tmp_path / "out"), "--bootstrap", "0"])
    assert isinstance(result.exception, ScaleplanError) and "was made from a different spec" in str(result.exception)
    assert not (tmp_path / "wd-tiny.journal").exists()

"""Tests of scaleplan.fit.pipeline: the optimum method an adaptive sweep's trials are fitted with."""

from __future__ import annotations

import math
import shlex

import numpy as np
import pandas as pd
import pytest

from scaleplan.fit.optimum import locate_optimum
from scaleplan.fit.pipeline import FitOptions, SweepData, effective_options, fit_command, fit_sweep
from scaleplan.sweep.adaptive import Observation, estimate


def _adaptive_like(lr_star: dict[int, float]) -> pd.DataFrame:
    """Per width: a coarse bracket plus many noisy runs near the optimum and two lucky ones 3x above it."""
    rows = []
    for width, star in lr_star.items():
        rng = np.random.default_rng(width)
        u = np.concatenate([np.linspace(-2.0, 2.0, 9), rng.normal(0.0, 0.3, 16), [1.1, 1.15]])
        loss = 2.0 + 0.02 * u**2 + rng.normal(0.0, 0.004, u.size)
        loss[-2:] = 2.0 - 0.012
        rows += [{"width": width, "lr": star * math.exp(x), "loss": y, "batch_size": 64, "seed": i, "state": "COMPLETE"}
                 for i, (x, y) in enumerate(zip(u, loss))]
    return pd.DataFrame(rows)


STARS = {32: 4e-3, 64: 2.8e-3, 128: 2e-3}


@pytest.mark.parametrize("sampler, method", [("adaptive", "vertex"), ("grid", "parabola"), ("tpe", "parabola"),
                                             (None, "parabola")])
def test_the_optimum_method_follows_the_sampler_that_chose_the_trials(sampler: str | None, method: str) -> None:
    data = SweepData(_adaptive_like(STARS), "sweep", None, sampler=sampler)
    options = effective_options(data, FitOptions(x="width", n_boot=0))
    assert options.method == method
    assert "--method " + method in fit_command("sweep.toml", "law.json", options)
    fitted = fit_sweep(data, FitOptions(x="width", n_boot=0), name="law", title=None, command="scaleplan fit sweep.toml")
    assert fitted.law.method.startswith(method)


def test_an_adaptive_sweep_is_fitted_with_the_searchs_own_estimator() -> None:
    """Each width's optimum is `adaptive.estimate` of its trials (not the parabola through the lucky runs), and the
    law through them recovers the exponent; an explicit --method still wins."""
    frame = _adaptive_like(STARS)
    data = SweepData(frame, "sweep", None, sampler="adaptive")
    fitted = fit_sweep(data, FitOptions(x="width", n_boot=0), name="law", title=None, command="scaleplan fit sweep.toml")
    parabola = fit_sweep(data, FitOptions(method="parabola", x="width", n_boot=0), name="law", title=None, command="c")
    assert parabola.law.method.startswith("parabola")  # an explicit --method wins
    for o, p in zip(fitted.hyper.optima, parabola.hyper.optima):
        cell = frame[frame["width"] == o.size]
        assert o.lr == estimate([Observation(a, b) for a, b in zip(cell["lr"], cell["loss"])]).lr
        assert abs(math.log(o.lr / STARS[int(o.size)])) < abs(math.log(p.lr / STARS[int(o.size)])) or p.recentred and p.lr == o.lr
    true = math.log(STARS[128] / STARS[32]) / math.log(4)
    exponents = [f.law.power_laws[0].exponents["W"] for f in (fitted, parabola)]
    assert abs(exponents[0] - true) < 0.15 and abs(exponents[1] - true) > 0.4
    assert shlex.split(fit_command("s.toml", "l.json", effective_options(data, FitOptions(x="width"))))[5:7] == ["--method", "vertex"]


@pytest.mark.parametrize(
    "spec, noise",
    [("transfer/denseam-lse-features-k32-b20-denseam.toml", 20 / math.sqrt(32)),
     ("transfer/denseam-relu-features-k32-denseam.toml", None),  # relu-poly: the form's argument is lse's
     ("transfer/denseam-lse-memories-p16-denseam.toml", None),  # over K, N is fixed
     ("mlp-mup.toml", None)],
)
def test_a_pre_asymptotic_lse_denseam_power_law_fit_is_flagged_naming_the_finite_width_form(spec: str, noise: float | None) -> None:
    from pathlib import Path

    from scaleplan.fit.flags import pre_asymptotic
    from scaleplan.fit.pipeline import overlap_noise
    from scaleplan.sweep.spec import load_spec

    found = overlap_noise(load_spec(Path(__file__).resolve().parents[2] / "sweeps" / spec))
    assert found == (None if noise is None else pytest.approx(noise))
    flags = pre_asymptotic(found, "power")
    assert (len(flags) == 1 and "refit with --lr-form finite-width" in flags[0]) == (noise is not None)
    assert pre_asymptotic(found, "finite-width") == () and pre_asymptotic(0.9, "power") == ()


def test_a_finite_width_fit_of_sp_or_unknown_trials_is_flagged() -> None:
    """The form's asymptote holds under muP-style rules; SP's lr* keeps falling, and a CSV says nothing."""
    from scaleplan.fit.flags import without_a_limit

    assert "parametrization sp" in without_a_limit("sp", "finite-width")[0]
    assert "unknown parametrization (a CSV)" in without_a_limit(None, "finite-width")[0]
    assert without_a_limit("mup", "finite-width") == without_a_limit("denseam", "finite-width") == ()
    assert without_a_limit("sp", "power") == ()


def test_a_size_whose_every_run_diverged_is_flagged_in_the_law() -> None:
    """The widest cell diverged at every lr: the law is fitted on the others, and its flags (repeated by predict) name
    the lost cell instead of only counting the excluded runs."""
    frame = _adaptive_like({**STARS, 256: 1.4e-3}).assign(diverged=lambda f: f["width"] == 256)
    fitted = fit_sweep(SweepData(frame, "sweep", None), FitOptions(x="width", n_boot=0), name="law", title=None, command="c")
    assert [o.size for o in fitted.hyper.optima] == [32.0, 64.0, 128.0]
    assert fitted.law.flags[0] == ("1 cell(s) lost every trial (failed, diverged or non-finite: 27 diverged in all) and are "
                                   "left out of every law: width=256; if their runs diverged, sweep lower lrs there")


def test_cells_that_ran_one_batch_size_are_flagged_in_the_law() -> None:
    """Two widths sweep the batch size, two ran one each: the one-size fit's own flag reaches the law file (and so
    predict's warnings), as the multi-axis fit's did."""
    frame = _adaptive_like(STARS | {256: 1.4e-3})
    frame["batch_size"] = np.where(frame["width"] <= 64, 16 * 2 ** (frame["seed"] % 3), 64)
    fitted = fit_sweep(SweepData(frame, "sweep", None), FitOptions(x="width", n_boot=0), name="law", title=None, command="c")
    assert any(f.startswith("2 of 4 cells ran a single batch size (left out of the batch-size law") for f in fitted.law.flags)


def test_a_default_loss_law_that_cannot_be_fitted_is_skipped_with_a_warning_not_the_fit() -> None:
    """The loss law is fitted by default where the data allow one; its refusal (here D spans 1.5x) used to abort the lr
    laws too. Asked for with --loss-law, it still refuses."""
    from scaleplan.errors import FitError
    from scaleplan.fit.data import prepare_trials
    from scaleplan.fit.pipeline import _maybe_loss_law, constraints

    rows = [(n, d, 3.0 + 1e9 / n + 1e10 / d) for n in (1e6, 4e6, 1.6e7) for d in (1e10, 1.5e10)]
    trials = prepare_trials(pd.DataFrame(rows, columns=["N", "D", "loss"]), required=("loss",))
    with pytest.warns(UserWarning, match=r"loss law not fitted: loss law: D spans only 1.5x .* \(--loss-law to require it"):
        assert _maybe_loss_law(trials, None, None, FitOptions(), constraints((), ())) is None
    with pytest.raises(FitError, match="D spans only 1.5x"):
        _maybe_loss_law(trials, None, True, FitOptions(), constraints((), ()))

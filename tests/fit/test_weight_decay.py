"""The weight-decay fit: 2-D optima in (ln lr, ln lambda) and the timescale law, on data with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cli_runs import one_line_error
from scaleplan.errors import FitError
from scaleplan.fit.data import prepare_trials
from scaleplan.fit.weight_decay import TPP, fit_weight_decay, has_decay_axis

LRS = np.geomspace(1e-3, 1e-1, 7)
TAUS = np.geomspace(0.02, 2.0, 7)
CELLS = [(64, 2000.0, 100), (64, 8000.0, 400), (128, 4000.0, 100), (128, 16000.0, 400), (256, 8000.0, 100)]  # width, N, steps


def tau_star(tpp: float) -> float:
    return 0.3 * tpp**-0.4  # a decreasing power law in tokens per parameter, as Bergsma et al. report


def frame(noise: float = 0.0, by_tau: bool = False, seeds: int = 1, rng_seed: int = 0) -> pd.DataFrame:
    """Trials whose loss is a quadratic bowl in (ln lr, ln lambda) around lr* = 1e-2 * (w/64)^-0.5, tau*(D/N)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for width, n, steps in CELLS:
        d = steps * 32.0
        lr_star = 1e-2 * (width / 64) ** -0.5
        wd_star = 1.0 / (lr_star * tau_star(d / n) * steps)
        for lr in LRS:
            for tau in TAUS:
                wd = 1.0 / (lr * tau * steps)
                u, v = math.log(lr / lr_star), math.log(wd / wd_star)
                for seed in range(seeds):
                    loss = 1.0 + 0.05 * u * u + 0.02 * v * v + 0.01 * u * v + noise * rng.standard_normal()
                    row = dict(width=width, N=n, D=d, steps=steps, lr=lr, loss=loss, seed=seed)
                    row.update(wd_tau=tau) if by_tau else row.update(weight_decay=wd)
                    rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("by_tau", [False, True])
def test_exact_bowls_give_the_optima_and_the_timescale_exponent(by_tau: bool) -> None:
    trials = prepare_trials(frame(by_tau=by_tau), x="width")
    assert has_decay_axis(trials)
    fit = fit_weight_decay(trials, n_boot=0)
    for o, (width, n, steps) in zip(fit.optima, CELLS):
        assert (o.size, o.n_params, o.steps) == (width, n, steps)
        assert o.lr == pytest.approx(1e-2 * (width / 64) ** -0.5, rel=1e-6)
        assert o.tau == pytest.approx(tau_star(o.tokens / n), rel=1e-6)
        assert o.weight_decay == pytest.approx(1.0 / (o.lr * o.tau * steps), rel=1e-9)
        assert not (o.at_edge or o.fallback)
    assert fit.tau.exponents[TPP] == pytest.approx(-0.4, abs=1e-6)
    assert math.exp(fit.tau.intercept) == pytest.approx(0.3, rel=1e-6)
    assert fit.hyper.lr.exponents["W"] == pytest.approx(-0.5, abs=1e-6)
    intercept, exponents, _ = fit.tau_law_in_n_and_d()
    assert exponents == pytest.approx({"N": 0.4, "D": -0.4}) and intercept == fit.tau.intercept


def test_independent_decay_timescale_is_lambda_only() -> None:
    fit = fit_weight_decay(prepare_trials(frame(), x="width"), convention="independent", n_boot=0)
    for o in fit.optima:
        assert o.tau == pytest.approx(1.0 / (o.weight_decay * o.steps), rel=1e-12)


def test_noisy_seeds_give_intervals_that_cover_the_truth() -> None:
    fit = fit_weight_decay(prepare_trials(frame(noise=0.003, seeds=3), x="width"), n_boot=60, seed=1)
    lo, hi = fit.tau.conf_int[TPP]
    assert lo < -0.4 < hi and hi - lo < 0.5
    blo, bhi = fit.tau.bootstrap_ci[TPP]
    assert blo < fit.tau.exponents[TPP] < bhi
    for o in fit.optima:
        low, high = o.ci["tau"]
        assert low <= o.tau <= high and high / low < 4
    assert fit.weighted and fit.tau.covariance_kind.startswith("wls")


def test_an_optimum_beyond_the_swept_lambdas_is_flagged() -> None:
    data = frame()
    trials = prepare_trials(data[data["weight_decay"] < data.groupby("width")["weight_decay"].transform("median") / 3],
                            x="width")
    assert any(o.at_edge for o in fit_weight_decay(trials, n_boot=0).optima)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f[f["lr"].isin(LRS[:2])], "has 2 learning rate(s) and 8 positive weight decay(s); the 2-D quadratic needs at least 3 of each"),
        (lambda f: f.drop(columns=["steps"]), "needs the column(s) ['steps']"),
        (lambda f: f.assign(batch_size=np.where(f["seed"] == 0, 32, 64)).assign(seed=0), "also varies the batch size"),
    ],
)
def test_cells_that_cannot_give_a_2d_optimum_are_refused(change, message: str) -> None:
    with pytest.raises(FitError) as info:
        fit_weight_decay(prepare_trials(change(frame(seeds=2)), x="width"), n_boot=0)
    assert message in str(info.value)


def test_fit_command_writes_the_timescale_law_and_predict_turns_it_into_lambda(tmp_path) -> None:
    from click.testing import CliRunner

    from scaleplan.cli import cli
    from scaleplan.laws import load_law

    csv, out = tmp_path / "wd.csv", tmp_path / "wd.json"
    frame(noise=0.002, by_tau=True, seeds=2).to_csv(csv, index=False)
    result = CliRunner().invoke(cli, ["fit", str(csv), "-o", str(out), "--x", "width", "--bootstrap", "30",
                                      "--decay-convention", "torch"])
    assert result.exit_code == 0, result.output
    assert "weight decay (torch AdamW)" in result.output and "wd_tau = " in result.output and "(D/N) exponent" in result.output
    law = load_law(str(out))
    assert law.weight_decay.convention == "torch" and law.needs() == ["N", "W", "D"]
    tau_law = next(p for p in law.power_laws if p.target == "wd_tau")
    assert tau_law.exponents["D"] == pytest.approx(-0.4, abs=0.1) and tau_law.exponents["N"] == -tau_law.exponents["D"]
    assert "--decay-convention torch" in law.provenance.command and "ln tau = a + b ln(D/N)" in law.notes
    p = law.predict(width=128, params=4000.0, tokens=3200.0, batch_size=32.0)
    assert p.values["wd_tau"].value == pytest.approx(tau_star(0.8), rel=0.15)
    assert p.weight_decay == pytest.approx(32.0 / (p.lr * p.values["wd_tau"].value * 3200.0), rel=1e-12)
    assert p.values["weight_decay"].low < p.weight_decay < p.values["weight_decay"].high
    shown = CliRunner().invoke(cli, ["predict", "--law", str(out), "--width", "128", "--params", "4000", "--tokens", "3200",
                                     "--batch-size", "32"])
    assert shown.exit_code == 0, shown.output
    assert "weight-decay timescale tau" in shown.output and "weight decay lambda" in shown.output
    assert f"{p.weight_decay:.3g}" in shown.output


def test_a_decay_sweep_with_another_method_is_refused(tmp_path, capsys) -> None:
    csv = tmp_path / "wd.csv"
    frame().to_csv(csv, index=False)
    line = one_line_error(["fit", str(csv), "-o", str(tmp_path / "x.json"), "--x", "width", "--method", "argmin"], capsys)
    assert "--method argmin is for lr-only sweeps" in line


def test_the_interior_refit_leaves_out_edge_cells() -> None:
    data = frame()
    cut = data[~((data["width"] == 256) & (data["weight_decay"] > data["weight_decay"].median() / 10))]
    fit = fit_weight_decay(prepare_trials(cut, x="width"), n_boot=0)
    assert [o.at_edge for o in fit.optima] == [False, False, False, False, True]
    inner = fit.interior_tau_law()
    assert inner.n_points == 4 and inner.exponents[TPP] == pytest.approx(-0.4, abs=1e-6)
    assert fit_weight_decay(prepare_trials(data, x="width"), n_boot=0).interior_tau_law() is None  # nothing to leave out

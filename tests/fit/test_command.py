"""Tests of `scaleplan fit`: law file written through scaleplan.laws, plots, summary, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_runs import run_main
from click.testing import CliRunner

from scaleplan.cli import cli
from scaleplan.laws import LawFile

DATA = Path(__file__).resolve().parents[1] / "data"
STEPLAW = ["--column", "batch_size=bs", "--column", "loss=smooth loss", "--batch-unit-scale", "2048", "--batch-unit", "tokens"]


def test_steplaw_band_fit_writes_a_law_file_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "steplaw-refit.json"
    args = ["fit", str(DATA / "steplaw_dense_lr_bs_loss.csv"), "-o", str(out), "--method", "band",
            "--bootstrap", "20", "--plot", str(tmp_path / "plots"), *STEPLAW]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    law = LawFile.load(out)
    assert law.method == "band-0.25%; OLS"  # several points per cell: clustered OLS, never weighted
    lr, batch = law.power_laws
    assert (lr.target, batch.target, batch.unit) == ("lr", "batch_size", "tokens")
    assert lr.exponents == pytest.approx({"N": -0.7662, "D": 0.1970}, abs=5e-4)
    assert batch.exponents == pytest.approx({"D": 0.6125}, abs=5e-4)
    assert law.fitted_range == {"N": (214663680.0, 1073741824.0), "D": (4e9, 1e11)}
    assert law.provenance.data_sha256 == "9e46181076c04d450294d75dfe6f72adc416e231e154a07b337e378f9410002c"
    assert "--method band" in law.provenance.command and law.loss_law is not None
    pred = law.predict(params=7e8, tokens=3e10)
    assert pred.lr == pytest.approx(np.exp(lr.intercept) * 7e8**lr.exponents["N"] * 3e10**lr.exponents["D"])
    assert pred.values["lr"].low < pred.lr < pred.values["lr"].high
    for name in ("optima.png", "lr_law.png", "batch_size_law.png"):
        png = tmp_path / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "lr = " in result.output and "N exponent -0.7662" in result.output and "bootstrap (20)" in result.output
    assert "edge" in result.output  # the 1.07e9 / 5.69e10 cell's band touches the largest lr swept


def width_sweep(path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = [
        dict(width=w, lr=lr, loss=1.0 + 0.05 * np.log(lr / (0.02 * (w / 64) ** -1.0)) ** 2 + rng.normal(0, 1e-4),
             state="COMPLETE", diverged=lr > 0.5)
        for w in (64, 128, 256, 512) for lr in np.geomspace(1e-4, 1.0, 15)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_width_law_predicts_by_width(tmp_path: Path) -> None:
    out = tmp_path / "mlp.json"
    result = CliRunner().invoke(cli, ["fit", str(width_sweep(tmp_path / "mlp.csv")), "-o", str(out), "--x", "width", "--bootstrap", "10"])
    assert result.exit_code == 0, result.output
    law = LawFile.load(out)
    assert [p.target for p in law.power_laws] == ["lr"] and law.needs() == ["W"]
    assert law.power_laws[0].exponents["W"] == pytest.approx(-1.0, abs=0.01)
    assert law.predict(width=1024).lr == pytest.approx(0.02 / 16, rel=0.05)
    assert law.loss_law is None and law.method == "parabola; OLS"  # 10 replicates: too few to weight
    assert "excluded: 8 diverged" in result.output  # lr 0.52 and 1.0 at each of the 4 widths


@pytest.mark.parametrize(
    "rows, extra, message",
    [
        ([dict(N=1e6, lr=lr, loss=2 + lr) for lr in (1e-3, 2e-3, 4e-3)], [], "need at least 2 distinct sizes (N)"),
        ([dict(N=n, lr=1e-3, loss=2.0) for n in (1e6, 4e6)], ["--method", "argmin"], "has a single learning rate"),
        ([dict(N=n, lr=lr, loss=2.0, diverged=True) for n in (1e6, 4e6) for lr in (1e-3, 2e-3)], [], "no usable trials left (4 diverged)"),
        ([dict(N=n, learning_rate=1e-3, loss=2.0) for n in (1e6, 4e6)], [], "missing column(s) ['D'] for a loss-only fit (no lr column: for lr laws, --column lr=SOURCE)"),
        ([dict(N=n, lr=lr, loss=2 + lr) for n in (1e6, 4e6) for lr in (1e-3, 2e-3, 4e-3)], ["--batch-unit", "token"],
         "Invalid value for '--batch-unit': 'token' is not one of 'tokens', 'samples', 'sequences'"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, rows: list, extra: list, message: str) -> None:
    csv = tmp_path / "bad.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    code, err = run_main(["fit", str(csv), "-o", str(tmp_path / "x.json"), *extra], capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("name, message", [("runs.xlsx", "give a sweep spec (.toml) or a CSV"), ("absent.csv", "trials file not found")])
def test_bad_source(tmp_path: Path, capsys: pytest.CaptureFixture, name: str, message: str) -> None:
    code, err = run_main(["fit", str(tmp_path / name)], capsys)
    assert code == 2 and message in err


@pytest.mark.parametrize("flag, name", [("-o", "law file"), ("--plot", "plot")])
def test_unwritable_output_fails_before_the_fit(tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, name: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / ("out.json" if flag == "-o" else "out")
    args = ["fit", str(width_sweep(tmp_path / "mlp.csv")), "--x", "width", "-o", str(tmp_path / "ok.json"), flag, str(out)]
    code, err = run_main(args, capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: cannot write {name} to {out}") and "a-file is a file, not a directory" in err
    assert "method:" not in capsys.readouterr().out  # no summary: it stopped before fitting


def test_fit_modules_do_not_import_torch() -> None:
    code = (
        "import sys, scaleplan.fit.command, scaleplan.fit.hyperparameter_law, scaleplan.fit.loss_law, "
        "scaleplan.fit.critical_batch, scaleplan.fit.plots, scaleplan.fit.law_file, scaleplan.fit.summary; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def strict_json(path: Path) -> dict:
    """Parse a law file the way a strict JSON reader does: NaN / Infinity are errors, not numbers."""
    def refuse(name: str) -> None:
        raise ValueError(f"{name} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_sizes_spanning_less_than_2x_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The issue's grid: N spanning 0.26% gave lr ~ N^71, E = 1e-104, Infinity in the law file and lr 6e33 from predict."""
    rows = [dict(N=n, D=d, lr=lr, loss=2.0 + 0.05 * np.log(lr / 3e-3) ** 2 + 1e-3 * np.log(n / 2.14e8) - 0.02 * np.log(d / 1e9))
            for n in (2.1400e8, 2.1456e8) for d in (1e9, 2e9, 4e9) for lr in np.geomspace(3e-4, 3e-2, 7)]
    csv = tmp_path / "narrow.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    code, err = run_main(["fit", str(csv), "-o", str(tmp_path / "x.json")], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "power law for lr: N spans only 1.003x (2.14e+08 to 2.1456e+08); fitting an exponent needs at least 2x" in err
    assert not (tmp_path / "x.json").exists()


def test_loss_only_data_with_tied_exponents(tmp_path: Path) -> None:
    """Gadre et al.'s 5 fitting runs (no lr column): their least-squares, one-exponent law, from the CLI."""
    data = pd.read_csv(DATA / "gadre_overtraining_c4_val_loss.csv")
    fit_models = ("d=96_l=8_h=4", "d=512_l=8_h=4", "d=576_l=24_h=8", "d=1024_l=24_h=8")
    rows = data[(data["dataset"] == "rpj") & ((data["model"].isin(fit_models) & (data["M"] == 20))
                                              | ((data["model"] == fit_models[0]) & (data["M"] == 320)))]
    csv = tmp_path / "gadre.csv"
    rows.to_csv(csv, index=False)
    out = tmp_path / "gadre.json"
    result = CliRunner().invoke(cli, ["fit", str(csv), "-o", str(out), "--column", "loss=loss_c4_val", "--tie", "alpha=beta",
                                      "--loss-space", "linear", "--huber-delta", "1", "--starts", "8", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    law = LawFile.load(out)
    assert law.power_laws == [] and law.loss_law.alpha == law.loss_law.beta == pytest.approx(0.272851, rel=1e-3)
    assert "loss-only data: 5 runs" in result.output and "alpha = beta" in result.output
    assert "--tie alpha=beta" in law.provenance.command and "reached by" in law.notes
    strict_json(out)


def test_isoflop_law_from_the_cli_and_predict_uses_it(tmp_path: Path) -> None:
    runs = pd.read_csv(DATA / "porian_isoflop_profiles.csv").query("dataset == 'rw' and config == 'tuned'")
    csv = tmp_path / "porian.csv"
    runs.drop(columns=["D"]).to_csv(csv, index=False)
    out = tmp_path / "iso.json"
    result = CliRunner().invoke(cli, ["fit", str(csv), "-o", str(out), "--isoflop", "2", "--bootstrap", "10"])
    assert result.exit_code == 0, result.output
    law = LawFile.load(out)
    assert law.is_isoflop and [p.target for p in law.power_laws] == ["N_opt", "D_opt", "loss_opt"]
    assert law.power_laws[0].exponents["C"] == pytest.approx(0.5005, abs=1e-3) and law.power_laws[2].offset > 0
    assert law.variable("C").convention == "6ND" and "isoFLOP approach 2" in law.method
    strict_json(out)
    n_opt = law.predict(compute=1e20).values["N_opt"]
    assert n_opt.low < n_opt.value < n_opt.high and n_opt.method in ("t, 10 dof", "bootstrap over cells")
    predicted = CliRunner().invoke(cli, ["predict", "--compute", "1e20", "--law", str(out), "--format", "json"])
    assert predicted.exit_code == 0, predicted.output
    record = json.loads(predicted.output)
    assert record["tokens"] == pytest.approx(law.predict(compute=1e20).values["D_opt"].value, rel=1e-9)
    assert "isoFLOP law" in record["tokens_source"] and record["lr"] is None
    with_lr = CliRunner().invoke(cli, ["predict", "--compute", "1e20", "--tokens-law", str(out), "--format", "json"])
    assert with_lr.exit_code == 0 and json.loads(with_lr.output)["tokens"] == pytest.approx(record["tokens"])


def test_model_column_keys_the_cells(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [dict(N=n, lr=lr, loss=2.0 + 0.05 * np.log(lr / (0.01 * (n / 1e6) ** -0.5 * k)) ** 2, arch=arch)
            for n in (1e6, 4e6, 1.6e7) for arch, k in (("wide", 1.0), ("deep", 1.3)) for lr in np.geomspace(1e-4, 1e-1, 9)]
    csv = tmp_path / "two-models.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    code, err = run_main(["fit", str(csv), "-o", str(tmp_path / "x.json")], capsys)
    assert code == 2 and "different models with equal (N)? key cells by model with --column model=COLUMN" in err
    result = CliRunner().invoke(cli, ["fit", str(csv), "-o", str(tmp_path / "x.json"), "--column", "model=arch", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert "in 6 cells" in result.output and "deep" in result.output and "wide" in result.output


def test_flags_reach_the_law_file(tmp_path: Path) -> None:
    """Step Law's band fit has a cell whose band touches the largest lr: the law file lists it, not only the summary."""
    out = tmp_path / "steplaw.json"
    args = ["fit", str(DATA / "steplaw_dense_lr_bs_loss.csv"), "-o", str(out), "--method", "band", "--bootstrap", "0",
            "--no-loss-law", *STEPLAW]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    law = LawFile.load(out)
    assert law.flags == ["1 of 17 cells touch the edge of the swept lr range: widen the lr grid there: N=1.074e+09, D=5.69e+10"]
    assert "flags:\n  - 1 of 17 cells touch the edge" in result.output
    assert "prediction intervals: the wider of t with 16 dof" in law.notes and law.power_laws[0].bootstrap_covariance is not None
    strict_json(out)


def test_an_unfinished_sweep_is_refused_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A fit on a sweep with open slots gives another law with no warning; now it is refused, or flagged when allowed."""
    from scaleplan.sweep.runner import run_sweep
    from scaleplan.sweep.spec import load_spec

    spec = tmp_path / "part.toml"
    spec.write_text("""
[sweep]
name = "part"
sampler = "grid"
[ladder]
widths = [8, 16, 32]
steps = [10]
[search]
lr = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
batch_size = [4]
[objective]
callable = "sweep_objectives:quadratic"
""")
    run_sweep(load_spec(spec), max_trials=13)  # widths 8 and 16 done, width 32 has 3 of its 5 lrs
    code, err = run_main(["fit", str(spec), "-o", str(tmp_path / "x.json")], capsys)
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "x.json").exists()
    assert "the sweep is unfinished: 13 of 15 planned trials done, 1 of 3 grid points open (w32-s10-b4-seed0)" in err
    assert "--allow-incomplete" in err
    out = tmp_path / "partial.json"
    result = CliRunner().invoke(cli, ["fit", str(spec), "-o", str(out), "--allow-incomplete", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    law = LawFile.load(out)
    assert law.flags[0].startswith("fitted on an unfinished sweep: the sweep is unfinished: 13 of 15")
    assert "--allow-incomplete" in law.provenance.command and "fitted on an unfinished sweep" in result.output


def test_a_one_cell_sweep_names_its_optimum_before_refusing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Issue 10: `fit` on a one-width spec stopped without the cell's optimum; it is in the one-line error now."""
    csv = tmp_path / "one.csv"
    pd.DataFrame([dict(width=64, lr=lr, loss=1.0 + 0.05 * np.log(lr / 0.01) ** 2) for lr in np.geomspace(1e-3, 1e-1, 9)]).to_csv(csv, index=False)
    code, err = run_main(["fit", str(csv), "--x", "width", "-o", str(tmp_path / "x.json")], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "the sweep has one cell (width=64); its optimum (parabola): lr 0.01, loss 1" in err


def test_the_finite_width_form_from_the_cli_writes_its_term_plots_it_and_records_the_option(tmp_path: Path) -> None:
    out = tmp_path / "fw.json"
    args = ["fit", str(width_sweep(tmp_path / "mlp.csv")), "-o", str(out), "--x", "width", "--bootstrap", "10",
            "--lr-form", "finite-width", "--plot", str(tmp_path / "plots")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    law = LawFile.load(out)
    (lr,) = law.power_laws
    assert lr.exponents == {} and [c.name for c in lr.corrections or []] == ["W^-0.5"] and law.needs() == ["W"]
    assert "--lr-form finite-width" in law.provenance.command and "W^-0.5 correction" in result.output
    assert (tmp_path / "plots" / "lr_law.png").stat().st_size > 1000
    assert any("finite-width form assumes" in f for f in law.flags)  # a CSV: the parametrization is unknown


def test_the_default_law_path_never_replaces_a_published_law(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    """A sweep named like a shipped law (fits/steplaw.json) must not replace it unasked; a refit replaces its own law."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fits").mkdir()
    published = Path(__file__).resolve().parents[2] / "fits" / "steplaw.json"
    (tmp_path / "fits" / "steplaw.json").write_text(published.read_text())
    width_sweep(tmp_path / "steplaw.csv")
    code, err = run_main(["fit", "steplaw.csv", "--x", "width", "--bootstrap", "0"], capsys)
    assert code == 2 and "fits/steplaw.json already holds a law that scaleplan fit did not write (published); " \
        "name this fit's law file with -o FILE" in err
    assert (tmp_path / "fits" / "steplaw.json").read_text() == published.read_text()
    width_sweep(tmp_path / "mine.csv")
    for _ in range(2):  # fits/mine.json, then its refit replaces it
        assert CliRunner().invoke(cli, ["fit", "mine.csv", "--x", "width", "--bootstrap", "0"]).exit_code == 0
    assert LawFile.load(tmp_path / "fits" / "mine.json").provenance.source == "scaleplan fit"


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--band", "nan", "Invalid value for '--band': 'nan' is not a finite number."),
    ("--near", "inf", "Invalid value for '--near': 'inf' is not a finite number."),
    ("--huber-delta", "-1", "Invalid value for '--huber-delta'"),
    ("--seed", "-1", "Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295."),
])
def test_a_number_outside_its_range_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture, option: str, value: str,
                                                     message: str) -> None:
    code, err = run_main(["fit", str(width_sweep(tmp_path / "w.csv")), "-o", str(tmp_path / "w.json"), option, value], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_a_sweep_whose_objective_code_changed_is_flagged_in_its_law(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep warns on resume; the fit keeps it: trials from two versions of the code are fitted together."""
    from scaleplan.sweep.runner import run_sweep
    from scaleplan.sweep.spec import load_spec

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code = tmp_path / "changing_objective.py"
    code.write_text("import math\ndef f(p):\n    return (math.log10(p['lr']) + 2.5) ** 2 + 1 / p['width']\n")
    spec = tmp_path / "changing.toml"
    spec.write_text("""
[sweep]
name = "changing"
sampler = "grid"
[ladder]
widths = [8, 16, 32]
steps = [10]
[search]
lr = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
batch_size = [4]
[objective]
callable = "changing_objective:f"
""")
    run_sweep(load_spec(spec), max_trials=6)
    law_path = tmp_path / "changing.json"
    code.write_text(code.read_text() + "# edited\n")
    with pytest.warns(UserWarning, match="the objective's code changed since this sweep last ran"):
        run_sweep(load_spec(spec))
    result = CliRunner().invoke(cli, ["fit", str(spec), "-o", str(law_path), "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    flag = next(f for f in LawFile.load(law_path).flags if "code changed" in f)
    assert flag.startswith("the objective's code changed while the sweep ran (2 versions of changing_objective.py, sha256 ")

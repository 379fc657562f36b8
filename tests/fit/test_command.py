"""Tests of `scaleplan fit`: law file written through scaleplan.laws, plots, summary, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from scaleplan.cli import cli, main
from scaleplan.laws import LawFile

DATA = Path(__file__).resolve().parents[1] / "data"
STEPLAW = ["--column", "batch_size=bs", "--column", "loss=smooth loss", "--batch-unit-scale", "2048", "--batch-unit", "tokens"]


def test_steplaw_band_fit_writes_a_law_file_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "fits" / "steplaw-refit.json"
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


def run_main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err


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


@pytest.mark.parametrize("name, message", [("runs.parquet", "give a sweep spec (.toml) or a CSV"), ("absent.csv", "trials file not found")])
def test_bad_source(tmp_path: Path, capsys: pytest.CaptureFixture, name: str, message: str) -> None:
    code, err = run_main(["fit", str(tmp_path / name)], capsys)
    assert code == 2 and message in err


@pytest.mark.parametrize("flag, name", [("-o", "law file"), ("--plot", "plot")])
def test_unwritable_output_fails_before_the_fit(tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, name: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ["fit", str(width_sweep(tmp_path / "mlp.csv")), "--x", "width", "-o", str(tmp_path / "ok.json"), flag, str(blocker / "out")]
    code, err = run_main(args, capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: cannot write {name} to {blocker}/out") and "a-file is a file, not a directory" in err
    assert "method:" not in capsys.readouterr().out  # no summary: it stopped before fitting


def test_fit_modules_do_not_import_torch() -> None:
    code = (
        "import sys, scaleplan.fit.command, scaleplan.fit.hyperparameter_law, scaleplan.fit.loss_law, "
        "scaleplan.fit.critical_batch, scaleplan.fit.plots, scaleplan.fit.law_file, scaleplan.fit.summary; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

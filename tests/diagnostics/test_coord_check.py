"""Coordinate check: flat in width under muP / DenseAM rules, growing under SP; the CLI command."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from scaleplan.cli import cli
from scaleplan.errors import ScaleplanError
from scaleplan.diagnostics.coord_check import coord_check, width_ratios


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("model", ["mlp", "gpt"])
def test_mup_activations_stay_flat_and_sp_grows(model: str) -> None:
    mup = width_ratios(coord_check(model, "mup", widths=(64, 1024), steps=3), step=3)
    assert len(mup) >= 5 and mup.between(1 / 1.5, 1.5).all(), mup.to_dict()
    sp = width_ratios(coord_check(model, "sp", widths=(64, 1024), steps=3), step=3)
    assert sp.max() > 2.0, sp.to_dict()


def test_denseam_overlap_scale_stays_flat() -> None:
    ratios = width_ratios(coord_check("denseam", "denseam", widths=(64, 1024), steps=3), step=3)
    assert 1 / 1.5 < ratios["overlap"] < 1.5, ratios.to_dict()
    assert ratios.between(1 / 1.5, 1.5).all(), ratios.to_dict()


def test_frame_layout() -> None:
    frame = coord_check("mlp", "mup", widths=(32, 64), steps=2)
    assert list(frame.columns) == ["width", "step", "layer", "mean_abs"]
    assert sorted(frame["step"].unique()) == [0, 1, 2]
    assert set(frame["layer"]) == {"input", "hidden.0", "hidden.1", "act", "readout"}


def test_cli_writes_plot_and_table(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["coord-check", "--model", "denseam", "--parametrization", "denseam", "--widths", "32,64", "--steps", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "overlap" in result.output and "ratio" in result.output
    assert (tmp_path / "coord_check_denseam_denseam.png").stat().st_size > 1000


def test_cli_unwritable_out_fails_before_training(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(cli, ["coord-check", "--widths", "8,16", "--steps", "1", "--out", str(blocker / "cc")])
    assert isinstance(result.exception, ScaleplanError) and result.output == ""
    assert str(result.exception).startswith(f"cannot write plot to {blocker}/cc/coord_check_mlp_mup.png: {blocker} is a file")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--parametrization", "mu-p"], "unknown parametrization 'mu-p'"),
        (["--widths", "64,abc"], "--widths must be a comma list"),
        (["--widths", "64"], "--widths needs at least 2 different widths"),
        (["--widths", "64,128,64"], "--widths needs at least 2 different widths, each once"),
        (["--model", "denseam", "--parametrization", "mup"], "no rule for role 'memory'"),
    ],
)
def test_cli_bad_input_is_one_line(args: list[str], message: str, tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "scaleplan.cli", "coord-check", *args, "--steps", "1", "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr

"""A multi-axis sweep end to end on a fake trainer with known optima: sweep -> fit -> predict -> validate at a new depth.

The fake (sweep_objectives.multi_axis_bowl) has lr* = 0.01 (W/64)^-0.3 (L/2)^-0.5 (D/2^14)^-0.1 (B/16)^0.5 and
B* = 16 (D/2^14)^0.5; the law's signs, the prediction at depth 8 and the regrets in the written report are
checked against it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from scaleplan.cli import cli
from scaleplan.laws import LawFile
from sweep_objectives import multi_axis_bowl, multi_axis_optimum, surge_optimum

SPEC = """
[sweep]
name = "axes-e2e"
sampler = "grid"
[ladder]
widths = [64]
depths = [2, 4]
tokens = [16384, 65536]
[search]
lr = {low = 1e-3, high = 1e-1, points = 9}
batch_size = [8, 16, 32]
[objective]
callable = "sweep_objectives:multi_axis_bowl"
"""


def test_sweep_fit_predict_validate_over_depth_tokens_and_batch(tmp_path: Path) -> None:
    spec = tmp_path / "axes.toml"
    spec.write_text(SPEC)
    runner = CliRunner()
    assert runner.invoke(cli, ["sweep", str(spec)]).exit_code == 0

    law_path = tmp_path / "law.json"
    fitted = runner.invoke(cli, ["fit", str(spec), "-o", str(law_path), "--bootstrap", "0"])
    assert fitted.exit_code == 0, fitted.output
    law = LawFile.load(law_path)
    lr = next(p for p in law.power_laws if p.target == "lr").exponents
    assert set(lr) == {"L", "D", "B"} and lr["L"] < 0 and lr["D"] < 0 and lr["B"] > 0  # deeper, longer: lower; bigger batch: higher
    assert law.swept["depth"] == [2.0, 4.0] and law.swept["batch_size"] == [8.0, 16.0, 32.0]

    predicted = runner.invoke(cli, ["predict", "--law", str(law_path), "--depth", "8", "--tokens", "65536", "--batch", "32",
                                    "--format", "json"])
    assert predicted.exit_code == 0, predicted.output
    eta = json.loads(predicted.output)["lr"]["value"]
    assert eta == pytest.approx(multi_axis_optimum(64, 8, 65536, 32), rel=0.02)  # the law extrapolates 2x in depth exactly

    out = runner.invoke(cli, ["validate", str(spec), "--target", "depth=8", "--out", str(tmp_path / "res"),
                              "--name", "axes", "--bootstrap", "0"])
    assert out.exit_code == 0, out.output
    report = (tmp_path / "res" / "axes.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| axes-e2e |")).split("|")
    target, predicted_lr, raw, naive_cell = row[4].strip(), float(row[6]), row[8].strip("* "), row[10].strip()
    assert target == "depth 8 (2x the largest swept)" and naive_cell.endswith("(depth 4)")
    assert predicted_lr == pytest.approx(eta, rel=1e-3)  # validate trains the law's prediction at depth 8, batch 32, D 65536
    naive_lr = float(naive_cell.split()[0])
    assert naive_lr == pytest.approx(multi_axis_optimum(64, 4, 65536, 32), rel=0.02)

    def loss(x: float) -> float:
        return multi_axis_bowl({"width": 64, "depth": 8, "tokens": 65536, "batch_size": 32, "lr": x})["loss"]

    grid = [float(line.split("|")[1].split()[0]) for line in report.split("axes-e2e at depth 8")[1].splitlines() if line.startswith("| ") and not line.startswith("| lr")]
    best = min(loss(x) for x in grid)
    def noise_free(x: float) -> str:  # the same loss on every seed: no spread, and the best grid point is "best lr"
        return "0.00% (best lr)" if loss(x) == best else f"{loss(x) / best - 1:.2%} ± 0.00%"

    assert raw == noise_free(predicted_lr) and row[11].strip() == noise_free(naive_lr)
    assert loss(naive_lr) / best - 1 > 0.005 > loss(predicted_lr) / best - 1  # reusing depth 4's optimum costs more
    assert math.isfinite(float(row[14]))


SURGE_SPEC = """
[sweep]
name = "surge-e2e"
sampler = "grid"
[ladder]
widths = [64]
tokens = [16384, 32768, 65536]
[search]
lr = {low = 2e-3, high = 0.2, points = 15}
batch_size = [4, 8, 16, 32, 64]
[objective]
callable = "sweep_objectives:surge_bowl"
"""


def test_validate_trains_the_surge_law_at_a_batch_and_d_beyond_the_sweep(tmp_path: Path) -> None:
    """--lr-form surge: the law fitted on 15 (D, B) cells predicts batch 256 at 4x the largest D within 5% of the fake's
    optimum, validate trains that prediction (its report names the surge form) and it beats the naive reuse."""
    spec = tmp_path / "surge.toml"
    spec.write_text(SURGE_SPEC)
    out = CliRunner().invoke(cli, ["validate", str(spec), "--target", "batch=256", "--target", "tokens=262144", "--out",
                                   str(tmp_path / "res"), "--name", "surge", "--bootstrap", "10", "--lr-form", "surge"])
    assert out.exit_code == 0, out.output
    law = LawFile.load(tmp_path / "res" / "surge-e2e.json")
    assert law.surge is not None and law.lr_law() is law.surge
    report = (tmp_path / "res" / "surge.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| surge-e2e |")).split("|")
    assert float(row[6]) == pytest.approx(surge_optimum(262144, 256), rel=0.05)
    assert "cosh" in report and float(row[8].strip("* ").split("%")[0]) < 0.1 < float(row[11].strip("* ").split("%")[0])

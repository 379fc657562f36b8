"""`fit` reads a sweep however it is stored: its spec, its storage (`--storage`, no spec), or a CSV it
exported; each carries the sweep's parametrization reference, so `predict --width` gives per-role lrs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from scaleplan.cli import cli
from scaleplan.core.reference import ParametrizationRef
from scaleplan.laws import LawFile
from scaleplan.sweep.runner import run_sweep
from scaleplan.sweep.spec import load_spec

SPEC = """
[sweep]
name = "shift"
sampler = "grid"
[model]
parametrization = "mup"
[ladder]
widths = [8, 16, 32]
steps = [10]
[search]
lr = {low = 1e-4, high = 1.0, points = 9}
batch_size = [4]
[objective]
callable = "sweep_objectives:shifting"
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = tmp_path_factory.mktemp("sources") / "shift.toml"
    spec.write_text(SPEC)
    run_sweep(load_spec(spec))
    return spec


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_spec_storage_and_export_give_the_same_law_and_reference(swept: Path, tmp_path: Path) -> None:
    csv, parquet = tmp_path / "trials.csv", tmp_path / "trials.parquet"
    invoke("sweep", "export", str(swept), "-o", str(csv))
    invoke("sweep", "export", str(swept), "-o", str(parquet))
    laws = {}
    for label, args in {"spec": [str(swept)], "storage": ["--storage", str(swept.with_suffix(".journal"))], "csv": [str(csv)],
                        "parquet": [str(parquet)]}.items():
        invoke("fit", *args, "-o", str(tmp_path / f"{label}.json"), "--bootstrap", "10")
        laws[label] = LawFile.load(tmp_path / f"{label}.json")
    expected = ParametrizationRef(name="mup", base_width=8, optimizer="adam")  # base width: the smallest swept width
    for law in laws.values():
        assert law.parametrization == expected and law.needs() == ["W"]
        assert law.power_laws[0].exponents["W"] == pytest.approx(-1.0, abs=0.02)  # lr* ∝ 1/width, as swept
    assert laws["storage"].power_laws == laws["spec"].power_laws == laws["csv"].power_laws == laws["parquet"].power_laws
    assert laws["storage"].title == "parabola fit of study 'shift'" and laws["csv"].title == "parabola fit of trials.csv"


def test_predict_by_width_from_a_law_fitted_on_an_export(swept: Path, tmp_path: Path) -> None:
    csv = tmp_path / "trials.csv"
    invoke("sweep", "export", str(swept), "-o", str(csv))
    invoke("fit", str(csv), "-o", str(tmp_path / "law.json"), "--bootstrap", "10")
    out = json.loads(invoke("predict", "--width", "256", "--law", str(tmp_path / "law.json"), "--format", "json"))
    eta = out["lr"]["value"]
    assert eta == pytest.approx(0.01 * 8 / 256, rel=0.1)
    hidden = next(g for g in out["per_group"] if g["role"] == "hidden")
    assert hidden["lr"] == pytest.approx(eta / (256 / 8))  # muP: hidden Adam lr eta/m with m = 256/8

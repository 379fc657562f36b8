"""`scaleplan validate`: checks before training, an end-to-end run on a tiny spec, and the committed results."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scaleplan.core.reference import ParametrizationRef
from scaleplan.laws import LawFile

ROOT = Path(__file__).resolve().parents[2]
SPEC = """
[sweep]
name = "{name}"
sampler = "grid"
seeds = [0]

[task]
name = "teacher-student"

[model]
name = "mlp"
parametrization = "{parametrization}"
base_width = 8

[train]
optimizer = "adam"

[ladder]
widths = {widths}
steps = [{steps}]

[search]
lr = {{low = 1e-3, high = 3e-1, points = {points}, log = true}}
batch_size = [32]
"""


def write_spec(tmp_path: Path, name: str, parametrization: str = "mup", widths: str = "[8, 16]", steps: int = 20,
               points: int = 5, extra: str = "") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(SPEC.format(name=name, parametrization=parametrization, widths=widths, steps=steps, points=points) + extra)
    return path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scaleplan.cli", "validate", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_end_to_end_on_a_tiny_spec(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "tiny")
    out = run(str(spec), "--target-width", "32", "--seeds", "2", "--out", "res", "--bootstrap", "20", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = (tmp_path / "res" / "transfer.md").read_text()
    assert (tmp_path / "res" / "transfer.png").stat().st_size > 10_000
    law = LawFile.load(tmp_path / "res" / "tiny.json")
    assert law.needs() == ["W"] and law.parametrization == ParametrizationRef("mup", base_width=8)
    row = next(line for line in report.splitlines() if line.startswith("| tiny | mup |"))
    regret = float(row.split("**")[1].rstrip("%"))
    assert regret >= 0.0  # against the best of the grid and the choice itself, never negative
    assert "| tiny | 32 (target, best of grid) |" in report
    assert report.count("(predicted)") == 1 and report.count("(naive)") == 1
    assert "predicted regret" in out.stdout


def test_checks_every_spec_before_training(tmp_path: Path) -> None:
    good = write_spec(tmp_path, "good")
    bad = write_spec(tmp_path, "bad", extra='\n[objective]\ncallable = "math:sqrt"\n')
    out = run(str(good), str(bad), "--target-width", "64", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"error: {bad}: validate trains the target itself, so it needs a built-in task/model spec"]
    assert not list(tmp_path.glob("*.journal"))  # nothing was swept


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--target-width", "16"], "--target-width 16 must be wider than the widest swept width 16"),
        (["--target-width", "64", "--out", "blocker/res"], "cannot write report to blocker/res/transfer.md"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    (tmp_path / "blocker").write_text("a file where a folder is expected")
    out = run(str(write_spec(tmp_path, "s")), *args, cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and fragment in out.stderr, out.stderr


def test_same_sweep_name_twice_is_refused(tmp_path: Path) -> None:
    a = write_spec(tmp_path, "twin")
    b = tmp_path / "copy.toml"
    shutil.copy(a, b)
    out = run(str(a), str(b), "--target-width", "64", cwd=tmp_path)
    assert out.returncode == 2 and "share the sweep name 'twin'" in out.stderr


@pytest.mark.parametrize("name", ["transfer-mlp-mup", "transfer-mlp-sp", "transfer-gpt-mup", "transfer-denseam-denseam"])
def test_committed_law_refits_from_its_committed_trials(tmp_path: Path, name: str) -> None:
    """The results' law files follow from their sweeps: refitting the trials CSV gives the same law."""
    results = ROOT / "benchmarks" / "results"
    committed = json.loads((results / f"{name}.json").read_text())["power_laws"][0]
    out = subprocess.run([sys.executable, "-m", "scaleplan.cli", "fit", str(results / f"{name}-trials.csv"), "--x", "width",
                          "-o", str(tmp_path / "refit.json")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    refit = json.loads((tmp_path / "refit.json").read_text())["power_laws"][0]
    assert refit["exponents"]["W"] == pytest.approx(committed["exponents"]["W"], abs=1e-9)
    assert refit["intercept"] == pytest.approx(committed["intercept"], abs=1e-9)


@pytest.mark.slow
def test_reduced_validation_shows_mup_transfers_better_than_sp(tmp_path: Path) -> None:
    """A reduced version of benchmarks/run_validation.sh mlp on CPU (widths 16-64 -> 512, 2 seeds)."""
    specs = [write_spec(tmp_path, f"slow-{p}", p, widths="[16, 32, 64]", steps=300, points=12) for p in ("sp", "mup")]
    out = run(*map(str, specs), "--target-width", "512", "--seeds", "2", "--out", "res", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    regrets = {}
    for line in out.stdout.splitlines():
        if "predicted regret" in line:
            name = line.split()[0]
            regrets[name] = [float(x.rstrip("%")) for x in line.split() if x.endswith("%")]
    sp_predicted, sp_naive = regrets["slow-sp"]
    mup_predicted, mup_naive = regrets["slow-mup"]
    assert mup_predicted < sp_naive and mup_naive < sp_naive, regrets
    assert mup_predicted <= 2.0, regrets


def bowl(center: float):  # noqa: ANN201 - a fake trainer: loss is a parabola in log2(lr) around `center`
    import math

    return lambda lrs: [(lr, 0, 1.0 + (math.log2(lr) - math.log2(center)) ** 2) for lr in lrs]


def test_grid_is_extended_until_its_best_lr_is_inside() -> None:
    from scaleplan.validate.experiment import extend_grid

    grid = [2.0**k for k in range(-4, 1)]  # 1/16 .. 1, optimum at 1/128: three octaves below the grid
    messages: list[str] = []
    train = bowl(1 / 128)
    grown, rows, on_edge = extend_grid(grid, train(grid), train, 0.5, messages.append)
    assert not on_edge and min(grown) < 1 / 128 < max(grown)
    assert sorted(r[0] for r in rows) == [lr for lr in grown if lr not in grid]  # only the new lrs were trained
    # 1/16 -> 1/32 -> 1/64 -> 1/128 (still the lowest) -> 1/256: the optimum is inside after 4 extensions
    assert len(messages) == 4 and all("is on the grid's edge: adding" in m for m in messages)


def test_grid_extension_stops_and_says_lower_bound() -> None:
    from scaleplan.validate.experiment import MAX_EXTENSIONS, extend_grid

    grid = [1.0, 2.0, 4.0]
    messages: list[str] = []
    train = bowl(2.0**-20)  # far out of reach
    grown, rows, on_edge = extend_grid(grid, train(grid), train, 0.5, messages.append)
    assert on_edge and len(rows) == 2 * MAX_EXTENSIONS
    assert messages[-1] == "warning: the best target lr is still on the grid's edge; regret is a lower bound"

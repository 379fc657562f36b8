"""The transfer experiment on a fake trainer with a known optimum: the numbers in the written report are checked
against values computed here from the fake's own losses (sweep_objectives.bowl_loss)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from scaleplan.cli import cli
from sweep_objectives import bowl_loss, bowl_optimum

FAKE_SPEC = """
[sweep]
name = "{name}"
sampler = "grid"
seeds = [1]

[ladder]
widths = [8, 16, 32, 64]
steps = [100]

[search]
lr = {{low = 1e-4, high = 1e-1, points = 13}}

[objective]
callable = "sweep_objectives:{fn}"
"""
TARGET = 512
SEEDS = 5


def report_row(report: str, name: str) -> dict[str, str]:
    """The main table's row of spec `name`, as {header: cell}."""
    lines = report.splitlines()
    header = next(line for line in lines if line.startswith("| spec | parametrization |"))
    row = next(line for line in lines if line.startswith(f"| {name} |"))
    keys = [c.strip() for c in header.strip("|").split("|")]
    return dict(zip(keys, (c.strip().strip("*") for c in row.strip("|").split("|"))))


def percent(cell: str) -> tuple[float, float]:
    """`1.23% ± 0.45%` -> (0.0123, 0.0045); `0.00% (best lr)` (the best whichever seed is left out) -> (0.0, 0.0)."""
    value, _, se = cell.split(" (")[0].partition(" ± ")
    return float(value.rstrip("%")) / 100, float(se.rstrip("%") or 0) / 100


def grid_lrs(report: str, name: str) -> list[float]:
    """Every lr trained at the target, from the report's per-lr table of spec `name`."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name} at width"))
    rows = []
    for line in lines[start + 4 :]:  # past the title, a blank line, the header and its rule
        if not line.startswith("| "):
            break
        rows.append(float(line.strip("|").split("|")[0].split()[0]))
    return rows


def width_optima(report: str, name: str) -> dict[int, float]:
    """{swept width: lr*} from the report's drift table."""
    rows = [line.strip("|").split("|") for line in report.splitlines() if line.startswith(f"| {name} | width | ")]
    return {int(r[2]): float(r[3]) for r in rows if r[2].strip().isdigit()}


@pytest.fixture(scope="module")
def fake_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("fake")
    specs = []
    for name, fn in (("bowl", "transfer_bowl"), ("noisy", "transfer_bowl_noisy")):
        (tmp / f"{name}.toml").write_text(FAKE_SPEC.format(name=name, fn=fn))
        specs.append(str(tmp / f"{name}.toml"))
    result = CliRunner().invoke(cli, ["validate", *specs, "--target-width", str(TARGET), "--out", str(tmp / "res"),
                                      "--bootstrap", "30"])
    assert result.exit_code == 0, result.output
    return (tmp / "res" / "transfer.md").read_text()


def seed_losses(lr: float, noise: float) -> list[float]:
    return [bowl_loss(TARGET, lr, seed, noise) for seed in range(SEEDS)]


def expected_raw(report: str, name: str, lr: float, noise: float) -> tuple[float, float]:
    """Raw regret against the best lr of the report's grid, and its jackknife s.e. (the best picked again in each
    replicate), from the fake's losses."""
    finite = [seed_losses(x, noise) for x in grid_lrs(report, name) if all(map(math.isfinite, seed_losses(x, noise)))]
    best = min(finite, key=sum)
    choice = seed_losses(lr, noise)
    # the best lr picked again with seed i left out
    reps = [(sum(choice) - choice[i]) / min(sum(f) - f[i] for f in finite) - 1 for i in range(SEEDS)]
    centre = sum(reps) / SEEDS
    return sum(choice) / sum(best) - 1, math.sqrt((SEEDS - 1) / SEEDS * sum((r - centre) ** 2 for r in reps))


def true_regret(lr: float) -> float:
    """The fake's regret against its true minimum (2.0 at bowl_optimum(TARGET))."""
    return bowl_loss(TARGET, lr, 1) / 2.0 - 1


@pytest.mark.parametrize("name, noise", [("bowl", 0.0), ("noisy", 0.02)])
def test_report_numbers_match_the_fake_trainer(fake_report: str, name: str, noise: float) -> None:
    row = report_row(fake_report, name)
    predicted, naive = float(row["predicted lr"]), float(row["naive lr"].split()[0])
    assert row["seeds"] == "5" and row["target"] == "width 512 (8x the largest swept)"
    # the law absorbs the drift (lr* ~ W^-0.5): the prediction sits near the true optimum at 512 ...
    assert abs(math.log2(predicted / bowl_optimum(TARGET))) < 0.5  # the parabola per width sits low on this asymmetric bowl
    # ... the naive choice reuses the WIDEST swept width's optimum (64: 1.5 octaves above; the narrowest's is 3)
    optima = width_optima(fake_report, name)
    assert row["naive lr"].endswith("(width 64)") and naive == pytest.approx(optima[64], rel=5e-3)
    assert math.log2(naive / bowl_optimum(64)) == pytest.approx(math.log2(predicted / bowl_optimum(TARGET)), abs=0.25)
    for cell, lr in (("regret, raw", predicted), ("naive regret, raw", naive)):
        value, se = percent(row[cell])
        want, want_se = expected_raw(fake_report, name, lr, noise)
        assert value == pytest.approx(want, abs=5e-5) and se == pytest.approx(want_se, abs=5e-5), cell
        assert noise > 0 or se == 0.0  # identical seeds: no spread
    smoothed, _ = percent(row["regret, smoothed"])
    assert smoothed == pytest.approx(true_regret(predicted), abs=2e-4 if noise == 0 else 2e-3)
    naive_smoothed, _ = percent(row["naive regret, smoothed"])
    assert naive_smoothed == pytest.approx(true_regret(naive), abs=2e-4 if noise == 0 else 3e-3)


def test_diverged_seeds_are_counted_per_lr(fake_report: str) -> None:
    """Seed 0 of the fake diverges 2.75 octaves above the optimum: those lrs show 1/5, never an infinite regret."""
    lines = [line for line in fake_report.splitlines() if line.startswith("| ") and "/5 |" in line]
    for line in lines:
        lr = float(line.strip("|").split("|")[0].split()[0])
        expected = "1/5" if math.log2(lr / bowl_optimum(TARGET)) > 2.75 else "0/5"
        assert f"| {expected} |" in line, line
    assert any("| 1/5 |" in line for line in lines)
    assert "inf" not in fake_report


def bowl(center: float):  # noqa: ANN201 - a fake trainer: loss is a parabola in log2(lr) around `center`
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


def test_grid_is_extended_when_the_smoothed_minimum_sits_at_its_end() -> None:
    """A steep right side (curvature 10x the left) with its minimum at 2^1.8: the lowest mean is 2^1.5, one below
    the grid's top 2^2, but the local model's vertex lies within half a step of the top, so two lrs are added
    above it, once; a grid whose top is a full octave beyond the minimum is left as it is."""
    from scaleplan.validate.experiment import extend_grid

    def steep(lrs: list[float]) -> list[tuple[float, int, float]]:
        d = [math.log2(lr) - 1.8 for lr in lrs]
        return [(lr, 0, 1.0 + (10.0 if x > 0 else 1.0) * x * x) for lr, x in zip(lrs, d)]

    grid = [2.0 ** (k / 2) for k in range(5)]  # 1 .. 4
    messages: list[str] = []
    grown, rows, on_edge = extend_grid(grid, steep(grid), steep, 0.5, messages.append)
    assert not on_edge and sorted(r[0] for r in rows) == pytest.approx([2**2.5, 2**3.0])
    assert messages == ["the smoothed curve's minimum is on the grid's edge: adding 5.66, 8"]
    wider = [2.0 ** (k / 2) for k in range(7)]  # 1 .. 8
    assert extend_grid(wider, steep(wider), steep, 0.5, messages.append)[1] == []


def test_grid_grows_past_a_flat_end_and_finds_the_basin_beyond() -> None:
    """A plateau within 0.1% from 2^-9 to 2^-5 (the grid), then a basin 0.7% lower at 2^-3.8: the grid's top end is
    within FLAT of the best, so the grid grows upward until the basin's minimum is bracketed by ends that rise."""
    from scaleplan.validate.experiment import extend_grid

    def plateau(lrs: list[float]) -> list[tuple[float, int, float]]:
        x = [math.log2(lr) for lr in lrs]
        return [(lr, 0, 1.0 + 0.0002 * (u + 7) ** 2 - 0.01 * math.exp(-((u + 3.8) ** 2) / 0.3)) for lr, u in zip(lrs, x)]

    grid = [2.0 ** (k / 2) for k in range(-18, -9)]  # 2^-9 .. 2^-5
    messages: list[str] = []
    grown, rows, on_edge = extend_grid(grid, plateau(grid), plateau, 0.5, messages.append)
    best = min(rows, key=lambda r: r[2])[0]
    assert not on_edge and math.log2(best) == pytest.approx(-4.0)
    assert messages[0] == "the loss at the grid's top lr 0.03125 is within 0.5% of the best: adding 0.0442, 0.0625"
    assert max(grown) == pytest.approx(2**-3)  # the basin's far side rises 0.9% above it: no further growth


def test_grid_extension_stops_and_says_lower_bound() -> None:
    from scaleplan.validate.experiment import MAX_EXTENSIONS, extend_grid

    grid = [1.0, 2.0, 4.0]
    messages: list[str] = []
    train = bowl(2.0**-20)  # far out of reach
    grown, rows, on_edge = extend_grid(grid, train(grid), train, 0.5, messages.append)
    assert on_edge and len(rows) == 2 * MAX_EXTENSIONS
    assert messages[-1] == "warning: the best target lr is still on the grid's edge; regret is a lower bound"


def test_target_grid_covers_both_choices_with_margin() -> None:
    from scaleplan.validate.experiment import target_lr_grid

    grid = target_lr_grid(predicted=1e-3, naive=8e-3, step_log2=0.5, margin_log2=1.5)
    logs = sorted(math.log2(g / 1e-3) for g in grid)
    assert logs[0] == -1.5 and logs[-1] == 3 + 1.5
    assert all(math.isclose(b - a, 0.5) or math.isclose(b - a, 1.0) for a, b in zip(logs, logs[1:]))
    assert 0.0 not in logs  # the prediction itself is trained separately, not twice
    assert len(grid) == 12


def test_target_runs_keep_the_specs_fixed_search_values(tmp_path: Path) -> None:
    """A value fixed in [search] (HF GPT-2's `init_std = [0.02]`) reaches every target run, as it reached every swept
    trial; the first release trained the target without it (a silently different model)."""
    spec = FAKE_SPEC.format(name="gain", fn="transfer_bowl_needs_gain").replace(
        "[search]\n", "[search]\ngain = [2.0]\n")
    (tmp_path / "gain.toml").write_text(spec)
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "gain.toml"), "--target-width", "128", "--seeds", "1",
                                      "--out", str(tmp_path / "res"), "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert "gain" in (tmp_path / "res" / "transfer.md").read_text()


def test_validate_reads_and_writes_its_sweeps_in_the_storage_given(tmp_path: Path) -> None:
    """`validate --storage` runs the sweep there (not next to the spec), fits from there, and the law's provenance
    names the storage; a storage that cannot be opened is refused before any training."""
    import json

    (tmp_path / "bowl.toml").write_text(FAKE_SPEC.format(name="bowl", fn="transfer_bowl"))
    db = tmp_path / "elsewhere" / "sweeps.db"
    db.parent.mkdir()
    args = ["validate", str(tmp_path / "bowl.toml"), "--target-width", "128", "--seeds", "1", "--out", str(tmp_path / "res"),
            "--bootstrap", "0"]
    result = CliRunner().invoke(cli, [*args, "--storage", str(db)])
    assert result.exit_code == 0, result.output
    assert db.is_file() and not (tmp_path / "bowl.journal").exists()
    law = json.loads((tmp_path / "res" / "bowl.json").read_text())
    assert f"--storage {db}" in law["provenance"]["command"]
    bad = CliRunner().invoke(cli, [*args, "--name", "bad", "--storage", "mysql://u@h/db"])  # exit 2: tests/test_bad_input.py
    assert "unsupported storage scheme" in str(bad.exception) and not (tmp_path / "res" / "bad.md").exists()


def test_a_rerun_trains_none_of_the_target_runs_already_recorded(tmp_path: Path) -> None:
    """The target's runs are recorded as they finish (validate/target_runs.py): the same validation again trains
    nothing and writes the same report; another target in the same --out gets its own record."""
    (tmp_path / "bowl.toml").write_text(FAKE_SPEC.format(name="bowl", fn="transfer_bowl"))
    args = ["validate", str(tmp_path / "bowl.toml"), "--target-width", "128", "--seeds", "2", "--out", str(tmp_path / "res"),
            "--bootstrap", "0"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    record = tmp_path / "res" / "bowl-target-width128.csv"
    runs = record.read_text().splitlines()
    assert runs[0].startswith("# identity: ") and runs[1] == "lr,seed,loss"
    assert len(runs) - 2 == 2 * len(grid_lrs((tmp_path / "res" / "transfer.md").read_text(), "bowl"))
    report = (tmp_path / "res" / "transfer.md").read_text()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and f"{len(runs) - 2} of them already in {record}; 0 to train" in again.output
    assert (tmp_path / "res" / "transfer.md").read_text() == report and record.read_text().splitlines() == runs
    other = CliRunner().invoke(cli, [*args[:3], "256", *args[4:]])
    assert other.exit_code == 0 and (tmp_path / "res" / "bowl-target-width256.csv").is_file()

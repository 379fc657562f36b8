"""Multi-axis fits: lr*(W, L, D, B) and B*(D) recovered from a fake trainer with known optima; the critical batch."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from scaleplan.cli import cli
from scaleplan.errors import ScaleplanError
from scaleplan.fit.axes_summary import format_multi_axis
from scaleplan.fit.critical_batch import steps_to_target
from scaleplan.fit.data import prepare_trials
from scaleplan.fit.multi_axis import critical_batches, fit_multi_axis
from scaleplan.laws import LawFile
from sweep_objectives import multi_axis_batch, multi_axis_bowl, multi_axis_optimum

LRS = np.geomspace(1e-3, 1e-1, 11)


def grid(widths=(64, 128), depths=(2, 4), tokens=(2**14, 2**16), batches=(8, 16, 32, 64)) -> pd.DataFrame:
    rows = []
    for w, depth, d, b, lr in itertools.product(widths, depths, tokens, batches, LRS):
        out = multi_axis_bowl({"width": w, "depth": depth, "tokens": d, "batch_size": b, "lr": lr})
        rows.append({"width": w, "depth": depth, "D": d, "batch_size": b, "steps": d // b, "lr": lr, **out})
    return pd.DataFrame(rows)


def test_recovers_every_exponent_and_the_batch_law() -> None:
    trials = prepare_trials(grid(), x="width", extra_sizes=("depth",))
    fit = fit_multi_axis(trials, ("width", "depth"), by_batch=True, n_boot=0)
    assert fit.columns == ("width", "depth", "D", "batch_size") and len(fit.cells) == 32
    assert fit.lr.exponents == pytest.approx({"W": -0.3, "L": -0.5, "D": -0.1, "B": 0.5}, abs=0.02)
    assert fit.lr_batch_exponent == pytest.approx(0.5, abs=0.02)
    assert math.exp(fit.lr.intercept) * 64**-0.3 * 2**-0.5 * (2**14) ** -0.1 * 16**0.5 == pytest.approx(
        multi_axis_optimum(64, 2, 2**14, 16), rel=0.05)
    assert [b.batch for b in fit.batch_optima[:2]] == pytest.approx([multi_axis_batch(2**14), multi_axis_batch(2**16)], rel=0.02)
    assert fit.batch_size.exponents == pytest.approx({"D": 0.5}, abs=0.01)


def test_an_axis_that_does_not_vary_is_no_regressor() -> None:
    """A horizon sweep at one size: lr*(D) alone."""
    trials = prepare_trials(grid(widths=(64,), depths=(2,), tokens=(2**12, 2**14, 2**16), batches=(16,)), x="width")
    fit = fit_multi_axis(trials, ("width",), by_batch=False, n_boot=0)
    assert fit.lr.exponents == pytest.approx({"D": -0.1}, abs=0.01) and fit.batch_size is None


def test_steps_to_target_interpolates_in_log_steps() -> None:
    """loss = 1 + 0.1 ln(S(B) / steps): every batch size reaches the target T at S(B) exp(-(T - 1) / 0.1)."""
    def s_of(b: float) -> float:
        return 100 * (1 + 64 / b)

    curves = {b: [(s, 1 + 0.1 * math.log(s_of(b) / s)) for s in (50.0, 200.0, 800.0, 3200.0)] for b in (8, 16, 32, 64, 128)}
    reached = steps_to_target(curves)
    scale = math.exp(-(reached.target_loss - 1) / 0.1)
    assert reached.steps == pytest.approx([s_of(b) * scale for b in reached.batch], rel=1e-9)
    assert list(reached.batch) == [8, 16, 32, 64, 128] and reached.skipped == ()
    with pytest.raises(ScaleplanError, match="need at least 3 batch sizes"):
        steps_to_target({8: curves[8], 16: curves[16]})


def critical_batch_trials(b_crit: float, batches: tuple[int, ...]) -> pd.DataFrame:
    """Cells per (D, B) whose best loss follows the steps S(B) = 100 (1 + b_crit / B) needs to reach loss 1."""
    rows = []
    for b, d in itertools.product(batches, (2**12, 2**14, 2**16, 2**18)):
        steps = d // b
        best = 1 + 0.1 * math.log(100 * (1 + b_crit / b) / steps)
        rows += [{"width": 64, "D": d, "batch_size": b, "steps": steps, "lr": lr,
                  "loss": best + 0.05 * math.log(lr / 0.01) ** 2} for lr in LRS]
    return prepare_trials(pd.DataFrame(rows), x="width")


def test_critical_batch_from_a_sweep_grid() -> None:
    """Cells per (D, B): the best loss of each run length feeds steps to target; B_crit comes back."""
    fit = fit_multi_axis(critical_batch_trials(16, (4, 8, 16, 32, 64)), ("width",), by_batch=True, n_boot=0)
    (only,) = critical_batches(fit)
    assert only.fit.b_crit == pytest.approx(16, rel=0.02)


@pytest.mark.parametrize("b_crit, says", [(1e6, "not determined (above the swept batch sizes"),
                                          (1e-3, "not determined (below the swept batch sizes"),
                                          (16, "B_crit = 16")])
def test_the_summary_says_where_an_undetermined_critical_batch_lies(b_crit: float, says: str) -> None:
    """Steps that halve with every doubling of B (the MLP teacher-student sweep) put B_crit above the swept batches:
    the fit says so instead of printing a meaningless B_crit and S_min; likewise below them."""
    trials = critical_batch_trials(b_crit, (4, 8, 16, 32))
    fit = fit_multi_axis(trials, ("width",), by_batch=True, n_boot=0)
    (line,) = [x for x in format_multi_axis(trials, fit, critical_batches(fit)).splitlines() if x.startswith("critical batch")]
    assert line.startswith(f"critical batch at width=64: {says}")
    assert ("S_min" in line) == (b_crit == 16)


SPEC = """
[sweep]
name = "axes"
sampler = "grid"
[ladder]
widths = [64, 128]
depths = [2, 4]
tokens = [16384, 65536]
[search]
lr = {low = 1e-3, high = 1e-1, points = 9}
batch_size = [8, 16, 32, 64]
[objective]
callable = "sweep_objectives:multi_axis_bowl"
"""


@pytest.fixture(scope="module")
def axes_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scaleplan.sweep.runner import run_sweep
    from scaleplan.sweep.spec import load_spec

    path = tmp_path_factory.mktemp("axes") / "axes.toml"
    path.write_text(SPEC)
    run_sweep(load_spec(path))
    return path


@pytest.mark.parametrize("x, sizes", [(None, {"W": -0.3, "L": -0.5}), ("N", None)])
def test_fit_command_writes_a_law_with_size_d_and_b_exponents(axes_spec: Path, tmp_path: Path, x: str | None, sizes) -> None:
    out = tmp_path / "law.json"
    result = CliRunner().invoke(cli, ["fit", str(axes_spec), "-o", str(out), "--bootstrap", "0", *(["--x", x] if x else [])])
    assert result.exit_code == 0, result.output
    law = LawFile.load(out)
    lr = next(p for p in law.power_laws if p.target == "lr")
    batch = next(p for p in law.power_laws if p.target == "batch_size")
    assert set(lr.exponents) == ({"W", "L", "D", "B"} if x is None else {"N", "D", "B"})
    if sizes:
        assert {k: lr.exponents[k] for k in sizes} == pytest.approx(sizes, abs=0.02)
    else:  # N = 12 L W^2 mixes both: its exponent lies between W's -0.3/2 and L's -0.5
        assert -0.5 < lr.exponents["N"] < -0.15
    assert lr.exponents["B"] == pytest.approx(0.5, abs=0.02) and batch.exponents == pytest.approx({"D": 0.5}, abs=0.02)
    assert law.swept == {"width": [64.0, 128.0], "depth": [2.0, 4.0], "N": sorted({12.0 * d * w * w for d in (2, 4) for w in (64, 128)}),
                         "D": [16384.0, 65536.0], "steps": sorted({d / b for d in (16384.0, 65536.0) for b in (8, 16, 32, 64)}),
                         "batch_size": [8.0, 16.0, 32.0, 64.0]}
    assert "lr-batch exponent at fixed" in result.output and "B* at" in result.output
    prediction = law.predict(**({"width": 256, "depth": 8} if x is None else {"params": 12 * 8 * 256**2}), tokens=2**18)
    assert prediction.batch_size == pytest.approx(multi_axis_batch(2**18), rel=0.05)  # B* extrapolated 4x in D
    assert prediction.inputs["B"] == prediction.batch_size  # the lr is taken at the predicted batch size


def drifting_exponent_rows(exponents: tuple[tuple[int, float], ...]) -> list[dict]:
    """Exact bowls with lr* = 0.01 (B/16)^k(D) at each (D, k) of `exponents`, and B* below the smallest batch."""
    rows = []
    for d, k in exponents:
        for b in (8, 16, 32, 64):
            opt = 0.01 * (b / 16) ** k
            rows += [{"width": 64, "D": d, "batch_size": b, "steps": d // b, "lr": lr,
                      "loss": 2.0 + 0.04 * math.log2(lr / opt) ** 2 + 0.02 * math.log2(b / 2) ** 2} for lr in LRS]
    return rows


def test_flags_an_edge_batch_optimum_and_an_exponent_that_differs_between_d() -> None:
    """B* below the smallest batch swept at every D: no batch law (an edge is a bound); lr* ~ B^0.9 at one D and
    B^0.1 at the other, fitted without the B:D term (the default): the pooled exponent is flagged, with each D's own."""
    rows = drifting_exponent_rows(((2**14, 0.9), (2**16, 0.1)))
    fit = fit_multi_axis(prepare_trials(pd.DataFrame(rows), x="width"), ("width",), by_batch=True, n_boot=0)
    assert fit.batch_size is None and all(b.optimum.at_edge for b in fit.batch_optima)
    flags = fit.flags()
    assert flags[0].startswith("2 of 2 (size, D) groups have B* at the edge of the swept batch sizes (no batch-size law written)")
    assert flags[1].startswith("the lr-batch exponent differs between groups (intervals do not overlap): width=64, D=1.638e+04: 0.900")
    assert "D=6.554e+04: 0.100" in flags[1] and "--lr-batch-interaction on) holds only inside the swept D" in flags[1]


def test_a_drifting_lr_batch_exponent_gets_a_b_by_d_term() -> None:
    """lr* ~ B^k with k = 0.9, 0.5, 0.1 at D = 2^14, 2^15, 2^16 (k linear in ln D): by default the law takes the
    B:D term with --lr-batch-interaction auto, recovers k at each D (so it predicts at a batch 4x beyond the swept
    ones), and nothing is flagged; with the term off (the default), the one exponent misses the 4x target by more
    than half an octave."""
    rows = drifting_exponent_rows(((2**14, 0.9), (2**15, 0.5), (2**16, 0.1)))
    trials = prepare_trials(pd.DataFrame(rows), x="width")
    fit = fit_multi_axis(trials, ("width",), by_batch=True, n_boot=20, batch_interaction="auto")
    term = fit.batch_by_d
    assert term is not None and term.variables == ("B", "D")
    assert fit.lr.exponents["B"] == pytest.approx(0.5, abs=0.02)  # at the centre D = 2^15
    assert term.coefficient == pytest.approx(-0.4 / math.log(2), rel=0.05)  # dk/dlnD
    assert not any("differs between groups" in f for f in fit.flags())
    truth = 0.01 * (256 / 16) ** 0.1
    assert float(fit.lr.predict({"B": 256.0, "D": 2.0**16})) == pytest.approx(truth, rel=0.1)
    low, high = fit.bootstrap_interval("lr", {"B": 256.0, "D": 2.0**16})
    assert low < float(fit.lr.predict({"B": 256.0, "D": 2.0**16})) < high
    pooled = fit_multi_axis(trials, ("width",), by_batch=True, n_boot=0)
    assert pooled.batch_by_d is None and abs(math.log2(float(pooled.lr.predict({"B": 256.0, "D": 2.0**16})) / truth)) > 0.5


def test_no_b_by_d_term_where_the_exponent_does_not_drift() -> None:
    """One exponent (0.5) at every D: auto leaves the term out; on keeps it, fitted near 0."""
    trials = prepare_trials(pd.DataFrame(drifting_exponent_rows(((2**14, 0.5), (2**15, 0.5), (2**16, 0.5)))), x="width")
    assert fit_multi_axis(trials, ("width",), by_batch=True, n_boot=0, batch_interaction="auto").batch_by_d is None
    forced = fit_multi_axis(trials, ("width",), by_batch=True, n_boot=0, batch_interaction="on").batch_by_d
    assert forced is not None and abs(forced.coefficient) < 0.02


def test_a_b_star_whose_best_loss_is_at_the_smallest_batch_is_at_the_edge_wherever_the_vertex_lands() -> None:
    """The char-LM's profile: the loss rises from the smallest batch on, steeply, so the parabola's vertex lands just
    inside (B* 1.16 and 1.57 sequences, read as bracketed and fitted into a B*(D) law); the lowest loss is at the smallest
    batch, so B* is a bound there, and no law is written from bounds."""
    rows = []
    best = {1: 2.2884, 2: 2.2968, 4: 2.3308, 8: 2.375, 16: 2.4699, 32: 2.5553}  # gpt-batch's at D = 2^15, per batch
    for d, (b, low) in itertools.product((2**14, 2**16), best.items()):
        rows += [{"width": 32, "D": d, "batch_size": b, "steps": d // b, "lr": lr,
                  "loss": low + 0.04 * math.log2(lr / 0.01) ** 2} for lr in LRS]
    fit = fit_multi_axis(prepare_trials(pd.DataFrame(rows), x="width"), ("width",), by_batch=True, n_boot=0)
    assert all(1.0 < b.batch < 2.0 for b in fit.batch_optima)  # the vertex: inside the swept batches
    assert all(b.optimum.at_edge for b in fit.batch_optima) and fit.batch_size is None

"""`scaleplan predict` on bad requests and doubtful laws: a one-line error and exit 2, or a warning naming the doubt;
never an internal error, never inf or NaN (or invalid JSON) printed as the answer."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from scaleplan.cli import main
from scaleplan.core.reference import ParametrizationRef
from scaleplan.errors import ScaleplanError
from scaleplan.laws import Estimate, LawFile, PowerLaw, Provenance, Variable, shipped_dir
from scaleplan.plan.prescribe import Prescription, prescribe
from scaleplan.plan.render import to_json

MUP = str(shipped_dir() / "transfer-mlp-mup.json")


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """The command line in-process: (exit code, stdout, stderr)."""
    try:
        main(["predict", *argv])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def refused(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """The one error line of a refused command (exit 2, nothing on stdout)."""
    code, out, err = run(argv, capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and err.startswith("error: "), (code, out, err)
    assert "internal error" not in err
    return err


def saved(tmp_path: Path, change: Any) -> str:
    """The shipped muP width law with `change` applied to its JSON, saved; returns the path."""
    data = json.loads(Path(MUP).read_text())
    change(data)
    path = tmp_path / "law.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("fmt", ["table", "json", "yaml"])
@pytest.mark.parametrize("level", ["nan", "inf", "-inf"])
def test_a_nan_level_is_refused(capsys, level, fmt):
    err = refused(["--params", "7B", "--level", level, "--format", fmt], capsys)
    assert "--level" in err and ("between 0 and 1" in err or "not in the range" in err)


@pytest.mark.parametrize("exponent", [1e308, 300.0])
@pytest.mark.parametrize("fmt", ["table", "json", "yaml"])
def test_an_overflowing_law_is_refused_in_every_format(tmp_path, capsys, exponent, fmt):
    law = saved(tmp_path, lambda d: d["power_laws"][0]["exponents"].update(W=exponent))
    err = refused(["--width", "256", "--law", law, "--format", fmt], capsys)
    assert "lr at W=256 overflows a float" in err


def test_json_output_never_holds_nan_or_infinity():
    bad = Prescription(law="x", law_title="t", inputs=[], lr=Estimate(math.inf))
    with pytest.raises(ScaleplanError, match="refusing to print invalid JSON"):
        to_json(bad)


def test_a_prescription_with_a_non_finite_number_is_refused():
    from scaleplan.plan.prescribe import _finite_answer

    with pytest.raises(ScaleplanError, match=r"the prescription's lr.high is not a finite number"):
        _finite_answer(Prescription(law="x", law_title="t", inputs=[], lr=Estimate(1e-3, 1e-4, math.inf)))


def test_a_target_the_planner_does_not_know_is_refused(tmp_path, capsys):
    law = saved(tmp_path, lambda d: d["power_laws"][0].update(target="foo"))
    err = refused(["--width", "256", "--law", law], capsys)
    assert "has a law for 'foo', which scaleplan predict does not know" in err and "rename the target" in err


def test_a_fractional_width_is_refused_and_one_below_the_base_is_warned(capsys):
    assert "--width 1.5 is not a whole number" in refused(["--width", "1.5", "--law", MUP], capsys)
    code, out, _ = run(["--width", "16", "--law", MUP], capsys)  # m = 0.5: muP's rules hold, the data do not reach
    assert code == 0 and "W=16 is 2x below the fitted range [32, 128]" in out
    assert "param_groups cannot set them" in " ".join(out.split())  # apply_parametrization refuses a wider base


def test_a_width_below_the_base_of_a_law_without_fitted_widths_is_warned():
    law = LawFile(name="depth", title="lr*(L)", provenance=Provenance(source="test"), variables=[Variable("L", "depth", "layers")],
                  power_laws=[PowerLaw("lr", "learning rate", math.log(0.014), {"L": -0.08})], fitted_range={"L": (1, 4)},
                  parametrization=ParametrizationRef("mup", base_width=32, base_depth=1, completep=True))
    warnings = prescribe(law, width=16, depth=4).warnings
    assert any("width 16 is below the law's base width 32 (m = 0.5)" in w for w in warnings)
    assert not any("base width" in w for w in prescribe(law, width=64, depth=4).warnings)
    # without --width no per-role lrs are printed, and the lr is named for what it is: muP's eta, scaled per role
    assert prescribe(law, depth=4).warnings[-1] == (
        "law 'depth' is a mup law: its lr is the base lr eta, which each tensor role scales by the width you train (base "
        "width 32); give --width for the per-role lrs, or let param_groups(model, prediction) set them")


@pytest.mark.parametrize("argv, fragment", [
    (["--params", "7B", "--tokens", "0.5"], "--tokens 0.5 is less than one token"),
    (["--params", "0.5", "--tokens", "2T"], "--params 0.5 is less than one parameter"),
    (["--params", "7B", "--aspect", "nan"], "--aspect (d_model / layers) must be a positive finite number"),
])
def test_counts_below_one_and_a_nan_aspect_are_refused(capsys, argv, fragment):
    assert fragment in refused(argv, capsys)


def test_a_shape_that_contradicts_params_is_refused_by_how_much(capsys):
    err = refused(["--params", "7B", "--d-model", "128", "--layers", "1"], capsys)
    assert "--params 7B asks for 7B non-embedding parameters" in err and "12*L*d^2 = 197k, 3.56e+04x fewer" in err
    assert "drop --d-model and --layers" in err
    assert "201x more" in refused(["--params", "1M", "--d-model", "4096"], capsys)
    p = prescribe("steplaw", params=7e9, d_model=4096, n_layers=32, tokens=2e12)  # LLaMA-7B: 12*L*d^2 = 6.4B
    assert p.shape.non_embedding_params == 7e9 and p.shape.derived == "given"


def test_an_optimizer_the_law_was_not_fitted_for_is_refused_for_every_law(capsys):
    for argv in (["--params", "7B"], ["--width", "256", "--law", MUP]):
        assert "does not transfer to 'sgd'" in refused([*argv, "--optimizer", "sgd"], capsys)
    assert prescribe("steplaw", params=7e9, optimizer="adamw").lr is not None  # Adam and AdamW share their lr rules


def test_an_optimizer_a_law_does_not_record_is_warned():
    law = LawFile(name="n", title="t", variables=[Variable("N", "params", "parameters")], provenance=Provenance(source="test"),
                  power_laws=[PowerLaw("lr", "learning rate", 0.0, {"N": -0.3})])
    assert any("does not record the optimizer" in w for w in prescribe(law, params=1e9, optimizer="sgd").warnings)
    assert not any("optimizer" in w for w in prescribe(law, params=1e9).warnings)


def test_every_flag_of_a_law_is_a_warning_of_predict(tmp_path, capsys):
    flag = "3 of 3 cells are flat (every trial within the band of the minimum): the sweep locates no optimum there"
    law = saved(tmp_path, lambda d: d.update(flags=[flag]))
    code, out, _ = run(["--width", "256", "--law", law], capsys)
    assert code == 0 and "WARNING: law 'transfer-mlp-mup' was fitted from doubtful data: 3 of 3 cells are flat" in out
    code, out, _ = run(["--width", "256", "--law", law, "--format", "json"], capsys)
    assert code == 0 and any(flag in w for w in json.loads(out)["warnings"])


def test_the_tokens_laws_flags_are_warned_too():
    from scaleplan.laws import LossLaw

    tokens_law = LawFile(name="tl", title="t", variables=[Variable("N", "params", "parameters", "total"), Variable("D", "tokens", "tokens")],
                         provenance=Provenance(source="test"), loss_law=LossLaw(1.7, 400.0, 400.0, 0.34, 0.28), flags=["a doubt"])
    assert "law 'tl' was fitted from doubtful data: a doubt" in prescribe("steplaw", params=1e9, tokens_law=tokens_law).warnings


@pytest.mark.parametrize("argv", [["--compute", "1"], ["--compute", "1e10"], ["--compute", "1", "--tokens", "1"]])
def test_a_budget_too_small_for_a_model_blames_compute(capsys, argv):
    err = refused(argv, capsys)
    assert err.startswith("error: --compute") and "give a larger --compute" in err and "--params" not in err

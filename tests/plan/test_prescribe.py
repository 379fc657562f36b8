import math
import warnings

import pytest

from scaleplan import load_law
from scaleplan.errors import ScaleplanError
from scaleplan.plan.prescribe import prescribe
from scaleplan.plan.shape import non_embedding_from_total, shape_for


def test_steplaw_uses_given_non_embedding_params():
    p = prescribe("steplaw", params=7e9, tokens=2e12)
    assert p.inputs[0].name == "N" and p.inputs[0].value == 7e9
    assert f"{p.lr.value:.3g}" == f"{1.79 * 7e9**-0.713 * 2e12**0.307:.3g}" == "0.00102"
    assert f"{p.batch_size.value:.3g}" == f"{0.58 * 2e12**0.571:.3g}"
    assert p.batch_sequences == round(0.58 * 2e12**0.571 / 4096)
    assert p.lr.low < p.lr.value < p.lr.high
    assert any("above the fitted range" in w for w in p.warnings)


def test_deepseek_gets_M_times_D_from_the_shape():
    p = prescribe("deepseek", d_model=4096, n_layers=30, tokens=2e12, seq_len=4096)
    m = 72 * 30 * 4096**2 + 12 * 30 * 4096 * 4096
    assert math.isclose(p.inputs[0].value, m * 2e12, rel_tol=1e-12)
    assert math.isclose(p.lr.value, 0.3118 * (m * 2e12) ** -0.125, rel_tol=1e-12)
    assert p.lr.low is None  # no published covariance, no made-up interval


def test_tokens_default_to_compute_optimal_under_epoch():
    p = prescribe("steplaw", params=1e9)
    assert p.tokens_source.startswith("compute-optimal")
    assert 15 < p.tokens / p.shape.total_params < 30


def test_compute_alone_gives_n_and_d():
    p = prescribe("steplaw", compute=1e23)
    assert math.isclose(6 * p.shape.total_params * p.tokens, 1e23, rel_tol=1e-6)


def test_params_total_converts_with_vocab():
    p = prescribe("steplaw", params=7e9, params_total=True, vocab=50000, tied=True, tokens=1e12)
    assert math.isclose(p.shape.total_params, 7e9, rel_tol=1e-9)
    assert math.isclose(p.inputs[0].value, 7e9 - 50000 * p.shape.d_model, rel_tol=1e-9)


def test_chinchilla_uses_total_params():
    p = prescribe("chinchilla", params=7e9, vocab=32000, tokens=1e12)
    assert p.lr is None and p.inputs == []
    assert math.isclose(p.predicted_loss, 1.69 + 406.4 / p.shape.total_params**0.34 + 410.7 / 1e12**0.28)


def test_shape_for_7b_by_hand():
    # L0 = (7e9 / (12 * 128^2))^(1/3) = 32.9 -> d = round(128 * 32.9 / 128) * 128 = 4224; L = round(7e9 / (12 * 4224^2)) = 33
    s = shape_for(7e9, vocab=32000, tied=False, seq_len=2048)
    assert (s.d_model, s.n_layers, s.n_heads) == (4224, 33, 33)
    assert s.non_embedding_params == 7e9 and s.total_params == 7e9 + 2 * 32000 * 4224


@pytest.mark.parametrize("n", [125e6, 350e6, 1.3e9, 13e9, 70e9])
def test_shape_for_is_close_to_the_count(n):
    s = shape_for(n, vocab=32000, tied=False, seq_len=2048)
    assert s.d_model % 128 == 0
    assert abs(12 * s.n_layers * s.d_model**2 - n) / n < 0.12
    assert 0.5 < (s.d_model / s.n_layers) / 128 < 2


def test_total_smaller_than_embeddings_is_an_error():
    with pytest.raises(ScaleplanError, match="smaller than the embeddings"):
        non_embedding_from_total(1e6, vocab=50000, tied=False, seq_len=2048, d_model=None, n_layers=None, aspect=128)


def test_width_law_needs_width(tmp_path):
    from scaleplan.laws import LawFile, PowerLaw, Provenance, Variable

    law = LawFile(name="w", title="t", variables=[Variable("W", "hidden width", "units")],
                  provenance=Provenance(source="test"),
                  power_laws=[PowerLaw("lr", "learning rate", math.log(0.01), {"W": -0.25})])
    with pytest.raises(ScaleplanError, match="give --width"):
        prescribe(law, params=7e9)
    assert math.isclose(prescribe(law, width=1024).lr.value, 0.01 * 1024**-0.25)


def test_width_given_to_a_law_of_size_is_refused():
    with pytest.raises(ScaleplanError, match="does not depend on width; drop --width"):
        prescribe("steplaw", params=7e9, width=4096)


def test_shipped_mup_fit_prescribes_per_role_lrs_at_the_target_width():
    p = prescribe("transfer-mlp-mup", width=2048)
    m = 2048 / 32  # the law's base width
    groups = {g.role: g for g in p.per_group}
    assert groups["hidden"].lr == pytest.approx(p.lr.value / m)
    assert groups["output"].forward_mult == pytest.approx(1 / m)
    assert groups["input"].lr == p.lr.value
    assert any("above the fitted range [32, 128]" in w for w in p.warnings)


def test_an_sgd_law_says_which_momentum_its_lr_is_for(tmp_path):
    import dataclasses
    import json

    from click.testing import CliRunner

    from scaleplan.cli import cli
    from scaleplan.core.reference import ParametrizationRef

    law = load_law("transfer-mlp-mup")
    sgd = dataclasses.replace(law, parametrization=ParametrizationRef("mup", base_width=32, optimizer="sgd", momentum=0.9))
    assert prescribe(sgd, width=2048).optimizer == "sgd, momentum 0.9"
    assert prescribe(law, width=2048).optimizer == "adam" and prescribe(law, width=2048, optimizer="adamw").optimizer == "adamw"
    sgd.save(tmp_path / "sgd.json")
    assert load_law(tmp_path / "sgd.json").parametrization.momentum == 0.9  # written and read back
    law.save(tmp_path / "adam.json")  # a law without SGD momentum is written as before it existed
    assert json.loads((tmp_path / "adam.json").read_text())["parametrization"] == law.parametrization.to_dict() == {
        "name": "mup", "base_width": 32, "base_depth": None, "optimizer": "adam", "completep": False}
    out = CliRunner().invoke(cli, ["predict", "--law", str(tmp_path / "sgd.json"), "--width", "2048", "--format", "json"])
    assert out.exit_code == 0 and '"optimizer": "sgd, momentum 0.9"' in out.output


def test_an_adam_law_says_which_betas_its_lr_is_for(tmp_path):
    import dataclasses

    from click.testing import CliRunner

    from scaleplan.cli import cli
    from scaleplan.core.reference import ParametrizationRef

    law = load_law("transfer-mlp-mup")
    llm = dataclasses.replace(law, parametrization=ParametrizationRef("mup", base_width=32, optimizer="adamw", betas=(0.9, 0.95)))
    assert prescribe(llm, width=2048).optimizer == "adamw, betas 0.9/0.95"
    llm.save(tmp_path / "llm.json")
    assert load_law(tmp_path / "llm.json").parametrization.betas == (0.9, 0.95)  # written and read back
    out = CliRunner().invoke(cli, ["predict", "--law", str(tmp_path / "llm.json"), "--width", "2048", "--format", "json"])
    assert out.exit_code == 0 and '"optimizer": "adamw, betas 0.9/0.95"' in out.output


def test_loss_law_gets_n_in_its_own_convention():
    from scaleplan.laws import LawFile, LossLaw, Provenance, Variable

    ll = LossLaw(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.37)
    variables = [Variable("N", "non-embedding parameters", "parameters", "non-embedding"), Variable("D", "tokens", "tokens")]
    non_emb = LawFile(name="ne", title="t", variables=variables, provenance=Provenance(source="test"), loss_law=ll)
    p = prescribe("steplaw", params=1e9, tokens_law=non_emb)
    assert p.predicted_loss == pytest.approx(ll.loss(1e9, p.tokens))  # N = the given non-embedding count
    assert p.tokens == pytest.approx(ll.optimal_tokens(1e9))
    q = prescribe("steplaw", params=1e9)  # Epoch's refit counts embeddings
    assert q.tokens == pytest.approx(load_law("epoch-chinchilla").loss_law.optimal_tokens(q.shape.total_params))


@pytest.mark.parametrize("convention, hidden_factor", [("torch", 4.0), ("independent", 1.0)])
def test_a_mup_decay_law_prescribes_lambda_per_role(convention, hidden_factor):
    import math

    from scaleplan.core.reference import ParametrizationRef
    from scaleplan.laws import LawFile, PowerLaw, Provenance, Variable
    from scaleplan.laws.schema import WeightDecayLaw

    law = LawFile(
        name="wd", title="t", provenance=Provenance("test"),
        variables=[Variable("W", "width", "units"), Variable("N", "params", "parameters"), Variable("D", "data", "samples")],
        power_laws=[PowerLaw("lr", "learning rate", math.log(0.02), {"W": 0.0}),
                    PowerLaw("wd_tau", "fraction of the run", math.log(0.5), {"N": 0.0, "D": 0.0})],
        parametrization=ParametrizationRef("mup", base_width=64, optimizer="adamw"), weight_decay=WeightDecayLaw(convention),
    )
    p = prescribe(law, width=256, params=1e5, tokens=1e6, batch_size=100)
    lam = 100 / (0.5 * 1e6) / (0.02 if convention == "torch" else 1.0)  # B / (lr * tau * D)
    assert p.wd_tau.value == pytest.approx(0.5) and p.weight_decay.value == pytest.approx(lam)
    roles = {g.role: g for g in p.per_group}
    assert roles["hidden"].weight_decay == pytest.approx(lam * hidden_factor) and roles["hidden"].lr == pytest.approx(0.005)
    assert roles["input"].weight_decay == pytest.approx(lam) and roles["output"].weight_decay == pytest.approx(lam)
    from scaleplan.plan.render import to_table

    text = to_table(p)
    assert "weight-decay timescale tau" in text and "base weight decay lambda (muP)" in text and f"{lam * hidden_factor:.3g}" in text
    assert "batch size in samples, the unit of D" in text  # lambda is linear in B: its unit is named
    with pytest.raises(ScaleplanError, match=r"--batch 2M is more than --tokens 1M \(both in the law's samples\): .*under one step"):
        prescribe(law, width=256, params=1e5, tokens=1e6, batch_size=2e6)


def test_a_confidence_interval_of_a_law_is_said_to_hold_its_coefficients_only():
    """Step Law's interval is its released bootstrap fits' (no scatter of optima around the law): a refit of its released
    grid gives other exponents (N^-0.77 D^0.20, tests/data/README.md) and, in a probe, 5.9e-4 at 7B / 2T tokens, below
    the 8.3e-4 .. 1.26e-3 printed; a fitted law's PI carries that scatter."""
    from scaleplan.plan.render import to_table

    published = prescribe("steplaw", params=7e9, tokens=2e12)
    assert published.lr.interval == "confidence" and "CI: the uncertainty of the law's coefficients only" in to_table(published)
    fitted = prescribe("transfer-mlp-mup", width=2048)
    assert fitted.lr.interval == "prediction" and "coefficients only" not in to_table(fitted)


def test_a_plan_without_tokens_warns_that_it_assumed_them_for_a_law_of_d():
    assumed = [w for w in prescribe("steplaw", params=7e9).warnings if w.startswith("no --tokens")]
    assert len(assumed) == 1 and "D = 150B is assumed" in assumed[0] and "give --tokens" in assumed[0]
    assert not any(w.startswith("no --tokens") for w in prescribe("steplaw", params=7e9, tokens=2e12).warnings)
    assert not any(w.startswith("no --tokens") for w in prescribe("steplaw", compute=1e23).warnings)  # a budget splits itself


def test_a_shape_alone_gives_an_estimated_count_and_says_so_for_a_law_of_n():
    # Gemma-7B's shape: 12*L*d^2 = 3.17B, its GeGLU FFN (8d) and 16 heads of 256 hold 7.75B non-embedding
    p = prescribe("steplaw", d_model=3072, n_layers=28, tokens=6e12)
    assert p.shape.non_embedding_params == 12 * 28 * 3072**2
    assert any(w.startswith("N = 12*L*d^2 = 3.17B from --d-model 3072 and --layers 28") and "give --params" in w for w in p.warnings)
    deepseek = prescribe("deepseek", d_model=4096, n_layers=30, tokens=2e12)  # M = 72*L*d^2 + ...: the shape is its convention
    assert not any("12*L*d^2" in w for w in deepseek.warnings)


def test_a_true_count_beside_a_shape_it_does_not_follow_is_kept_and_warned():
    p = prescribe("steplaw", params=7.75e9, d_model=3072, n_layers=28, tokens=6e12)
    assert p.shape.non_embedding_params == 7.75e9 and p.shape.d_model == 3072
    assert p.lr.value == pytest.approx(prescribe("steplaw", params=7.75e9, tokens=6e12).lr.value)  # the law reads the count
    assert any("holds 12*L*d^2 = 3.17B, 2.44x fewer: the law reads the count" in w for w in p.warnings)
    assert not any("12*L*d^2" in w for w in prescribe("steplaw", params=7e9, d_model=4096, n_layers=32, tokens=2e12).warnings)
def _fitted_law(variable, exponents, **extra):
    from scaleplan.laws import LawFile, PowerLaw, Provenance, Variable

    variables = [Variable("N", "non-embedding parameters", "parameters"), variable]
    return LawFile(name="fitted", title="fit", variables=variables, provenance=Provenance(source="test"),
                   power_laws=[PowerLaw("lr", "learning rate", math.log(5.0), exponents)], **extra)


def test_a_fitted_law_in_compute_gets_6nd_with_its_own_n():
    from scaleplan.laws import Variable

    law = _fitted_law(Variable("C", "training compute C = 6ND", "FLOPs", "6ND"), {"C": -0.125})
    p = prescribe(law, params=1e9, tokens=2e10)
    assert math.isclose(p.inputs[0].value, 6 * 1e9 * 2e10) and math.isclose(p.lr.value, 5.0 * (1.2e20) ** -0.125)


def test_a_law_in_tokens_per_parameter():
    from scaleplan.laws import Variable

    law = _fitted_law(Variable("R", "tokens per parameter D/N", "tokens per parameter"), {"N": -0.2, "R": 0.1})
    p = prescribe(law, params=1e9, tokens=2e10)
    assert [i.name for i in p.inputs] == ["N", "R"] and math.isclose(p.inputs[1].value, 20.0)
    assert math.isclose(p.lr.value, 5.0 * 1e9**-0.2 * 20.0**0.1)


def axes_law(completep: bool = True):  # noqa: ANN201 - a law of width, depth, D and B as `scaleplan fit` writes one
    from scaleplan.core.reference import ParametrizationRef
    from scaleplan.laws import LawFile, PowerLaw, Provenance, Variable

    ref = ParametrizationRef("mup", base_width=64, base_depth=2 if completep else None, optimizer="adam", completep=completep)
    return LawFile(
        name="axes", title="lr*(W, L, D, B)", provenance=Provenance(source="test"),
        variables=[Variable("W", "width", "units"), Variable("L", "depth", "layers"), Variable("D", "data", "tokens"),
                   Variable("B", "batch size", "sequences")],
        power_laws=[PowerLaw("lr", "learning rate", math.log(0.02), {"W": -0.1, "L": -0.3, "D": -0.05, "B": 0.5}),
                    PowerLaw("batch_size", "sequences", math.log(0.25), {"D": 0.5})],
        fitted_range={"W": (64, 128), "L": (2, 4), "D": (1e5, 1e6), "B": (8, 64)},
        parametrization=ref,
    )


def test_axes_law_gives_lr_at_the_predicted_batch_and_completep_roles():
    p = prescribe(axes_law(), width=256, depth=16, tokens=4e6)
    b = 0.25 * 4e6**0.5  # 500 sequences
    eta = 0.02 * 256**-0.1 * 16**-0.3 * 4e6**-0.05 * b**0.5
    assert p.batch_size.value == pytest.approx(b) and p.lr.value == pytest.approx(eta)
    assert {i.name: i.value for i in p.inputs} == pytest.approx({"W": 256, "L": 16, "D": 4e6, "B": b})
    roles = {g.role: g for g in p.per_group}
    assert roles["hidden"].lr == pytest.approx(eta / 4) and roles["output"].lr == pytest.approx(eta)  # m = 256 / 64
    assert roles["hidden"].eps_mult == pytest.approx(1 / (4 * 8))  # CompleteP: Adam eps x 1 / (m * L / L_base)
    assert p.residual_mult == pytest.approx(2 / 16) and (p.width, p.depth) == (256, 16)
    assert any("L=16 is 4x above the fitted range" in w for w in p.warnings)


def test_axes_law_at_a_given_batch_and_its_refusals():
    given = prescribe(axes_law(), width=128, depth=4, tokens=1e6, batch_size=32)
    assert given.lr.value == pytest.approx(0.02 * 128**-0.1 * 4**-0.3 * 1e6**-0.05 * 32**0.5)
    with pytest.raises(ScaleplanError, match=r"is a law of depth L \(depth\): give --depth"):
        prescribe(axes_law(), width=128, tokens=1e6)
    with pytest.raises(ScaleplanError, match=r"is a law of tokens D \(data\): give --tokens"):
        prescribe(axes_law(), width=128, depth=4)
    with pytest.raises(ScaleplanError, match="does not depend on the batch size; drop --batch"):
        prescribe("steplaw", params=1e9, tokens=1e10, batch_size=256)
    with pytest.raises(ScaleplanError, match="depends neither on depth nor uses CompleteP; drop --depth"):
        prescribe("steplaw", params=1e9, tokens=1e10, depth=12)


def test_predict_cli_takes_depth_and_batch(tmp_path):
    from click.testing import CliRunner

    from scaleplan.cli import cli

    path = tmp_path / "axes.json"
    axes_law().save(path)
    out = CliRunner().invoke(cli, ["predict", "--law", str(path), "--width", "256", "--depth", "16", "--tokens", "4M",
                                   "--batch", "128", "--format", "json"])
    assert out.exit_code == 0, out.output
    import json

    data = json.loads(out.output)
    assert data["lr"]["value"] == pytest.approx(0.02 * 256**-0.1 * 16**-0.3 * 4e6**-0.05 * 128**0.5)
    assert data["residual_mult"] == pytest.approx(0.125) and data["depth"] == 16
    table = CliRunner().invoke(cli, ["predict", "--law", str(path), "--width", "256", "--depth", "16", "--tokens", "4M"])
    assert "per-role hyperparameters at the target width 256, depth 16 (mup, adam)" in table.output
    assert "Adam eps x" in table.output and "CompleteP: residual branches x 0.125" in table.output


def test_a_depth_law_of_a_mup_sweep_takes_the_width_for_its_per_role_lrs():
    from scaleplan.core.reference import ParametrizationRef
    from scaleplan.laws import LawFile, PowerLaw, Provenance, Variable

    law = LawFile(name="depth", title="lr*(L)", provenance=Provenance(source="test"), variables=[Variable("L", "depth", "layers")],
                  power_laws=[PowerLaw("lr", "learning rate", math.log(0.014), {"L": -0.08})], fitted_range={"L": (1, 4)},
                  parametrization=ParametrizationRef("mup", base_width=32, base_depth=1, completep=True))
    p = prescribe(law, width=128, depth=16)
    eta = 0.014 * 16**-0.08
    assert p.lr.value == pytest.approx(eta) and {g.role: g.lr for g in p.per_group}["hidden"] == pytest.approx(eta / 4)
    assert p.residual_mult == pytest.approx(1 / 16)
    with pytest.raises(ScaleplanError, match="does not depend on width; drop --width"):
        prescribe("steplaw", params=1e9, tokens=1e10, width=128)


@pytest.mark.parametrize("law, target, warning", [
    ("transfer-mlp-mup", dict(width=65536), "extrapolating: W=6.55e+04 is 512x above the fitted range [32, 128]"),
    ("chinchilla", dict(params=7e9, tokens=1e13), "extrapolating: D=1e+13 is 20x above the fitted range [5e+09, 5e+11]"),
])
def test_the_planner_lists_each_warning_of_its_law_once_and_issues_no_python_warning(law, target, warning):
    """`scaleplan predict` prints the prescription's warnings: a UserWarning from the law would show one twice, and so
    would a law whose own loss law's inputs are warned about both by its prediction and as a tokens law."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = prescribe(law, **target)
    assert [w for w in p.warnings if warning.split(" is ")[0] in w] == [warning]

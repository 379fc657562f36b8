import json
import math
import warnings

import numpy as np
import pytest

from scaleplan.core.correction import Correction
from scaleplan.core.interaction import Interaction
from scaleplan.core.reference import ParametrizationRef
from scaleplan.errors import LawFileError, ScaleplanError
from scaleplan.laws import SCHEMA_VERSION, Estimate, LawFile, LossLaw, PowerLaw, Provenance, Variable, load_law

N = Variable("N", "non-embedding parameters", "parameters", "non-embedding")
D = Variable("D", "training tokens", "tokens")


def make_law(**kw):
    base = dict(
        name="t", title="test law", variables=[N, D], provenance=Provenance(source="test"),
        power_laws=[PowerLaw("lr", "learning rate", math.log(2.0), {"N": -0.5, "D": 0.25},
                             covariance=[[0.01, 0, 0], [0, 1e-4, 0], [0, 0, 1e-4]], residual_variance=0.04, dof=10)],
        fitted_range={"N": (1e6, 1e8), "D": (1e8, 1e10)},
    )
    base.update(kw)
    return LawFile(**base)


def test_power_law_value_and_formula():
    law = make_law()
    p = law.predict(params=1e6, tokens=1e8)
    assert math.isclose(p.lr, 2.0 * 1e6**-0.5 * 1e8**0.25, rel_tol=1e-12)
    assert law.power_laws[0].formula() == "2 * N^-0.5 * D^0.25"


def test_prediction_interval_uses_covariance_residual_and_t_quantile():
    from scipy.stats import t

    law = make_law()
    est = law.predict(params=1e7, tokens=1e9).values["lr"]
    g = [1.0, math.log(1e7), math.log(1e9)]
    var = 0.01 * g[0] ** 2 + 1e-4 * g[1] ** 2 + 1e-4 * g[2] ** 2 + 0.04
    half = t.ppf(0.975, 10) * math.sqrt(var)
    assert est.interval == "prediction"
    assert math.isclose(math.log(est.high / est.value), half, rel_tol=1e-9)
    assert math.isclose(math.log(est.value / est.low), half, rel_tol=1e-9)


def test_steplaw_interval_uses_the_full_covariance_matrix():
    """Step Law's bootstrap covariance is not diagonal: the cross-terms change the interval, and they are in it."""
    import numpy as np
    from statistics import NormalDist

    law = load_law("steplaw")
    lr = law.power_laws[0]
    cov = np.array(lr.covariance)
    assert np.abs(cov - np.diag(np.diag(cov))).max() > 0.1 * np.abs(np.diag(cov)).min()  # really not diagonal
    x = np.array([1.0, math.log(7e9), math.log(2e12)])
    half = NormalDist().inv_cdf(0.975) * math.sqrt(x @ cov @ x)  # no residual, no dof: a normal confidence interval
    diagonal_only = NormalDist().inv_cdf(0.975) * math.sqrt(x @ np.diag(np.diag(cov)) @ x)
    est = law.predict(params=7e9, tokens=2e12).values["lr"]
    assert est.interval == "confidence"
    assert math.isclose(math.log(est.high / est.value), half, rel_tol=1e-9)
    assert math.isclose(math.log(est.value / est.low), half, rel_tol=1e-9)
    assert not math.isclose(half, diagonal_only, rel_tol=0.1)  # dropping the cross-terms would show


def test_an_estimate_says_whether_its_interval_holds_a_value_and_how_wide_it_is():
    est = Estimate(0.01, low=0.005, high=0.02)
    assert est.octaves == pytest.approx(2.0)
    assert est.holds(0.005) and est.holds(0.0199) and not est.holds(0.021) and not est.holds(0.0049)
    bare = Estimate(0.01)
    assert bare.octaves is None and not bare.holds(0.01)


def test_confidence_interval_without_residual_is_narrower():
    wide = make_law().predict(params=1e7, tokens=1e9).values["lr"]
    law = make_law(power_laws=[PowerLaw("lr", "lr", 0.0, {"N": -0.5, "D": 0.25}, covariance=[[0.01, 0, 0], [0, 1e-4, 0], [0, 0, 1e-4]])])
    narrow = law.predict(params=1e7, tokens=1e9).values["lr"]
    assert narrow.interval == "confidence"
    assert narrow.high / narrow.low < wide.high / wide.low


def test_extrapolation_warnings_say_how_far():
    p = make_law().predict(params=1e9, tokens=1e9)
    assert p.warnings == ("extrapolating: N=1e+09 is 10x above the fitted range [1e+06, 1e+08]",)
    assert make_law().predict(params=1e7, tokens=1e9).warnings == ()


def test_missing_input_names_variable_and_meaning():
    with pytest.raises(ScaleplanError, match=r"needs tokens= \(D: training tokens\)"):
        make_law().predict(params=1e7)


@pytest.mark.parametrize("name, inputs, fragment, taken", [
    ("steplaw", dict(params=7e9, tokens=2e12, batch_size=4e6),
     r"law 'steplaw' does not use batch_size= \(it takes params= \(N\), tokens= \(D\)\): drop it", dict(params=7e9, tokens=2e12)),
    ("steplaw", dict(params=7e9, tokens=2e12, width=1024), "law 'steplaw' does not use width=", dict(params=7e9, tokens=2e12)),
    ("transfer-mlp-mup", dict(width=256, params=1e9, tokens=1e9, batch_size=64, depth=4),
     r"does not use params=, tokens=, batch_size=, depth= \(it takes width= \(W\)\): drop them", dict(width=256)),
    ("deepseek", dict(params=7e9, tokens=2e12), r"does not use params=, tokens= \(it takes compute= \(C\)\)", {}),  # C = M*D
    ("chinchilla", dict(compute=1e23), r"does not use compute= \(it takes params= \(N\), tokens= \(D\)\)", {}),
])
def test_an_input_the_law_does_not_take_is_refused_not_ignored(name, inputs, fragment, taken):
    law = load_law(name)
    with pytest.raises(ScaleplanError, match=fragment) as info:
        law.predict(**inputs)
    assert "\n" not in str(info.value)
    assert law.taken(**inputs) == taken


@pytest.mark.parametrize("value, shown", [("abc", "'abc' (str)"), ([256], "[256] (list)"), (True, "True (bool)"),
                                          (0, "0"), (-64, "-64"), (math.nan, "nan"), (math.inf, "inf")])
def test_an_input_that_is_not_a_positive_number_is_refused_in_one_line(value, shown):
    with pytest.raises(ScaleplanError) as info:
        load_law("transfer-mlp-mup").predict(width=value)
    assert str(info.value) == f"width= must be a positive finite number, got {shown}"


def test_numpy_numbers_are_numbers():
    law = load_law("transfer-mlp-mup")
    assert law.predict(width=np.int64(64)).lr == law.predict(width=np.float32(64.0)).lr == law.predict(width=64).lr


def test_predict_issues_each_warning_as_a_user_warning_at_the_caller():
    law = load_law("transfer-mlp-mup")
    with pytest.warns(UserWarning, match=r"extrapolating: W=6.55e\+04 is 512x above the fitted range") as caught:
        p = law.predict(width=65536)
    assert [str(w.message) for w in caught] == list(p.warnings) and {w.filename for w in caught} == {__file__}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert law.evaluate(width=65536) == p  # the same record, its warnings left to the caller


def test_a_loss_law_predicts_the_loss_at_params_and_tokens():
    law = load_law("chinchilla")
    p = law.predict(params=1e9, tokens=2e10)
    assert p.loss == law.loss_law.loss(1e9, 2e10) and p.inputs == {"N": 1e9, "D": 2e10} and p.warnings == ()
    with pytest.raises(ScaleplanError, match=r"law 'chinchilla' needs tokens= \(D: training tokens\)"):
        law.predict(params=1e9)


def test_round_trip_through_json(tmp_path):
    law = make_law(loss_law=LossLaw(1.8, 480.0, 2000.0, 0.35, 0.37), parametrization=ParametrizationRef("mup", base_width=64))
    path = law.save(tmp_path / "law.json")
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and list(data)[0] == "schema_version"
    assert LawFile.load(path) == law


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), "newer than this scaleplan reads"),
        (lambda d: d.pop("schema_version"), "schema_version"),
        (lambda d: d.pop("variables"), "missing key 'variables'"),
        (lambda d: d.update(colour="red"), r"unknown key\(s\) \['colour'\]"),
        (lambda d: d["power_laws"][0]["exponents"].update(X=1.0), "undeclared variable"),
        (lambda d: d["power_laws"][0].update(covariance=[[1.0]]), "must be 3x3"),
        (lambda d: d["fitted_range"].update(N=[10, 1]), "0 < low <= high"),
        (lambda d: d["power_laws"][0].update(bogus=1), "malformed entry"),
        (lambda d: d["power_laws"][0].update(exponents=[]), r"exponents of 'lr' must be an object"),
        (lambda d: d["power_laws"][0]["covariance"][1].__setitem__(1, "x"), "must be 3x3, rows of finite numbers"),
        (lambda d: d["power_laws"][0]["covariance"][0].__setitem__(0, None), "must be 3x3, rows of finite numbers"),
        (lambda d: d["power_laws"][0].update(residual_variance="x"), "residual_variance of 'lr' must be a number >= 0"),
        (lambda d: d["power_laws"][0].update(residual_variance=-1.0), "residual_variance of 'lr' must be a number >= 0"),
        (lambda d: d["power_laws"][0].update(dof=[1]), "dof of 'lr' must be a positive integer or null"),
        (lambda d: d["power_laws"][0].update(n_points=2.5), "n_points of 'lr' must be a positive integer or null"),
        (lambda d: d.update(fitted_range=None), r"malformed entry \('fitted_range' must be an object, got NoneType\)"),
        (lambda d: d.update(fitted_range=[1, 2]), "'fitted_range' must be an object, got list"),
        (lambda d: d.update(loss_law=dict(E=None, A=406.4, B=410.7, alpha=0.34, beta=0.28)), r"loss law E \(irreducible loss\)"),
        (lambda d: d.update(loss_law=dict(E="x", A=406.4, B=410.7, alpha=0.34, beta=0.28)), r"loss law E \(irreducible loss\)"),
        (lambda d: d["power_laws"][0].update(covariance=[[1, 0, 0], [0, 1, 2], [0, 2, 1]]), "covariance of 'lr' must be positive semi-definite"),
        (lambda d: d["power_laws"][0].update(covariance=[[1, 0.5, 0], [0, 1, 0], [0, 0, 1]]), "covariance of 'lr' must be symmetric"),
        (lambda d: d["power_laws"][0].update(bootstrap_covariance=[[1.0]]), "bootstrap_covariance of 'lr' must be 3x3"),
        (lambda d: d["power_laws"][0].update(offset="x"), "offset of 'lr' must be a finite number or null"),
        (lambda d: d["power_laws"][0].update(offset=-1.0), "offset of 'lr' is -1, below 0"),
        (lambda d: d.update(loss_law=dict(E=1.7, A=406.4, B=410.7, alpha=0.34, beta=0.28, covariance=[[1.0] * 5] * 4)),
         "loss law covariance must be 5x5"),
        (lambda d: d.update(loss_law=dict(E=1.7, A=406.4, B=410.7, alpha=0.34, beta=0.28,
                                          covariance=[[1.0 if i == j else -0.9 for j in range(5)] for i in range(5)])),
         "loss law covariance must be positive semi-definite"),
        (lambda d: d.update(flags="edge"), "flags must be a list of strings"),
    ],
)
def test_invalid_law_files_are_one_line_errors(tmp_path, mutate, fragment):
    data = make_law().to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ScaleplanError, match=fragment) as info:
        LawFile.load(path)
    assert "\n" not in str(info.value)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1, "name"')
    with pytest.raises(ScaleplanError, match=r"is not valid JSON \(line 1"):
        LawFile.load(bad)
    with pytest.raises(ScaleplanError, match="law file not found"):
        LawFile.load(tmp_path / "nope.json")


def test_loss_law_compute_optimal_is_consistent():
    ll = LossLaw(E=1.817, A=482.0, B=2085.4, alpha=0.3478, beta=0.3658)
    n, d = ll.compute_optimal(1e23)
    assert math.isclose(6 * n * d, 1e23, rel_tol=1e-12)
    assert math.isclose(ll.optimal_tokens(n), d, rel_tol=1e-9)
    # the optimum really minimises L along C = 6ND
    for f in (0.8, 1.25):
        assert ll.loss(n * f, 1e23 / (6 * n * f)) > ll.loss(n, d)


def test_save_to_an_unwritable_place_is_one_line_error(tmp_path):
    (tmp_path / "fits").write_text("a file where the folder should be")
    with pytest.raises(ScaleplanError, match=r"cannot write law file to .*fits/law\.json: .*fits is a file, not a directory"):
        make_law().save(tmp_path / "fits" / "law.json")


def decay_law(convention="torch", **kw):
    from scaleplan.laws.schema import WeightDecayLaw

    tau = PowerLaw("wd_tau", "fraction of the run", math.log(0.3), {"N": 0.4, "D": -0.4},
                   covariance=[[0.04, 0, 0], [0, 1e-3, -1e-3], [0, -1e-3, 1e-3]], residual_variance=0.01, dof=6)
    lr = PowerLaw("lr", "learning rate", math.log(1e-2), {"N": -0.5}, covariance=[[0.01, 0], [0, 1e-4]], dof=6)
    return make_law(power_laws=[lr, tau], weight_decay=WeightDecayLaw(convention), **kw)


@pytest.mark.parametrize("convention", ["torch", "independent"])
def test_a_timescale_law_predicts_lambda_at_the_predicted_lr(convention):
    p = decay_law(convention).predict(params=1e6, tokens=1e8, batch_size=1e5)
    tau = 0.3 * (1e8 / 1e6) ** -0.4
    lam = 1e5 / (tau * 1e8) / (p.lr if convention == "torch" else 1.0)  # lambda = B / (lr * tau * D)
    assert p.values["wd_tau"].value == pytest.approx(tau, rel=1e-12)
    assert p.weight_decay == pytest.approx(lam, rel=1e-12) and p.decay_convention == convention
    est, t = p.values["weight_decay"], p.values["wd_tau"]
    assert est.low == pytest.approx(lam * tau / t.high, rel=1e-12) and est.high == pytest.approx(lam * tau / t.low, rel=1e-12)
    assert p.inputs["B"] == 1e5


def test_without_a_batch_size_the_timescale_is_given_and_lambda_asks_for_it():
    p = decay_law().predict(params=1e6, tokens=1e8)
    assert "wd_tau" in p.values and "weight_decay" not in p.values
    with pytest.raises(ScaleplanError, match="give batch_size= .in D's unit. to turn it into lambda"):
        p.weight_decay


def test_a_decay_law_round_trips_and_version_2_files_still_load(tmp_path):
    law = decay_law("independent")
    assert LawFile.load(law.save(tmp_path / "wd.json")) == law
    old = make_law().to_dict()
    old["schema_version"] = 2
    assert LawFile.from_dict(old).weight_decay is None


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d["weight_decay"].update(convention="coupled"), "weight_decay convention must be one of torch, independent"),
        (lambda d: d["weight_decay"].update(target="tau"), "needs the power laws 'lr' and 'tau'"),
        (lambda d: d["power_laws"][1]["exponents"].pop("D"), "must depend on D"),
        (lambda d: d["weight_decay"].update(colour="red"), "malformed entry"),
    ],
)
def test_invalid_decay_blocks_are_one_line_errors(mutate, fragment):
    data = decay_law().to_dict()
    if "pop" in mutate.__code__.co_names:
        data["power_laws"][1]["covariance"] = None
    mutate(data)
    with pytest.raises(ScaleplanError, match=fragment):
        LawFile.from_dict(data)
def test_non_finite_numbers_are_never_written_and_never_read(tmp_path):
    """The issue's law file held `Infinity` (invalid JSON); saving one is refused before the file is touched, and a
    file holding one does not load."""
    law = make_law(fitted_range={"N": (1e6, math.inf), "D": (1e8, 1e10)})
    with pytest.raises(LawFileError, match="holds a non-finite number; refusing to write invalid JSON"):
        law.save(tmp_path / "inf.json")
    assert not (tmp_path / "inf.json").exists()
    text = make_law().to_json().replace('"residual_variance": 0.04', '"residual_variance": Infinity')
    (tmp_path / "inf.json").write_text(text)
    with pytest.raises(ScaleplanError, match=r"is not valid JSON \(Infinity is not a JSON number\)"):
        LawFile.load(tmp_path / "inf.json")


def test_the_interval_is_the_wider_of_t_and_the_bootstrap_over_cells():
    """Few cells: t with the true dof (here 1: t = 12.7) against the bootstrap covariance; the wider one is used and named."""
    cov = [[0.01, 0, 0], [0, 1e-4, 0], [0, 0, 1e-4]]
    wide_t = PowerLaw("lr", "lr", 0.0, {"N": -0.5, "D": 0.25}, covariance=cov, bootstrap_covariance=cov, residual_variance=0.0, dof=1)
    est = wide_t.predict({"N": 1e7, "D": 1e9})
    assert est.method == "t, 1 dof"
    g = [1.0, math.log(1e7), math.log(1e9)]
    sd = math.sqrt(0.01 + 1e-4 * g[1] ** 2 + 1e-4 * g[2] ** 2)
    assert math.isclose(math.log(est.high / est.value), 12.7062047 * sd, rel_tol=1e-6)
    wide_boot = PowerLaw("lr", "lr", 0.0, {"N": -0.5, "D": 0.25}, covariance=cov, residual_variance=0.0, dof=30,
                         bootstrap_covariance=[[0.04, 0, 0], [0, 4e-4, 0], [0, 0, 4e-4]])
    est = wide_boot.predict({"N": 1e7, "D": 1e9})
    assert est.method == "bootstrap over cells" and math.isclose(math.log(est.high / est.value), 1.959964 * 2 * sd, rel_tol=1e-6)


def test_offset_law_adds_its_constant():
    law = PowerLaw("loss_opt", "loss", math.log(100.0), {"C": -0.1}, offset=2.0)
    assert math.isclose(law.predict({"C": 1e20}).value, 2.0 + 100.0 * 1e20**-0.1)
    assert law.formula() == "2 + 100 * C^-0.1"


def interaction_law() -> LawFile:
    """lr = 2 N^-0.5 D^0.25 (N/1e7)^(0.1 ln(D/1e9)), with a 4x4 covariance (the term's coefficient last)."""
    term = Interaction(("N", "D"), (1e7, 1e9), 0.1)
    return make_law(power_laws=[PowerLaw("lr", "learning rate", math.log(2.0), {"N": -0.5, "D": 0.25}, interactions=[term],
                                         covariance=[[0.01, 0, 0, 0], [0, 1e-4, 0, 0], [0, 0, 1e-4, 0], [0, 0, 0, 1e-3]],
                                         residual_variance=0.04, dof=10)])


def test_an_interaction_term_moves_the_exponent_and_round_trips(tmp_path):
    """At D = e * 1e9 the N exponent is -0.5 + 0.1; at the centre D the term vanishes; the covariance of the term
    widens the interval away from the centre; the file round-trips and keeps plain laws free of the key."""
    law = interaction_law()
    at = {"N": 1e8, "D": math.e * 1e9}
    expected = 2.0 * 1e8**-0.5 * (math.e * 1e9) ** 0.25 * 10.0 ** 0.1
    assert math.isclose(law.power_laws[0].predict(at).value, expected, rel_tol=1e-12)
    assert math.isclose(law.predict(params=1e8, tokens=1e9).lr, 2.0 * 1e8**-0.5 * 1e9**0.25, rel_tol=1e-12)
    assert law.power_laws[0].formula() == "2 * N^-0.5 * D^0.25 * (N/1e+07)^(0.1 ln(D/1e+09))"
    plain = make_law().power_laws[0].predict(at)
    wide = law.power_laws[0].predict(at)
    assert wide.high / wide.value > plain.high / plain.value
    path = law.save(tmp_path / "law.json")
    assert LawFile.load(path) == law
    assert "interactions" not in json.dumps(make_law().to_dict())


def test_an_interaction_outside_its_fitted_range_is_warned_with_the_exponent_there():
    """Inside the fitted range no warning; at D = e^2 * 1e10 (10x e^2 above the range's top 1e10) the N exponent
    is -0.5 + 0.1 ln(e^2 * 10): named, with its values at the range's ends."""
    law = interaction_law()
    assert law.predict(params=1e7, tokens=1e9).warnings == ()
    warnings = law.predict(params=1e7, tokens=math.e**2 * 1e10).warnings
    drift = [w for w in warnings if "N:D term" in w]
    assert len(drift) == 1 and "puts the N exponent at" in drift[0]
    assert f"{-0.5 + 0.1 * math.log(math.e**2 * 10):.3g} ({-0.5 + 0.1 * math.log(0.1):.3g} to {-0.5 + 0.1 * math.log(10):.3g}" in drift[0]


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda p: p["interactions"][0].update(variables=["N", "X"]), r"interaction N:X of 'lr' must join two of its variables"),
        (lambda p: p["interactions"][0].update(variables=["N", "N"]), "must join two of its variables"),
        (lambda p: p["interactions"][0].update(centre=[0, 1e9]), "needs a positive centre"),
        (lambda p: p["interactions"][0].update(coefficient="x"), "malformed entry"),
        (lambda p: p.update(covariance=[[0.01, 0, 0], [0, 1e-4, 0], [0, 0, 1e-4]]), "covariance of 'lr' must be 4x4"),
    ],
)
def test_invalid_interactions_are_one_line_errors(tmp_path, mutate, fragment):
    assert_refused_on_load(tmp_path, interaction_law(), mutate, fragment)


def assert_refused_on_load(tmp_path, law: LawFile, mutate, fragment: str) -> None:
    """`law` written with its first power law's JSON object changed by `mutate` fails to load with one line matching
    `fragment`."""
    data = law.to_dict()
    mutate(data["power_laws"][0])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ScaleplanError, match=fragment) as info:
        LawFile.load(path)
    assert "\n" not in str(info.value)


def isoflop_law():
    C = Variable("C", "training compute C = 6ND", "FLOPs", "6ND")
    return LawFile(name="iso", title="isoFLOP", variables=[C], provenance=Provenance(source="test"),
                   power_laws=[PowerLaw("N_opt", "parameters", math.log(0.1), {"C": 0.5}),
                               PowerLaw("D_opt", "tokens", math.log(10 / 6), {"C": 0.5})],
                   fitted_range={"C": (1e18, 1e21)}, flags=["2 of 12 budgets have their optimum at the edge"])


def test_isoflop_law_splits_a_budget(tmp_path):
    law = isoflop_law()
    assert law.is_isoflop and not make_law().is_isoflop
    n, d = law.compute_optimal(1e20)
    assert math.isclose(n.value, 0.1 * 1e10) and math.isclose(6 * n.value * d.value, 1e20)
    assert math.isclose(law.optimal_tokens(n.value), d.value, rel_tol=1e-9)
    assert LawFile.load(law.save(tmp_path / "iso.json")) == law


def test_derived_inputs_tokens_per_parameter_and_compute():
    R = Variable("R", "tokens per parameter D/N", "tokens per parameter")
    law = make_law(variables=[N, D, R], power_laws=[PowerLaw("lr", "lr", 0.0, {"R": -0.2})], fitted_range={})
    assert math.isclose(law.predict(params=1e8, tokens=2e9).lr, 20.0**-0.2)
    assert math.isclose(isoflop_law().predict(params=1e9, tokens=2e10).values["N_opt"].value, 0.1 * (6 * 1e9 * 2e10) ** 0.5)


def correction_law() -> LawFile:
    w = Variable("W", "model width (hidden size)", "units")
    term = Correction("W", 32.0, 0.5, 1.7)
    return make_law(variables=[w], power_laws=[PowerLaw("lr", "learning rate", -5.86, {}, corrections=[term],
                                                       covariance=[[0.007, -0.009], [-0.009, 0.0135]], residual_variance=0.003, dof=2)],
                    fitted_range={"W": (32, 256)})


def test_a_finite_width_law_predicts_its_asymptote_and_round_trips(tmp_path):
    """ln lr = -5.86 + 1.7 (W/32)^-1/2: W is the law's input though it has no exponent; the file round-trips, names the
    term in its formula, and a plain law's object carries no `corrections` key."""
    law = correction_law()
    assert law.needs() == ["W"]
    assert math.isclose(law.predict(width=4096).lr, math.exp(-5.86 + 1.7 / math.sqrt(128)), rel_tol=1e-12)
    assert law.power_laws[0].formula() == "0.002851 * exp(1.7 (W/32)^-0.5)"
    with pytest.raises(ScaleplanError, match="needs width="):
        law.predict()
    assert LawFile.load(law.save(tmp_path / "law.json")) == law
    assert "corrections" not in json.dumps(make_law().to_dict())


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda p: p["corrections"][0].update(variable="N"), r"correction N\^-0.5 of 'lr' uses undeclared variable 'N'"),
        (lambda p: p["corrections"][0].update(power=0), "needs a positive centre and power"),
        (lambda p: p["corrections"][0].update(centre=-1), "needs a positive centre and power"),
        (lambda p: p.update(covariance=[[0.01]]), "covariance of 'lr' must be 2x2"),
    ],
)
def test_invalid_corrections_are_one_line_errors(tmp_path, mutate, fragment):
    assert_refused_on_load(tmp_path, correction_law(), mutate, fragment)

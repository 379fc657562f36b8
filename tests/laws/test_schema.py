import json
import math

import pytest

from scaleplan.core.reference import ParametrizationRef
from scaleplan.errors import ScaleplanError
from scaleplan.laws import SCHEMA_VERSION, LawFile, LossLaw, PowerLaw, Provenance, Variable, load_law

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

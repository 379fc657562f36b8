"""Bad law files and bad law arithmetic: every one is a one-line LawFileError naming the field or the quantity, never
an internal error (OverflowError, AttributeError, ...) and never an inf, NaN or 0 printed as the answer."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Iterator

import pytest

from scaleplan.core.reference import ParametrizationRef
from scaleplan.errors import LawFileError, ScaleplanError
from scaleplan.laws import SCHEMA_VERSION, LawFile, LossLaw, PowerLaw, Provenance, Variable, load_law
from scaleplan.laws.schema import check_level

W = Variable("W", "model width", "units")
D = Variable("D", "training tokens", "tokens")


def width_law(**kw: Any) -> LawFile:
    """A muP law of width, as `scaleplan fit` writes one (lr ~ W^-0.34, fitted on widths 32 to 128)."""
    base: dict[str, Any] = dict(
        name="w", title="lr(W)", variables=[W], provenance=Provenance(source="test"),
        power_laws=[PowerLaw("lr", "learning rate", -4.57, {"W": -0.34}, covariance=[[0.64, -0.16], [-0.16, 0.04]],
                             residual_variance=0.07, dof=1)],
        fitted_range={"W": (32.0, 128.0)}, parametrization=ParametrizationRef("mup", base_width=32),
    )
    return LawFile(**{**base, **kw})


def load(tmp_path: Path, data: Any) -> LawFile:
    path = tmp_path / "law.json"
    path.write_text(json.dumps(data))
    return LawFile.load(path)


def one_line_error(tmp_path: Path, data: Any, fragment: str) -> None:
    with pytest.raises(LawFileError, match=fragment) as info:
        load(tmp_path, data)
    assert "\n" not in str(info.value)


def mutated(change: Any) -> dict[str, Any]:
    data = width_law().to_dict()
    change(data)
    return data


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d["power_laws"][0].update(intercept=1e308), r"intercept of 'lr' is 1e\+308.*must lie within \+-710"),
    (lambda d: d["power_laws"][0].update(intercept=-800.0), "intercept of 'lr' is -800"),
    (lambda d: d.update(power_laws={"lr": d["power_laws"][0]}), "'power_laws' must be a list of objects, got an object"),
    (lambda d: d.update(power_laws=[1, 2]), "'power_laws' must be a list of objects; its entry 1 is a number"),
    (lambda d: d.update(power_laws="lr"), "'power_laws' must be a list of objects, got a string"),
    (lambda d: d.update(variables={"W": "width"}), "'variables' must be a list of objects, got an object"),
    (lambda d: d.update(variables=["W"]), "'variables' must be a list of objects; its entry 1 is a string"),
    (lambda d: d.update(provenance="a paper"), "'provenance' must be an object"),
    (lambda d: d.update(loss_law=5), "'loss_law' must be an object"),
    (lambda d: d.update(weight_decay=[]), "'weight_decay' must be an object"),
    (lambda d: d.update(surge="lr"), "'surge' must be an object"),
    (lambda d: d.update(name=7), "'name' must be a string, got a number"),
    (lambda d: d.update(notes=["a"]), "'notes' must be a string or null, got a list"),
    (lambda d: d["power_laws"][0].update(target=["lr"]), "power law 1: 'target' must be a string, got a list"),
    (lambda d: d["variables"][0].update(meaning=None), "variable 1: 'meaning' must be a string, got null"),
    (lambda d: d["provenance"].update(source=1), "provenance: 'source' must be a string"),
    (lambda d: d.update(fitted_range={"W": [True, 128]}), "fitted_range of W must be a list of 2 numbers"),
    (lambda d: d.update(fitted_range={"W": [32, 64, 128]}), "fitted_range of W must be a list of 2 numbers"),
    (lambda d: d.update(swept={"width": ["32"]}), "swept width must be a list of numbers"),
    (lambda d: d["power_laws"][0].update(interactions={"variables": ["W", "W"]}), "'interactions' must be a list of objects"),
    (lambda d: d["power_laws"][0].update(corrections=[{"variable": "W", "centre": "64", "power": 1, "coefficient": 1}]),
     "'centre' of an entry of 'corrections' must be a number, got \"64\""),
])
def test_a_malformed_law_file_is_a_law_file_error_naming_the_field(tmp_path, change, fragment):
    one_line_error(tmp_path, mutated(change), fragment)


@pytest.mark.parametrize("version", [0, -1, True, False, 2.0, "2", None, [2]])
def test_only_supported_schema_versions_load(tmp_path, version):
    one_line_error(tmp_path, mutated(lambda d: d.update(schema_version=version)),
                   f"schema_version.* must be an integer from 1 to {SCHEMA_VERSION}")


def test_every_supported_schema_version_loads_and_a_newer_one_asks_for_an_upgrade(tmp_path):
    for version in range(1, SCHEMA_VERSION + 1):
        assert load(tmp_path, mutated(lambda d: d.update(schema_version=version))) == width_law()
    one_line_error(tmp_path, mutated(lambda d: d.update(schema_version=SCHEMA_VERSION + 1)), "upgrade scaleplan")


def full_law() -> dict[str, Any]:
    """A law file with every optional block (interactions, corrections, a loss law, a weight-decay law, a surge law)."""
    n, b = Variable("N", "params", "parameters"), Variable("B", "batch size", "sequences")
    lr = {"target": "lr", "unit": "lr", "intercept": -3.0, "exponents": {"N": -0.3, "D": 0.1}, "covariance": None,
          "residual_variance": 0.01, "dof": 3, "n_points": 6, "bootstrap_covariance": None, "offset": None,
          "interactions": [{"variables": ["N", "D"], "centre": [1e6, 1e9], "coefficient": 0.01}],
          "corrections": [{"variable": "N", "centre": 1e6, "power": 0.5, "coefficient": 0.1}]}
    tau = {"target": "wd_tau", "unit": "fraction", "intercept": -1.0, "exponents": {"N": 0.1, "D": -0.1}}
    data = LawFile(name="full", title="t", variables=[n, D, b], provenance=Provenance(source="test"),
                   power_laws=[PowerLaw("batch_size", "sequences", 0.0, {"D": 0.3})],
                   loss_law=LossLaw(1.7, 400.0, 400.0, 0.3, 0.3), fitted_range={"N": (1e6, 1e8)}, flags=["a flag"],
                   parametrization=ParametrizationRef("mup", base_width=32)).to_dict()
    data["power_laws"] += [lr, tau]
    data["weight_decay"] = {"convention": "torch", "target": "wd_tau"}
    data["swept"] = {"width": [32, 64]}
    return data


BAD_VALUES = [None, True, 0, -1, 1e308, -1e308, "x", [], [1], {}, {"a": 1}]


def paths(value: Any, at: tuple = ()) -> Iterator[tuple]:
    """Every path into nested dicts and lists, containers and leaves alike."""
    yield at
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, item in items:
        yield from paths(item, (*at, key))


def replaced(data: Any, at: tuple, value: Any) -> Any:
    out = copy.deepcopy(data)
    parent = out
    for key in at[:-1]:
        parent = parent[key]
    parent[at[-1]] = value
    return out


def test_no_bad_value_anywhere_in_a_law_file_is_an_internal_error(tmp_path):
    """Each field (and each block) of a full law file replaced by each of BAD_VALUES: loading, printing and predicting
    either work or raise a ScaleplanError, and a prediction that works is finite."""
    base = full_law()
    assert load(tmp_path, base).predict(params=1e7, tokens=1e9, batch_size=64).values["lr"].value > 0
    for at in list(paths(base))[1:]:
        for value in BAD_VALUES:
            try:
                law = load(tmp_path, replaced(base, at, value))
                law.to_json()
                [p.formula() for p in law.laws()]
                prediction = law.predict(params=1e7, tokens=1e9, batch_size=64)
            except ScaleplanError:
                continue
            for est in prediction.values.values():
                assert all(x is None or math.isfinite(x) for x in (est.value, est.low, est.high)), (at, value)


@pytest.mark.parametrize("exponent", [1e308, 300.0, -300.0])
def test_a_prediction_no_float_holds_is_refused_naming_the_quantity(exponent):
    law = width_law(power_laws=[PowerLaw("lr", "learning rate", -4.57, {"W": exponent})])
    how = "overflows a float" if exponent > 0 else "underflows to 0"
    with pytest.raises(LawFileError, match=f"lr at W=256 {how}.*check the law file's intercept and exponents"):
        law.predict(width=256)


def test_an_interval_no_float_holds_is_refused():
    law = width_law(power_laws=[PowerLaw("lr", "learning rate", -4.57, {"W": -0.34}, covariance=[[1e6, 0], [0, 1e6]])])
    with pytest.raises(LawFileError, match="the low end of the 95% interval of lr at W=256 underflows to 0"):
        law.predict(width=256)


def test_a_loss_law_that_overflows_is_refused():
    law = LossLaw(1.7, 400.0, 400.0, 1e300, 0.3)
    with pytest.raises(LawFileError, match=r"the loss law's loss L\(N, D\) at 0.5, 1e\+09 overflows a float"):
        law.loss(0.5, 1e9)
    assert law.loss(1e9, 1e9) == pytest.approx(1.7 + 400.0 / 1e9**0.3)


@pytest.mark.parametrize("bad", [-1, 0, math.nan, math.inf, "1e9", True])
def test_a_loss_law_argument_that_is_not_a_positive_number_is_named(bad):
    """Not a complex-number TypeError (a negative N), nor the law's constants blamed (0, NaN), nor a loss at N = inf."""
    law = load_law("chinchilla")
    for call, name in ((lambda: law.compute_optimal(bad), "compute of the loss law's compute-optimal (N, D)"),
                       (lambda: law.optimal_tokens(bad), "params of the optimal tokens D(N)"),
                       (lambda: law.loss_law.loss(bad, 1e9), "n of the loss law's loss L(N, D)"),
                       (lambda: law.loss_law.loss(1e9, d=bad), "d of the loss law's loss L(N, D)")):
        with pytest.raises(ScaleplanError) as info:
            call()
        assert str(info.value).startswith(f"{name} must be a positive finite number, got ") and "\n" not in str(info.value)


@pytest.mark.parametrize("level", [math.nan, math.inf, 0.0, 1.0, -0.5, 1.5, True])
def test_an_interval_level_outside_0_1_is_refused(level):
    with pytest.raises(ScaleplanError, match=r"level \(--level\) must be a number strictly between 0 and 1"):
        check_level(level)
    with pytest.raises(ScaleplanError, match="strictly between 0 and 1"):
        width_law().predict(level=level, width=256)


def test_every_flag_of_the_fit_is_a_warning_of_each_prediction():
    flags = ["3 of 3 cells are flat (every trial within the band of the minimum): the sweep locates no optimum there",
             "3 of 3 cells touch the edge of the swept lr range: widen the lr grid there"]
    warnings = width_law(flags=flags).predict(width=64).warnings
    assert [w for w in warnings if "doubtful" in w] == [f"law 'w' was fitted from doubtful data: {f}" for f in flags]
    assert width_law().predict(width=64).warnings == ()


def test_unknown_targets_are_named():
    law = width_law(power_laws=[PowerLaw("foo", "x", 0.0, {"W": 1.0}), PowerLaw("lr", "learning rate", 0.0, {"W": -1.0})])
    assert law.unknown_targets() == ["foo"]
    assert load_law("steplaw").unknown_targets() == [] and width_law().unknown_targets() == []

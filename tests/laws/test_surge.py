"""The surge and saturating laws: their values, gradients (the delta-method interval), and place in a law file."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from scaleplan.errors import ScaleplanError
from scaleplan.laws import LawFile, PowerLaw, Provenance, SurgeLaw, Variable

LAW = SurgeLaw("lr", "learning rate", intercept=-1.8, step_exponent=-0.35, noise_intercept=5.9, noise_exponent=-0.5,
               tokens_per_batch_unit=32.0, exponents={})
SATURATING = SurgeLaw(**{**LAW.__dict__, "form": "saturating"})
COVARIANCE = np.diag([0.1, 0.01, 1.0, 0.05]).tolist()


def by_hand(d: float, b: float) -> float:
    """lr_max(S) / cosh(1/2 ln(B / B_noise(S))), S = D / (32 B), from the class docstring's numbers."""
    s = d / (32 * b)
    return math.exp(-1.8) * s**-0.35 / math.cosh(0.5 * math.log(b / (math.exp(5.9) * s**-0.5)))


def saturating_by_hand(d: float, b: float) -> float:
    """lr_max(S) sqrt(B / (B + B_noise(S))), the same numbers."""
    s = d / (32 * b)
    return math.exp(-1.8) * s**-0.35 * math.sqrt(b / (b + math.exp(5.9) * s**-0.5))


@pytest.mark.parametrize("d, b", [(2.0**15, 1.0), (2.0**17, 32.0), (2.0**19, 128.0), (2.0**24, 4096.0)])
def test_value_is_the_surge_form(d: float, b: float) -> None:
    assert math.exp(LAW.log_value({"D": d, "B": b})) == pytest.approx(by_hand(d, b), rel=1e-12)


@pytest.mark.parametrize("d, b", [(2.0**15, 1.0), (2.0**17, 32.0), (2.0**19, 128.0), (2.0**24, 4096.0)])
def test_value_is_the_saturating_form(d: float, b: float) -> None:
    assert math.exp(SATURATING.log_value({"D": d, "B": b})) == pytest.approx(saturating_by_hand(d, b), rel=1e-12)
    assert SATURATING.formula() == "0.1653 * S^-0.35 * sqrt(B / (B + 365 * S^-0.5)), S = D / (32 B)"


def test_the_saturating_lr_rises_as_sqrt_b_then_levels_off_at_the_peak() -> None:
    """At fixed steps S: far below B_noise(S), 4x the batch doubles lr*; far above it lr* tends to lr_max(S), never
    above it; at B_noise(S) it is lr_max / sqrt(2)."""
    s = 256.0
    noise = SATURATING.noise_scale(s)
    lr = [math.exp(SATURATING.log_value({"D": s * 32 * b, "B": b}) - SATURATING.step_exponent * math.log(s))
          for b in (noise / 4e4, noise / 1e4, noise, noise * 1e4)]
    assert lr[1] / lr[0] == pytest.approx(2.0, rel=1e-4)
    assert lr[2] == pytest.approx(math.exp(SATURATING.intercept) / math.sqrt(2.0))
    assert lr[3] == pytest.approx(math.exp(SATURATING.intercept), rel=1e-4) and lr[3] < math.exp(SATURATING.intercept)


def test_the_lr_peaks_at_the_noise_scale_of_its_steps() -> None:
    """At fixed steps S, lr* over B is largest at B_noise(S) and falls off symmetrically in ln B on either side."""
    s = 256.0
    peak = LAW.noise_scale(s)
    lr = [math.exp(LAW.log_value({"D": s * 32 * b, "B": b}) - LAW.step_exponent * math.log(s)) for b in (peak / 4, peak, peak * 4)]
    assert lr[1] == pytest.approx(math.exp(LAW.intercept))
    assert lr[0] == pytest.approx(lr[2]) and lr[0] < lr[1]


@pytest.mark.parametrize("law", [LAW, SATURATING], ids=["surge", "saturating"])
@pytest.mark.parametrize("far", [{"D": 1e30, "B": 1e-30}, {"D": 1e-30, "B": 1e30}])
def test_the_bend_does_not_overflow(law: SurgeLaw, far: dict) -> None:
    assert math.isfinite(law.log_value(far))
    assert np.isfinite(law.log_value({k: np.array([v]) for k, v in far.items()}, np)).all()


@pytest.mark.parametrize("form", ["surge", "saturating"])
def test_gradient_matches_finite_differences(form: str) -> None:
    law = SurgeLaw("lr", "learning rate", -1.8, -0.35, 5.9, -0.5, 32.0, {"W": -0.4}, form=form)
    at = {"D": 2.0**19, "B": 96.0, "W": 64.0}
    theta = np.array(law.coefficients())
    for i, g in enumerate(law.gradient(at)):
        step = np.zeros_like(theta)
        step[i] = 1e-6
        numeric = (law.with_coefficients(theta + step).log_value(at) - law.with_coefficients(theta - step).log_value(at)) / 2e-6
        assert g == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def law_file(surge: SurgeLaw, variables: tuple[str, ...] = ("D", "B"), power: list[PowerLaw] | None = None) -> LawFile:
    return LawFile(name="s", title="t", variables=[Variable(v, v, "u") for v in variables], provenance=Provenance("test"),
                   power_laws=power or [], surge=surge, fitted_range={"D": (2.0**15, 2.0**17), "B": (1.0, 32.0)})


def test_law_file_round_trips_and_predicts_with_a_t_interval() -> None:
    surge = SurgeLaw(**{**LAW.__dict__, "covariance": COVARIANCE, "residual_variance": 0.04, "dof": 14, "n_points": 18})
    law = LawFile.from_dict(law_file(surge).to_dict())
    assert law.surge == surge and law.lr_law() == surge and law.needs() == ["D", "B"]
    prediction = law.predict(tokens=2.0**19, batch_size=128)
    lr = prediction.values["lr"]
    assert lr.value == pytest.approx(by_hand(2.0**19, 128.0)) and lr.method == "t, 14 dof" and lr.interval == "prediction"
    at = {"D": 2.0**19, "B": 128.0}
    g = np.array(LAW.gradient(at))
    half = math.sqrt(g @ np.array(COVARIANCE) @ g + 0.04) * 2.1447866879169273  # t(0.975, 14)
    assert (math.log(lr.low), math.log(lr.high)) == pytest.approx((math.log(lr.value) - half, math.log(lr.value) + half))
    assert any("B=128 is 4x above" in w for w in prediction.warnings)


def test_the_form_round_trips_and_a_file_without_one_is_the_surge_form() -> None:
    """Schema 7 writes the form; a schema-6 file (no form key) still loads, as the surge form."""
    saturating = LawFile.from_dict(law_file(SATURATING).to_dict())
    assert saturating.surge == SATURATING
    assert saturating.predict(tokens=2.0**19, batch_size=128).lr == pytest.approx(saturating_by_hand(2.0**19, 128.0))
    older = law_file(LAW).to_dict()
    del older["surge"]["form"]
    older["schema_version"] = 6
    assert LawFile.from_dict(older).surge == LAW


def test_the_batch_law_feeds_the_surge_law() -> None:
    """Without a batch size given, the lr is taken at the batch law's B*."""
    batch = PowerLaw("batch_size", "sequences", intercept=math.log(2.0), exponents={"D": 0.0})
    law = law_file(LAW, power=[batch])
    assert law.needs() == ["D"]
    prediction = law.predict(tokens=2.0**18)
    assert prediction.inputs["B"] == pytest.approx(2.0) and prediction.lr == pytest.approx(by_hand(2.0**18, 2.0))


def test_a_file_without_a_surge_law_writes_no_surge_key() -> None:
    law = LawFile(name="p", title="t", variables=[Variable("N", "N", "u")], provenance=Provenance("test"),
                  power_laws=[PowerLaw("lr", "learning rate", 0.0, {"N": -0.5})])
    assert "surge" not in law.to_dict()


@pytest.mark.parametrize("change, message", [
    (dict(target="batch_size"), "predicts the lr"),
    (dict(form="falling"), "form 'falling' is not one of surge, saturating"),
    (dict(tokens_per_batch_unit=0.0), "tokens_per_batch_unit must be a positive number"),
    (dict(noise_exponent=math.inf), "non-finite parameter"),
    (dict(exponents={"W": -0.5}), "undeclared variable(s) ['W']"),
    (dict(covariance=[[1.0]]), "covariance of the surge law must be 4x4"),
    (dict(dof=0), "dof of the surge law must be a positive integer"),
])
def test_a_bad_surge_law_is_refused(change: dict, message: str) -> None:
    with pytest.raises(ScaleplanError, match=re.escape(message)):
        law_file(SurgeLaw(**{**LAW.__dict__, **change}))


def test_two_lr_laws_are_refused() -> None:
    with pytest.raises(ScaleplanError, match="duplicate power-law targets"):
        law_file(LAW, power=[PowerLaw("lr", "learning rate", 0.0, {"D": -0.1})])


@pytest.mark.parametrize("batch, warned", [(256.0, True), (16.0, False), (48.0, False)])
def test_an_lr_law_beyond_the_swept_batches_and_above_the_critical_batch_warns(batch: float, warned: bool) -> None:
    """Swept batches 1-32, critical batch 64: batch 256 is beyond both (warned); 16 is inside the swept range, and 48 is
    beyond it but below the critical batch (only the plain extrapolation warning)."""
    critical = PowerLaw("critical_batch_size", "sequences", intercept=math.log(64.0), exponents={})
    warnings = law_file(LAW, power=[critical]).predict(tokens=2.0**17, batch_size=batch).warnings
    assert any("above the critical batch the sweep measured (64)" in w for w in warnings) == warned


@pytest.mark.parametrize("lr_law, advice", [(SATURATING, "this form's 95% interval held the optimum at every one"),
                                            (LAW, "refit with --lr-form saturating")])
def test_the_critical_batch_warning_names_which_interval_held(lr_law: SurgeLaw, advice: str) -> None:
    """On the char-LM's batch targets the saturating form's interval held every optimum and the others' did not: a
    saturating law is told to read its interval, any other form to refit as saturating."""
    critical = PowerLaw("critical_batch_size", "sequences", intercept=math.log(64.0), exponents={})
    warnings = law_file(lr_law, power=[critical]).predict(tokens=2.0**17, batch_size=256.0).warnings
    assert sum(advice in w for w in warnings) == 1

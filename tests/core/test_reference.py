"""The typed parametrization reference: validation, JSON round trip, compatibility checks."""

from __future__ import annotations

import pytest

from scaleplan.core.reference import ParametrizationRef
from scaleplan.errors import LawFileError, ParametrizationError


def test_round_trip_and_version_1_blocks() -> None:
    ref = ParametrizationRef("mup", base_width=64, base_depth=2, optimizer="adamw", completep=True)
    assert ParametrizationRef.from_dict(ref.to_dict()) == ref
    assert ParametrizationRef.from_dict({"name": "mup", "base_width": 32}) == ParametrizationRef("mup", 32)
    sgd = ParametrizationRef("mup", base_width=64, optimizer="sgd", momentum=0.9, nesterov=True)
    assert ParametrizationRef.from_dict(sgd.to_dict()) == sgd and sgd.optimizer_setting == "sgd, momentum 0.9, nesterov"
    assert "momentum" not in ref.to_dict() and "nesterov" not in ref.to_dict()  # law files without SGD momentum unchanged
    adam = ParametrizationRef("mup", base_width=64, optimizer="adamw", betas=[0.9, 0.95])  # type: ignore[arg-type]
    assert adam.betas == (0.9, 0.95) and adam.to_dict()["betas"] == [0.9, 0.95]  # a law file's JSON list, read as a tuple
    assert ParametrizationRef.from_dict(adam.to_dict()) == adam and adam.optimizer_setting == "adamw, betas 0.9/0.95"
    assert ParametrizationRef("mup", base_width=64, betas=(0.9, 0.999)).optimizer_setting == "adam"  # torch's default
    assert "betas" not in ref.to_dict()  # not known (a published law, an older file): written as before


@pytest.mark.parametrize(
    "block, message",
    [
        ({"name": "mup", "base_width": None}, "'mup' needs base_width"),
        ({"name": "mup", "base_width": 0}, "base_width must be a positive integer"),
        ({"name": "mup", "base_width": 64, "completep": True}, "completep needs name 'mup' and a base_depth"),
        ({"name": "mu-p", "base_width": 64}, "unknown parametrization 'mu-p'"),
        ({"name": "mup", "base_width": 64, "optimizer": "lion"}, "unknown optimizer 'lion'"),
        ({"name": "mup", "base_width": 64, "basewidth": 3}, "unknown key(s) ['basewidth']"),
        ({"base_width": 64}, "needs a 'name'"),
        ({"name": "mup", "base_width": 64, "optimizer": "sgd", "momentum": 1.0}, "momentum (SGD's) must be a number in [0, 1), got 1.0"),
        ({"name": "mup", "base_width": 64, "optimizer": "sgd", "momentum": "0.9"}, "momentum (SGD's) must be a number in [0, 1)"),
        ({"name": "mup", "base_width": 64, "momentum": 0.9}, "momentum and nesterov are SGD's; optimizer 'adam'"),
        ({"name": "mup", "base_width": 64, "optimizer": "sgd", "nesterov": True}, "nesterov needs a momentum above 0"),
        ({"name": "mup", "base_width": 64, "betas": [0.9, 1.0]}, "betas (Adam's) must be two numbers in [0, 1), got [0.9, 1.0]"),
        ({"name": "mup", "base_width": 64, "betas": 0.95}, "betas (Adam's) must be two numbers in [0, 1), got 0.95"),
        ({"name": "mup", "base_width": 64, "betas": "[0.9, 0.95]"}, "must be two numbers in [0, 1), got '[0.9, 0.95]'"),
        ({"name": "mup", "base_width": 64, "optimizer": "sgd", "betas": [0.9, 0.999]}, "betas are Adam's and AdamW's; SGD's"),
        ([1, 2], "must be an object"),
    ],
)
def test_bad_blocks_are_one_line_errors(block: object, message: str) -> None:
    with pytest.raises(LawFileError) as info:
        ParametrizationRef.from_dict(block)  # type: ignore[arg-type]
    assert message in str(info.value) and "\n" not in str(info.value)


def test_width_multiplier_and_depth_ratio() -> None:
    ref = ParametrizationRef("mup", base_width=64, base_depth=2, completep=True)
    assert ref.width_multiplier(256) == 4.0
    assert ref.depth_ratio(8) == 4.0 and ref.depth_ratio(None) == 1.0
    assert ParametrizationRef("mup", base_width=64).depth_ratio(8) == 1.0  # no CompleteP: depth does not scale
    assert ParametrizationRef("sp").width_multiplier(1000) == 1.0


@pytest.mark.parametrize(
    "model_ref, fragment",
    [
        (ParametrizationRef("sp"), "parametrization 'sp' (law: 'mup')"),
        (ParametrizationRef("mup", base_width=32), "base width 32 (law: 64)"),
        (ParametrizationRef("mup", base_width=64, optimizer="sgd"), "optimizer 'sgd' (law: 'adam')"),
        (ParametrizationRef("mup", base_width=64, base_depth=2, completep=True), "completep=True (law: False)"),
    ],
)
def test_incompatible_models_are_refused(model_ref: ParametrizationRef, fragment: str) -> None:
    law = ParametrizationRef("mup", base_width=64)
    with pytest.raises(ParametrizationError, match="does not match the law's parametrization") as info:
        law.check_compatible(model_ref)
    assert fragment in str(info.value)


def test_adamw_shares_adams_lr_rules() -> None:
    ParametrizationRef("mup", base_width=64).check_compatible(ParametrizationRef("mup", base_width=64, optimizer="adamw"))

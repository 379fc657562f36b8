"""The rules table: exact factors per role, width and optimizer; CompleteP; errors; no torch import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scaleplan.errors import ScaleplanError
from scaleplan.core.rules import (
    PARAMETRIZATIONS,
    RoleMultipliers,
    get_parametrization,
    residual_multiplier,
)


@pytest.mark.parametrize(
    "name, role, m, optimizer, expected",
    [
        # muP, DESIGN.md table at m = 4: (lr, init_std, forward, weight_decay)
        ("mup", "input", 4, "adam", (1.0, 1.0, 1.0, 1.0)),
        ("mup", "hidden", 4, "adam", (0.25, 0.5, 1.0, 4.0)),
        ("mup", "output", 4, "adam", (1.0, 1.0, 0.25, 1.0)),
        ("mup", "vector", 4, "adam", (1.0, 1.0, 1.0, 1.0)),
        ("mup", "fixed", 4, "adam", (1.0, 1.0, 1.0, 1.0)),
        ("mup", "input", 4, "sgd", (4.0, 1.0, 1.0, 0.25)),
        ("mup", "hidden", 4, "sgd", (1.0, 0.5, 1.0, 1.0)),
        ("mup", "output", 4, "sgd", (4.0, 1.0, 0.25, 0.25)),
        ("mup", "vector", 4, "sgd", (4.0, 1.0, 1.0, 0.25)),
        ("mup", "fixed", 4, "sgd", (1.0, 1.0, 1.0, 1.0)),
        ("mup", "hidden", 16, "adamw", (0.0625, 0.25, 1.0, 16.0)),
        # SP: fan-in init, everything else constant
        ("sp", "hidden", 16, "adam", (1.0, 0.25, 1.0, 1.0)),
        ("sp", "output", 16, "sgd", (1.0, 0.25, 1.0, 1.0)),
        ("sp", "input", 16, "sgd", (1.0, 1.0, 1.0, 1.0)),
        ("sp", "memory", 16, "adam", (1.0, 1.0, 1.0, 1.0)),
        # DenseAM: muP plus the memory role (O(1) entries, constant Adam LR, SGD LR x m)
        ("denseam", "memory", 4, "adam", (1.0, 1.0, 1.0, 1.0)),
        ("denseam", "memory", 4, "sgd", (4.0, 1.0, 1.0, 0.25)),
        ("denseam", "output", 8, "adam", (1.0, 1.0, 0.125, 1.0)),
        ("denseam", "hidden", 8, "adam", (0.125, 8**-0.5, 1.0, 8.0)),
    ],
)
def test_multipliers_match_table(name: str, role: str, m: float, optimizer: str, expected: tuple) -> None:
    got = get_parametrization(name).multipliers(role, m, optimizer)
    assert (got.lr, got.init_std, got.forward, got.weight_decay) == pytest.approx(expected, rel=1e-15)
    assert got.eps == 1.0


@pytest.mark.parametrize("name", sorted(PARAMETRIZATIONS))
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_every_factor_is_one_at_base_width(name: str, optimizer: str) -> None:
    for role, mult in get_parametrization(name).table(1.0, optimizer):
        assert mult == RoleMultipliers(1.0, 1.0, 1.0, 1.0, 1.0), role


@pytest.mark.parametrize("name, d_head, base_d_head, scale", [("mup", 64, 16, 4 / 64), ("sp", 64, 16, 1 / 8), ("mup", 16, 16, 1 / 4)])
def test_attention_scale_is_1_over_d_head_under_mup(name: str, d_head: int, base_d_head: int, scale: float) -> None:
    # logits = q.k * multiplier / sqrt(d_head): sqrt(d_base)/d_head under muP, 1/sqrt(d_head) under SP
    mult = get_parametrization(name).attention_multiplier(d_head / base_d_head)
    assert mult / d_head**0.5 == pytest.approx(scale, rel=1e-15)


def test_completep_depth_rules() -> None:
    mup = get_parametrization("mup")
    got = mup.multipliers("hidden", 4, "adam", depth_ratio=2.0, completep=True)
    assert (got.lr, got.weight_decay, got.eps) == (0.25, 4.0, 0.125)  # lr unchanged by depth, eps 1/(m m_L)
    vector = mup.multipliers("vector", 4, "adam", depth_ratio=2.0, completep=True)
    assert vector.lr == 1.0
    assert mup.multipliers("hidden", 4, "sgd", depth_ratio=2.0, completep=True).eps == 1.0
    assert residual_multiplier(4.0, completep=True) == 0.25
    assert residual_multiplier(4.0, completep=False) == 1.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: get_parametrization("mu-p"), "valid names: sp, mup, denseam"),
        (lambda: get_parametrization("mup").multipliers("memory", 2), "use one of: sp, denseam"),
        (lambda: get_parametrization("mup").multipliers("bias", 2), "unknown tensor role 'bias'"),
        (lambda: get_parametrization("mup").multipliers("hidden", 2, "lion"), "unknown optimizer 'lion'"),
        (lambda: get_parametrization("mup").multipliers("hidden", 0), "must be positive"),
        (lambda: get_parametrization("sp").multipliers("hidden", 2, completep=True), "use parametrization 'mup'"),
    ],
)
def test_bad_input_raises_clear_error(call, message: str) -> None:
    with pytest.raises(ScaleplanError, match=message):
        call()


def test_rules_do_not_import_torch() -> None:
    code = "import sys, scaleplan.core.rules, scaleplan.parametrization; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# Weight decay per role under muP at m = 1, 2, 8, number by number: factor on the base lambda.
# Adam (L2, mup.MuAdam) and AdamW torch (p *= 1 - lr*lambda, mup.MuAdamW): hidden x m; AdamW independent: 1.
WD_EXPECTED = {
    ("adam", "torch"): {"input": (1, 1, 1), "hidden": (1, 2, 8), "output": (1, 1, 1), "vector": (1, 1, 1), "fixed": (1, 1, 1)},
    ("adamw", "torch"): {"input": (1, 1, 1), "hidden": (1, 2, 8), "output": (1, 1, 1), "vector": (1, 1, 1), "fixed": (1, 1, 1)},
    ("adamw", "independent"): {"input": (1, 1, 1), "hidden": (1, 1, 1), "output": (1, 1, 1), "vector": (1, 1, 1),
                               "fixed": (1, 1, 1)},
}


@pytest.mark.parametrize("optimizer, decay", sorted(WD_EXPECTED))
@pytest.mark.parametrize("role", ["input", "hidden", "output", "vector", "fixed"])
def test_weight_decay_per_role_under_mup(optimizer: str, decay: str, role: str) -> None:
    got = [get_parametrization("mup").multipliers(role, m, optimizer, decay=decay).weight_decay for m in (1, 2, 8)]
    assert got == pytest.approx(WD_EXPECTED[optimizer, decay][role], rel=1e-15)


@pytest.mark.parametrize("name", sorted(PARAMETRIZATIONS))
@pytest.mark.parametrize("decay", ["torch", "independent"])
def test_adamw_timescale_of_every_role_is_width_independent(name: str, decay: str) -> None:
    # tau_iter = 1/(lr_role * lambda_role) (torch) or 1/lambda_role (independent) must not move with m
    for m in (2.0, 8.0):
        for role, mult in get_parametrization(name).table(m, "adamw", decay):
            rate = mult.lr * mult.weight_decay if decay == "torch" else mult.weight_decay
            assert rate == pytest.approx(1.0, rel=1e-15), (name, role, m)


def test_independent_decay_needs_adamw() -> None:
    with pytest.raises(ScaleplanError, match="optimizer 'sgd' has L2 decay"):
        get_parametrization("mup").multipliers("hidden", 2, "sgd", decay="independent")
    with pytest.raises(ScaleplanError, match="unknown weight-decay convention 'coupled'"):
        get_parametrization("mup").multipliers("hidden", 2, "adamw", decay="coupled")

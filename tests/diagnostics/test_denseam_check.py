"""DenseAM coordinate check at small sizes (64 -> 256): flat under the DenseAM rules over N and over K (Adam),
not under the first release's rules or SP (the committed check, benchmarks/results/denseam-coord-check.md,
runs 64 -> 1024); under SGD the memories' learned overlap, flat over K and falling like N^(1 - order) over N
(benchmarks/results/denseam-sgd.md)."""

from __future__ import annotations

import math

import pytest
import torch

from scaleplan.diagnostics.coord_check import width_table
from scaleplan.diagnostics.denseam_check import LEARNED, PROBES, denseam_coord_check, probe_ratios

SETUP = dict(steps=8, train_steps=5, lr=0.1, beta0=4.0, memory_std=0.1, eps=1e-14, seeds=6)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ratios(parametrization: str, axis: str, energy: str, degree: int = 3, rules: str = "current"):
    frame = denseam_coord_check(parametrization, axis, (64, 256), 64, energy=energy, degree=degree, rules=rules, **SETUP)
    return probe_ratios(frame, SETUP["train_steps"])


@pytest.mark.parametrize("axis", ["features", "memories"])
@pytest.mark.parametrize("energy, degree", [("lse", 3), ("relu-poly", 3), ("relu-poly", 6)])
def test_denseam_rules_keep_overlaps_activations_and_updates_flat(axis: str, energy: str, degree: int) -> None:
    found = ratios("denseam", axis, energy, degree)
    assert sorted(found.index) == sorted((*PROBES, LEARNED))
    assert found.between(1.0, 1.5).all(), found.to_dict()


@pytest.mark.parametrize(
    "parametrization, rules, axis, energy, probe",
    [
        ("denseam", "first-release", "features", "relu-poly", "activation"),  # K(n-1)-times stronger sum
        ("denseam", "first-release", "memories", "relu-poly", "update"),  # summed over K
        ("sp", "current", "features", "lse", "overlap"),  # beta constant: learned overlaps grow with N
        ("sp", "current", "memories", "relu-poly", "update"),  # the base's 1/K_base: the sum grows with K
    ],
)
def test_the_contrasts_fail_the_same_check(parametrization: str, rules: str, axis: str, energy: str, probe: str) -> None:
    found = ratios(parametrization, axis, energy, rules=rules)
    assert not found[probe] <= 2.0, found.to_dict()  # NaN (diverged) counts as failing


def test_lse_needs_no_memory_rule() -> None:
    """softmax normalizes the sum over memories itself: along K, SP is flat too (it differs from the DenseAM
    rules only by the memories' Adam eps)."""
    assert ratios("sp", "memories", "lse").between(1.0, 1.5).all()


SGD = dict(steps=8, train_steps=5, lr=2.0, beta0=4.0, memory_std=0.1, optimizer="sgd", seeds=2)


def learned_overlaps(axis: str, energy: str, power: float = 1.0):
    """Mean |learned overlap| at sizes 64 and 256 under SGD, the memories' lr x (m_N m_K)^power (the rules: 1)."""
    frame = denseam_coord_check("denseam", axis, (64, 256), 64, energy=energy, memory_power=power, **SGD)
    return width_table(frame, SGD["train_steps"]).loc[LEARNED]


def test_sgd_memory_factor_m_k_keeps_the_relu_poly_learned_overlap_flat_over_k() -> None:
    """Every relu-poly memory's gradient carries the 1/K of the memory average; SGD lr x m_K undoes it, and without it
    K/K_base = 4 times less is learned. (An lse memory's gradient also carries 1/K here, at init, where the softmax is
    spread; trained, a retrieved memory's does not, and the rules follow the transfer: test_apply, denseam-sgd.md.)"""
    rules, without = learned_overlaps("memories", "relu-poly"), learned_overlaps("memories", "relu-poly", power=0.0)
    assert 1 / 1.5 <= rules[256] / rules[64] <= 1.5, rules.to_dict()
    assert without[256] / without[64] < 1 / 3, without.to_dict()


@pytest.mark.parametrize("energy, order", [("lse", 1.5), ("relu-poly", 2.0)])
def test_over_n_the_sgd_learned_overlap_shrinks_like_n_to_the_one_minus_the_gradient_order(energy: str, order: float) -> None:
    """At init the memories' gradients shrink like N^-order / K (the random overlaps vanish under beta0/N), and m_N undoes
    N^-1 of it: the learned overlap falls like N^(1 - order) (README, DenseAM rules under SGD); without m_N like N^-order."""
    for power, expected in ((1.0, 1 - order), (0.0, -order)):
        values = learned_overlaps("features", energy, power)
        assert math.log(values[256] / values[64]) / math.log(4) == pytest.approx(expected, abs=0.2), (power, values.to_dict())

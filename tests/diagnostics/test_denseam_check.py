"""DenseAM coordinate check at small sizes (64 -> 256): flat under the DenseAM rules over N and over K,
not under the first release's rules or SP (the committed check, benchmarks/results/denseam-coord-check.md,
runs 64 -> 1024)."""

from __future__ import annotations

import pytest
import torch

from scaleplan.diagnostics.denseam_check import PROBES, denseam_coord_check, probe_ratios

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
    assert sorted(found.index) == sorted(PROBES)
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

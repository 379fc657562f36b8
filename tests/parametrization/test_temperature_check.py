"""A DenseAM temperature site whose own beta does not scale as the rules say is named when the model is parametrized."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from scaleplan.errors import ParametrizationWarning
from scaleplan.models import build_model
from scaleplan.parametrization import apply_parametrization


class Hopfield(nn.Module):
    """A user's modern Hopfield layer (Ramsauer et al.): x <- softmax(beta x Xi^T) Xi, declared as the README says; its
    beta written five ways."""

    scaleplan_roles = {"xi": "memory"}
    scaleplan_site = "temperature"
    gradient_order = 1.5
    energy = "lse"

    def __init__(self, features: int, mode: str, n_memories: int = 16, beta0: float = 4.0) -> None:
        super().__init__()
        self.features, self.n_memories, self.mode, self.beta0, self.multiplier = features, n_memories, mode, beta0, 1.0
        self.xi = nn.Parameter(torch.randn(n_memories, features))
        if mode == "learned":
            self.beta = nn.Parameter(torch.tensor(beta0 / features))  # the README: learn beta0, not beta
        elif mode == "constant":
            self.beta = beta0 / 32  # the value tuned at the base, N = 32

    def __getattr__(self, name: str):  # beta computed from the size, for the other modes
        if name == "beta" and self.__dict__["mode"] == "rules":
            return self.beta0 / self.features * self.multiplier
        if name == "beta" and self.__dict__["mode"] == "stored":  # beta0/N stored, the forward multiplies by multiplier
            return self.beta0 / self.features
        if name == "beta" and self.__dict__["mode"] == "sqrt":  # hopfield-layers' default scaling, 1/sqrt(d)
            return 1 / math.sqrt(self.features) * self.multiplier
        return super().__getattr__(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.beta * x @ self.xi.T, dim=-1) @ self.xi


def beta_warnings(mode: str, parametrization: str, features: int = 256) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_parametrization(Hopfield(features, mode), parametrization, base=Hopfield(32, mode))
    return [str(w.message) for w in caught if issubclass(w.category, ParametrizationWarning) and "beta is " in str(w.message)]


@pytest.mark.parametrize("mode, parametrization, grows", [
    ("constant", "denseam", "N^0"),  # SP's beta under the DenseAM rules: the overlaps grow with N
    ("sqrt", "denseam", "N^-0.5"),
])
def test_a_beta_that_does_not_go_as_one_over_n_is_named_under_the_rules(mode: str, parametrization: str, grows: str) -> None:
    (message,) = beta_warnings(mode, parametrization)
    assert f"so beta goes as {grows}; under 'denseam' it must go as N^-1 (x0.125 here)" in message
    assert "write beta = beta0 / features * multiplier" in message


@pytest.mark.parametrize("mode, parametrization", [("rules", "denseam"), ("stored", "denseam"), ("rules", "sp"),
                                                   ("constant", "sp")])
def test_a_beta_that_follows_the_rules_is_not_warned_about(mode: str, parametrization: str) -> None:
    assert beta_warnings(mode, parametrization) == []


def test_sp_is_not_checked() -> None:
    # under SP the site's multiplier is N/N_base: a beta read before or after it cannot be told apart, so no check
    assert beta_warnings("sqrt", "sp") == [] and beta_warnings("stored", "sp") == []


def test_a_learned_beta_is_named() -> None:
    with pytest.warns(ParametrizationWarning, match=r"^beta is a learned parameter: .*learn beta0"):
        apply_parametrization(Hopfield(256, "learned"), "denseam", base=Hopfield(32, "learned"))


@pytest.mark.parametrize("energy", ["lse", "relu-poly"])
@pytest.mark.parametrize("parametrization", ["denseam", "sp"])
def test_the_builtin_denseam_beta_passes_the_check(energy: str, parametrization: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = apply_parametrization(build_model("denseam", 256, energy=energy), parametrization,
                                      base=build_model("denseam", 32, energy=energy))
    assert not [w for w in caught if "beta" in str(w.message)]
    assert model.beta == pytest.approx(1.0 / 256 if parametrization == "denseam" else 1.0 / 32)

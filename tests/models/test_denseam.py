"""The DenseAM: dynamics equal energy descent, the memory average, width axes, the init check, a real sweep."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from scaleplan.errors import ParametrizationError, ScaleplanError
from scaleplan.models import build_model, build_parametrized
from scaleplan.parametrization import param_groups


@pytest.mark.parametrize("energy", ["lse", "relu-poly"])
@pytest.mark.parametrize("leak", [False, True])
def test_step_is_energy_descent(energy: str, leak: bool) -> None:
    torch.manual_seed(0)
    net = build_model("denseam", 48, in_dim=48, readout="denoise", steps=1, tau=0.5, beta0=3.0, energy=energy,
                      centered=False, leak=leak, n_memories=20)
    assert (net.beta, net.alpha) == (3.0 / 48, 0.5)  # beta0/N, tau/T
    x = torch.randn(5, 48, requires_grad=True)
    (grad,) = torch.autograd.grad(net.energy_value(x).sum(), x)
    assert torch.allclose(net(x), x - 0.5 * grad, atol=1e-5)


def test_activations_are_per_memory_and_centered() -> None:
    z = torch.randn(3, 32)
    lse = build_model("denseam", 16, energy="lse", centered=False)
    assert torch.allclose(lse.activate(z), 32 * torch.softmax(z, -1))  # K softmax: mean 1 over memories
    assert torch.allclose(build_model("denseam", 16).activate(z).sum(-1), torch.zeros(3), atol=1e-5)
    for n in (2, 3, 8):  # relu^(n-1)/(n-1): unit slope at unit overlap for every degree
        relu = build_model("denseam", 16, energy="relu-poly", degree=n, centered=False)
        one = torch.ones(1, 32, requires_grad=True)
        (slope,) = torch.autograd.grad(relu.activate(one).sum(), one)
        assert torch.allclose(slope, torch.ones(1, 32)) and relu.activate(-one).abs().sum() == 0


def _with_memories(memories: torch.Tensor, **kwargs) -> torch.nn.Module:
    net = build_model("denseam", memories.shape[1], in_dim=memories.shape[1], readout="denoise", energy="relu-poly",
                      n_memories=memories.shape[0], **kwargs)
    with torch.no_grad():
        net.memories.copy_(memories)
    return net


def test_relu_poly_update_is_a_mean_over_memories() -> None:
    torch.manual_seed(0)
    xi, x = torch.randn(16, 32), torch.randn(4, 32)
    once, twice = _with_memories(xi, beta0=4.0), _with_memories(torch.cat([xi, xi]), beta0=4.0)
    assert torch.allclose(once(x), twice(x), atol=1e-6)  # every memory stored twice: the same descent
    summed = _with_memories(torch.cat([xi, xi]), beta0=4.0)
    summed.update.multiplier = 2.0  # what SP does at K = 2 K_base: the base's 1/K_base, i.e. a sum
    assert not torch.allclose(once(x), summed(x), atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, sizes",
    [
        ({}, (64, 32)),
        ({"n_memories": 8}, (64, 8)),
        ({"width_axis": "memories", "features": 16}, (16, 64)),
        ({"width_axis": "memories", "readout": "denoise", "in_dim": 24}, (24, 64)),  # N = the state's size
        ({"width_axis": "both"}, (64, 64)),
        ({"width_axis": "both", "load": 2.5}, (64, 160)),
    ],
)
def test_width_axes(kwargs: dict, sizes: tuple[int, int]) -> None:
    net = build_model("denseam", 64, **kwargs)
    assert (net.features, net.n_memories, net.width) == (*sizes, 64)
    assert tuple(net.memories.shape) == (sizes[1], sizes[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"width_axis": "memories"}, "give features=N"),
        ({"width_axis": "memories", "features": 16, "n_memories": 8}, "sets n_memories from the width; drop n_memories"),
        ({"features": 16}, "width_axis='features' sets features from the width; drop features"),
        ({"load": 2.0}, "sets load from the width"),
        ({"width_axis": "both", "load": -1.0}, "load \\(K/N\\) must be positive"),
        ({"width_axis": "rows"}, "valid: features, memories, both"),
    ],
)
def test_bad_width_axis_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ScaleplanError, match=message):
        build_model("denseam", 64, **kwargs)


@pytest.mark.parametrize("parametrization, update_mult, eps", [("denseam", 1.0, 1e-8 / 4), ("sp", 4.0, None)])
def test_memory_axis_scales_the_memory_sum_and_eps(parametrization: str, update_mult: float, eps: float | None) -> None:
    net = build_parametrized("denseam", 256, parametrization, 64, width_axis="memories", features=32, energy="relu-poly")
    record = net.scaleplan_state.tensors["memories"]
    assert (record.m, net.update.multiplier, net.multiplier) == (4.0, update_mult, 1.0)  # beta: N did not change
    memory_group = next(g for g in param_groups(net, 1e-3) if "memories" in g["names"])
    assert memory_group["lr"] == 1e-3 and memory_group.get("eps") == eps  # Adam lr constant in K


def test_features_axis_scales_beta_and_eps_with_the_degree() -> None:
    net = build_parametrized("denseam", 128, "denseam", 32, energy="relu-poly", degree=5, n_memories=16)
    assert net.beta == 1.0 / 128 and net.update.multiplier == 1.0
    memory_group = next(g for g in param_groups(net, 1e-3) if "memories" in g["names"])
    assert memory_group["eps"] == pytest.approx(1e-8 / 4**3)  # gradient order (n+1)/2 = 3
    both = build_parametrized("denseam", 128, "denseam", 32, energy="lse", width_axis="both", load=0.5)
    assert (both.features, both.n_memories, both.scaleplan_state.tensors["memories"].m) == (128, 64, 4.0)  # lse: N/N_base only
    assert next(g for g in param_groups(both, 1e-3) if "memories" in g["names"])["eps"] == pytest.approx(1e-8 / (4**1.5 * 4))


@pytest.mark.parametrize("degree", [2, 3, 5, 8])
@pytest.mark.parametrize("steps", [1, 4, 16])
def test_descent_at_init_is_stable_for_every_degree_and_step_count(degree: int, steps: int) -> None:
    inputs = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    for width, k in ((32, 256), (256, 32), (256, 256)):
        torch.manual_seed(0)
        net = build_parametrized("denseam", width, "denseam", 32, energy="relu-poly", degree=degree, steps=steps,
                                 n_memories=k, beta0=2.0)
        assert net.init_growth(inputs) < 1.5, (width, k)


def test_init_check_refuses_an_exploding_descent_and_names_the_fix() -> None:
    inputs = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    kwargs = dict(in_dim=64, energy="relu-poly", degree=3, steps=8, n_memories=64, beta0=4.0)
    torch.manual_seed(0)
    net = build_parametrized("denseam", 32, "denseam", 32, **kwargs)
    net.check_init(inputs)  # the memory mean keeps this one stable
    net.update.multiplier = 64 * 2  # the first release's sum of relu^(n-1): the divergence at N = 32
    assert math.isinf(net.init_growth(inputs)) or net.init_growth(inputs) > 1e6
    with pytest.raises(ParametrizationError) as caught:
        net.check_init(inputs)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("DenseAM relu-poly n=3, T=8, N=32, K=64, beta0=4, tau=1 under 'denseam': the energy "
                              "descent explodes at init")
    assert message.endswith("so every lr would diverge; lower beta0 (relu-poly raises the overlaps beta0*s/N to the power n-1) or tau")
    sp = build_parametrized("denseam", 512, "sp", 32, **{**kwargs, "beta0": 16.0})
    with pytest.raises(ParametrizationError, match="under 'sp'.*or use parametrization 'denseam'"):
        sp.check_init(inputs)


RELU_SWEEP = """
[sweep]
name = "relu-poly"
sampler = "grid"
[task]
name = "patterns"
[model]
name = "denseam"
parametrization = "denseam"
base_width = 32
kwargs = {energy = "relu-poly", degree = 3, steps = 8, n_memories = 64, beta0 = 4.0}
[ladder]
widths = [32, 64, 128]
steps = [20]
[search]
lr = {low = 3e-4, high = 1.0, points = 4}
batch_size = [64]
"""


def test_relu_poly_sweep_never_diverges_at_its_two_smallest_lrs(tmp_path: Path) -> None:
    """The issue's setup (relu-poly n = 3, T = 8, 64 memories, widths 32-128): under the first release's
    rules every lr diverged at N = 32; a real sweep now has no diverged trial at its smallest lrs."""
    from scaleplan.sweep.export import load_trials
    from scaleplan.sweep.runner import run_sweep
    from scaleplan.sweep.spec import load_spec

    path = tmp_path / "relu-poly.toml"
    path.write_text(RELU_SWEEP)
    spec = load_spec(path)
    run_sweep(spec)
    trials = load_trials(spec)
    assert len(trials) == 12
    smallest = sorted(trials["lr"].unique())[:2]
    at_small = trials[trials["lr"].isin(smallest)]
    assert len(at_small) == 6 and not at_small["diverged"].any(), at_small[["width", "lr", "loss"]]

"""Tests of scaleplan.parametrization.memory_eps: a DenseAM's memory Adam eps from its retrieved gradient at init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scaleplan.errors import ParametrizationError, ParametrizationWarning, ScaleplanError
from scaleplan.parametrization import apply_parametrization, param_groups
from scaleplan.parametrization import calibrate_memory_eps
from scaleplan.parametrization.memory_eps import RETRIEVAL_KAPPA
from scaleplan.train.build import build_model, build_task
from scaleplan.train.config import TrialConfig


def lse_model(memories: int) -> tuple[nn.Module, object, list]:
    cfg = TrialConfig(task="patterns", model="denseam", parametrization="denseam", width=memories, base_width=32, batch_size=64,
                      task_kwargs={"mode": "denoise", "dim": 32, "n_classes": 4096, "flip_prob": 0.2},
                      model_kwargs={"energy": "lse", "beta0": 16.0, "width_axis": "memories", "readout": "denoise", "steps": 8,
                                    "leak": True})
    task = build_task(cfg)
    generator = torch.Generator().manual_seed(7)
    return build_model(cfg, task), task, [task.sample_batch(64, generator) for _ in range(4)]


def memory_group(model: nn.Module, eps: float = 1e-8) -> dict:
    return next(g for g in param_groups(model, 1e-2, eps=eps) if "memories" in g["names"])


def test_eps_sits_between_the_unretrieved_and_the_retrieved_memories_gradients() -> None:
    """At K = 256 under capacity: the eps set is kappa x the geometric mean over batches of the largest per-memory
    gradient rms, above the median memory's gradient (the tail is damped) and below the largest (the retrieved
    memories stay Adam-normalised); the memories' group carries it, replacing the rules' 1e-8 x 32/K."""
    model, task, batches = lse_model(256)
    assert memory_group(model)["eps"] == pytest.approx(1e-8 * 32 / 256)
    rms = []
    for x, y in batches:
        (grad,) = torch.autograd.grad(task.loss(model(x), y), [model.memories])
        rms.append(grad.square().mean(dim=1).sqrt())
    (eps,) = calibrate_memory_eps(model, batches, task.loss).values()
    assert eps == pytest.approx(RETRIEVAL_KAPPA * math.exp(sum(math.log(float(r.max())) for r in rms) / len(rms)), rel=1e-6)
    assert max(float(r.median()) for r in rms) < eps < min(float(r.max()) for r in rms)
    assert memory_group(model)["eps"] == eps and memory_group(model, eps=1e-3)["eps"] == eps  # absolute, not x base eps
    assert "eps_value" not in repr(model.scaleplan_state)  # population members with different eps share one batch


def test_a_model_without_memories_or_parametrization_is_refused() -> None:
    plain = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    batch = [(torch.zeros(2, 4), torch.zeros(2, 2))]
    with pytest.raises(ParametrizationError, match="needs a parametrized model"):
        calibrate_memory_eps(plain, batch, nn.functional.mse_loss)
    apply_parametrization(plain, "mup", base=nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)))
    with pytest.raises(ParametrizationError, match="no DenseAM memory matrix"):
        calibrate_memory_eps(plain, batch, nn.functional.mse_loss)
    model, task, batches = lse_model(32)
    with pytest.raises(ParametrizationError, match="kappa must be a positive number"):
        calibrate_memory_eps(model, batches, task.loss, kappa=0.0)


def test_trial_config_and_spec_take_memory_eps() -> None:
    with pytest.raises(ScaleplanError, match="unknown memory_eps 'retrieved'; use one of rule, retrieval"):
        TrialConfig(memory_eps="retrieved")  # type: ignore[arg-type]
    cfg = TrialConfig(task="patterns", model="denseam", parametrization="denseam", width=64, base_width=32, memory_eps="retrieval",
                      task_kwargs={"mode": "denoise", "dim": 32, "n_classes": 64}, model_kwargs={"width_axis": "memories",
                                                                                                "readout": "denoise"})
    task = build_task(cfg)
    calibrated, rule = build_model(cfg, task), build_model(TrialConfig(**{**cfg.to_dict(), "memory_eps": "rule"}), task)
    assert memory_group(calibrated)["eps"] > 1e3 * memory_group(rule)["eps"]


def test_memories_without_a_gradient_at_init_are_refused_naming_the_zero_readout() -> None:
    model, task, batches = lse_model(32)
    with torch.no_grad():
        model.memories.zero_()  # no overlap varies with the memories' directions: their gradient is 0 at init
    with pytest.raises(ParametrizationError, match="zero-initialized readout gives the memories none"):
        calibrate_memory_eps(model, batches, task.loss)


def test_an_uncalibrated_lse_memory_scaled_16x_is_warned_about_naming_the_fix() -> None:
    """K = 512 from a base of 32 under the rules' eps warns (it failed at 8x under capacity); 256 (8x) does not, nor does
    a calibrated model."""
    with pytest.warns(ParametrizationWarning, match=r"16x its base's memories .*calibrate_memory_eps"):
        memory_group(lse_model(512)[0])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        memory_group(lse_model(256)[0])
        model, task, batches = lse_model(512)
        calibrate_memory_eps(model, batches, task.loss)
        memory_group(model)


class Recall(nn.Module):
    """A user's DenseAM layer whose memory matrix is called `xi`, declared by the protocol (README, DenseAM rules)."""

    scaleplan_roles = {"xi": "memory"}
    scaleplan_site = "temperature"

    def __init__(self, n: int, k: int) -> None:
        super().__init__()
        self.xi = nn.Parameter(0.1 * torch.randn(k, n))
        self.features, self.n_memories, self.gradient_order, self.multiplier = n, k, 2.0, 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.softmax(4.0 / self.features * x @ self.xi.T, dim=-1) @ self.xi


def test_a_memory_matrix_under_another_name_is_calibrated() -> None:
    torch.manual_seed(0)
    model = apply_parametrization(nn.Sequential(Recall(32, 64)), "denseam", base=nn.Sequential(Recall(32, 16)))
    batch = [(torch.randn(8, 32), torch.randn(8, 32))]
    eps = calibrate_memory_eps(model, batch, nn.functional.mse_loss)
    assert list(eps) == ["0.xi"]
    assert next(g for g in param_groups(model, 1e-2) if "0.xi" in g["names"])["eps"] == eps["0.xi"]

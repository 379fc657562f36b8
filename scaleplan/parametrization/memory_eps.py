"""A DenseAM's memory Adam eps from its retrieved memories' gradient at init (opt-in: `[train] memory_eps = "retrieval"`).

With a sharply peaked (log-sum-exp) energy, each sample puts O(1) weight on a few memories: those carry a
gradient of order g_ret, nearly independent of the memory count K, and the other K - O(batch) memories only the
softmax tail, which shrinks about like K^-1.2 (median per-memory gradient rms 1.9e-3 / 1.3e-4 / 1.4e-5 at
K = 32 / 256 / 2048 under capacity, against a largest of about 1e-2). The rules' eps (1e-8 x 32/K) sits below
all of them, so Adam moves every unretrieved memory at full speed on gradients three orders below the
retrieved ones', and with thousands of them the largest stable lr falls with K (lse over K under capacity:
96% regret at 8x). An eps of kappa x g_ret keeps the retrieved memories in Adam's normalised regime at every K
and puts the tail in an SGD-like one (update lr * g / eps) that fades as its gradient does.

Measured (5 seeds, 300 steps, N = 32, T = 8; README, DenseAM): with kappa = 0.1 lse over K under capacity
transfers (0.02% at K = 2048, 0.07% at 4096) and K = 2048 reaches 0.652 where the rules' eps gives 0.683; over
capacity (16 patterns) it trains 9% worse at K = 2048 (0.196 against 0.180), where recruiting unused memories at
Adam's full speed helps. So it is an option, not the rules' default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from scaleplan.errors import ParametrizationError
from scaleplan.parametrization.apply import find_state, site_memory

RETRIEVAL_KAPPA = 0.1  # eps / g_ret: the retrieved memories stay 10x above eps (measured; module docstring)
CALIBRATION_BATCHES = 16  # one batch's max is noisy (0.0027-0.018 at K = 2048): a geometric mean over 16


def retrieval_gradients(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, float]:
    """{memory tensor name: g_ret}: the geometric mean over `batches` of the largest per-memory gradient rms of
    each DenseAM memory matrix (a module with a temperature site), at the model's current weights. A memory is a row:
    apply_parametrization refuses a matrix not stored (K, N) as its site declares."""
    found = find_state(model)
    if found is None:
        raise ParametrizationError("calibrate_memory_eps needs a parametrized model; call apply_parametrization first")
    _, holder, state = found
    memories = {full: holder.get_parameter(full) for full in (site_memory(name, module, state.tensors)
                for name, module in holder.named_modules() if getattr(module, "scaleplan_site", None) == "temperature")}
    if not memories:
        raise ParametrizationError("calibrate_memory_eps: the model has no DenseAM memory matrix (no temperature site)")
    logs: dict[str, list[float]] = {name: [] for name in memories}
    for x, y in batches:
        grads = torch.autograd.grad(loss(model(x), y), list(memories.values()))
        for name, grad in zip(memories, grads):
            largest = float(grad.square().mean(dim=1).sqrt().max())
            if not (math.isfinite(largest) and largest > 0):
                raise ParametrizationError(f"calibrate_memory_eps: the largest gradient of {name} at init is {largest}; a "
                                           "zero-initialized readout gives the memories none: calibrate once it is "
                                           "nonzero, or keep the rules' eps (memory_eps = 'rule')")
            logs[name].append(math.log(largest))
    if not all(logs.values()):
        raise ParametrizationError("calibrate_memory_eps needs at least one batch")
    return {name: math.exp(sum(v) / len(v)) for name, v in logs.items()}


def calibrate_memory_eps(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                         loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                         kappa: float = RETRIEVAL_KAPPA) -> dict[str, float]:
    """Set each DenseAM memory matrix's Adam eps to `kappa` x its retrieved memories' gradient at init (see the
    module docstring); `param_groups` then gives the memories that eps instead of the rules'. Returns the eps set.

        calibrate_memory_eps(model, [task.sample_batch(64, gen) for _ in range(16)], task.loss)
    """
    if not (math.isfinite(kappa) and kappa > 0):
        raise ParametrizationError(f"kappa must be a positive number, got {kappa}")
    eps = {name: kappa * g for name, g in retrieval_gradients(model, batches, loss).items()}
    _, _, state = find_state(model) or (None, None, None)
    assert state is not None  # retrieval_gradients refuses an unparametrized model
    for name, value in eps.items():
        state.tensors[name].eps_value = value
    return eps

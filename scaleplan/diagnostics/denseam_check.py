"""The DenseAM coordinate check: overlaps, activations and per-step updates of the descent across N or K.

The DenseAM's probes (`overlap` = beta*s, `activation` = a, `update` = one step's change of x, each
a mean |value| over the T steps and the batch; the `learned overlap` after the last step) recorded while a classifier
DenseAM trains a few Adam (or SGD) steps on one fixed batch of the corrupted-patterns task, with the width on one axis:
features N (K fixed) or memories K (N fixed). Under the DenseAM rules each probe stays flat; the contrasts are SP (beta
and the relu-poly memory sum frozen at the base), the first release's rules and, under SGD, other powers of the memories'
multiplier m_N m_K (`memory_power`: 0 leaves the scanned axis's factor out of their SGD lr).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any, cast

import pandas as pd
import torch
from torch import nn

from scaleplan.core.rules import PARAMETRIZATIONS
from scaleplan.diagnostics.coord_check import average_seeds, trace_training, width_table
from scaleplan.errors import ParametrizationError
from scaleplan.models import build_parametrized
from scaleplan.models.denseam import DenseAM
from scaleplan.parametrization.apply import find_state
from scaleplan.tasks import get_task

PROBES = ("overlap", "activation", "update")
LEARNED = "learned overlap"  # mean |beta (Xi_t - Xi_0) x_0|, recorded after the last step only (learned_overlap)
RULES = ("current", "first-release")
AXES = ("features", "memories")
# A small O(1) memory init (std 0.1) lets the learned overlaps dominate the random ones, which vanish
# as N^-1/2 under beta = beta0/N; a zero readout keeps the step-0 noise out (as for muP's check).
DEFAULTS: dict[str, Any] = {"memory_std": 0.1, "readout_zero_init": True}


def first_release_rules(model: nn.Module) -> None:
    """Make a DenseAM built under 'denseam' follow the first release's rules: a memory Adam eps constant in
    N and K (its record's eps factor set to 1) and a relu-poly update summed over the K memories with
    activation relu(z)^(n-1) (today's mean of relu(z)^(n-1)/(n-1), times K(n-1))."""
    found = find_state(model)
    if not isinstance(model, DenseAM) or found is None:
        raise ParametrizationError(f"the first release's rules apply to a parametrized DenseAM, not {type(model).__name__}")
    found[2].tensors["memories"].eps = 1.0
    if model.energy == "relu-poly":
        model.update.multiplier = model.n_memories * (model.degree - 1)


@contextlib.contextmanager
def memory_sgd_power(power: float) -> Iterator[None]:
    """Within the block, the DenseAM rules' SGD lr factor of the memories (m = m_N m_K) is raised to `power`: the contrasts
    of the SGD checks (0 leaves the scanned axis's factor out; 1 keeps the rules). In this process only, not in workers."""
    original = PARAMETRIZATIONS["denseam"]
    rule = original.rules["memory"]
    memory = dataclasses.replace(rule, sgd_lr=rule.sgd_lr * power)
    PARAMETRIZATIONS["denseam"] = dataclasses.replace(original, rules={**original.rules, "memory": memory})
    try:
        yield
    finally:
        PARAMETRIZATIONS["denseam"] = original


def denseam_coord_check(
    parametrization: str,
    axis: str,
    sizes: tuple[int, ...],
    fixed: int,
    energy: str = "lse",
    degree: int = 3,
    steps: int = 8,
    train_steps: int = 3,
    lr: float = 0.05,
    rules: str = "current",
    seeds: int = 1,
    batch_size: int = 64,
    eps: float = 1e-8,
    optimizer: str = "adam",
    memory_power: float = 1.0,
    **model_kwargs: Any,
) -> pd.DataFrame:
    """Frame (width, step, layer, mean_abs) of the DenseAM probes; width is N or K (`axis`), the other is `fixed`.

    step 0 is the forward pass at init, step t the one after t `optimizer` updates; the base is min(sizes).
    rules="first-release" applies `first_release_rules` (with parametrization "denseam"); `memory_power` raises the rules'
    SGD lr factor of the memories to that power (`memory_sgd_power`; 1: the rules).
    """
    if axis not in AXES or rules not in RULES:
        raise ValueError(f"axis must be one of {AXES} and rules one of {RULES}, got {axis!r}, {rules!r}")
    task = get_task("patterns")
    kwargs = {**DEFAULTS, **model_kwargs, **task.model_kwargs, "width_axis": axis, "energy": energy, "degree": degree,
              "steps": steps, ("n_memories" if axis == "features" else "features"): fixed}
    rows = []
    with memory_sgd_power(memory_power):  # the lrs are read when the optimizer is built, in trace_training
        for seed in range(seeds):
            inputs, targets = task.sample_batch(batch_size, torch.Generator().manual_seed(seed))
            for size in sizes:
                torch.manual_seed(seed)
                model = cast(DenseAM, build_parametrized("denseam", size, parametrization, min(sizes), **kwargs))
                if rules == "first-release":
                    first_release_rules(model)
                initial = model.memories.detach().clone()
                rows += [(seed, size, step, layer, value)
                         for step, layer, value in trace_training(model, (inputs, targets), train_steps, lr, optimizer, eps)
                         if layer in PROBES]
                rows.append((seed, size, train_steps, LEARNED, learned_overlap(model, initial, inputs)))
    return average_seeds(rows)


def learned_overlap(model: DenseAM, initial: torch.Tensor, inputs: torch.Tensor) -> float:
    """mean |beta (Xi - Xi_0) x_0| over the batch and the memories: what the memories' training put into the first descent
    step's overlaps (muP's Delta W x), without their random part beta Xi_0 x_0, which vanishes like N^-1/2 under beta0/N
    and hides a memory lr that is too small wherever the memories learn slowly (SGD)."""
    with torch.no_grad():
        return float((model.beta * model.initial_state(inputs) @ (model.memories - initial).T).abs().mean())


def probe_ratios(frame: pd.DataFrame, step: int) -> pd.Series:
    """Per probe: its largest / its smallest mean |value| over the sizes at `step` (>= 1; flat is 1); NaN
    when any size's value is not finite (its descent or training diverged)."""
    table = width_table(frame, step)
    table = table.where(table.abs() < float("inf"))
    return table.max(axis=1, skipna=False) / table.min(axis=1, skipna=False)

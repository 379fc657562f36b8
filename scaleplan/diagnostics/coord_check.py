"""The mup-style coordinate check: mean |activation| of every layer over a few training steps, across widths.

Under a correct parametrization the curves are flat in width; under SP with a constant Adam LR
some layers grow with width. Each width trains the same synthetic batch (fixed per seed) with
Adam (or SGD) using the parametrization's per-tensor learning rates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from scaleplan.errors import ScaleplanError
from scaleplan.models import build_parametrized
from scaleplan.parametrization.groups import param_groups

DEFAULT_WIDTHS = (64, 128, 256, 512, 1024)

# muP's recommended zero-initialized readout and query keep the vanishing step-0 noise out of
# the check. Width 64 is far from the infinite-width limit for attention: one head (d_head =
# width) and few tokens per batch keep finite-size effects on the logits small (measured; a
# batch of 8 x 16 tokens with 4 heads shrinks the muP logits 2.5x from width 64 to 1024).
# Small O(1) DenseAM memories (std 0.1) let the learned overlaps dominate the random ones,
# which vanish as N^-1/2 under beta = beta0/N.
_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"in_dim": 16, "out_dim": 10, "depth": 3, "readout_zero_init": True},
    "gpt": {"depth": 2, "n_heads": 1, "vocab": 64, "seq_len": 4, "readout_zero_init": True, "query_zero_init": True},
    "denseam": {"in_dim": 16, "out_dim": 10, "steps": 4, "memory_std": 0.1, "readout_zero_init": True},
}
DEFAULT_LR = {"mlp": 1e-2, "gpt": 3e-3, "denseam": 0.2}
DEFAULT_BATCH = {"mlp": 64, "gpt": 1, "denseam": 64}  # samples (gpt: sequences)


@dataclass
class _Recorder:
    """Forward hooks collecting mean |output| per module (averaged over repeated calls)."""

    sums: dict[str, list[float]] = field(default_factory=dict)

    def hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                self.sums.setdefault(name, []).append(output.detach().abs().mean().item())

        return record

    def pop(self) -> dict[str, float]:
        means = {name: sum(v) / len(v) for name, v in self.sums.items()}
        self.sums = {}
        return means


def _batch(model_name: str, kwargs: dict[str, Any], size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed synthetic batch (inputs, targets) that does not depend on the width."""
    gen = torch.Generator().manual_seed(seed)
    if model_name == "gpt":
        tokens = torch.randint(0, kwargs["vocab"], (size, kwargs["seq_len"] + 1), generator=gen)
        return tokens[:, :-1], tokens[:, 1:]
    return torch.randn(size, kwargs["in_dim"], generator=gen), torch.randint(0, kwargs["out_dim"], (size,), generator=gen)


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def coord_check(
    model_name: str,
    parametrization: str,
    widths: tuple[int, ...] = DEFAULT_WIDTHS,
    steps: int = 3,
    lr: float | None = None,
    seeds: int = 1,
    base_width: int | None = None,
    optimizer: str = "adam",
    batch_size: int | None = None,
    **model_kwargs: Any,
) -> pd.DataFrame:
    """DataFrame (width, step, layer, mean_abs): mean |activation| per layer, averaged over seeds.

    step 0 is the initial forward pass, step t the forward pass after t optimizer updates.
    """
    if model_name not in _MODEL_DEFAULTS:
        raise ScaleplanError(f"unknown model {model_name!r}; valid models: {', '.join(_MODEL_DEFAULTS)}")
    if not widths or min(widths) < 1 or steps < 1 or seeds < 1 or (batch_size is not None and batch_size < 1):
        raise ScaleplanError("coord-check needs positive widths, steps >= 1, seeds >= 1 and batch_size >= 1")
    if model_kwargs.get("readout") == "denoise":
        raise ScaleplanError("coord-check trains the DenseAM classifier read-out; drop readout='denoise'")
    kwargs = {**_MODEL_DEFAULTS[model_name], **model_kwargs}
    lr = DEFAULT_LR[model_name] if lr is None else lr
    base = min(widths) if base_width is None else base_width
    rows = []
    for seed in range(seeds):
        inputs, targets = _batch(model_name, kwargs, batch_size or DEFAULT_BATCH[model_name], seed)
        for width in widths:
            torch.manual_seed(seed)
            model = build_parametrized(model_name, width, parametrization, base, **kwargs)
            rows += [(seed, width, *row) for row in trace_training(model, inputs, targets, steps, lr, optimizer)]
    return average_seeds(rows)


def trace_training(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, steps: int, lr: float, optimizer: str = "adam",
    eps: float = 1e-8,
) -> list[tuple[int, str, float]]:
    """(step, layer, mean |output|) of every named submodule of a parametrized `model` over `steps`
    optimizer updates on one fixed batch (cross-entropy), with the parametrization's per-tensor lrs
    (and Adam eps: `eps` at the base)."""
    opt_cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    groups = param_groups(model, lr, optimizer=optimizer, eps=eps)
    opt = opt_cls(groups, eps=eps) if optimizer != "sgd" else opt_cls(groups)
    recorder = _Recorder()
    for name, module in model.named_modules():
        if name:
            module.register_forward_hook(recorder.hook(name))
    rows = []
    for step in range(steps + 1):
        loss = _loss(model(inputs), targets)
        rows += [(step, layer, value) for layer, value in recorder.pop().items()]
        if step < steps:
            opt.zero_grad()
            loss.backward()
            opt.step()
    return rows


def average_seeds(rows: list[tuple[int, int, int, str, float]]) -> pd.DataFrame:
    """(seed, width, step, layer, value) rows -> frame (width, step, layer, mean_abs), averaged over seeds."""
    frame = pd.DataFrame(rows, columns=["seed", "width", "step", "layer", "mean_abs"])
    return frame.groupby(["width", "step", "layer"], as_index=False, sort=False)["mean_abs"].mean()


def width_table(frame: pd.DataFrame, step: int) -> pd.DataFrame:
    """Mean |activation| at `step`: one row per layer, one column per width."""
    return frame[frame["step"] == step].pivot(index="layer", columns="width", values="mean_abs")


def width_ratios(frame: pd.DataFrame, step: int) -> pd.Series:
    """Per layer: mean |activation| at the largest width / at the smallest width, at `step`."""
    at_step = width_table(frame, step)
    return at_step[at_step.columns.max()] / at_step[at_step.columns.min()]

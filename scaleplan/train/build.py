"""What both training loops build from a TrialConfig: the task, the seeded parametrized model,
its optimizer parameter groups (muP per-group LRs), the data generator and the thread setting."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

from scaleplan.errors import ScaleplanError
from scaleplan.tasks import Task, get_task
from scaleplan.train.config import TrialConfig

DATA_SEED_OFFSET = 0x5EED  # keeps the data stream distinct from the init stream of the same seed
CALIBRATION_SEED_OFFSET = 0xCA1B  # the batches a memory-eps calibration measures on: neither the data nor the init stream


def build_task(cfg: TrialConfig) -> Task:
    """The (cached) task of `cfg`, after checking that the model can train on it."""
    task = get_task(cfg.task, **cfg.task_kwargs)
    if cfg.model not in task.models:
        raise ScaleplanError(
            f"model {cfg.model!r} cannot train on task {cfg.task!r}; use one of: {', '.join(task.models)}"
        )
    return task


def model_kwargs(cfg: TrialConfig, task: Task) -> dict[str, Any]:
    """Model kwargs: the task's dims, the config's model_kwargs and the DenseAM beta0/tau."""
    kwargs = dict(task.model_kwargs)
    for key, value in cfg.model_kwargs.items():
        if key in kwargs and kwargs[key] != value:
            raise ScaleplanError(
                f"model kwarg {key}={value!r} contradicts task {cfg.task!r} ({key}={kwargs[key]!r}); "
                f"set it in the task options instead"
            )
        kwargs[key] = value
    for key in ("beta0", "tau"):
        if getattr(cfg, key) is not None:
            kwargs[key] = getattr(cfg, key)
    return kwargs


def build_model(cfg: TrialConfig, task: Task) -> nn.Module:
    """The parametrized model of `cfg` on cfg.device, initialized on the CPU from `cfg.seed`
    (same seed, same weights on every device)."""
    from scaleplan.models import build_parametrized

    kwargs = model_kwargs(cfg, task)
    for key in ("init_std", "output_mult"):
        if getattr(cfg, key) is not None:
            kwargs[key] = getattr(cfg, key)
    device = training_device(cfg)
    torch.manual_seed(cfg.seed)
    model = build_parametrized(
        cfg.model, cfg.width, cfg.parametrization, cfg.base_width, completep=cfg.completep, base_depth=cfg.base_depth, **kwargs
    ).to(device)
    if cfg.memory_eps == "retrieval":
        from scaleplan.parametrization.memory_eps import CALIBRATION_BATCHES, calibrate_memory_eps

        generator = torch.Generator().manual_seed(cfg.seed + CALIBRATION_SEED_OFFSET)  # not the training batches
        drawn = (task.sample_batch(cfg.batch_size, generator) for _ in range(CALIBRATION_BATCHES))
        batches = [(x.to(device), y.to(device)) for x, y in drawn]
        calibrate_memory_eps(model, batches, task.loss)
    return model


INIT_CHECK_INPUTS = 256  # held-out inputs the init check runs the model on


def check_init(cfg: TrialConfig, task: Task) -> bool:
    """Build cfg's model and let it refuse itself before training (a ScaleplanError naming the fix) when
    its forward diverges at init; models opt in with `check_init(inputs)` (the DenseAM checks that its
    energy descent does not explode). Returns whether the model has such a check."""
    model = build_model(cfg, task)
    check = getattr(model, "check_init", None)
    if check is None:
        return False
    check(task.eval_set()[0][:INIT_CHECK_INPUTS].to(training_device(cfg)))
    return True


def training_device(cfg: TrialConfig) -> torch.device:
    """cfg.device (cpu, cuda or cuda:N, checked by TrialConfig) as a torch.device, checked to exist."""
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ScaleplanError(f"device {cfg.device!r} asked for, but torch sees no CUDA GPU; use device='cpu'")
    return device


def param_groups_for(model: nn.Module, cfg: TrialConfig) -> list[dict[str, Any]]:
    """Per-group (muP) lr and weight decay for cfg.optimizer, from the rules table.

    AdamW's lambda is per role (hidden x m under muP with torch's convention, as mup.MuAdamW; constant with
    independent decay) so that every role's decay timescale is width-independent.
    """
    from scaleplan.parametrization import param_groups

    return param_groups(model, cfg.lr, weight_decay=cfg.effective_weight_decay, optimizer=cfg.optimizer,
                        eps=cfg.eps, decay=cfg.decay_convention, no_decay=cfg.no_decay)


def data_generator(seed: int) -> torch.Generator:
    """The training-batch generator of a trial with `seed`."""
    return torch.Generator().manual_seed(seed + DATA_SEED_OFFSET)


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def non_embedding_params(model: nn.Module) -> int:
    """The N of scaling laws: trainable parameters outside the embedding tables (every nn.Embedding) and the
    modules a model names in `scaleplan_outside_n` (its readout; the MLP's input layer too). For the GPT
    this is ~12 L d^2, the count the planner's shapes use (plan/shape.py)."""
    outside = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    for name in getattr(model, "scaleplan_outside_n", ()):
        outside |= {id(p) for p in model.get_submodule(name).parameters()}
    return sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in outside)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with `threads` torch threads (None: leave the setting), then restore it."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

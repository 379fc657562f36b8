"""`train_trial`: train one model from a TrialConfig with torch.optim and report its held-out loss."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from scaleplan.core.reference import ADAM_BETAS
from scaleplan.train.build import (
    build_model, build_task, data_generator, n_params, non_embedding_params, param_groups_for, torch_threads,
    training_device,
)
from scaleplan.train.config import TrialConfig, TrialResult
from scaleplan.train.monitor import at_checkpoint, diverged, tail_mean
from scaleplan.train.schedule import lr_factor

OPTIMIZER_CLASSES = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def make_optimizer(groups: list[dict], cfg: TrialConfig) -> torch.optim.Optimizer:
    """torch.optim optimizer over the parametrization's groups (Adam: cfg's betas, and cfg.eps where a group does not
    scale it; SGD: cfg's momentum and nesterov)."""
    if cfg.optimizer == "sgd":  # every group carries its own lr and weight decay
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return OPTIMIZER_CLASSES[cfg.optimizer](groups, lr=cfg.lr, eps=cfg.eps, betas=cfg.betas or ADAM_BETAS)


def train_trial(
    cfg: TrialConfig, checkpoint: Callable[[int, float], bool] | None = None, checkpoint_every: int = 0
) -> TrialResult:
    """Train one model; stops early (diverged=True, loss=inf) once the training loss blows up.

    With `checkpoint`, the held-out loss is evaluated every `checkpoint_every` steps and passed as
    `checkpoint(steps_done, loss)`; True stops the run (pruned=True, loss = that held-out loss).
    """
    start = time.perf_counter()
    with torch_threads(cfg.threads):
        task = build_task(cfg)
        model = build_model(cfg, task)
        device = training_device(cfg)
        optimizer = make_optimizer(param_groups_for(model, cfg), cfg)
        base_lrs = [group["lr"] for group in optimizer.param_groups]
        generator = data_generator(cfg.seed)
        trained = [p for group in optimizer.param_groups for p in group["params"]]
        clipped = torch.zeros((), dtype=torch.long, device=device)  # steps whose gradient norm was clipped
        losses = torch.zeros(cfg.steps)
        blew_up = pruned = False
        held_out = math.inf
        model.train()
        for step in range(cfg.steps):
            factor = lr_factor(step, cfg)
            for group, base_lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base_lr * factor
            x, y = (t.to(device) for t in task.sample_batch(cfg.batch_size, generator))
            loss = task.loss(model(x), y)
            losses[step] = loss.detach()
            if diverged(losses[step], losses[0]):
                blew_up = True
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad_norm is not None:
                clipped += torch.nn.utils.clip_grad_norm_(trained, cfg.clip_grad_norm) > cfg.clip_grad_norm
            optimizer.step()
            if checkpoint is not None and at_checkpoint(step + 1, checkpoint_every, cfg.steps):
                model.eval()
                held_out = task.eval_loss(model, device)
                model.train()
                if checkpoint(step + 1, held_out):
                    pruned = True
                    break
        steps_run = step + 1 if pruned else step if blew_up else cfg.steps
        if not (blew_up or pruned):
            model.eval()
            held_out = task.eval_loss(model, device)
            blew_up = not math.isfinite(held_out)
    return TrialResult(
        loss=math.inf if blew_up else held_out,
        train_loss=math.inf if blew_up else float(tail_mean(losses, steps_run)),
        diverged=blew_up,
        n_params=n_params(model),
        n_non_embedding=non_embedding_params(model),
        tokens_or_samples=cfg.steps * cfg.batch_size * task.units_per_example,
        seconds=time.perf_counter() - start,
        steps_run=steps_run,
        pruned=pruned,
        clipped_fraction=None if cfg.clip_grad_norm is None else int(clipped) / max(steps_run, 1),
    )

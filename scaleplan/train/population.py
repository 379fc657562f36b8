"""Population training: K trials of one width trained together in one batched computation.

The K models' parameters are stacked (torch.func.stack_module_state) into one flat (K, P) tensor;
the forward runs as one vmap(functional_call), the backward as one autograd pass, and Adam/AdamW/SGD
update all members at once with per-member, per-group learning rates, weight decays and eps read
from the same torch.optim groups that `train_trial` uses, so each member follows its sequential run
to float rounding. Gradient clipping (`clip_grad_norm`) scales each member's row by that member's own
global norm, as clip_grad_norm_ does for its sequential run. A member whose loss blows up is zeroed and
frozen and reported diverged; the others go on untouched. A `checkpoint` callback (pruning) sees every member's held-out loss every
`checkpoint_every` steps and may stop members, which are frozen the same way and reported pruned.
A model with dropout does not train this way (vmap cannot draw each member's own masks): its size is 1.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from scaleplan.errors import ScaleplanError
from scaleplan.tasks import Task
from scaleplan.train.build import (
    build_model, build_task, data_generator, n_params, non_embedding_params, param_groups_for, torch_threads,
    training_device,
)
from scaleplan.train.config import PER_MEMBER_FIELDS, Checkpoint, TrialConfig, TrialResult
from scaleplan.train.loop import make_optimizer
from scaleplan.train.monitor import at_checkpoint, diverged, tail_mean
from scaleplan.train.schedule import lr_factor

_dropout: dict[str, bool] = {}  # per configuration (calibrate.cache_key): whether its model drops anything


def population_size_for(cfg: TrialConfig) -> int:
    """How many trials like `cfg` to train together (1 = one at a time): measured on this machine, per device
    and configuration, and cached (see train/calibrate.py). A model with dropout trains one at a time, whatever
    SCALEPLAN_POPULATION says: a batched call cannot draw each member's masks as its own run draws them."""
    from scaleplan.train.calibrate import cache_key, calibrated_population

    key = cache_key(cfg)
    if key not in _dropout:
        with torch_threads(cfg.threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the trials' own builds warn, once
            _dropout[key] = _drops_out(build_model(cfg, build_task(cfg)))
    return 1 if _dropout[key] else calibrated_population(cfg)


def _drops_out(model: nn.Module) -> bool:
    """Whether `model` has a dropout module that drops anything (p > 0): its forward draws random numbers."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


@dataclass
class _FlatHyper:
    """Optimizer settings of every member for every coordinate of the flat (K, P) parameters."""

    lr: Tensor
    weight_decay: Tensor
    eps: Tensor
    betas: tuple[float, float]
    decay: bool  # any non-zero weight decay
    momentum: float = 0.0  # SGD's (torch.optim.SGD's, dampening 0), the same for every member
    nesterov: bool = False

    def freeze(self, member: int) -> None:
        """Stop updating `member` (its lr and weight decay become 0)."""
        self.lr[member] = 0.0
        self.weight_decay[member] = 0.0


def train_population(
    cfgs: list[TrialConfig], checkpoint: Checkpoint | None = None, checkpoint_every: int = 0
) -> list[TrialResult]:
    """Train the trials in `cfgs` together; results are in the order of `cfgs`.

    The configs must share everything but PER_MEMBER_FIELDS (seed and the searchable fields). Members whose models differ in non-tensor attributes (e.g. a float multiplier) cannot share
    one batched call; they are trained as separate batched groups. With `checkpoint`, every
    `checkpoint_every` steps it gets all members' held-out losses and returns which to stop (prune).
    """
    if not cfgs:
        return []
    shared = cfgs[0].population_key()
    for cfg in cfgs[1:]:
        differ = sorted(k for k, v in cfg.population_key().items() if shared[k] != v)
        if differ:
            raise ScaleplanError(
                f"population members must share everything but {'/'.join(PER_MEMBER_FIELDS)}; these differ: "
                f"{', '.join(differ)} (train them separately)"
            )
    start = time.perf_counter()
    with torch_threads(cfgs[0].threads):
        task = build_task(cfgs[0])
        models = [build_model(cfg, task) for cfg in cfgs]
        if _drops_out(models[0]):  # vmap refuses its random masks, and one shared stream would not be each run's own
            raise ScaleplanError("a model with dropout cannot train in a population: train its trials one at a time "
                                 "(train_trial; population_size_for gives 1)")
        partitions: dict[str, list[int]] = {}
        for i, model in enumerate(models):
            partitions.setdefault(_static_state(model), []).append(i)
        outcomes: dict[int, tuple[float, float, int, bool, float]] = {}
        for members in partitions.values():
            part = None if checkpoint is None else _members_checkpoint(checkpoint, members, len(cfgs))
            found = _train_stacked([cfgs[i] for i in members], [models[i] for i in members], task, part, checkpoint_every)
            outcomes.update(zip(members, found))
    seconds = (time.perf_counter() - start) / len(cfgs)
    units = cfgs[0].batch_size * task.units_per_example
    return [
        TrialResult(
            loss=held_out,
            train_loss=train_loss,
            diverged=not math.isfinite(held_out),
            n_params=n_params(models[i]),
            n_non_embedding=non_embedding_params(models[i]),
            tokens_or_samples=cfgs[i].steps * units,
            seconds=seconds,
            steps_run=steps_run,
            pruned=pruned,
            clipped_fraction=None if cfgs[i].clip_grad_norm is None else clipped,
        )
        for i, (held_out, train_loss, steps_run, pruned, clipped) in sorted(outcomes.items())
    ]


def _members_checkpoint(checkpoint: Checkpoint, members: list[int], k: int) -> Checkpoint:
    """`checkpoint` for one batched group: its members' losses sit at their places among all k (NaN elsewhere)."""

    def call(steps_done: int, losses: list[float]) -> list[bool]:
        everyone = [math.nan] * k
        for member, loss in zip(members, losses):
            everyone[member] = loss
        stop = checkpoint(steps_done, everyone)
        return [stop[member] for member in members]

    return call


def _tied_aliases(model: nn.Module) -> dict[str, str]:
    """{second name: first name} of tied parameters: the meta skeleton may lose the tie (transformers
    models do), so every name is passed to functional_call explicitly."""
    first: dict[int, str] = {}
    aliases = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            aliases[name] = first[id(param)]
        else:
            first[id(param)] = name
    return aliases


def _static_state(model: nn.Module) -> str:
    """The non-tensor attributes and hook settings of every submodule (a vmapped call shares them)."""
    state = []
    for module in model.modules():
        hooks = [*module._forward_pre_hooks.values(), *module._forward_hooks.values()]
        state.append([
            sorted((k, repr(v)) for k, v in vars(module).items() if not k.startswith("_") and k != "training"),
            [repr(vars(hook)) if hasattr(hook, "__dict__") else repr(hook) for hook in hooks],
        ])
    return repr(state)


def _flat_hyper(models: list[nn.Module], cfgs: list[TrialConfig], names: list[str], device: torch.device) -> _FlatHyper:
    """Each member's resolved torch.optim groups spread over the flat parameter layout `names`."""
    rows: dict[str, list[Tensor]] = {"lr": [], "weight_decay": [], "eps": []}
    shared = set()  # (betas, momentum, nesterov): one for the population
    for model, cfg in zip(models, cfgs):
        by_param = {id(p): name for name, p in model.named_parameters()}
        settings: dict[str, dict[str, float]] = {}
        for group in make_optimizer(param_groups_for(model, cfg), cfg).param_groups:
            shared.add((tuple(group.get("betas", (0.0, 0.0))), group.get("momentum", 0.0), group.get("nesterov", False)))
            for p in group["params"]:
                settings[by_param[id(p)]] = {"lr": group["lr"], "weight_decay": group["weight_decay"], "eps": group.get("eps", 0.0)}
        numels = dict((name, p.numel()) for name, p in model.named_parameters())
        for key, row in rows.items():
            row.append(torch.cat([torch.full((numels[n],), settings[n][key], dtype=torch.float64) for n in names]))
    if len(shared) != 1:
        raise ValueError(f"population members need one set of Adam betas and SGD momentum, got {sorted(shared)}")
    tensors = {key: torch.stack(row).float().to(device) for key, row in rows.items()}
    betas, momentum, nesterov = shared.pop()
    return _FlatHyper(**tensors, betas=betas, decay=bool(tensors["weight_decay"].any()), momentum=momentum, nesterov=nesterov)


def _train_stacked(
    cfgs: list[TrialConfig], models: list[nn.Module], task: Task, checkpoint: Checkpoint | None, every: int
) -> list[tuple[float, float, int, bool, float]]:
    """Train models of identical structure together: (held-out loss, train loss, steps run, pruned, share of
    steps clipped) each.

    All members' parameters live in one flat (K, P) tensor, so the optimizer step is a handful of
    large elementwise ops whatever the number of parameter tensors.
    """
    cfg = cfgs[0]
    k = len(models)
    skeleton = copy.deepcopy(models[0]).to("meta")
    stacked, buffers = stack_module_state(models)
    names = list(stacked)
    shapes = [stacked[n].shape[1:] for n in names]
    sizes = [shape.numel() for shape in shapes]
    flat = torch.cat([stacked[n].detach().reshape(k, -1) for n in names], dim=1).requires_grad_()
    device = training_device(cfg)
    hyper = _flat_hyper(models, cfgs, names, device)
    moments = (torch.zeros_like(flat), torch.zeros_like(flat))
    seeds = sorted({c.seed for c in cfgs})
    slot = torch.tensor([seeds.index(c.seed) for c in cfgs])
    generators = [data_generator(seed) for seed in seeds]
    max_norm = _max_norms(cfgs, device)
    clipped = torch.zeros(k, dtype=torch.long, device=device)  # per member: steps whose gradient norm was clipped

    aliases = _tied_aliases(models[0])

    def unflatten(values: Tensor) -> dict[str, Tensor]:
        found = {n: t.view(k, *shape) for n, t, shape in zip(names, values.split(sizes, dim=1), shapes)}
        return {**found, **{alias: found[name] for alias, name in aliases.items()}}

    def batched_forward(x: Tensor, in_dim: int | None) -> Tensor:
        call = lambda p, b, x: functional_call(skeleton, (p, b), (x,))  # noqa: E731
        return vmap(call, in_dims=(0, 0, in_dim))(unflatten(flat), buffers, x)

    def held_out_losses() -> Tensor:
        skeleton.eval()
        with torch.no_grad():
            found = task.eval_losses(lambda x: batched_forward(x, None), device)
        skeleton.train()
        return found

    def freeze(member: int, steps_done: int) -> None:
        """Zero and stop updating `member` (a blown-up or pruned one)."""
        steps_run[member] = steps_done
        for state in (flat, *moments):
            state[member] = 0.0
        hyper.freeze(member)

    member_loss = vmap(task.loss)
    losses = torch.zeros(cfg.steps, k)
    steps_run = torch.full((k,), cfg.steps)
    active = torch.ones(k, dtype=torch.bool)
    pruned = torch.zeros(k, dtype=torch.bool)
    pruned_loss = torch.full((k,), math.inf)  # each pruned member's held-out loss when it was stopped
    skeleton.train()
    for step in range(cfg.steps):
        batches = [task.sample_batch(cfg.batch_size, g) for g in generators]
        x = torch.stack([b[0] for b in batches])[slot].to(device)
        y = torch.stack([b[1] for b in batches])[slot].to(device)
        loss = member_loss(batched_forward(x, 0), y)
        losses[step] = loss.detach().cpu()
        newly = active & diverged(losses[step], losses[0])
        active &= ~newly
        if not active.any():
            steps_run[newly] = step
            break
        (grad,) = torch.autograd.grad(loss.sum(), flat)
        with torch.no_grad():
            if max_norm is not None:
                clipped += _clip_per_member(grad, max_norm) & active.to(device)
            _update(cfg.optimizer, flat, grad, moments, hyper, lr_factor(step, cfg), step + 1)
            for member in newly.nonzero().flatten().tolist():  # zero and freeze the blown-up ones
                freeze(member, step)
            if checkpoint is not None and at_checkpoint(step + 1, every, cfg.steps):
                checked = torch.where(active, held_out_losses(), math.nan)
                stop = torch.tensor(checkpoint(step + 1, checked.tolist()), dtype=torch.bool) & active
                pruned_loss = torch.where(stop, checked, pruned_loss)
                for member in stop.nonzero().flatten().tolist():
                    freeze(member, step + 1)
                pruned |= stop
                active &= ~stop
                if not active.any():
                    break

    held_out = torch.where(pruned, pruned_loss, held_out_losses() if active.any() else math.nan)
    results = []
    for i in range(k):
        ok = bool(active[i] | pruned[i]) and math.isfinite(float(held_out[i]))
        run = int(steps_run[i])
        results.append((float(held_out[i]) if ok else math.inf,
                        float(tail_mean(losses[:, i], run)) if ok else math.inf, run, bool(pruned[i]),
                        int(clipped[i]) / max(run, 1)))
    return results


def _max_norms(cfgs: list[TrialConfig], device: torch.device) -> Tensor | None:
    """Each member's clip_grad_norm (inf where it does not clip), or None when no member clips."""
    if all(cfg.clip_grad_norm is None for cfg in cfgs):
        return None
    return torch.tensor([math.inf if c.clip_grad_norm is None else c.clip_grad_norm for c in cfgs], device=device)


def _clip_per_member(grad: Tensor, max_norm: Tensor) -> Tensor:
    """Scale each member's row of `grad` in place as torch.nn.utils.clip_grad_norm_ scales one model's gradients
    (by max_norm / (norm + 1e-6) where below 1): each by its own global norm, never one pooled over members.
    Returns which members were clipped (norm above their max_norm)."""
    norm = torch.linalg.vector_norm(grad, dim=1)
    clipping = torch.isfinite(max_norm)
    grad.mul_(torch.where(clipping, (max_norm / (norm + 1e-6)).clamp(max=1.0), 1.0).unsqueeze(1))
    return norm > max_norm


def _update(optimizer: str, p: Tensor, g: Tensor, moments: tuple[Tensor, Tensor], h: _FlatHyper,
            factor: float, t: int) -> None:
    """One Adam/AdamW/SGD step of every member in place, computed as torch.optim does for each (SGD's momentum
    buffer is the first moment, from zero: its first step is the gradient, as torch's).

    Adam folds the per-coordinate lr into the denominator (as torch's capturable Adam folds the
    step size), so the step is one addcdiv_: p -= (factor / bc1) * m / ((sqrt(v) / sqrt(bc2) + eps) / lr).
    """
    if h.decay and optimizer != "adamw":  # coupled (L2) decay: grad += wd * p
        g = g.addcmul(h.weight_decay, p)
    if h.decay and optimizer == "adamw":  # decoupled decay: p *= 1 - lr * wd
        p.sub_(h.lr.mul(h.weight_decay).mul_(factor).mul_(p))
    if optimizer == "sgd":
        if h.momentum:
            buffer = moments[0].mul_(h.momentum).add_(g)
            g = g.add(buffer, alpha=h.momentum) if h.nesterov else buffer
        p.sub_(g.mul(h.lr).mul_(factor))
        return
    beta1, beta2 = h.betas
    exp_avg, exp_avg_sq = moments
    exp_avg.lerp_(g, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    denom = exp_avg_sq.sqrt().div_((1 - beta2**t) ** 0.5).add_(h.eps).div_(h.lr)
    p.addcdiv_(exp_avg, denom, value=-factor / (1 - beta1**t))

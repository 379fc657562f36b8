"""What the hand-written char-LM transfer benchmarks share: the training loop (Adam steps on sampled batches, then the
held-out loss) and the transfer table (the widest proxy's best lr reused at the target, its regret raw and smoothed)."""

from __future__ import annotations

import math
from typing import Callable

import torch

from scaleplan.tasks.base import Task
from scaleplan.validate.regret import LrPoint, best_point, format_regret, group_by_lr, local_model, regret_of


def held_out_after(forward: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer, task: Task,
                   steps: int, batch: int, seed: int) -> float:
    """Train `steps` steps of `batch` examples (batches drawn from seed 10000 + seed); the held-out loss, inf if it diverged."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    for _ in range(steps):
        inputs, targets = task.sample_batch(batch, generator)
        loss = task.loss(forward(inputs), targets)
        if not torch.isfinite(loss):
            return math.inf
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        held_out = task.eval_loss(forward)
    return held_out if math.isfinite(held_out) else math.inf


def print_transfer_table(results: list[tuple[str, int, float, int, float]], variants: tuple[str, ...],
                         proxies: tuple[int, ...], target: int, label: str) -> None:
    """One row per variant from (variant, width, lr, seed, loss) results: the smoothed lr* at every width, its drift
    from the widest proxy to the target, and the regret (+- one jackknife s.e. over seeds) of that proxy's best lr."""
    widths = (*proxies, target)
    print(f"| {label} | smoothed lr* at width {' / '.join(map(str, widths))} | drift {proxies[-1]} -> {target} (octaves) | "
          f"width {proxies[-1]}'s best lr reused at {target} | regret, raw | regret, smoothed | best loss at {target} |")
    print("|---|---|---|---|---|---|---|")
    for variant in variants:
        grids = {w: group_by_lr([(lr, s, loss) for v, ww, lr, s, loss in results if v == variant and ww == w]) for w in widths}
        optima = {w: _optimum(points) for w, points in grids.items()}
        chosen = best_point(grids[proxies[-1]]).lr
        choice = next(p for p in grids[target] if p.lr == chosen)
        regret = regret_of(variant, choice, grids[target])
        low, high = optima[proxies[-1]], optima[target]
        drift = math.log2(high / low) if low and high else math.nan
        diverged = sum(p.n_diverged for p in grids[target])
        print(f"| {variant} | " + " / ".join(f"{optima[w]:.4g}" if optima[w] else "-" for w in widths)
              + f" | {drift:+.2f} | {chosen:.4g} | {format_regret(regret.raw, regret.raw_se)} | "
              f"{format_regret(regret.smoothed, regret.smoothed_se)} | {best_point(grids[target]).mean:.4f}"
              f"{f' ({diverged} diverged seed runs)' if diverged else ''} |")


def _optimum(points: list[LrPoint]) -> float | None:
    model = local_model(points)
    return None if model is None else model.vertex_lr

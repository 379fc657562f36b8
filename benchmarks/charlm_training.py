"""What the hand-written transfer benchmarks share: the training loop (Adam steps on sampled batches, then the
held-out loss), their record of finished runs (a CSV a rerun resumes from) and the transfer table (the widest proxy's
best lr reused at the target, its regret raw and smoothed)."""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from scaleplan import apply_parametrization
from scaleplan.tasks.base import Task
from scaleplan.validate.regret import LrPoint, best_point, format_regret, group_by_lr, local_model, regret_of


def parametrized(build: Callable[[int], nn.Module], parametrization: str, width: int, base_width: int) -> nn.Module:
    """`build(width)` parametrized against the same model at `base_width` (and twice it, mup's delta) as a user would,
    apply's warnings silenced (each report lists the roles inferred); the model is drawn first, from the current seed."""
    model = build(width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return apply_parametrization(model, parametrization, base=build(base_width), delta=build(2 * base_width))


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


def read_runs(path: Path, parse: Callable[[dict[str, str]], tuple]) -> list[tuple]:
    """The runs a benchmark recorded at `path`, each row parsed (none before its first run)."""
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [parse(row) for row in csv.DictReader(handle)]


def record_runs(path: Path, fields: Sequence[str], results: Iterable[tuple], runs: list[Any]) -> None:
    """Append each result as it arrives (from a process pool) to `runs` and, flushed, to the CSV at `path`: a stopped
    run keeps what it finished, and a rerun trains only what is missing."""
    new = not path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(fields)
        for row in results:
            writer.writerow(row)
            handle.flush()
            runs.append(row)


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

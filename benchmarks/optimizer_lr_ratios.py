"""What the optimizer check guards against: a muP model trained with one lr for every tensor (torch.optim.Adam(
model.parameters(), lr), or a schedule that sets every group's lr) instead of param_groups' per-role lrs.

The built-in GPT (depth 2, 4 heads) under muP on the char-LM, Adam at a constant lr for STEPS steps of
BATCH x SEQ_LEN characters; held-out loss. The proxy is the base width (32), where the two optimizers are the same
(every factor is 1); its best lr (3 seeds, smoothed by validate's local model, snapped to the grid) is what a user
transfers. At the target width (4x) both optimizers train on the same 2^0.5 lr grid with 5 seeds, the same seeds
(same init, same batches), so their losses at the transferred lr are compared seed by seed.

    python benchmarks/optimizer_lr_ratios.py [--workers 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import warnings
from concurrent.futures import ProcessPoolExecutor
from itertools import product

import torch

from charlm_training import held_out_after
from scaleplan.models import build_parametrized
from scaleplan.parametrization import param_groups
from scaleplan.tasks import get_task
from scaleplan.validate.regret import best_point, group_by_lr, local_model

BASE, TARGET = 32, 128
SEEDS = {BASE: 3, TARGET: 5}
LRS = tuple(2e-3 * 2 ** (k / 2) for k in range(-2, 9))  # 0.001 .. 0.032
STEPS, BATCH, SEQ_LEN = 200, 16, 32
OPTIMIZERS = ("param_groups", "one lr (model.parameters())")


def held_out_loss(job: tuple[str, int, float, int]) -> tuple[str, int, float, int, float]:
    """(optimizer, width, lr, seed) -> the held-out loss after training (inf when the loss went non-finite)."""
    variant, width, lr, seed = job
    torch.set_num_threads(1)
    task = get_task("charlm", seq_len=SEQ_LEN, n_eval=128)
    torch.manual_seed(seed)
    model = build_parametrized("gpt", width, "mup", BASE, depth=2, n_heads=4, **task.model_kwargs)
    params = param_groups(model, lr) if variant == OPTIMIZERS[0] else model.parameters()
    opt = torch.optim.Adam(params, lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the one-lr optimizer is warned about, which is the point
        return variant, width, lr, seed, held_out_after(model, opt, task, STEPS, BATCH, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [(OPTIMIZERS[0], BASE, lr, s) for lr in LRS for s in range(SEEDS[BASE])]
    jobs += [(v, TARGET, lr, s) for v, lr in product(OPTIMIZERS, LRS) for s in range(SEEDS[TARGET])]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(held_out_loss, jobs))
    rows = {(v, w): [(lr, s, loss) for vv, ww, lr, s, loss in results if (vv, ww) == (v, w)] for v, w in {(j[0], j[1]) for j in jobs}}
    proxy = group_by_lr(rows[OPTIMIZERS[0], BASE])
    model = local_model(proxy)
    vertex = model.vertex_lr if model is not None else None
    chosen = min(LRS, key=lambda lr: abs(math.log(lr / vertex))) if vertex else best_point(proxy).lr
    print(f"built-in GPT (depth 2) under muP on the char-LM, {STEPS} Adam steps of {BATCH} x {SEQ_LEN}, constant lr; "
          f"base width {BASE} ({SEEDS[BASE]} seeds), target width {TARGET} ({SEEDS[TARGET]} seeds), lrs "
          f"{LRS[0]:.3g}-{LRS[-1]:.3g} (2^0.5 steps)")
    print(f"transferred lr: {chosen:.4g} (width {BASE}'s smoothed optimum {vertex or math.nan:.4g}, on the grid)\n")
    print(f"| optimizer at width {TARGET} | loss at the transferred lr (mean ± s.e.) | against param_groups, seed by seed | "
          "best lr on the grid | its loss | smoothed optimum | diverged seed runs |")
    print("|---|---|---|---|---|---|---|")
    at_chosen = {v: _seed_losses(rows[v, TARGET], chosen) for v in OPTIMIZERS}
    for variant in OPTIMIZERS:
        points = group_by_lr(rows[variant, TARGET])
        losses = at_chosen[variant]
        diffs = [a / b - 1 for a, b in zip(losses, at_chosen[OPTIMIZERS[0]])]
        fitted = local_model(points)
        best = best_point(points)
        print(f"| {variant} | {_mean_se(losses, 4)} | {_mean_se(diffs, 2, percent=True)} | {best.lr:.4g} | {best.mean:.4f} | "
              f"{fitted.vertex_lr if fitted else math.nan:.4g} | {sum(p.n_diverged for p in points)} |")


def _seed_losses(rows: list[tuple[float, int, float]], lr: float) -> list[float]:
    return [loss for r, _, loss in sorted(rows, key=lambda x: x[1]) if r == lr]


def _mean_se(values: list[float], digits: int, percent: bool = False) -> str:
    if not all(math.isfinite(v) for v in values):
        return f"{sum(not math.isfinite(v) for v in values)} of {len(values)} seeds diverged"
    mean, se = statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))
    return f"{mean:+.{digits}%} ± {se:.{digits}%}" if percent else f"{mean:.{digits}f} ± {se:.{digits}f}"


if __name__ == "__main__":
    main()

"""Trials/hour of population (batched) training vs one-at-a-time training, per population size K, side by side.

A reference family (--family, FAMILIES): the MLP (depth 3, muP, base width 32) on the noisy teacher-student
task, the GPT (depth 2, 4 heads, muP) on the char-LM, or the DenseAM (32 memories, 4 steps) on corrupted
patterns, as the built-in specs configure them. At each width, SEQUENTIAL trials
(lr spread over 1e-3..1e-2, seeds alternating 0/1) are trained one at a time with train_trial, and K trials
of the same kind together with train_population for each K; the runs alternate --repeats times and the best
time of each is kept (the machine is shared). Prints both rates, their ratio per K, the largest relative
difference of the held-out losses between the two paths on the shared trials (they must agree), and the K
that the sweep's own calibration (scaleplan.train.calibrate) picks at that width.

    python benchmarks/sweep_throughput.py [--family mlp|gpt|denseam] [--steps 100] [--sizes 4,16,64] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from scaleplan.train.calibrate import choose, cost_per_trial_step, measure_costs
from scaleplan.train.config import TrialConfig
from scaleplan.train.loop import train_trial
from scaleplan.train.population import train_population

SEQUENTIAL = 4  # trials timed one at a time per width (the rate per trial does not depend on K)
# Each family's model and task as sweeps/mlp-mup.toml, gpt-mup.toml and denseam.toml set them (base width 32 here).
FAMILIES = {
    "mlp": dict(model_kwargs={"depth": 3}),
    "gpt": dict(model="gpt", task="charlm", task_kwargs={"seq_len": 32, "n_eval": 64},
                model_kwargs={"depth": 2, "n_heads": 4}),
    "denseam": dict(model="denseam", task="patterns", parametrization="denseam",
                    model_kwargs={"n_memories": 32, "steps": 4}),
}


def trials(family: str, width: int, k: int, steps: int, batch_size: int, device: str, threads: int) -> list[TrialConfig]:
    """K configs of one width that differ in lr and seed."""
    base = TrialConfig(width=width, base_width=32, steps=steps, batch_size=batch_size, device=device,
                       threads=threads, **FAMILIES[family])
    lrs = torch.logspace(-3, -2, k).tolist() if k > 1 else [3e-3]
    return [dataclasses.replace(base, lr=lr, seed=i % 2) for i, lr in enumerate(lrs)]


def timed(fn, device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), default="mlp")
    parser.add_argument("--widths", default="32,64,128,256,512,1024")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--sizes", default="4,16,64", help="population sizes K to compare")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (sweep workers use 1)")
    parser.add_argument("--repeats", type=int, default=2, help="alternate runs of both paths; best time kept")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    sizes = [int(k) for k in args.sizes.split(",")]

    warm = trials(args.family, widths[0], 2, 5, args.batch_size, args.device, args.threads)  # first-call costs, both paths
    [train_trial(c) for c in warm], train_population(warm)

    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} torch thread(s)"
    print(f"device: {name}; {args.family}: {FAMILIES[args.family]}, batch {args.batch_size}, {args.steps} steps, "
          f"best of {args.repeats}; one-at-a-time rate from {SEQUENTIAL} trials")
    print(f"{'width':>6} {'K':>4} {'one-at-a-time/h':>16} {'population/h':>13} {'ratio':>7} {'max rel. loss diff':>19}"
          f" {'calibrated K':>13}")
    for width in widths:
        alone_cfgs = trials(args.family, width, SEQUENTIAL, args.steps, args.batch_size, args.device, args.threads)
        t_alone = float("inf")
        for _ in range(args.repeats):
            alone, seconds = timed(lambda: [train_trial(c) for c in alone_cfgs], args.device)
            t_alone = min(t_alone, seconds / SEQUENTIAL)
        picked = choose(measure_costs(alone_cfgs[0], cost_per_trial_step))
        for k in sizes:
            cfgs = trials(args.family, width, k, args.steps, args.batch_size, args.device, args.threads)
            t_together = float("inf")
            for _ in range(args.repeats):
                together, seconds = timed(lambda: train_population(cfgs), args.device)
                t_together = min(t_together, seconds / k)
            shared = {(c.lr, c.seed): r.loss for c, r in zip(cfgs, together)}
            diffs = [abs(a.loss - shared[(c.lr, c.seed)]) / abs(a.loss) for c, a in zip(alone_cfgs, alone)
                     if (c.lr, c.seed) in shared]
            diff = f"{max(diffs):.1e}" if diffs else "-"
            print(f"{width:>6} {k:>4} {3600 / t_alone:>16,.0f} {3600 / t_together:>13,.0f} "
                  f"{t_alone / t_together:>6.2f}x {diff:>19} {picked:>13}", flush=True)


if __name__ == "__main__":
    main()

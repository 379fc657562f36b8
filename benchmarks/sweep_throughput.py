"""Trials/hour of population (batched) training vs one-at-a-time training, side by side in one run.

MLP (depth 3, muP, base width 32) on the noisy teacher-student task, the same K trials (lr spread
over 1e-3..1e-2, seeds alternating 0/1) trained first one at a time with train_trial, then together
with train_population, at each width; the two are run alternately --repeats times and the best
time of each is kept (the machine is shared). Prints both rates, their ratio, and the largest
relative difference of the held-out losses (the two paths must agree).

    python benchmarks/sweep_throughput.py [--steps 100] [--population 8] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from scaleplan.train.config import TrialConfig
from scaleplan.train.loop import train_trial
from scaleplan.train.population import train_population


def trials(width: int, k: int, steps: int, batch_size: int, device: str, threads: int) -> list[TrialConfig]:
    """K configs of one width that differ in lr and seed."""
    base = TrialConfig(width=width, base_width=32, steps=steps, batch_size=batch_size, device=device,
                       threads=threads, model_kwargs={"depth": 3})
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
    parser.add_argument("--widths", default="32,64,128,256,512,1024")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--population", type=int, default=8, help="K trials per population")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (sweep workers use 1)")
    parser.add_argument("--repeats", type=int, default=2, help="alternate runs of both paths; best time kept")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    k = args.population

    warm = trials(widths[0], 2, 5, args.batch_size, args.device, args.threads)  # first-call costs, both paths
    [train_trial(c) for c in warm], train_population(warm)

    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} torch thread(s)"
    print(f"device: {name}; MLP depth 3 on teacher-student, batch {args.batch_size}, {args.steps} steps, "
          f"K={k}, best of {args.repeats}")
    print(f"{'width':>6} {'one-at-a-time/h':>16} {'population/h':>13} {'ratio':>6} {'max rel. loss diff':>19}")
    for width in widths:
        cfgs = trials(width, k, args.steps, args.batch_size, args.device, args.threads)
        t_alone = t_together = float("inf")
        for _ in range(args.repeats):
            alone, seconds = timed(lambda: [train_trial(c) for c in cfgs], args.device)
            t_alone = min(t_alone, seconds)
            together, seconds = timed(lambda: train_population(cfgs), args.device)
            t_together = min(t_together, seconds)
        diff = max(abs(a.loss - b.loss) / abs(a.loss) for a, b in zip(alone, together))
        print(f"{width:>6} {k / t_alone * 3600:>16,.0f} {k / t_together * 3600:>13,.0f} "
              f"{t_alone / t_together:>5.2f}x {diff:>19.1e}", flush=True)


if __name__ == "__main__":
    main()

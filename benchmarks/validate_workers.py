"""A validation's target runs trained by worker processes against one process, side by side in one run.

`scaleplan validate --workers N` trains the target's populations in N processes (validate/target_runs.py). This
trains the same target runs (the char-LM GPT of the batch sweep by default, on the CPU) with 1 and N workers,
alternating, and prints the best time of each, the ratio, and whether every run's loss is the same.

    python benchmarks/validate_workers.py [--workers 2] [--lrs 4] [--seeds 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="sweeps/transfer/gpt-batch-wide.toml")
    parser.add_argument("--target", default="batch=128", help="AXIS=VALUE, as validate --target")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lrs", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--population", default="8", help="SCALEPLAN_POPULATION: the same populations in both")
    args = parser.parse_args()
    os.environ["SCALEPLAN_POPULATION"] = args.population  # no calibration: both train the same chunks
    from scaleplan.validate.experiment import check_spec, train_at

    axis, value = args.target.split("=")
    checked = check_spec(args.spec, {axis: int(value)}, "cpu")
    lrs = [float(x) for x in np.geomspace(0.01, 0.08, args.lrs)]
    seeds = tuple(range(args.seeds))
    times: dict[int, list[float]] = {1: [], args.workers: []}
    losses: dict[int, list[tuple[float, int, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for workers in times:
                record = Path(tmp) / f"w{workers}-r{rep}.csv"
                start = time.perf_counter()
                rows = train_at(checked, checked.spec.name, lrs, seeds, lambda line: None, record, "cpu", workers)
                times[workers].append(time.perf_counter() - start)
                losses.setdefault(workers, rows)
    runs = len(lrs) * len(seeds)
    best = {w: min(t) for w, t in times.items()}
    print(f"{checked.spec.name} at {checked.point.label}: {runs} runs ({args.lrs} lrs x {args.seeds} seeds, populations of "
          f"{args.population}), CPU with {os.cpu_count()} cores, best of {args.repeats} alternating")
    for workers, t in best.items():
        print(f"  {workers} worker process{'es' if workers > 1 else ''}: {t:.1f} s ({runs / t:.2f} runs/s)")
    print(f"  ratio (1 / {args.workers} workers): {best[1] / best[args.workers]:.2f}x; "
          f"every loss the same: {'yes' if losses[1] == losses[args.workers] else 'NO'}")


if __name__ == "__main__":
    main()

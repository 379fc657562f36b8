"""Measured CPU cost of a DenseAM transfer validation: seconds per training step at each swept size and at
the target, and the plan they imply (the sweep of the spec, plus the target grid of `scaleplan validate`).

Each size trains the spec's configuration the way the sweep and validate do (populations where
train.population.population_size_for says so, one at a time above), at two step counts, so that the
per-step cost and the per-trial overhead (build, held-out evaluation) are separated. One torch thread.

    python benchmarks/denseam_validation_cost.py sweeps/transfer/denseam-lse-features-denseam.toml ... \\
        --target-width 2048 --seeds 5 --target-lrs 10
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from scaleplan.sweep.builtin import BuiltinObjective
from scaleplan.sweep.plan import grid_points
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.trial import TrialRequest
from scaleplan.train.loop import train_trial
from scaleplan.train.population import population_size_for, train_population


def time_trials(objective: BuiltinObjective, spec, width: int, steps: int) -> tuple[float, int]:
    """Wall seconds for one population (or one trial) of `steps` steps at `width`, and its size."""
    point = grid_points(spec)[0]
    point = type(point)(**{**point.attrs(), "width": width, "steps": steps})
    lrs = spec.search_param("lr").grid()
    probe = objective.config(TrialRequest(point, {"lr": lrs[0]}))
    k = population_size_for(probe)
    cfgs = [objective.config(TrialRequest(point, {"lr": lrs[i % len(lrs)]})) for i in range(k)]
    start = time.perf_counter()
    train_population(cfgs) if k > 1 else train_trial(cfgs[0])
    return time.perf_counter() - start, k


def measure(path: Path, target: int, seeds: int, target_lrs: int) -> list[str]:
    spec = load_spec(path)
    objective = BuiltinObjective(spec)
    steps, n_lrs, n_seeds = spec.steps[0], len(spec.search_param("lr").grid()), len(spec.seeds)
    rows, total = [], 0.0
    time_trials(objective, spec, spec.widths[0], 10)  # warm-up: the first call pays one-time costs
    for width, trials in [*[(w, n_lrs * n_seeds) for w in spec.widths], (target, target_lrs * seeds)]:
        short, k = min(time_trials(objective, spec, width, 10) for _ in range(2))
        long, _ = min(time_trials(objective, spec, width, 40) for _ in range(2))
        per_step = max(long - short, 1e-9) / 30 / k  # per trial-step
        overhead = max(short / k - 10 * per_step, 0.0)
        cost = trials * (steps * per_step + overhead)
        total += cost
        role = "target" if width == target else "swept"
        rows.append(f"| {spec.name} | {role} {width} | {k} | {1e3 * per_step:.2f} | {overhead:.2f} | {trials} | {cost / 60:.1f} |")
    rows.append(f"| {spec.name} | total | | | | | **{total / 60:.1f}** |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="+", type=Path)
    parser.add_argument("--target-width", type=int, required=True)
    parser.add_argument("--seeds", type=int, default=5, help="seeds per lr at the target")
    parser.add_argument("--target-lrs", type=int, default=10, help="lrs validate trains at the target (grid + choices)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    command = " ".join(["python", "benchmarks/denseam_validation_cost.py", *map(str, args.specs), "--target-width",
                        str(args.target_width), "--seeds", str(args.seeds), "--target-lrs", str(args.target_lrs)])
    print("# Measured cost of the DenseAM transfer validations (one core, one torch thread)\n")
    print(f"Reproduce: `{command}`\n")
    print("Per size: milliseconds per trial-step (populations where the sweep uses them), seconds of per-trial")
    print(f"overhead (build, held-out evaluation), trials (swept: lrs x seeds; target: {args.target_lrs} lrs x "
          f"{args.seeds} seeds, before grid extensions) and the CPU minutes they imply at the spec's steps.\n")
    print("| spec | size | population | ms per trial-step | s overhead per trial | trials | CPU minutes |")
    print("|---|---|---|---|---|---|---|")
    for path in args.specs:
        for row in measure(path, args.target_width, args.seeds, args.target_lrs):
            print(row, flush=True)


if __name__ == "__main__":
    main()

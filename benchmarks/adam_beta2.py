"""How far Adam's optimal lr moves with beta2, and what reusing one beta2's lr at the other costs, per batch size.

    python benchmarks/adam_beta2.py TRIALS.csv ... > benchmarks/results/adam-beta2.md

Reads sweep exports (`scaleplan sweep export SPEC -o ...`) of one model, task and lr grid under two settings of
`[train] betas` (each file's `parametrization.betas` names its setting; several files may hold one setting's batch
sizes). For each batch size and each
sweep: the smoothed optimum (the local model's vertex, scaleplan.validate.regret) with its 95% seed-bootstrap
interval, the best seed-mean loss, and the regret, raw and smoothed with jackknife s.e., of training at the lr that
is best (raw) under the other beta2: what a law fitted at one beta2 costs a run at the other. The evidence behind
the optimizer check's betas warning.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scaleplan.validate.regret import (  # noqa: E402
    LrPoint, best_point, describe, group_by_lr, local_model, optimum_interval, regret_of,
)


def grids(paths: list[Path]) -> dict[str, dict[int, list[LrPoint]]]:
    """{the sweep's betas as 'b1/b2': {batch size: its lr grid}} over every file; a diverged trial's loss is inf."""
    out: dict[str, dict[int, list[LrPoint]]] = {}
    for path in paths:
        frame = pd.read_csv(path)
        frame = frame[frame["state"] == "COMPLETE"]
        betas = json.loads(frame["parametrization.betas"].iloc[0])
        for batch, cell in frame.groupby("batch_size"):
            rows = [(float(lr), int(seed), math.inf if diverged else float(loss))
                    for lr, seed, loss, diverged in cell[["lr", "seed", "loss", "diverged"]].itertuples(index=False)]
            out.setdefault(f"{betas[0]:g}/{betas[1]:g}", {})[int(batch)] = group_by_lr(rows)
    return out


def main(paths: list[str]) -> None:
    by_betas = grids([Path(p) for p in paths])
    if len(by_betas) != 2:
        sys.exit(f"the files hold {len(by_betas)} settings of betas ({', '.join(by_betas)}); give the sweeps of two")
    (label_a, a), (label_b, b) = sorted(by_betas.items(), reverse=True)
    print(f"<!-- python benchmarks/adam_beta2.py {' '.join(Path(p).name for p in paths)} -->")
    print(f"# Adam's optimal lr at betas {label_a} and {label_b}\n")
    print("| batch | betas | smoothed optimum (95% seed-bootstrap interval) | best seed-mean loss | "
          "lr best under the other betas | its regret here: raw | smoothed |")
    print("|---|---|---|---|---|---|---|")
    for batch in sorted(set(a) & set(b)):
        vertices = []
        for label, mine, other in ((label_a, a[batch], b[batch]), (label_b, b[batch], a[batch])):
            model, interval = local_model(mine), optimum_interval(mine)
            vertices.append(None if model is None else model.vertex_lr)
            span = "" if interval is None else f" ({interval[0]:.4g}-{interval[1]:.4g})"
            other_best = best_point(other).lr
            r = regret_of("other", next(p for p in mine if p.lr == other_best), mine)
            print(f"| {batch} | {label} | {'-' if model is None else f'{model.vertex_lr:.4g}'}{span} | "
                  f"{best_point(mine).mean:.4f} | {other_best:.4g} | {describe(r)} | {describe(r, smoothed=True)} |")
        if None not in vertices:
            print(f"| {batch} | shift | {math.log2(vertices[1] / vertices[0]):+.2f} octave ({label_a} -> {label_b}) | | | | |")

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python benchmarks/adam_beta2.py TRIALS.csv TRIALS.csv [...]")
    main(sys.argv[1:])

"""How a DenseAM's memory gradients shrink with the features N at init: the scaling its Adam-eps rule follows.

Builds the DenseAM (parametrization 'denseam', K = 64, T = 8, memory std 1, beta0 = 1) at N = 32..2048 on
the corrupted-patterns task, takes the mean |gradient| of the memories on one batch (3 seeds), and fits
the exponent of N by least squares on logs. Expected (README, DenseAM rules): N^-(n+1)/2 for a degree-n
relu-poly, N^-3/2 for lse.

    python benchmarks/denseam_memory_gradients.py > benchmarks/results/denseam-memory-gradients.md
"""

from __future__ import annotations

import math

import torch

from scaleplan.train.build import build_model, build_task
from scaleplan.train.config import TrialConfig

SIZES = (32, 128, 512, 2048)
ENERGIES = (("lse", 3, 1.5), ("relu-poly", 3, 2.0), ("relu-poly", 6, 3.5), ("relu-poly", 8, 4.5))


def mean_abs_gradient(energy: str, degree: int, width: int, seed: int) -> float:
    cfg = TrialConfig(task="patterns", model="denseam", width=width, parametrization="denseam", base_width=32, seed=seed,
                      model_kwargs={"n_memories": 64, "steps": 8, "energy": energy, "degree": degree})
    task = build_task(cfg)
    model = build_model(cfg, task)
    x, y = task.sample_batch(64, torch.Generator().manual_seed(seed))
    task.loss(model(x), y).backward()
    return float(model.memories.grad.abs().mean())


def main() -> None:
    torch.set_num_threads(1)
    print("# DenseAM memory gradients at init against N\n")
    print("Reproduce: `python benchmarks/denseam_memory_gradients.py > benchmarks/results/denseam-memory-gradients.md`\n")
    print("Mean |d loss / d Xi| at init (K = 64, T = 8, memory std 1, beta0 = 1, corrupted patterns, mean of 3 seeds).\n")
    print("| energy | " + " | ".join(f"N = {n}" for n in SIZES) + " | fitted exponent of N | (n+1)/2 rule |")
    print("|---|" + "---|" * (len(SIZES) + 2))
    for energy, degree, expected in ENERGIES:
        grads = [sum(mean_abs_gradient(energy, degree, n, seed) for seed in range(3)) / 3 for n in SIZES]
        xs, ys = [math.log(n) for n in SIZES], [math.log(g) for g in grads]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        name = "lse" if energy == "lse" else f"relu-poly n={degree}"
        print(f"| {name} | " + " | ".join(f"{g:.3g}" for g in grads) + f" | {slope:.2f} | {-expected:.1f} |", flush=True)


if __name__ == "__main__":
    main()

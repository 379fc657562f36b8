"""HF GPT-2 at width 256 (base 16, depth 2, 2 heads, 200 steps, batch 16 x 32 characters): held-out loss of muP and SP,
tied and untied embeddings, at the best lrs of the committed hf-gpt2 transfer (muP 0.0072, SP 0.00042), per seed.

Checks whether muP's gap to SP at the hf-gpt2 target (benchmarks/results/hf-gpt2.md) comes from the tied readout.

    python benchmarks/hf_gpt2_tied_check.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from scaleplan.train.config import TrialConfig
from scaleplan.train.loop import train_trial

LR = {"mup": 0.0072, "sp": 0.00042}  # best lrs at width 256 in benchmarks/results/hf-gpt2.md


def loss(parametrization: str, tied: bool, seed: int) -> float:
    cfg = TrialConfig(task="charlm", model="hf-gpt2", width=256, base_width=16, steps=200, batch_size=16, lr=LR[parametrization],
                      task_kwargs={"seq_len": 32, "n_eval": 128}, model_kwargs={"depth": 2, "n_heads": 2, "tied": tied},
                      init_std=0.02, parametrization=parametrization, seed=seed)
    return train_trial(cfg).loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'embeddings':>10} {'parametrization':>15} {'lr':>8}  mean loss (per seed)")
    for tied in (True, False):
        for p in ("mup", "sp"):
            losses = [loss(p, tied, s) for s in range(args.seeds)]
            print(f"{'tied' if tied else 'untied':>10} {p:>15} {LR[p]:>8.2g}  {statistics.mean(losses):.4f} "
                  f"({', '.join(f'{x:.4f}' for x in losses)})", flush=True)


if __name__ == "__main__":
    main()

"""Seconds per training step of transformers' GPT-2 (`hf-gpt2`) next to scaleplan's own GPT, side by side.

Char-LM (stdlib corpus, batch 32 x 64 tokens), depth 2, 4 heads, muP, one torch thread: at each width,
one trial trained alone (train_trial) and a population of K trials trained together (train_population),
for both models, --repeats times, keeping each one's best CPU time (process time, one thread: the
machine is shared by many jobs, so wall-clock time would measure the others).
The per-step cost is the difference between a long and a short run divided by the extra steps, so
task loading and the held-out evaluation drop out. This sizes the CPU transfer validation of hf-gpt2.

    python benchmarks/hf_gpt2_step_cost.py [--widths 16,32,64,128,256] [--population 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from scaleplan.train.config import TrialConfig
from scaleplan.train.loop import train_trial
from scaleplan.train.population import train_population


def run_seconds(model: str, width: int, k: int, steps: int) -> float:
    base = TrialConfig(task="charlm", model=model, width=width, base_width=16, steps=steps, batch_size=32, lr=3e-3,
                       task_kwargs={"seq_len": 64, "n_eval": 128}, model_kwargs={"depth": 2, "n_heads": 4}, init_std=0.02)
    cfgs = [dataclasses.replace(base, seed=i) for i in range(k)]
    start = time.process_time()
    train_population(cfgs, None, 0) if k > 1 else train_trial(cfgs[0])
    return time.process_time() - start


def per_step(model: str, width: int, k: int, short: int, long: int, repeats: int) -> float:
    """Seconds per step per trial: (best long run - best short run) / (long - short) / k."""
    best = {n: min(run_seconds(model, width, k, n) for _ in range(repeats)) for n in (short, long)}
    return (best[long] - best[short]) / (long - short) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="16,32,64,128,256")
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--short", type=int, default=5)
    parser.add_argument("--long", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run_seconds("hf-gpt2", 16, 1, 1)  # warm up imports and the corpus cache
    print(f"{'width':>6} {'gpt s/step':>11} {'hf-gpt2 s/step':>15} {'hf/gpt':>7} "
          f"{'hf K=' + str(args.population) + ' s/step/trial':>22} {'population gain':>16}")
    for width in (int(w) for w in args.widths.split(",")):
        gpt = per_step("gpt", width, 1, args.short, args.long, args.repeats)
        hf = per_step("hf-gpt2", width, 1, args.short, args.long, args.repeats)
        hf_pop = per_step("hf-gpt2", width, args.population, args.short, args.long, args.repeats)
        print(f"{width:>6} {gpt:>11.4f} {hf:>15.4f} {hf / gpt:>7.2f} {hf_pop:>22.4f} {hf / hf_pop:>15.2f}x", flush=True)


if __name__ == "__main__":
    main()

"""What watching a parametrized model's first forward costs: that one forward (under the audit's TorchFunctionMode)
against the same forward unwatched, measured side by side in one process (interleaved repetitions, medians), for
scaleplan's GPT and, where transformers is installed, its GPT-2. The audit runs once per model, so this is a one-time
cost per model built (a sweep's trials, a training run).

    python benchmarks/forward_audit_cost.py
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings

import torch
from torch import nn

from scaleplan.models import build_parametrized, hf_available

REPEATS = 7


def models() -> list[tuple[str, nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    found = [("gpt", build_parametrized("gpt", 256, "mup", 32, depth=4, n_heads=4, vocab=128, seq_len=64), torch.randint(0, 128, (8, 64)))]
    if hf_available():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tied readout's warning
            found.append(("hf-gpt2", build_parametrized("hf-gpt2", 256, "mup", 32, depth=4, n_heads=4, vocab=128, seq_len=64), torch.randint(0, 128, (8, 64))))
    return found


def timed(model: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        model(x)
    return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(1)
    print("| model | parameters | forward, unwatched (ms, median) | first forward, watched (ms, median) | watched / unwatched |")
    print("|---|---|---|---|---|")
    for name, model, x in models():
        plain = copy.deepcopy(model)
        plain._forward_pre_hooks.clear()
        plain._forward_hooks.clear()
        timed(plain, x)  # warm-up
        watched_ms, plain_ms = [], []
        for _ in range(REPEATS):
            fresh = copy.deepcopy(model)  # a copy made before its first forward is watched
            watched_ms.append(1e3 * timed(fresh, x))
            plain_ms.append(1e3 * timed(plain, x))
        w, p = statistics.median(watched_ms), statistics.median(plain_ms)
        print(f"| {name} | {sum(t.numel() for t in model.parameters()):,} | {p:.1f} | {w:.1f} | {w / p:.2f} |")


if __name__ == "__main__":
    main()

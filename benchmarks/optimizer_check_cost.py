"""What the optimizer check costs per step: the step pre-hook timed alone against the whole training step it runs in,
measured side by side in one process (interleaved repetitions, medians), for a small and a larger model. The hook alone
is timed with the readout's `ran` flag set before each call, as the step's forward sets it.

    python benchmarks/optimizer_check_cost.py
"""

from __future__ import annotations

import statistics
import time
import warnings

import torch

from scaleplan.models import build_parametrized
from scaleplan.parametrization import param_groups
from scaleplan.parametrization.apply import ScaleInput
from scaleplan.parametrization.optimizer_check import _check_step

REPEATS, STEPS = 7, 20


def case(name: str, width: int) -> tuple[str, torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    if name == "mlp":
        return name, build_parametrized("mlp", width, "mup", 64, in_dim=32, out_dim=8), torch.randn(64, 32), torch.randn(64, 8)
    model = build_parametrized("gpt", width, "mup", 32, depth=4, n_heads=4, vocab=128, seq_len=64)
    tokens = torch.randint(0, 128, (8, 65))
    return name, model, tokens[:, :-1], tokens[:, 1:]


def loss_of(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if name == "mlp":
        return (model(x) - y).pow(2).mean()
    return torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())


def main() -> None:
    torch.set_num_threads(1)
    print("| model | width | groups | training step (ms, median) | hook alone (µs, median) | hook / step |")
    print("|---|---|---|---|---|---|")
    for name, width in (("mlp", 256), ("gpt", 256)):
        _, model, x, y = case(name, width)
        opt = torch.optim.Adam(param_groups(model, 1e-3))
        readout_hooks = [h for m in model.modules() for h in m._forward_pre_hooks.values() if isinstance(h, ScaleInput)]
        step_times, hook_times = [], []
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a correct optimizer: the check must stay silent
            for _ in range(REPEATS):
                start = time.perf_counter()
                for _ in range(STEPS):
                    opt.zero_grad()
                    loss_of(name, model, x, y).backward()
                    opt.step()
                step_times.append((time.perf_counter() - start) / STEPS)
                start = time.perf_counter()
                for _ in range(STEPS):
                    for hook in readout_hooks:  # as the forward sets them (the check resets them at each step)
                        hook.ran = True
                    _check_step(opt, (), {})
                hook_times.append((time.perf_counter() - start) / STEPS)
        step, hook = statistics.median(step_times), statistics.median(hook_times)
        print(f"| {name} | {width} | {len(opt.param_groups)} | {step * 1e3:.2f} | {hook * 1e6:.1f} | {hook / step:.2%} |")


if __name__ == "__main__":
    main()

"""Population size by measurement: how many trials to train together on this machine, per device and model.

The best K depends on the device (a GPU step of a small model is launch-bound: K = 64-256 trials cost little
more than one; a CPU core saturates at K = 8-16, and batching stops paying above width ~256) and on the
model, width and batch size. So the first time a sweep needs it, the worker measures: the marginal cost of a
training step per trial (a long run minus a short one, after a warm-up, so model building and the final
evaluation cancel; see `cost_per_trial_step`) for K = 1, 4, 16, 64 (and 256 on a GPU), stopping when
4x more members no longer saves 10% per trial or the GPU runs out of memory. K is the smallest size whose
cost per trial-step is within 10% of the cheapest. The answer is cached per device and configuration in
`$SCALEPLAN_CACHE_DIR/population.json` (default ~/.cache/scaleplan), under a file lock so that workers
starting together measure once, and written whole (a worker killed mid-write leaves the previous cache).
`SCALEPLAN_POPULATION=K` skips all this and uses K.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

from scaleplan.errors import InputError, ScaleplanError
from scaleplan.outputs import writing
from scaleplan.train.config import TrialConfig

CPU_SIZES = (1, 4, 16, 64)
GPU_SIZES = (1, 4, 16, 64, 256)
STEPS_SHORT, STEPS_LONG, MAX_STEPS = 2, 10, 320
MIN_SECONDS = 0.25  # the long run must outlast the short one by this much
GAIN = 0.9  # a size must cut the cost per trial-step by 10% to be worth it
OVERRIDE = "SCALEPLAN_POPULATION"
# Fields that do not change what one training step costs (clip_grad_norm adds one norm and one scale of the
# gradients, small beside the forward, backward and Adam update; leaving it out keeps earlier caches valid).
_COST_FREE = ("steps", "seed", "warmup_steps", "schedule", "base_width", "base_depth", "completep", "lr",
              "weight_decay", "output_mult", "init_std", "beta0", "tau", "clip_grad_norm")

_memory: dict[str, int] = {}


def cache_path() -> Path:
    """Where measured population sizes are kept."""
    root = os.environ.get("SCALEPLAN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "scaleplan")
    return Path(root) / "population.json"


def device_name(cfg: TrialConfig) -> str:
    """The device a config trains on, as the cache names it: the GPU's model, or the CPU with its thread count."""
    import platform

    import torch

    if cfg.device.startswith("cuda"):
        index = torch.device(cfg.device).index or 0
        return f"{torch.cuda.get_device_name(index)} ({cfg.device})"
    threads = cfg.threads or torch.get_num_threads()
    return f"cpu {platform.machine()} {os.cpu_count()} cores, {threads} thread(s)"


def cache_key(cfg: TrialConfig) -> str:
    """Device plus everything that sets the cost of a step (model, task, width, batch size, optimizer)."""
    shape = {k: v for k, v in cfg.to_dict().items() if k not in _COST_FREE}
    return json.dumps({"device": device_name(cfg), **shape}, sort_keys=True, default=str)


def calibrated_population(cfg: TrialConfig, measure: Callable[[TrialConfig, int], float] | None = None) -> int:
    """K for `cfg`: the override, else the cached measurement, else measure now (and cache it)."""
    forced = os.environ.get(OVERRIDE)
    if forced:
        if not (forced.isascii() and forced.isdigit()) or int(forced) < 1:
            raise ScaleplanError(f"{OVERRIDE} must be a positive integer such as 8 (trials per population), got {forced!r}")
        return int(forced)
    key = cache_key(cfg)
    if key in _memory:
        return _memory[key]
    path = cache_path()
    entry: dict[str, Any] | None = None
    try:
        with _locked(path):
            cached = _read(path)
            entry = cached.get(key)
            if not _usable(entry):  # missing, or torn or hand-edited: measure again and rewrite it
                entry = cached[key] = _measured(cfg, measure)
                with writing(path, "population cache") as part:
                    part.write_text(json.dumps(cached, indent=1, sort_keys=True))
    except (OSError, InputError):  # no writable cache: the measurement serves this process only
        pass
    _memory[key] = int((entry or _measured(cfg, measure))["k"])
    return _memory[key]


def _usable(entry: Any) -> bool:
    """Whether a cache entry holds a population size: a mapping whose `k` is a positive integer."""
    k = entry.get("k") if isinstance(entry, dict) else None
    return isinstance(k, int) and not isinstance(k, bool) and k >= 1


def _measured(cfg: TrialConfig, measure: Callable[[TrialConfig, int], float] | None) -> dict[str, Any]:
    costs = measure_costs(cfg, measure or cost_per_trial_step)
    return {"k": choose(costs), "seconds_per_trial_step": {str(k): c for k, c in costs.items()},
            "measured": date.today().isoformat()}


def measure_costs(cfg: TrialConfig, measure: Callable[[TrialConfig, int], float]) -> dict[int, float]:
    """Cost per trial-step for growing K, until 4x more members stop paying or memory runs out."""
    sizes = GPU_SIZES if cfg.device.startswith("cuda") else CPU_SIZES
    costs: dict[int, float] = {}
    for k in sizes:
        try:
            costs[k] = measure(cfg, k)
        except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if "out of memory" not in str(exc):
                raise
            _free_gpu_memory(cfg)
            break
        if len(costs) > 1 and costs[k] > GAIN * min(c for size, c in costs.items() if size < k):
            break
    return costs


def choose(costs: dict[int, float]) -> int:
    """The smallest K whose cost per trial-step is within 10% of the cheapest measured."""
    best = min(costs.values())
    return min(k for k, c in costs.items() if c <= best / GAIN)


def cost_per_trial_step(cfg: TrialConfig, k: int) -> float:
    """Seconds per step per trial of K members like `cfg`: the marginal cost (a long run minus a short one,
    each the faster of two, after a warm-up), with the long run doubled until the difference lasts
    MIN_SECONDS (a shared machine's noise is then small against it)."""
    from scaleplan.train.loop import train_trial
    from scaleplan.train.population import train_population

    def run(steps: int) -> float:
        cfgs = [dataclasses.replace(cfg, steps=steps, seed=i, warmup_steps=0) for i in range(k)]
        start = time.perf_counter()
        train_population(cfgs) if k > 1 else train_trial(cfgs[0])
        return time.perf_counter() - start

    run(STEPS_SHORT)  # warm-up: first-call costs (allocations, kernels) are not per-step costs
    steps = STEPS_LONG
    while True:
        seconds = min(run(steps) for _ in range(2)) - min(run(STEPS_SHORT) for _ in range(2))
        if seconds >= MIN_SECONDS or steps >= MAX_STEPS:
            return max(seconds, 1e-9) / ((steps - STEPS_SHORT) * k)
        steps = min(2 * steps, MAX_STEPS)


def _free_gpu_memory(cfg: TrialConfig) -> None:
    import torch

    if cfg.device.startswith("cuda"):
        torch.cuda.empty_cache()


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside the cache file (workers starting together measure once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""Tiny objectives for the sweep tests (importable as `sweep_objectives:NAME` by workers)."""

from __future__ import annotations

import math
import os
import time


def quadratic(params: dict) -> float:
    """Loss with its minimum at lr = 10**-2.5, slightly lower for wider models."""
    return (math.log10(params["lr"]) + 2.5) ** 2 + 1.0 / params["width"]


def diverging(params: dict) -> float:
    """NaN above lr = 1e-2 (a diverged run), else the quadratic."""
    return math.nan if params["lr"] > 1e-2 else quadratic(params)


def with_components(params: dict) -> dict:
    """A mapping result: loss plus N, D and an extra component."""
    return {"loss": quadratic(params), "N": 10 * params["width"], "D": 7 * params["steps"], "penalty_term": 0.5}


def raising(params: dict) -> float:
    raise ValueError("boom at lr")


def flaky(params: dict) -> float:
    """Raises while the file named by SWEEP_TEST_FAIL exists: a bug the user then fixes."""
    if os.path.exists(os.environ.get("SWEEP_TEST_FAIL", "/nonexistent")):
        raise RuntimeError("flaky objective failed")
    return quadratic(params)


def slow_logged(params: dict) -> float:
    """Sleeps SWEEP_TEST_SLEEP seconds, then appends the slot's params to SWEEP_TEST_LOG (one line per finished call)."""
    time.sleep(float(os.environ.get("SWEEP_TEST_SLEEP", "0.2")))
    loss = quadratic(params)
    with open(os.environ["SWEEP_TEST_LOG"], "a") as handle:
        handle.write(f"{params['width']} {params['lr']!r}\n")
    return loss


def shifting(params: dict) -> float:
    """A muP-like sweep: the best lr halves when the width doubles (lr* = 0.01 at width 8)."""
    best = 0.01 * 8 / params["width"]
    return (math.log10(params["lr"] / best)) ** 2 + 1.0 / params["width"]


def dies_once(params: dict) -> float:
    """The first call to find the file named by SWEEP_TEST_DIE removes it and kills its own process (kill -9)."""
    flag = os.environ.get("SWEEP_TEST_DIE", "/nonexistent")
    try:
        os.unlink(flag)
    except FileNotFoundError:
        return slow_logged(params)
    os.kill(os.getpid(), 9)
    raise AssertionError("unreachable")


def bowl_optimum(width: float) -> float:
    """The true optimal lr of `transfer_bowl` at `width`: 0.01 * (width / 8)^-0.5."""
    return 0.01 * (width / 8) ** -0.5


def bowl_loss(width: float, lr: float, seed: int, noise: float = 0.0) -> float:
    """An asymmetric bowl in log2 lr around `bowl_optimum` (curvature 0.02/octave^2 below, 0.06 above, minimum 2.0),
    plus a deterministic per-(seed, lr) offset of up to `noise`; seed 0 diverges (NaN) above 2.75 octaves."""
    d = math.log2(lr / bowl_optimum(width))
    if seed == 0 and d > 2.75:
        return math.nan
    offset = noise * (((seed * 5 + round(d * 2) * 3) % 7) - 3) / 3
    return 2.0 * (1.0 + (0.02 if d < 0 else 0.06) * d * d) + offset


def transfer_bowl(params: dict) -> float:
    """A fake trainer with a known optimum for `scaleplan validate` tests (no noise)."""
    return bowl_loss(params["width"], params["lr"], params["seed"])


def transfer_bowl_noisy(params: dict) -> float:
    """`transfer_bowl` with a seed- and lr-dependent offset of up to 0.02 (1% of the minimum)."""
    return bowl_loss(params["width"], params["lr"], params["seed"], noise=0.02)


def multi_axis_optimum(width: float, depth: float, tokens: float, batch: float) -> float:
    """The true lr optimum of `multi_axis_bowl`: 0.01 (W/64)^-0.3 (L/2)^-0.5 (D/2^14)^-0.1 (B/16)^0.5."""
    return 0.01 * (width / 64) ** -0.3 * (depth / 2) ** -0.5 * (tokens / 2**14) ** -0.1 * (batch / 16) ** 0.5


def multi_axis_batch(tokens: float) -> float:
    """The true batch optimum of `multi_axis_bowl`: 16 (D/2^14)^0.5."""
    return 16 * (tokens / 2**14) ** 0.5


def multi_axis_bowl(params: dict) -> dict:
    """A fake trainer over (width, depth, tokens, batch size): a bowl in log2 lr around `multi_axis_optimum`
    plus one in log2 batch around `multi_axis_batch`; N = 12 L W^2 as a GPT's non-embedding count."""
    w, depth, d, b = params["width"], params["depth"], params["tokens"], params["batch_size"]
    loss = (2.0 + 0.04 * math.log2(params["lr"] / multi_axis_optimum(w, depth, d, b)) ** 2
            + 0.02 * math.log2(b / multi_axis_batch(d)) ** 2 - 0.05 * math.log2(d / 2**14))
    return {"loss": loss, "N": 12 * depth * w * w}


def transfer_bowl_needs_gain(params: dict) -> float:
    """`transfer_bowl` for a spec that fixes `gain = [2.0]` in [search]: any run without it (a target run that
    dropped the spec's fixed value) fails loudly."""
    if params.get("gain") != 2.0:
        raise ValueError(f"trained without the spec's fixed gain = 2.0: got {params.get('gain')!r}")
    return bowl_loss(params["width"], params["lr"], params["seed"])


def surge_optimum(tokens: float, batch: float) -> float:
    """The true lr optimum of `surge_bowl`: the surge form e^-1.5 S^-0.3 / cosh(1/2 ln(B / (e^3 S^-0.5))), S = D / B."""
    s = tokens / batch
    return math.exp(-1.5) * s**-0.3 / math.cosh(0.5 * math.log(batch / (math.exp(3.0) * s**-0.5)))


def surge_bowl(params: dict) -> dict:
    """A fake trainer over (tokens, batch size) whose lr optimum follows the surge form: a bowl in log2 lr around
    `surge_optimum`, steps = tokens / batch (one token per batch unit)."""
    loss = 2.0 + 0.04 * math.log2(params["lr"] / surge_optimum(params["tokens"], params["batch_size"])) ** 2
    return {"loss": loss, "N": 1000}

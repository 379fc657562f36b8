"""A swept axis the objective never read (every curve repeated exactly along it) is refused before any law is fitted."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from scaleplan.errors import FitError
from scaleplan.fit.unread_axes import refuse_unread_axes

LRS = [1e-3, 3e-3, 1e-2, 3e-2]


def frame(loss, steps: bool = True) -> pd.DataFrame:
    """Trials over width x depth x batch size (and steps 100), each loss `loss(width, depth, batch, lr, seed)`."""
    rows = [{"width": w, "depth": d, "batch_size": b, "lr": lr, "seed": s, "loss": loss(w, d, b, lr, s),
             **({"steps": 100, "D": 100 * b * 32} if steps else {"D": 100 * b * 32})}
            for w, d, b, lr, s in itertools.product((8, 16, 32), (2, 4), (8, 32), LRS, (0, 1))]
    return pd.DataFrame(rows)


def curve(width: float, lr: float, seed: int) -> float:
    return (np.log(lr / (0.01 * 16 / width))) ** 2 + 0.01 * seed + 1.0


@pytest.mark.parametrize("ignored", ["depth", "batch_size"])
def test_an_axis_every_curve_repeats_along_is_refused(ignored: str) -> None:
    def loss(w, d, b, lr, s):  # reads width and whichever of depth and batch it does not ignore
        return curve(w, lr, s) + (0.1 * b if ignored == "depth" else 0.1 * d)

    with pytest.raises(FitError, match=rf"every trial's loss is the same at each {ignored} swept .* does not read {ignored}"):
        refuse_unread_axes(frame(loss), ("width", "depth"))


def test_the_batch_size_is_compared_at_equal_steps_not_at_equal_d() -> None:
    # D = steps x batch: two batch sizes never share a D, and an ignored batch size was not seen when D was the axis
    with pytest.raises(FitError, match="does not read batch_size"):
        refuse_unread_axes(frame(lambda w, d, b, lr, s: curve(w, lr, s) + 0.1 * d).drop(columns="depth"), ("width",))


def test_curves_that_differ_or_cannot_be_compared_pass() -> None:
    refuse_unread_axes(frame(lambda w, d, b, lr, s: curve(w, lr, s) + 0.1 * d + 0.01 * b), ("width", "depth"))
    sampled = frame(lambda w, d, b, lr, s: curve(w, lr, s))  # a sampler's lrs differ from cell to cell: no twin to compare
    sampled["lr"] *= 1 + 0.01 * np.arange(len(sampled)) / len(sampled)
    refuse_unread_axes(sampled, ("width", "depth"))
    two = frame(lambda w, d, b, lr, s: curve(w, lr, s))
    refuse_unread_axes(two[two["lr"] <= 3e-3], ("width", "depth"))  # 2 lrs: a repeat can be chance (a flat loss)

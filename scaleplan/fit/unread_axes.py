"""A swept axis the objective never read: every cell equal, trial for trial, to its twin at another value of that axis.

A user objective that ignores a value it is given (the batch size, the depth) still returns losses, so the sweep fills
every cell; the fit then reports that axis's exponent as 0 with an interval made tight by copies of the same curve
(18 cells holding 3 independent ones), and `validate` a perfect transfer along it. Bit-identical curves cannot come
from training that read the value, so such a sweep is refused.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaleplan.errors import FitError

MIN_LRS = 3  # a curve of fewer lrs can repeat by chance (a flat or saturated loss)


def refuse_unread_axes(frame: pd.DataFrame, sizes: tuple[str, ...]) -> None:
    """Refuse trials whose every (lr, loss) curve repeats exactly along one swept axis (a size, the steps or D, the
    batch size), compared between cells that differ only in that axis."""
    horizon = "steps" if "steps" in frame else "D"  # a sweep's D is its steps times the batch: the steps are the axis
    axes = [c for c in dict.fromkeys((*sizes, horizon, "batch_size")) if c in frame and frame[c].nunique() > 1]
    finite = frame[np.isfinite(frame["loss"].to_numpy(float))]
    knobs = ["lr", *(c for c in ("weight_decay", "wd_tau") if c in frame)]  # a trial's twin has the same settings
    for axis in axes:
        others = [c for c in axes if c != axis]
        groups = finite.groupby(others) if others else [(None, finite)]
        compared = 0
        for _, group in groups:
            curves = [sorted(zip(*(g[c] for c in knobs), g["loss"])) for _, g in group.groupby(axis)]
            if len(curves) < 2:
                continue
            if len({point[0] for point in curves[0]}) < MIN_LRS or any(curve != curves[0] for curve in curves[1:]):
                break
            compared += 1
        else:
            if compared:
                values = ", ".join(f"{v:g}" for v in sorted(finite[axis].unique()))
                raise FitError(f"every trial's loss is the same at each {axis} swept ({values}), lr for lr: the objective "
                               f"does not read {axis}, so no law of it can be fitted (its exponent would read 0 with an "
                               f"interval made tight by copies of one curve); read it in the objective, or drop it from the "
                               "ladder")

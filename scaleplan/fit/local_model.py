"""A local model of loss vs log lr near the minimum of an lr grid: the curve of validate's smoothed regret (a target's
held-out loss) and of fit's asymmetry check (`fit.asymmetry`: where a cell's symmetric parabola puts lr*).

Loss-vs-lr curves are asymmetric (steep on one side of the optimum; which side depends on the model),
so a plain parabola through the points near the minimum dips below them and understates the minimum.
The model is an asymmetric parabola in u = ln lr,

    L(u) = L0 + a_left (u - u*)^2  for u < u*,    L0 + a_right (u - u*)^2  for u >= u*,

fitted by least squares to the seed means within WINDOW_OCTAVES of the lowest mean (u* profiled on a
fine grid inside the window; for fixed u* the fit is linear). It was chosen over a symmetric parabola,
a parabola in log-loss and cubics by `benchmarks/smoothed_regret_check.py` on synthetic asymmetric
curves with known minima and on the committed target grids (results: benchmarks/results/smoothed-regret-check.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

WINDOW_OCTAVES = 1.0  # points within this many octaves of the lowest mean enter the fit
MIN_POINTS = 4  # the model has 4 parameters (L0, a_left, a_right, u*)
PROFILE_STEPS = 801  # vertex candidates across the window (1/400 of its width apart)
_SLACK_OCTAVES = 0.02  # lrs read back from a report are rounded to 4 digits: an octave may measure 1.0007


@dataclass(frozen=True)
class LocalModel:
    """An asymmetric parabola in ln lr: `min_loss` at `vertex_lr`, curvatures either side, valid on [low_lr, high_lr]."""

    vertex_lr: float
    min_loss: float
    left: float
    right: float
    low_lr: float
    high_lr: float
    n_points: int

    def covers(self, lr: float) -> bool:
        """True when `lr` lies inside the window the model was fitted on."""
        return self.low_lr * (1 - 1e-9) <= lr <= self.high_lr * (1 + 1e-9)  # the ends themselves, despite exp(log(x)) rounding

    def loss(self, lr: float) -> float:
        """The model's loss at `lr`."""
        d = math.log(lr / self.vertex_lr)
        return self.min_loss + (self.left if d < 0 else self.right) * d * d


def fit_local_model(lrs: Sequence[float] | np.ndarray, means: Sequence[float] | np.ndarray) -> LocalModel | None:
    """The asymmetric parabola through the seed means near the lowest one; None when the window holds fewer
    than MIN_POINTS lrs or none on one side of the lowest (its minimum is then not bracketed)."""
    u_all = np.log(np.asarray(lrs, dtype=float))
    y_all = np.asarray(means, dtype=float)
    finite = np.isfinite(y_all)
    if finite.sum() < MIN_POINTS:
        return None
    u_all, y_all = u_all[finite], y_all[finite]
    best = int(np.argmin(y_all))
    half = (WINDOW_OCTAVES + _SLACK_OCTAVES) * math.log(2)
    sel = np.abs(u_all - u_all[best]) <= half
    u, y = u_all[sel], y_all[sel]
    if u.size < MIN_POINTS or not (np.any(u < u_all[best]) and np.any(u > u_all[best])):
        return None
    vertices = np.linspace(u.min(), u.max(), PROFILE_STEPS)
    d = u[None, :] - vertices[:, None]  # (vertex, point)
    design = np.stack([np.ones_like(d), np.where(d < 0, d * d, 0.0), np.where(d > 0, d * d, 0.0)], axis=-1)
    coef = np.linalg.pinv(design) @ y  # least squares for every vertex at once: (vertex, 3)
    sse = np.sum((np.einsum("kpc,kc->kp", design, coef) - y) ** 2, axis=1)
    sse[(coef[:, 1] < 0) | (coef[:, 2] < 0)] = np.inf  # a side bending down is not a minimum
    if not np.isfinite(sse).any():
        return None
    best_vertex = int(np.argmin(sse))
    fit = (float(sse[best_vertex]), float(vertices[best_vertex]), coef[best_vertex])
    _, vertex, (l0, left, right) = fit
    return LocalModel(
        vertex_lr=math.exp(vertex), min_loss=float(l0), left=float(left), right=float(right),
        low_lr=math.exp(float(u.min())), high_lr=math.exp(float(u.max())), n_points=int(u.size),
    )

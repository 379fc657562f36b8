"""Finite-size corrections of a log-linear law, c * (v / v0)^(-q) in ln y: y tends to a v-independent asymptote.

Under rules that make training width-independent (muP, the DenseAM rules), lr* has a limit as the width grows, and
the narrow proxies sit off it by a correction that decays with the width; a power law through them extrapolates the
correction's slope instead of levelling off. The DenseAM rules scale a memory overlap by beta0 / N, so its random
part is of order beta0 / sqrt(N): the leading correction is N^(-1/2) (q = 1/2), and while beta0 / sqrt(N) > 1 on
the proxies the power law misses (lse at beta0 = 16: 2.97% regret at 8x, this form 0.15%). The power q is fixed,
so the law stays linear in its coefficients (least squares, t intervals, bootstrap) like every other term.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

FINITE_WIDTH_POWER = 0.5  # q of the finite-width form: the beta0 / sqrt(N) random overlap (see the module docstring)


@dataclass(frozen=True)
class Correction:
    """c * (v / v0)^(-q) in ln y, for `variable` v, `centre` v0 (the smallest fitted value) and `power` q."""

    variable: str
    centre: float
    power: float
    coefficient: float

    @property
    def name(self) -> str:
        """`W^-0.5`: how summaries, CIs and covariances name the term."""
        return f"{self.variable}^-{self.power:g}"

    def term(self, values: Mapping[str, Any], log: Callable[[Any], Any] | None = None) -> Any:
        """(v / v0)^(-q) at `values` (a number, or an array); `log` is unused (the signature of every term)."""
        return (values[self.variable] / self.centre) ** -self.power

    def formula(self) -> str:
        """`exp(0.554 (W/32)^-0.5)`: the factor this term multiplies the law by."""
        return f"exp({self.coefficient:.4g} ({self.variable}/{self.centre:.4g})^-{self.power:g})"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Correction:
        """From a law file's JSON object: {"variable": v, "centre": v0, "power": q, "coefficient": c}."""
        return cls(str(d["variable"]), float(d["centre"]), float(d["power"]), float(d["coefficient"]))

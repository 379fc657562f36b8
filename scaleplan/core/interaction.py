"""Product terms of a log-linear law, c * ln(a / a0) * ln(b / b0): the exponent of `a` drifts with ln b.

A power law holds each exponent fixed; sweeps show where that fails, e.g. the lr-batch exponent at fixed
tokens D falls as D grows (0.76 at 2^15 tokens, 0.19 at 2^17 on the GPT char-LM), so one B exponent for
every D misses a target batch. The term is centred on the fitted points (a0, b0: their geometric means),
so the law's main exponents stay the exponents at the centre, and at b the exponent of a is
e_a + c * ln(b / b0). The law file, the fit and the planner evaluate it through `log_terms` (numbers with
math.log here, arrays with the fit's np.log: the planner's path imports no numpy).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scaleplan.core.correction import Correction


@dataclass(frozen=True)
class Interaction:
    """c * ln(a / a0) * ln(b / b0) in ln y, for `variables` (a, b) and `centre` (a0, b0)."""

    variables: tuple[str, str]
    centre: tuple[float, float]
    coefficient: float

    @property
    def name(self) -> str:
        """`B:D`: how summaries, CIs and covariances name the term."""
        return ":".join(self.variables)

    def term(self, values: Mapping[str, Any], log: Callable[[Any], Any] = math.log) -> Any:
        """ln(a / a0) * ln(b / b0) at `values` (variable -> number, or array with log=np.log)."""
        (a, b), (a0, b0) = self.variables, self.centre
        return log(values[a] / a0) * log(values[b] / b0)

    def shift(self, moving: str, at: float) -> float:
        """What the term adds to the exponent of `moving` (one of its variables) where the other one equals `at`."""
        other = self.variables.index(moving) ^ 1
        return self.coefficient * math.log(at / self.centre[other])

    def formula(self) -> str:
        """`(B/16)^(0.25 ln(D/6.55e+04))`: the factor this term multiplies the power law by."""
        (a, b), (a0, b0) = self.variables, self.centre
        return f"({a}/{a0:.4g})^({self.coefficient:.4g} ln({b}/{b0:.4g}))"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Interaction:
        """From a law file's JSON object: {"variables": [a, b], "centre": [a0, b0], "coefficient": c}."""
        a, b = (str(v) for v in d["variables"])
        a0, b0 = (float(v) for v in d["centre"])
        return cls((a, b), (a0, b0), float(d["coefficient"]))


def centred(pairs: Iterable[tuple[str, str]], columns: Mapping[str, Iterable[float]]) -> list[Interaction]:
    """Interactions (coefficient 0, to be fitted) of `pairs`, centred at the geometric mean of each column."""
    def centre(name: str) -> float:
        values = [float(v) for v in columns[name]]
        return math.exp(math.fsum(math.log(v) for v in values) / len(values))

    return [Interaction((a, b), (centre(a), centre(b)), 0.0) for a, b in pairs]


def log_terms(exponents: Iterable[str], terms: Sequence[Interaction | Correction], values: Mapping[str, Any],
              log: Callable[[Any], Any] = math.log) -> list[Any]:
    """[1, ln v for each exponent, each term's value (an interaction, a finite-size correction)]: the row that the
    coefficients [intercept, *exponents, *term coefficients] multiply (numbers; arrays with log=np.log)."""
    return [1.0, *(log(values[v]) for v in exponents), *(t.term(values, log) for t in terms)]

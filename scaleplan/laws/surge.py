"""The surge form of Adam's optimal lr over data D and batch size B (Li et al. 2024, "Surge phenomenon in optimal
learning rate and batch size scaling"): below the gradient-noise scale the optimal lr rises like sqrt(B), above it
it falls again, and both the peak and the noise scale move with the number of steps S = D / (B u):

    ln lr* = a + sum_v e_v ln v + c ln S - ln cosh(1/2 (ln B - n0 - n1 ln S)),

lr_max(S) = e^a S^c the peak, B_noise(S) = e^n0 S^n1 where it sits, u the tokens of one batch unit (a sequence's
tokens when B counts sequences), v the model's size axes. A power law in (D, B) bends the wrong way beyond the
swept D and B; on the GPT char-LM this form passed a pre-registered target at 4x the largest swept batch and D
where the power law and its B:D term failed (benchmarks/results/batch-law-forms.md). It is nonlinear in n0 and
n1, so its interval is the delta method: the gradient of ln lr* in the parameters against the least-squares
covariance. There is no bootstrap covariance: the refitted noise scale is heavy-tailed when the sweep barely
reaches it, and a covariance of such replicates spans orders of magnitude (on the GPT batch sweep, 7e-8 to 9e3
at the target, where the replicates' percentile interval is 0.013 to 0.087); `scaleplan fit` reports that
percentile interval instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LN2 = math.log(2.0)
PARAMETERS = ("step_exponent", "noise_intercept", "noise_exponent")  # after the intercept and the size exponents


def ln_cosh(x: Any, xp: Any = math) -> Any:
    """ln cosh x without overflow, for a number (xp = math) or an array (xp = numpy)."""
    magnitude = abs(x)
    return magnitude + xp.log1p(xp.exp(-2.0 * magnitude)) - LN2


@dataclass(frozen=True)
class SurgeLaw:
    """`target` (lr) = the surge form above. `exponents` are the size axes' (none for one model size).

    `covariance` (t with `dof`, from the least-squares Jacobian) is over [intercept, *exponents, step_exponent,
    noise_intercept, noise_exponent]; with `residual_variance` it gives prediction intervals.
    """

    target: str
    unit: str
    intercept: float
    step_exponent: float
    noise_intercept: float
    noise_exponent: float
    tokens_per_batch_unit: float
    exponents: dict[str, float]
    covariance: list[list[float]] | None = None
    residual_variance: float | None = None
    dof: int | None = None
    n_points: int | None = None

    def coefficients(self) -> list[float]:
        """The parameters in the covariances' order."""
        return [self.intercept, *self.exponents.values(), self.step_exponent, self.noise_intercept, self.noise_exponent]

    def coefficient_names(self) -> list[str]:
        """Names of `coefficients()`: "intercept", each size variable, then PARAMETERS."""
        return ["intercept", *self.exponents, *PARAMETERS]

    def with_coefficients(self, theta: Any) -> SurgeLaw:
        """The same law with parameters `theta` (in `coefficients()` order): a fit's trial point or a replicate."""
        k = len(self.exponents)
        return SurgeLaw(self.target, self.unit, float(theta[0]), float(theta[k + 1]), float(theta[k + 2]), float(theta[k + 3]),
                        self.tokens_per_batch_unit, dict(zip(self.exponents, (float(t) for t in theta[1:k + 1]))))

    def inputs(self) -> list[str]:
        """The variables the law takes: its size axes, D and B."""
        return [*self.exponents, "D", "B"]

    def log_steps(self, values: Mapping[str, Any], xp: Any = math) -> Any:
        """ln S, S = D / (B u) the optimizer steps of a run."""
        return xp.log(values["D"]) - xp.log(values["B"]) - math.log(self.tokens_per_batch_unit)

    def noise_scale(self, steps: float) -> float:
        """B_noise at `steps` steps: where the optimal lr peaks over B (in B's unit)."""
        return math.exp(self.noise_intercept + self.noise_exponent * math.log(steps))

    def noise_position(self, values: Mapping[str, Any], xp: Any) -> Any:
        """1/2 (ln B - ln B_noise(S)): where B sits against the noise scale, in the cosh."""
        return 0.5 * (xp.log(values["B"]) - self.noise_intercept - self.noise_exponent * self.log_steps(values, xp))

    def log_value(self, values: Mapping[str, Any], xp: Any = math) -> Any:
        """ln lr* at `values` (variable -> number or array)."""
        sizes = sum((e * xp.log(values[v]) for v, e in self.exponents.items()), 0.0)
        return self.intercept + sizes + self.step_exponent * self.log_steps(values, xp) - ln_cosh(self.noise_position(values, xp), xp)

    def gradient(self, values: Mapping[str, Any], xp: Any = math) -> list[Any]:
        """d ln lr* / d parameters at `values`, in `coefficients()` order."""
        log_s, half_tanh = self.log_steps(values, xp), 0.5 * xp.tanh(self.noise_position(values, xp))
        one = 1.0 + 0.0 * log_s  # the intercept's column, shaped like the others
        return [one, *(one * xp.log(values[v]) for v in self.exponents), log_s, half_tanh, half_tanh * log_s]

    def formula(self) -> str:
        """`0.05 * S^0.12 / cosh(1/2 ln(B / (3.2 * S^0.25))), S = D / (32 B)`."""
        sizes = "".join(f" * {v}^{e:.4g}" for v, e in self.exponents.items())
        return (f"{math.exp(self.intercept):.4g}{sizes} * S^{self.step_exponent:.4g} / cosh(1/2 ln(B / "
                f"({math.exp(self.noise_intercept):.4g} * S^{self.noise_exponent:.4g}))), S = D / ({self.tokens_per_batch_unit:g} B)")

    def predict(self, values: dict[str, float], level: float = 0.95) -> Any:
        """The estimate at `values` with its t interval (see the class docstring)."""
        from scaleplan.laws.schema import estimate

        return estimate(self.log_value(values), [float(g) for g in self.gradient(values)], self.covariance, self.dof,
                        None, self.residual_variance, level)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SurgeLaw:
        """From a law file's JSON object (the fields above)."""
        return cls(**{**d, "exponents": {str(k): float(v) for k, v in d.get("exponents", {}).items()}})

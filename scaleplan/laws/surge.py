"""The surge form of Adam's optimal lr over data D and batch size B (Li et al. 2024, "Surge phenomenon in optimal
learning rate and batch size scaling"): below the gradient-noise scale the optimal lr rises like sqrt(B), above it
it falls again, and both the peak and the noise scale move with the number of steps S = D / (B u):

    ln lr* = a + sum_v e_v ln v + c ln S - ln cosh(1/2 (ln B - n0 - n1 ln S)),

lr_max(S) = e^a S^c the peak, B_noise(S) = e^n0 S^n1 where it sits, u the tokens of one batch unit (a sequence's
tokens when B counts sequences), v the model's size axes. A power law in (D, B) bends the wrong way beyond the
swept D and B; on the GPT char-LM this form passed a pre-registered target at 4x the largest swept batch and D
where the power law and its B:D term failed, then failed the four fresh targets beyond it that it was trained at
(B = 256-2048, D = 2^20-2^21; benchmarks/results/batch-law-forms.md, batch-prereg.md). It is nonlinear in n0 and
n1, so its interval is the delta method: the gradient of ln lr* in the parameters against the least-squares
covariance. There is no bootstrap covariance: the refitted noise scale is heavy-tailed when the sweep barely
reaches it, and a covariance of such replicates spans orders of magnitude (on the GPT batch sweep, 7e-8 to 9e3
at the target, where the replicates' percentile interval is 0.013 to 0.087); `scaleplan fit` reports that
percentile interval instead.

The saturating form (`form = "saturating"`) keeps the sqrt(B) rise and levels off past the noise scale instead of
falling: ln lr* = a + sum_v e_v ln v + c ln S + 1/2 ln(B / (B + B_noise(S))). It was chosen after seven of the GPT
char-LM's batch targets were known (their optima stayed at 0.026-0.041 over B = 64-512, where the surge form fell);
batch-prereg.md tests it at fresh targets. Both forms bend at the noise scale, so they share the parameters, the
fit and the intervals; only the bend differs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scaleplan.core.numbers import is_number

LN2 = math.log(2.0)
PARAMETERS = ("step_exponent", "noise_intercept", "noise_exponent")  # after the intercept and the size exponents
FORMS = ("surge", "saturating")  # how ln lr* bends at the noise scale: falls past it, or levels off
MIN_D, MIN_BATCH_SIZES = 2, 3  # what a fit of these forms needs: several horizons D, a turnover seen in 3 batch sizes


def ln_cosh(x: Any, xp: Any = math) -> Any:
    """ln cosh x without overflow, for a number (xp = math) or an array (xp = numpy)."""
    magnitude = abs(x)
    return magnitude + xp.log1p(xp.exp(-2.0 * magnitude)) - LN2


def bend(x: Any, form: str, xp: Any = math) -> Any:
    """The noise-scale term of ln lr* at x = 1/2 ln(B / B_noise): -ln cosh x (surge), or -1/2 ln(1 + e^-2x) =
    1/2 ln(B / (B + B_noise)) (saturating), both without overflow."""
    if form == "surge":
        return -ln_cosh(x, xp)
    magnitude = abs(x)
    return 0.5 * (x - magnitude) - 0.5 * xp.log1p(xp.exp(-2.0 * magnitude))


def bend_slope(x: Any, form: str, xp: Any = math) -> Any:
    """d bend / dx: -tanh x (surge), 1/2 (1 - tanh x) (saturating)."""
    return -xp.tanh(x) if form == "surge" else 0.5 * (1.0 - xp.tanh(x))


@dataclass(frozen=True)
class SurgeLaw:
    """`target` (lr) = the surge form above, or the saturating one (`form`, one of FORMS). `exponents` are the size
    axes' (none for one model size).

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
    form: str = "surge"

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
                        self.tokens_per_batch_unit, dict(zip(self.exponents, (float(t) for t in theta[1:k + 1]))),
                        form=self.form)

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
        """1/2 (ln B - ln B_noise(S)): where B sits against the noise scale, the bend's argument."""
        return 0.5 * (xp.log(values["B"]) - self.noise_intercept - self.noise_exponent * self.log_steps(values, xp))

    def log_value(self, values: Mapping[str, Any], xp: Any = math) -> Any:
        """ln lr* at `values` (variable -> number or array)."""
        sizes = sum((e * xp.log(values[v]) for v, e in self.exponents.items()), 0.0)
        return self.intercept + sizes + self.step_exponent * self.log_steps(values, xp) + bend(self.noise_position(values, xp),
                                                                                              self.form, xp)

    def gradient(self, values: Mapping[str, Any], xp: Any = math) -> list[Any]:
        """d ln lr* / d parameters at `values`, in `coefficients()` order."""
        log_s = self.log_steps(values, xp)
        by_level = -0.5 * bend_slope(self.noise_position(values, xp), self.form, xp)  # d x / d n0 = -1/2
        one = 1.0 + 0.0 * log_s  # the intercept's column, shaped like the others
        return [one, *(one * xp.log(values[v]) for v in self.exponents), log_s, by_level, by_level * log_s]

    def formula(self) -> str:
        """`0.05 * S^0.12 / cosh(1/2 ln(B / (3.2 * S^0.25))), S = D / (32 B)` (surge), or `... * sqrt(B / (B + 3.2 *
        S^0.25)), ...` (saturating)."""
        sizes = "".join(f" * {v}^{e:.4g}" for v, e in self.exponents.items())
        noise = f"{math.exp(self.noise_intercept):.4g} * S^{self.noise_exponent:.4g}"
        shape = f" / cosh(1/2 ln(B / ({noise})))" if self.form == "surge" else f" * sqrt(B / (B + {noise}))"
        return (f"{math.exp(self.intercept):.4g}{sizes} * S^{self.step_exponent:.4g}{shape}, "
                f"S = D / ({self.tokens_per_batch_unit:g} B)")

    def predict(self, values: dict[str, float], level: float = 0.95) -> Any:
        """The estimate at `values` with its t interval (see the class docstring)."""
        from scaleplan.laws.schema import estimate, evaluated_at

        return estimate(self.log_value(values), [float(g) for g in self.gradient(values)], self.covariance, self.dof,
                        None, self.residual_variance, level, what=f"{self.target} (the {self.form} law) at {evaluated_at(values)}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SurgeLaw:
        """From a law file's JSON object (the fields above); `exponents` must be an object of numbers (a TypeError names it)."""
        exponents = d.get("exponents", {})
        if not (isinstance(exponents, Mapping) and all(is_number(v) for v in exponents.values())):
            raise TypeError(f"'exponents' of the surge law must be an object of numbers, got {exponents!r}")
        return cls(**{**d, "exponents": {str(k): float(v) for k, v in exponents.items()}})

"""The law file: a versioned, validated JSON record of a fitted scaling law.

A law file holds power laws for hyperparameters (ln y = intercept + sum_v e_v ln v, with the
covariance of the coefficients for intervals) and/or a loss law L(N, D) = E + A/N^alpha + B/D^beta,
optionally an AdamW weight-decay block (a timescale power law tau(N, D) turned into lambda at the predicted lr),
plus what each variable means, the range it was fitted on, how optima were located, and where the
numbers came from. An isoFLOP law is power laws N_opt(C) and D_opt(C) (Chinchilla approaches 1 and 2).
Stage 3 (fit) writes it; stage 4 (plan) and users' training configs read it. Files are strict JSON
(no NaN or Infinity) and every covariance is finite, symmetric and positive semi-definite.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import numbers
import sys
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, TypeVar

from scaleplan.core.correction import Correction
from scaleplan.core.interaction import Interaction, log_terms
from scaleplan.core.numbers import is_finite_number, is_number
from scaleplan.core.reference import ParametrizationRef
from scaleplan.core.stats import two_sided_quantile
from scaleplan.core.weight_decay import DECAY_CONVENTIONS, weight_decay_for
from scaleplan.errors import LawFileError, ScaleplanError
from scaleplan.laws.surge import FORMS, SurgeLaw

# 2: typed `parametrization` (ParametrizationRef); 3: bootstrap_covariance and offset of power laws, `flags`,
# isoFLOP laws (N_opt, D_opt of C), variable R = D/N, optional `weight_decay` (the AdamW timescale law's
# convention); 4: optional `interactions` of power laws (c ln(a/a0) ln(b/b0) terms); 5: optional `corrections` of power
# laws (c (v/v0)^-q finite-size terms, the finite-width form); 6: optional `surge`, the lr law of D and B in the surge
# form (laws/surge.py) instead of an lr power law; 7: the surge law's `form` (surge or saturating; absent: surge); 8:
# optional `fitted_ratios` ("D/N": the span of D/N over the fitted cells, where they are not a full grid). Older files
# still load.
SCHEMA_VERSION = 8
MAX_LAW_BYTES = 16 * 2**20  # law files are kilobytes; a larger file is something else, read no further

# Keyword arguments of LawFile.predict and the variable each one feeds.
KEYWORD_VARIABLES = {"params": "N", "tokens": "D", "compute": "C", "width": "W", "depth": "L", "batch_size": "B",
                     "tokens_per_param": "R"}
VARIABLE_KEYWORDS = {v: k for k, v in KEYWORD_VARIABLES.items()}
ISOFLOP_TARGETS = ("N_opt", "D_opt")  # an isoFLOP law: compute-optimal N and D as power laws of C
# What scaleplan reads from a law (besides the weight_decay block's own timescale target): any other name is a typo
# or a law for something the planner does not prescribe.
KNOWN_TARGETS = ("lr", "batch_size", "critical_batch_size", "loss_opt", *ISOFLOP_TARGETS)
MAX_LN = math.log(sys.float_info.max)  # ~709.78: e^x overflows a float above it (and underflows to 0 below -745)
_T = TypeVar("_T")


def checked_input(value: Any, name: str) -> float:
    """`value` as a float when it is a positive finite real number, else a one-line ScaleplanError naming `name`: a law's
    inputs are counts (parameters, tokens, FLOPs, units), and a string or a list would be a traceback, a negative one a
    complex power, and a bool a silent 1."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ScaleplanError(f"{name} must be a positive finite number, got {value!r} ({type(value).__name__})")
    if not (math.isfinite(value) and float(value) > 0):
        raise ScaleplanError(f"{name} must be a positive finite number, got {float(value):g}")
    return float(value)


def check_level(level: float) -> None:
    """Refuse an interval level outside (0, 1) or NaN: it would print NaN (invalid JSON) or a nonsense interval."""
    if not (is_finite_number(level) and 0 < level < 1):
        raise ScaleplanError(f"interval level (--level) must be a number strictly between 0 and 1, e.g. 0.95 for a 95% "
                             f"interval; got {level!r}")


@dataclass(frozen=True)
class Variable:
    """An input of a law: `N`, `D`, `C`, `W`, `L` (depth), `B` or `R` (= D/N), what it counts and in which unit.

    `convention` says how to compute it from a model, e.g. "non-embedding" or "total" for N,
    "6ND" or "deepseek-MD" for C (M = 72*L*d^2 + 12*L*d*seq non-embedding FLOPs per token).
    """

    name: str
    meaning: str
    unit: str
    convention: str | None = None


@dataclass(frozen=True)
class Estimate:
    """A predicted value with its interval (None where the law carries no covariance)."""

    value: float
    low: float | None = None
    high: float | None = None
    level: float = 0.95
    interval: str | None = None  # "prediction" (coefficients + residual scatter) or "confidence"
    method: str | None = None  # where the interval came from: "t, 3 dof" or "bootstrap over cells"

    @property
    def octaves(self) -> float | None:
        """The interval's width in octaves (log2 of high / low); None without an interval."""
        return None if self.low is None or self.high is None else math.log2(self.high / self.low)

    def holds(self, x: float) -> bool:
        """True when x lies inside the interval; False where there is none."""
        return self.low is not None and self.high is not None and self.low <= x <= self.high


@dataclass(frozen=True)
class PowerLaw:
    """ln(y - offset) = intercept + sum_v exponents[v] * ln v [+ sum c ln(a/a0) ln(b/b0) over `interactions`]
    [+ sum c (v/v0)^-q over `corrections`], fitted on logs (offset 0 unless given).

    `covariance` (regression, t with `dof`) and `bootstrap_covariance` (cells resampled, normal quantile)
    are over [intercept, *exponents, *interaction coefficients, *correction coefficients] in that order. With `residual_variance` they give
    prediction intervals, without it confidence intervals of the mean; the interval is the wider of the
    two at each point (few cells: the t interval with its true dof, or the bootstrap, whichever is wider).
    With an `offset` (an additive constant, e.g. the irreducible loss) the interval treats it as fixed.
    """

    target: str
    unit: str
    intercept: float
    exponents: dict[str, float]
    covariance: list[list[float]] | None = None
    residual_variance: float | None = None
    dof: int | None = None
    n_points: int | None = None
    bootstrap_covariance: list[list[float]] | None = None
    offset: float | None = None
    interactions: list[Interaction] | None = None
    corrections: list[Correction] | None = None

    def terms(self) -> list[Interaction | Correction]:
        """The terms beyond the exponents, in the coefficients' order: interactions, then corrections."""
        return [*(self.interactions or []), *(self.corrections or [])]

    def inputs(self) -> list[str]:
        """The variables this law takes: its exponents' and its corrections' (a finite-width law has no W exponent)."""
        return list(dict.fromkeys([*self.exponents, *(c.variable for c in self.corrections or [])]))

    @property
    def coefficient(self) -> float:
        """The multiplicative constant a of y = a * prod v^e."""
        return math.exp(self.intercept)

    def formula(self) -> str:
        """Human-readable form, e.g. `1.79 * N^-0.713 * D^0.307` (or `1.69 + 406 * N^-0.34`)."""
        terms = "".join(f" * {v}^{e:.4g}" for v, e in self.exponents.items())
        terms += "".join(f" * {t.formula()}" for t in self.terms())
        return ("" if self.offset is None else f"{self.offset:.4g} + ") + f"{self.coefficient:.4g}{terms}"

    def predict(self, values: dict[str, float], level: float = 0.95) -> Estimate:
        """Evaluate at `values` (variable -> value) with an interval at `level` where possible."""
        logs = [float(t) for t in log_terms(self.exponents, self.terms(), values)]
        coefs = [self.intercept, *self.exponents.values(), *(t.coefficient for t in self.terms())]
        return estimate(sum(c * x for c, x in zip(coefs, logs)), logs, self.covariance, self.dof, self.bootstrap_covariance,
                        self.residual_variance, level, self.offset or 0.0, what=f"{self.target} at {evaluated_at(values)}")


def evaluated_at(values: dict[str, float]) -> str:
    """`W=256, D=1e+06`: where a law was evaluated, for messages."""
    return ", ".join(f"{k}={v:.3g}" for k, v in values.items()) or "its only point"


def exp_of(x: float, what: str) -> float:
    """e^x for the prediction `what`, refusing one no float holds (overflow to inf, underflow to 0, NaN): printed, it
    would be a silent nonsense answer (lr = inf, or 0 .. 0)."""
    try:
        y = math.exp(x)
    except OverflowError:
        y = math.inf
    if math.isfinite(y) and y > 0:
        return y
    how = "overflows a float" if x > 0 else ("underflows to 0" if x < 0 else "is not a number")
    raise LawFileError(f"{what} {how} (its log is {x:.4g}, beyond a float's range): the law's coefficients "
                       "are too large for these inputs; check the law file's intercept and exponents, or the inputs")


def estimate(mean: float, gradient: list[float], covariance: list[list[float]] | None, dof: int | None,
             bootstrap_covariance: list[list[float]] | None, residual_variance: float | None, level: float,
             offset: float = 0.0, what: str = "the prediction") -> Estimate:
    """offset + exp(mean) with the wider of the t interval (`covariance`, `dof`) and the bootstrap's (normal quantile)
    of ln(y - offset), `gradient` being d mean / d coefficients; with `residual_variance` a prediction interval, else
    a confidence interval of the mean; no interval without a covariance. Refuses a value or interval end no float
    holds, naming `what` (e.g. `lr at W=256`)."""
    scatter = residual_variance or 0.0
    halves = []  # (half-width, method) of each available interval
    if covariance is not None:
        halves.append((two_sided_quantile(level, dof) * math.sqrt(max(_quadratic(covariance, gradient) + scatter, 0.0)),
                       f"t, {dof} dof" if dof else "normal"))
    if bootstrap_covariance is not None:
        halves.append((two_sided_quantile(level, None) * math.sqrt(max(_quadratic(bootstrap_covariance, gradient) + scatter, 0.0)),
                       "bootstrap over cells"))
    value = offset + exp_of(mean, what)
    if not halves:
        return Estimate(value, level=level)
    half, method = max(halves)
    interval = "confidence" if residual_variance is None else "prediction"
    low, high = (offset + exp_of(mean + sign * half, f"the {'low' if sign < 0 else 'high'} end of the {level:.0%} interval "
                                 f"of {what}") for sign in (-1, 1))
    return Estimate(value, low, high, level, interval, method)


def _finite_result(what: str) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    """Decorate a method of positive numbers: an argument that is not one is a ScaleplanError naming it (checked_input);
    an overflow, a division by zero or a non-finite result is a LawFileError naming `what` and the arguments (the law's
    constants are too extreme there), never an internal error or an inf answer."""
    def decorate(method: Callable[..., _T]) -> Callable[..., _T]:
        signature = inspect.signature(method)

        @functools.wraps(method)
        def checked(self: Any, *given: Any, **by_name: Any) -> _T:
            named = list(signature.bind(self, *given, **by_name).arguments.items())[1:]
            args = [checked_input(value, f"{name} of {what}") for name, value in named]
            try:
                out: Any = method(self, *args)
            except (OverflowError, ZeroDivisionError):
                out = math.nan
            if not all(math.isfinite(v) for v in (out if isinstance(out, tuple) else (out,))):
                raise LawFileError(f"{what} at {', '.join(f'{a:.3g}' for a in args)} overflows a float: the law's "
                                   "constants are too extreme there; check the law file (or the inputs)")
            return out
        return checked
    return decorate


@dataclass(frozen=True)
class LossLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta (Chinchilla's approach 3 form)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    covariance: list[list[float]] | None = None  # over [E, A, B, alpha, beta]

    @_finite_result("the loss law's loss L(N, D)")
    def loss(self, n: float, d: float) -> float:
        """Predicted loss for N parameters trained on D tokens."""
        return self.E + self.A * n**-self.alpha + self.B * d**-self.beta  # a term too small for a float is 0, not an overflow

    def _optimal_size_law(self) -> tuple[float, float]:
        """(G, a) of the compute-optimal size N_opt = G * (C / 6)^a (Chinchilla paper, eq. 4)."""
        a = self.beta / (self.alpha + self.beta)
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        return g, a

    @_finite_result("the loss law's compute-optimal (N, D)")
    def compute_optimal(self, compute: float) -> tuple[float, float]:
        """(N, D) minimising L under C = 6 N D (closed form of the Chinchilla paper, eq. 4)."""
        g, a = self._optimal_size_law()
        n = g * (compute / 6.0) ** a
        return n, compute / (6.0 * n)

    @_finite_result("the loss law's optimal tokens D(N)")
    def optimal_tokens(self, n: float) -> float:
        """Tokens D for which N is the compute-optimal size (inverse of compute_optimal)."""
        g, a = self._optimal_size_law()
        return (n / g) ** (1.0 / a) / n


@dataclass(frozen=True)
class WeightDecayLaw:
    """AdamW weight decay from a timescale law: the power law `target` predicts tau (fraction of the run), and
    lambda = B / (lr * tau * D) ("torch") or B / (tau * D) ("independent"), at the predicted lr, B in D's unit."""

    convention: str = "torch"
    target: str = "wd_tau"

    def estimate(self, tau: Estimate, lr: float, steps: float) -> Estimate:
        """lambda for timescale `tau` at `lr` over `steps` = D / B steps; its interval is tau's (at this lr), inverted."""
        def at(value: float | None) -> float | None:
            return None if value is None else weight_decay_for(lr, value, steps, self.convention)

        return Estimate(at(tau.value), at(tau.high), at(tau.low), tau.level, tau.interval)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Provenance:
    """Where the numbers came from: a paper, or the command and data that produced the fit."""

    source: str
    citation: str | None = None
    url: str | None = None
    data_sha256: str | None = None
    date: str | None = None
    command: str | None = None


@dataclass(frozen=True)
class Prediction:
    """What a law prescribes at one point: each target's estimate plus the inputs it used."""

    law: str
    inputs: dict[str, float]
    values: dict[str, Estimate]
    warnings: tuple[str, ...] = ()
    parametrization: ParametrizationRef | None = None  # what per-role numbers are relative to (muP laws)
    decay_convention: str | None = None  # AdamW convention of values["weight_decay"] ("torch" or "independent")

    @property
    def lr(self) -> float:
        """The predicted learning rate (the base lr eta for muP laws)."""
        return self._get("lr")

    @property
    def batch_size(self) -> float:
        """The predicted batch size, in the unit of the law's `batch_size` target."""
        return self._get("batch_size")

    @property
    def loss(self) -> float:
        """The loss law's L(N, D) at the inputs' N and D."""
        return self._get("loss")

    @property
    def weight_decay(self) -> float:
        """The predicted AdamW lambda (base lambda for muP laws) in the convention `decay_convention`."""
        if "weight_decay" not in self.values and "wd_tau" in self.values:
            raise ScaleplanError(f"law '{self.law}' predicts the decay timescale tau; give batch_size= (in D's unit) "
                                 "to turn it into lambda")
        return self._get("weight_decay")

    def _get(self, target: str) -> float:
        if target not in self.values:
            raise ScaleplanError(f"law '{self.law}' does not predict '{target}' (it has: {', '.join(self.values)})")
        return self.values[target].value


@dataclass(frozen=True)
class LawFile:
    """A scaling law as shipped in fits/*.json: see the module docstring. `flags` lists what the fit found
    doubtful (optima at the edge or outside their window, flat cells, an unfinished sweep, ...)."""

    name: str
    title: str
    variables: list[Variable]
    provenance: Provenance
    power_laws: list[PowerLaw] = field(default_factory=list)
    loss_law: LossLaw | None = None
    fitted_range: dict[str, tuple[float, float]] = field(default_factory=dict)
    # "D/N" -> the span of that ratio over the fitted cells: a point inside every fitted_range can lie outside them
    fitted_ratios: dict[str, tuple[float, float]] = field(default_factory=dict)
    method: str | None = None
    parametrization: ParametrizationRef | None = None
    notes: str | None = None
    flags: list[str] = field(default_factory=list)
    swept: dict[str, list[float]] = field(default_factory=dict)  # grid axes the fitted sweep varied -> their values
    weight_decay: WeightDecayLaw | None = None
    surge: SurgeLaw | None = None  # the lr law in the surge form of (D, B), in place of an lr power law
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        _validate(self)

    # ---- prediction -------------------------------------------------------------------------
    def variable(self, name: str) -> Variable:
        """The declared variable `name` (N, D, C, W, B)."""
        for v in self.variables:
            if v.name == name:
                return v
        raise ScaleplanError(f"law '{self.name}' has no variable '{name}'")

    def needs(self) -> list[str]:
        """Variables the power laws take as inputs, in declaration order; B is not one of them when the
        law predicts the batch size itself (the lr law then takes the predicted batch size)."""
        used = {v for p in self.laws() for v in p.inputs()} - ({"B"} if self._batch_law() is not None else set())
        return [v.name for v in self.variables if v.name in used]

    def takes(self) -> list[str]:
        """Variables `predict` uses: those the laws need; N and D where they make a needed R = D/N or C = 6ND or feed the
        loss law; B where a law takes it (the batch given, in place of a predicted one) or the decay block turns tau
        into lambda with it. Any other input would be ignored: predict refuses it, as `scaleplan predict` does a --batch
        (and, for a law of a sweep's axes, a --params or --tokens) the law does not take."""
        needs = self.needs()
        sizes = "R" in needs or ("C" in needs and self._six_nd()) or self.loss_law is not None
        batch = any("B" in p.inputs() for p in self.laws()) or self.weight_decay is not None
        return list(dict.fromkeys([*needs, *(["N", "D"] if sizes else []), *(["B"] if batch else [])]))

    def taken(self, **inputs: float | None) -> dict[str, float]:
        """Of predict's keyword inputs, those given that the law takes: for a point given on more axes than the law
        depends on (a grid point of a sweep, a target width that sets only per-role rules), which predict would refuse."""
        takes = self.takes()
        return {k: v for k, v in inputs.items() if v is not None and KEYWORD_VARIABLES[k] in takes}

    def _six_nd(self) -> bool:
        """True when the law's C is 6ND (declared so, or without a convention), so given N and D make it."""
        return self.has_variable("C") and self.variable("C").convention in (None, "6ND")

    def laws(self) -> list[PowerLaw | SurgeLaw]:
        """Every law of a hyperparameter the file holds: its power laws, then the surge lr law."""
        return [*self.power_laws, *([self.surge] if self.surge is not None else [])]

    def lr_law(self) -> PowerLaw | SurgeLaw | None:
        """The law that predicts the lr (a power law or the surge form), if the file has one."""
        return next((p for p in self.laws() if p.target == "lr"), None)

    def _batch_law(self) -> PowerLaw | None:
        """The batch-size power law, when it does not itself take B (it can then feed the lr law's B)."""
        return next((p for p in self.power_laws if p.target == "batch_size" and "B" not in p.exponents), None)

    def has_variable(self, name: str) -> bool:
        """True when the law declares variable `name`."""
        return any(v.name == name for v in self.variables)

    @property
    def is_isoflop(self) -> bool:
        """True for an isoFLOP law: N_opt(C) and D_opt(C) power laws."""
        targets = {p.target: p for p in self.power_laws}
        return all(t in targets and set(targets[t].exponents) == {"C"} for t in ISOFLOP_TARGETS)

    def compute_optimal(self, compute: float, level: float = 0.95) -> tuple[Estimate, Estimate]:
        """(N, D) estimates at `compute` FLOPs: from the isoFLOP laws, else the loss law's closed form."""
        check_level(level)
        if self.is_isoflop:
            values = self.evaluate(level=level, compute=compute).values
            return values["N_opt"], values["D_opt"]
        if self.loss_law is None:
            raise ScaleplanError(f"law '{self.name}' has neither an isoFLOP law nor a loss law: it cannot split a compute budget")
        n, d = self.loss_law.compute_optimal(compute)
        return Estimate(n, level=level), Estimate(d, level=level)

    @_finite_result("the optimal tokens D(N)")
    def optimal_tokens(self, params: float) -> float:
        """Tokens for which `params` is the compute-optimal size (inverse of compute_optimal)."""
        if self.is_isoflop:
            law = next(p for p in self.power_laws if p.target == "N_opt")
            compute = math.exp((math.log(params) - law.intercept) / law.exponents["C"])
            return self.compute_optimal(compute)[1].value
        if self.loss_law is None:
            raise ScaleplanError(f"law '{self.name}' has neither an isoFLOP law nor a loss law: it cannot give optimal tokens")
        return self.loss_law.optimal_tokens(params)

    def predict(self, level: float = 0.95, **inputs: float | None) -> Prediction:
        """Evaluate every law at the inputs, e.g. `law.predict(params=7e9, tokens=2e12)`; a loss law gives `loss` at N, D.

        Keywords: params (N), tokens (D), compute (C), width (W), depth (L), batch_size (B), tokens_per_param (R);
        None counts as not given. An input the law does not take (`takes`) is refused, not ignored. Values outside the
        fitted range are allowed; the record's `warnings` say so, and each is also emitted as a UserWarning pointing at
        the caller (`evaluate` returns the same record without them, for callers that print the record's own, as
        `scaleplan predict` does).
        """
        prediction = self.evaluate(level, **inputs)
        for message in prediction.warnings:
            warnings.warn(message, UserWarning, stacklevel=2)
        return prediction

    def evaluate(self, level: float = 0.95, **inputs: float | None) -> Prediction:
        """`predict`'s record without emitting its warnings as UserWarnings (the caller shows `warnings` itself)."""
        check_level(level)
        unknown = set(inputs) - set(KEYWORD_VARIABLES)
        if unknown:
            raise ScaleplanError(
                f"unknown input(s) {sorted(unknown)}; use {', '.join(KEYWORD_VARIABLES)}"
            )
        values = {KEYWORD_VARIABLES[k]: checked_input(v, f"{k}=") for k, v in inputs.items() if v is not None}
        takes = self.takes()
        unused = [v for v in values if v not in takes]
        if unused:
            named = ", ".join(f"{VARIABLE_KEYWORDS[v]}= ({v})" for v in takes) or "no inputs"
            raise ScaleplanError(f"law '{self.name}' does not use {', '.join(f'{VARIABLE_KEYWORDS[v]}=' for v in unused)} "
                                 f"(it takes {named}): drop {'it' if len(unused) == 1 else 'them'}")
        if "N" in values and "D" in values:  # derived inputs: tokens per parameter, and C = 6ND unless C counts otherwise
            values.setdefault("R", checked_input(values["D"] / values["N"], "tokens_per_param (tokens / params)"))
            if self._six_nd():
                values.setdefault("C", checked_input(6.0 * values["N"] * values["D"], "compute (6 * params * tokens)"))
        for var in self.needs() or (["N", "D"] if self.loss_law is not None else []):  # a loss law alone needs N and D
            if var not in values:
                meaning = self.variable(var).meaning
                raise ScaleplanError(
                    f"law '{self.name}' needs {VARIABLE_KEYWORDS[var]}= ({var}: {meaning})"
                )
        used = {v: values[v] for v in self.needs()}
        batch_law = self._batch_law()
        estimates = {} if batch_law is None else {"batch_size": batch_law.predict(used, level)}
        if batch_law is not None and any("B" in p.inputs() for p in self.laws() if p is not batch_law):
            used["B"] = values.get("B", estimates["batch_size"].value)  # the batch given, else the predicted one
        estimates.update({p.target: p.predict(used, level) for p in self.laws() if p.target not in estimates})
        decay = self.weight_decay
        if decay is not None:
            batch = values.get("B", estimates["batch_size"].value if "batch_size" in estimates else None)
            if batch is not None and "D" in used:
                used["B"] = batch
                estimates["weight_decay"] = decay.estimate(estimates[decay.target], estimates["lr"].value, used["D"] / batch)
        if self.loss_law is not None and "N" in values and "D" in values:  # a point value (no interval is propagated)
            used.update(N=values["N"], D=values["D"])
            estimates["loss"] = Estimate(self.loss_law.loss(values["N"], values["D"]), level=level)
        return Prediction(self.name, used, estimates, (*self.extrapolation_warnings(used), *self.flag_warnings()),
                          self.parametrization, None if decay is None else decay.convention)

    def flag_warnings(self) -> list[str]:
        """One warning per flag of the fit (an optimum at the edge, flat cells, ...): each undermines what the law
        predicts, so every prediction repeats them."""
        return [f"law '{self.name}' was fitted from doubtful data: {flag}" for flag in self.flags]

    def unknown_targets(self) -> list[str]:
        """Targets of the file's laws that scaleplan does not read (a typo such as `LR`, or a quantity it does not
        prescribe): the planner would silently show nothing for them."""
        known = {*KNOWN_TARGETS, *([self.weight_decay.target] if self.weight_decay is not None else [])}
        return [p.target for p in self.laws() if p.target not in known]

    def extrapolation_warnings(self, values: dict[str, float]) -> list[str]:
        """One message per input outside the fitted range, saying by how far."""
        out = []
        for var, val in values.items():
            if var not in self.fitted_range:
                continue
            lo, hi = self.fitted_range[var]
            if val > hi * (1 + 1e-9):
                out.append(f"extrapolating: {var}={val:.3g} is {val / hi:.3g}x above the fitted range [{lo:.3g}, {hi:.3g}]")
            elif val < lo * (1 - 1e-9):
                out.append(f"extrapolating: {var}={val:.3g} is {lo / val:.3g}x below the fitted range [{lo:.3g}, {hi:.3g}]")
        return out + self._ratio_warnings(values) + self._interaction_warnings(values) + self._critical_batch_warnings(values)

    def _ratio_warnings(self, values: dict[str, float]) -> list[str]:
        """A ratio of inputs (D/N, tokens per parameter) outside its span over the fitted cells."""
        out = []
        for ratio, (lo, hi) in self.fitted_ratios.items():
            top, bottom = ratio.split("/")
            if top not in values or bottom not in values:
                continue
            val = values[top] / values[bottom]
            if lo * (1 - 1e-9) <= val <= hi * (1 + 1e-9):
                continue
            how = f"{val / hi:.3g}x above" if val > hi else f"{lo / val:.3g}x below"
            out.append(f"extrapolating: {ratio}={val:.3g} is {how} the fitted cells' range [{lo:.3g}, {hi:.3g}] (each of "
                       f"{top} and {bottom} may lie inside its own range: no fitted cell trained this {ratio})")
        return out

    def _critical_batch_warnings(self, values: dict[str, float]) -> list[str]:
        """An lr law of B evaluated beyond the swept batch sizes and above the critical batch the sweep measured: on
        the GPT char-LM no form fitted below it held there at every target, though the saturating form's interval held
        the optimum at each (benchmarks/results/batch-law-forms.md); on Step Law's grid the saturating form held best
        of the fitted ones (steplaw-batch-forms.md)."""
        critical = next((p for p in self.power_laws if p.target == "critical_batch_size"), None)
        lr = self.lr_law()
        if critical is None or lr is None or "B" not in lr.inputs() or "B" not in values or "B" not in self.fitted_range:
            return []
        if values["B"] <= self.fitted_range["B"][1] * (1 + 1e-9) or any(v not in values for v in critical.inputs()):
            return []
        b_crit = critical.predict({v: values[v] for v in critical.inputs()}).value
        if values["B"] <= b_crit:
            return []
        held = ("this form's 95% interval held the optimum at every one, fitted from each of three sweeps: read the "
                "interval, not the point"
                if isinstance(lr, SurgeLaw) and lr.form == "saturating" else
                "the saturating form's 95% interval held the optimum at every one, fitted from each of three sweeps, "
                "and the other forms' did not from some of them: refit with --lr-form saturating")
        return [f"B={values['B']:.3g} is beyond the swept batch sizes and above the critical batch the sweep measured "
                f"({b_crit:.3g}): there lr* changes far less with B than below it, and on the GPT char-LM no lr law of B "
                f"fitted below it came within half an octave of the optimum at every such target "
                f"(benchmarks/results/batch-law-forms.md); {held}. Sweep the batch sizes you will train, or check the lr "
                "there (scaleplan validate --target batch=...)"]

    def _interaction_warnings(self, values: dict[str, float]) -> list[str]:
        """An interaction term evaluated outside the fitted range of either variable: the exponent it drifts,
        there and over the fitted range (a quadratic in logs keeps bending beyond its data)."""
        out = []
        for law in self.power_laws:
            for term in law.interactions or []:
                for moving, by in (term.variables, term.variables[::-1]):
                    if by not in self.fitted_range or by not in values:
                        continue
                    lo, hi = self.fitted_range[by]
                    if lo * (1 - 1e-9) <= values[by] <= hi * (1 + 1e-9):
                        continue
                    at, low, high = (law.exponents[moving] + term.shift(moving, v) for v in (values[by], lo, hi))
                    out.append(f"the {law.target} law's {term.name} term at {by}={values[by]:.3g} puts the {moving} exponent "
                               f"at {at:.3g} ({low:.3g} to {high:.3g} over the fitted "
                               f"{by}); it is fitted, not a law, outside [{lo:.3g}, {hi:.3g}]: sweep this {by}, or refit "
                               "with --lr-batch-interaction off")
        return out

    # ---- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, schema_version first."""
        d = asdict(self)
        d["fitted_range"] = {k: list(v) for k, v in self.fitted_range.items()}
        if self.fitted_ratios:
            d["fitted_ratios"] = {k: list(v) for k, v in self.fitted_ratios.items()}
        else:  # a law without them as schema 7 wrote it
            del d["fitted_ratios"]
        for law in d["power_laws"]:  # a plain power law's object stays as schema 3 wrote it
            for key in ("interactions", "corrections"):
                if law[key] is None:
                    del law[key]
        if d["surge"] is None:  # and a file without a surge law as schema 5 wrote it
            del d["surge"]
        if self.parametrization is not None:  # SGD's momentum only where set
            d["parametrization"] = self.parametrization.to_dict()
        return {"schema_version": d.pop("schema_version"), **d}

    def to_json(self) -> str:
        """Strict JSON text (NaN or Infinity anywhere is a LawFileError, never written)."""
        try:
            return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        except ValueError:
            raise LawFileError(f"law '{self.name}' holds a non-finite number; refusing to write invalid JSON") from None

    def save(self, path: str | Path) -> Path:
        """Write the law as indented strict JSON; returns the path."""
        from scaleplan.outputs import writing

        text = self.to_json()  # before opening the file: nothing half-written
        with writing(path, "law file") as part:
            part.write_text(text)
        return Path(path)

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "law") -> LawFile:
        """Validate and build from a parsed JSON dict; errors name `origin` and the bad key."""
        if not isinstance(d, dict):
            raise LawFileError(f"{origin}: expected a JSON object at the top level")
        _check_version(d.get("schema_version"), origin)
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise LawFileError(f"{origin}: unknown key(s) {sorted(extra)}")
        try:
            return cls(
                name=d["name"],
                title=d["title"],
                variables=[Variable(**v) for v in _objects(d["variables"], "variables")],
                provenance=Provenance(**_object(d, "provenance", required=True)),
                power_laws=[_power_law(p) for p in _objects(d.get("power_laws"), "power_laws")],
                loss_law=None if (loss := _block(d, "loss_law")) is None else LossLaw(**loss),
                fitted_range={k: _range(v, f"fitted_range of {k}") for k, v in _object(d, "fitted_range").items()},
                fitted_ratios={k: _range(v, f"fitted_ratios of {k}") for k, v in _object(d, "fitted_ratios").items()},
                method=d.get("method"),
                parametrization=None if d.get("parametrization") is None
                else ParametrizationRef.from_dict(d["parametrization"], origin),
                notes=d.get("notes"),
                weight_decay=None if (decay := _block(d, "weight_decay")) is None else WeightDecayLaw(**decay),
                flags=[] if d.get("flags") is None else d["flags"],
                swept={str(k): list(_numbers(v, f"swept {k}")) for k, v in _object(d, "swept").items()},
                surge=None if (surge := _block(d, "surge")) is None else SurgeLaw.from_dict(surge),
                schema_version=SCHEMA_VERSION,  # read into the current schema (older versions upgrade on load)
            )
        except KeyError as exc:
            raise LawFileError(f"{origin}: missing key {exc}") from None
        except (TypeError, ValueError, IndexError) as exc:
            raise LawFileError(f"{origin}: malformed entry ({' '.join(str(exc).split())})") from None

    @classmethod
    def load(cls, path: str | Path) -> LawFile:
        """Read and validate a law file; any problem is one ScaleplanError naming the file."""
        path = Path(path)
        if path.exists() and not path.is_dir() and not path.is_file():  # /dev/zero, a FIFO: read_text would not return
            raise LawFileError(f"law file {path} is not a regular file")
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_LAW_BYTES + 1)
            text = raw.decode("utf-8-sig")  # an editor's byte-order mark, as specs and CSVs accept it
        except FileNotFoundError:
            raise LawFileError(f"law file not found: {path}") from None
        except (IsADirectoryError, PermissionError) as exc:
            raise LawFileError(f"cannot read law file {path}: {type(exc).__name__}") from None
        except UnicodeDecodeError:
            raise LawFileError(f"cannot read law file {path}: not UTF-8 text (a law file is UTF-8 JSON)") from None
        if len(raw) > MAX_LAW_BYTES:
            raise LawFileError(f"law file {path} is larger than {MAX_LAW_BYTES // 2**20} MiB: not a law file")
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise LawFileError(f"law file {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
        except ValueError as exc:
            raise LawFileError(f"law file {path} is not valid JSON ({exc})") from None
        except RecursionError:
            raise LawFileError(f"law file {path} is not a law file (JSON nested too deeply)") from None
        return cls.from_dict(data, origin=f"law file {path}")


def _check_version(version: Any, origin: str) -> None:
    """Accept the schema versions this scaleplan reads (1 to SCHEMA_VERSION; a bool is no version); a newer one asks
    for an upgrade, anything else is refused."""
    integer = isinstance(version, int) and not isinstance(version, bool)
    if integer and version > SCHEMA_VERSION:
        raise LawFileError(f"{origin} has schema version {version}, newer than this scaleplan reads "
                           f"({SCHEMA_VERSION}): upgrade scaleplan (pip install -U scaleplan)")
    if not (integer and version >= 1):
        what = "missing 'schema_version'" if version is None else f"'schema_version' {json.dumps(version)} is not a version"
        raise LawFileError(f"{origin}: {what}: it must be an integer from 1 to {SCHEMA_VERSION} (the version of "
                           "scaleplan's law-file schema the file was written in)")


# The JSON type of each field of a power law's terms, (kind, count: None for one value, n for a list of n), checked
# before they parse (Interaction and Correction parse with float() and str(), which would take "12" as a centre).
TERM_FIELDS: dict[str, dict[str, tuple[str, int | None]]] = {
    "interactions": {"variables": ("name", 2), "centre": ("number", 2), "coefficient": ("number", None)},
    "corrections": {"variable": ("name", None), "centre": ("number", None), "power": ("number", None), "coefficient": ("number", None)},
}


def _power_law(d: dict[str, Any]) -> PowerLaw:
    """A power law from its JSON object (interactions and corrections as lists of objects of the right types)."""
    terms, corrections = (None if d.get(key) is None else [_term(t, key) for t in _objects(d[key], key)] for key in TERM_FIELDS)
    return PowerLaw(**{**d, "interactions": None if terms is None else [Interaction.from_dict(t) for t in terms],
                       "corrections": None if corrections is None else [Correction.from_dict(c) for c in corrections]})


def _term(term: dict[str, Any], key: str) -> dict[str, Any]:
    """`term` (an object of `key`), each field of TERM_FIELDS[key] of its JSON type, else a TypeError naming it."""
    for name, (kind, count) in TERM_FIELDS[key].items():
        value = term.get(name)
        one = is_number if kind == "number" else (lambda x: isinstance(x, str))
        ok = one(value) if count is None else isinstance(value, list) and len(value) == count and all(map(one, value))
        if name in term and not ok:
            want = f"a {kind}" if count is None else f"a list of {count} {kind}s"
            raise TypeError(f"'{name}' of an entry of '{key}' must be {want}, got {json.dumps(value)}")
    return term


def _objects(value: Any, key: str) -> list[dict[str, Any]]:
    """`value` of `key` (null: none), which must be a list of JSON objects, else a TypeError naming `key`."""
    value = [] if value is None else value
    if not isinstance(value, list):
        raise TypeError(f"'{key}' must be a list of objects, got {_json_type(value)}")
    bad = next((i for i, x in enumerate(value) if not isinstance(x, dict)), None)
    if bad is not None:
        raise TypeError(f"'{key}' must be a list of objects; its entry {bad + 1} is {_json_type(value[bad])}")
    return value


def _block(d: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The optional object d[key]: None when absent, null or empty, else it must be a JSON object (a TypeError)."""
    return None if d.get(key) is None else (_object(d, key) or None)


def _numbers(value: Any, what: str, n: int | None = None) -> tuple[float, ...]:
    """`value` as floats: a list of JSON numbers (of length `n` if given), else a TypeError naming `what`."""
    if not (isinstance(value, list) and all(map(is_number, value)) and (n is None or len(value) == n)):
        raise TypeError(f"{what} must be a list of {'' if n is None else f'{n} '}numbers, got {json.dumps(value)}")
    return tuple(float(x) for x in value)


def _range(value: Any, what: str) -> tuple[float, float]:
    """A fitted range: a list of two JSON numbers, else a TypeError naming `what`."""
    low, high = _numbers(value, what, 2)
    return low, high


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (for messages: `an object`, `a list`, `a number`, ...)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _reject_constant(name: str) -> Any:
    """json.loads hook: NaN / Infinity are not JSON; a file holding them is malformed."""
    raise ValueError(f"{name} is not a JSON number")


def _quadratic(matrix: list[list[float]], g: list[float]) -> float:
    """g' M g."""
    return sum(g[i] * matrix[i][j] * g[j] for i in range(len(g)) for j in range(len(g)))


def _covariance_problem(matrix: Any, k: int) -> str | None:
    """Why `matrix` is not a k x k finite, symmetric, positive semi-definite matrix (None when it is)."""
    if not (isinstance(matrix, list) and len(matrix) == k
            and all(isinstance(r, list) and len(r) == k and all(is_finite_number(x) for x in r) for r in matrix)):
        return f"must be {k}x{k}, rows of finite numbers"
    scale = max(max(abs(matrix[i][i]) for i in range(k)), 1e-300)
    if any(abs(matrix[i][j] - matrix[j][i]) > 1e-8 * scale for i in range(k) for j in range(i)):
        return "must be symmetric"
    # Cholesky of M + jitter: fails exactly when M has an eigenvalue below -jitter (not positive semi-definite).
    jitter = 1e-9 * scale
    low = [[0.0] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1):
            s = matrix[i][j] + (jitter if i == j else 0.0) - sum(low[i][m] * low[j][m] for m in range(j))
            if i == j:
                if s <= 0:
                    return "must be positive semi-definite"
                low[i][i] = math.sqrt(s)
            else:
                low[i][j] = s / low[j][j]
    return None


def _object(d: dict[str, Any], key: str, required: bool = False) -> dict[str, Any]:
    """d[key] (an empty object when absent, a KeyError if `required`), which must be a JSON object."""
    value = d[key] if required else d.get(key, {})
    if not isinstance(value, dict):
        raise TypeError(f"'{key}' must be an object, got {type(value).__name__}")
    return value


def _validate(law: LawFile) -> None:
    """Check the invariants every reader relies on; raise one ScaleplanError for the first break."""
    where = f"law '{law.name}'"
    _check_text(law, where)
    if not law.power_laws and law.loss_law is None and law.surge is None:
        raise LawFileError(f"{where}: has neither power laws nor a loss law")
    names = [v.name for v in law.variables]
    if len(set(names)) != len(names):
        raise LawFileError(f"{where}: duplicate variable names {names}")
    for p in law.power_laws:
        if not isinstance(p.exponents, dict):
            raise LawFileError(f"{where}: exponents of '{p.target}' must be an object like {{\"N\": -0.7}}")
        missing = [v for v in p.exponents if v not in names]
        if missing:
            raise LawFileError(f"{where}: power law '{p.target}' uses undeclared variable(s) {missing}")
        if not all(is_finite_number(x) for x in (p.intercept, *p.exponents.values())):
            raise LawFileError(f"{where}: power law '{p.target}' has a non-finite coefficient")
        _check_ln(p.intercept, f"{where}: intercept of '{p.target}'")
        if p.offset is not None and not is_finite_number(p.offset):
            raise LawFileError(f"{where}: offset of '{p.target}' must be a finite number or null")
        if p.offset is not None and p.offset < 0 and p.target != "loss_opt":
            raise LawFileError(f"{where}: offset of '{p.target}' is {p.offset:g}, below 0: {p.target} = offset + a power "
                                 "term would be negative where the term is small (fit --offset takes a constant >= 0)")
        for term in p.interactions or []:
            if not set(term.variables) <= set(p.exponents) or len(set(term.variables)) != 2:
                raise LawFileError(f"{where}: interaction {term.name} of '{p.target}' must join two of its variables "
                                     f"({', '.join(p.exponents)})")
            if not all(is_finite_number(x) and x > 0 for x in term.centre) or not is_finite_number(term.coefficient):
                raise LawFileError(f"{where}: interaction {term.name} of '{p.target}' needs a positive centre and a "
                                     "finite coefficient")
        for c in p.corrections or []:
            if c.variable not in names:
                raise LawFileError(f"{where}: correction {c.name} of '{p.target}' uses undeclared variable '{c.variable}'")
            if not (is_finite_number(c.centre) and c.centre > 0 and is_finite_number(c.power) and c.power > 0 and is_finite_number(c.coefficient)):
                raise LawFileError(f"{where}: correction {c.name} of '{p.target}' needs a positive centre and power and a "
                                     "finite coefficient")
        k = 1 + len(p.exponents) + len(p.terms())
        for key in ("covariance", "bootstrap_covariance"):
            problem = None if getattr(p, key) is None else _covariance_problem(getattr(p, key), k)
            if problem:
                raise LawFileError(f"{where}: {key} of '{p.target}' {problem}")
        _check_scatter(p, f"{where}: ", f"of '{p.target}'")
    if law.surge is not None:
        _validate_surge(law.surge, names, where)
    targets = [p.target for p in law.laws()]
    if len(set(targets)) != len(targets):
        raise LawFileError(f"{where}: duplicate power-law targets {targets}")
    for var, rng in law.fitted_range.items():
        if var not in names:
            raise LawFileError(f"{where}: fitted_range names undeclared variable '{var}'")
        if not (0 < rng[0] <= rng[1]):
            raise LawFileError(f"{where}: fitted_range of {var} must satisfy 0 < low <= high")
    for ratio, rng in law.fitted_ratios.items():
        parts = ratio.split("/")
        if len(parts) != 2 or not set(parts) <= set(names) or parts[0] == parts[1]:
            raise LawFileError(f"{where}: fitted_ratios key {ratio!r} must be 'A/B' of two declared variables, e.g. 'D/N'")
        if not (0 < rng[0] <= rng[1]):
            raise LawFileError(f"{where}: fitted_ratios of {ratio} must satisfy 0 < low <= high")
    if law.weight_decay is not None:
        wd = law.weight_decay
        if wd.convention not in DECAY_CONVENTIONS:
            raise LawFileError(f"{where}: weight_decay convention must be one of {', '.join(DECAY_CONVENTIONS)}, got {wd.convention!r}")
        if wd.target not in targets or "lr" not in targets:
            raise LawFileError(f"{where}: the weight_decay block needs the power laws 'lr' and '{wd.target}' (its timescale)")
        if "D" not in law.power_laws[targets.index(wd.target)].exponents:
            raise LawFileError(f"{where}: the timescale law '{wd.target}' must depend on D (tau is a fraction of the run)")
    if law.loss_law is not None:
        ll = law.loss_law
        if not all(is_finite_number(x) and x > 0 for x in (ll.A, ll.B, ll.alpha, ll.beta)):
            raise LawFileError(f"{where}: loss law A, B, alpha, beta must be positive")
        if not (is_finite_number(ll.E) and ll.E >= 0):
            raise LawFileError(f"{where}: loss law E (irreducible loss) must be a number >= 0")
        problem = None if ll.covariance is None else _covariance_problem(ll.covariance, 5)
        if problem:
            raise LawFileError(f"{where}: loss law covariance {problem}")
    if not (isinstance(law.flags, list) and all(isinstance(f, str) for f in law.flags)):
        raise LawFileError(f"{where}: flags must be a list of strings")


def _validate_surge(surge: SurgeLaw, names: list[str], where: str) -> None:
    """The surge law's invariants: a known form, it predicts the lr from declared variables, finite parameters, a
    positive u."""
    if surge.form not in FORMS:
        raise LawFileError(f"{where}: the surge law's form '{surge.form}' is not one of {', '.join(FORMS)}")
    if surge.target != "lr":
        raise LawFileError(f"{where}: the surge law predicts the lr (target 'lr'), not '{surge.target}'")
    missing = [v for v in surge.inputs() if v not in names]
    if missing:
        raise LawFileError(f"{where}: the surge law uses undeclared variable(s) {missing}")
    if not all(is_finite_number(x) for x in surge.coefficients()):
        raise LawFileError(f"{where}: the surge law has a non-finite parameter")
    for key in ("intercept", "noise_intercept"):
        _check_ln(getattr(surge, key), f"{where}: {key} of the surge law")
    if not (is_finite_number(surge.tokens_per_batch_unit) and surge.tokens_per_batch_unit > 0):
        raise LawFileError(f"{where}: the surge law's tokens_per_batch_unit must be a positive number")
    problem = None if surge.covariance is None else _covariance_problem(surge.covariance, len(surge.coefficients()))
    if problem:
        raise LawFileError(f"{where}: covariance of the surge law {problem}")
    _check_scatter(surge, f"{where}: ", "of the surge law")


def _check_ln(value: float, what: str) -> None:
    """Refuse the log of a constant whose e^value no float holds: the law's coefficient would be inf or 0."""
    if abs(value) > MAX_LN:
        raise LawFileError(f"{what} is {value:.4g}, the log of a constant no float holds (e^{value:.4g}); it must lie "
                           f"within +-{MAX_LN:.0f}: check the law file (a coefficient written where its log belongs?)")


def _check_text(law: LawFile, where: str) -> None:
    """Every text field (name, target, unit, meaning, ...) of the law and its parts holds a string (or null where it
    may): a number or a list there would reach messages, sets and comparisons as the wrong type."""
    parts: list[tuple[Any, str]] = [
        (law, ""), (law.provenance, "provenance: "), *((v, f"variable {i + 1}: ") for i, v in enumerate(law.variables)),
        *((p, f"power law {i + 1}: ") for i, p in enumerate(law.power_laws)),
        *((part, f"{name}: ") for part, name in ((law.weight_decay, "weight_decay"), (law.surge, "surge")) if part is not None),
    ]
    for part, label in parts:
        for f in fields(part):
            value, optional = getattr(part, f.name), f.type == "str | None"
            if f.type in ("str", "str | None") and not (isinstance(value, str) or (optional and value is None)):
                raise LawFileError(f"{where}: {label}'{f.name}' must be a string{' or null' if optional else ''}, got "
                                   f"{_json_type(value)}")


def _check_scatter(law: PowerLaw | SurgeLaw, where: str, which: str) -> None:
    """A law's residual_variance (>= 0), dof and n_points (positive integers), each null or valid."""
    if law.residual_variance is not None and not (is_finite_number(law.residual_variance) and law.residual_variance >= 0):
        raise LawFileError(f"{where}residual_variance {which} must be a number >= 0 or null")
    for key in ("dof", "n_points"):
        value = getattr(law, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise LawFileError(f"{where}{key} {which} must be a positive integer or null")



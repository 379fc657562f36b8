"""The typed parametrization reference: what a law's per-role numbers are relative to.

A sweep writes it (from its spec), a law file carries it, `scaleplan predict` reads it to print the
per-role learning rates at a target width, and `param_groups` checks a model against it, so that a
law fitted under muP with base width 64 is never applied to a model parametrized another way (the
silent wrong answer: a mis-parametrized model still trains, just worse). This is scaleplan's
equivalent of mup's base-shape file. Pure Python: no torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from scaleplan.core.numbers import is_finite_number
from scaleplan.core.rules import OPTIMIZERS, get_parametrization
from scaleplan.errors import LawFileError, ParametrizationError

# Optimizers whose lr rules coincide (decoupled AdamW decay aside, Adam and AdamW scale lrs alike).
_LR_FAMILY = {"adam": "adam", "adamw": "adam", "sgd": "sgd"}


def momentum_problem(momentum: Any, nesterov: Any, optimizer: str) -> str | None:
    """Why SGD's (momentum, nesterov) are not valid for `optimizer`, or None: momentum in [0, 1), nesterov a bool and
    only with a momentum (torch.optim.SGD's rule), both SGD's alone (Adam's first moment is its beta1)."""
    if not is_finite_number(momentum) or not 0 <= momentum < 1:
        return f"momentum (SGD's) must be a number in [0, 1), got {momentum!r}; e.g. momentum = 0.9"
    if not isinstance(nesterov, bool):
        return f"nesterov must be true or false, got {nesterov!r}"
    if (momentum or nesterov) and optimizer != "sgd":
        return (f"momentum and nesterov are SGD's; optimizer {optimizer!r} has its own first moment (Adam's beta1): drop "
                "them or use optimizer \"sgd\"")
    if nesterov and not momentum:
        return "nesterov needs a momentum above 0 (torch.optim.SGD's rule); e.g. momentum = 0.9"
    return None


ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's and AdamW's default (beta1, beta2)


def betas_problem(betas: Any, optimizer: str) -> str | None:
    """Why Adam's `betas` are not valid for `optimizer`, or None: None (torch's default) or two numbers in [0, 1)
    (torch's rule), Adam's and AdamW's alone (SGD's first moment is its momentum)."""
    if betas is None:
        return None
    if (not isinstance(betas, (list, tuple)) or len(betas) != 2
            or not all(is_finite_number(b) and 0 <= b < 1 for b in betas)):
        return f"betas (Adam's) must be two numbers in [0, 1), got {betas!r}; e.g. betas = [0.9, 0.95]"
    if optimizer == "sgd":
        return "betas are Adam's and AdamW's; SGD's first moment is its momentum: drop them or use optimizer \"adam\" or \"adamw\""
    return None


def as_betas(betas: Any) -> tuple[float, float] | None:
    """Checked `betas` (a spec's or a law file's list) as the tuple torch takes; None stays None."""
    return None if betas is None else (float(betas[0]), float(betas[1]))


@dataclass(frozen=True)
class ParametrizationRef:
    """Parametrization name, the base shape its multipliers are relative to, optimizer and CompleteP.

    `base_width` is the width at which every multiplier is 1 (m = width / base_width); `base_depth`
    the depth at which CompleteP's depth multipliers are 1 (None without CompleteP). `momentum` and `nesterov` are
    SGD's, as the sweep trained: the optimal lr falls about as 1 - momentum, so a law's lr holds for that setting only.
    `betas` are Adam's (beta1, beta2) as the sweep trained, or None where they are not known (a published law, a user
    objective whose spec does not declare them, a study made before they were recorded): recorded and named by
    `predict`, not checked at the step (on the char-LM the optimal lr moved at most 0.18 octave between beta2 0.95
    and 0.999, benchmarks/results/adam-beta2/).
    """

    name: str
    base_width: int | None = None
    base_depth: int | None = None
    optimizer: str = "adam"
    completep: bool = False
    momentum: float = 0.0
    nesterov: bool = False
    betas: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        get_parametrization(self.name)  # unknown names fail here, with the valid ones listed
        if self.optimizer not in OPTIMIZERS:
            raise ParametrizationError(f"unknown optimizer {self.optimizer!r} in parametrization reference; valid: {', '.join(OPTIMIZERS)}")
        for key in ("base_width", "base_depth"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ParametrizationError(f"parametrization reference: {key} must be a positive integer or null, got {value!r}")
        if self.name != "sp" and self.base_width is None:
            raise ParametrizationError(
                f"parametrization reference: {self.name!r} needs base_width (the width at which its multipliers are 1)"
            )
        if self.completep and (self.name != "mup" or self.base_depth is None):
            raise ParametrizationError("parametrization reference: completep needs name 'mup' and a base_depth")
        problem = momentum_problem(self.momentum, self.nesterov, self.optimizer) or betas_problem(self.betas, self.optimizer)
        if problem is not None:
            raise ParametrizationError(f"parametrization reference: {problem}")
        object.__setattr__(self, "betas", as_betas(self.betas))

    @property
    def optimizer_setting(self) -> str:
        """'adam', 'adamw, betas 0.9/0.95', 'sgd' or 'sgd, momentum 0.9, nesterov': what the law's lrs are for (betas
        where they are not torch's default)."""
        extras = ([f"momentum {self.momentum:g}"] if self.momentum else []) + (["nesterov"] if self.nesterov else [])
        if self.betas is not None and self.betas != ADAM_BETAS:
            extras.append(f"betas {self.betas[0]:g}/{self.betas[1]:g}")
        return ", ".join([self.optimizer, *extras])

    def width_multiplier(self, width: float) -> float:
        """m = width / base_width (1 for SP, whose rules do not depend on m)."""
        if not (math.isfinite(width) and width > 0):
            raise ParametrizationError(f"width must be a positive finite number, got {width}")
        return 1.0 if self.base_width is None else width / self.base_width

    def depth_ratio(self, depth: float | None) -> float:
        """L / L_base under CompleteP; 1 otherwise (or when the depth is not known)."""
        if not self.completep or depth is None or self.base_depth is None:
            return 1.0
        return depth / self.base_depth

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the `parametrization` block of a law file); SGD's momentum and nesterov, Adam's betas only
        where set."""
        data = asdict(self)
        for key in ("momentum", "nesterov", "betas"):
            if not data[key]:
                del data[key]
        if "betas" in data:
            data["betas"] = list(data["betas"])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "parametrization") -> ParametrizationRef:
        """Parse a law file's `parametrization` block; unknown keys and bad values are one-line errors."""
        if not isinstance(data, Mapping):
            raise LawFileError(f"{origin}: 'parametrization' must be an object, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(data) - known)
        if extra:
            raise LawFileError(f"{origin}: unknown key(s) {extra} in 'parametrization' (valid: {', '.join(sorted(known))})")
        if "name" not in data:
            raise LawFileError(f"{origin}: 'parametrization' needs a 'name' (sp, mup, denseam)")
        try:
            return cls(**dict(data))
        except ParametrizationError as exc:
            raise LawFileError(f"{origin}: {exc}") from None
        except Exception as exc:  # e.g. an unknown parametrization name from get_parametrization
            raise LawFileError(f"{origin}: {exc}") from None

    def check_compatible(self, other: ParametrizationRef, what: str = "model") -> None:
        """Raise a one-line ParametrizationError when `other` (a model's reference) is not this one.

        Names, base width, CompleteP and base depth must agree; the optimizer must belong to the same
        lr family (Adam and AdamW share their lr rules, SGD does not). A model's reference does not know SGD's
        momentum: the optimizer check compares it at the step (param_groups stamps the law's).
        """
        mismatches = []
        if self.name != other.name:
            mismatches.append(f"parametrization {other.name!r} (law: {self.name!r})")
        if self.base_width is not None and other.base_width is not None and self.base_width != other.base_width:
            mismatches.append(f"base width {other.base_width} (law: {self.base_width})")
        if self.completep != other.completep:
            mismatches.append(f"completep={other.completep} (law: {self.completep})")
        elif self.completep and self.base_depth != other.base_depth:
            mismatches.append(f"base depth {other.base_depth} (law: {self.base_depth})")
        if _LR_FAMILY[self.optimizer] != _LR_FAMILY[other.optimizer]:
            mismatches.append(f"optimizer {other.optimizer!r} (law: {self.optimizer!r})")
        if mismatches:
            raise ParametrizationError(
                f"the {what} does not match the law's parametrization: {'; '.join(mismatches)}; parametrize the "
                f"model as the sweep did (apply_parametrization(model, {self.name!r}, base=<model at width "
                f"{self.base_width}>)) or use a law fitted for this setup"
            )

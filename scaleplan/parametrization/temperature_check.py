"""A DenseAM temperature site's own beta, read back after the parametrization set its multiplier.

The protocol leaves beta = beta0/N (times the site's `multiplier`) to the user's code, so a beta written otherwise (a
constant tuned at the base, hopfield-layers' 1/sqrt(N)) trains under 'denseam' without an error, its overlaps growing
with N as under SP. Where the site exposes the beta it uses (`beta`, or hopfield-layers' `scaling`) at the model and at
the base, the DenseAM rules' scaling of it is checked; a beta that is itself a learned parameter is named too (its Adam
lr is constant while beta0/N shrinks: learn beta0).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from scaleplan.core.numbers import is_finite_number
from scaleplan.core.rules import Parametrization
from scaleplan.errors import ParametrizationWarning

BETA_NAMES = ("beta", "scaling")  # the site's inverse temperature: scaleplan's DenseAM, hopfield-layers
RATIO_TOLERANCE = 1e-3  # relative error in beta / beta_base that still counts as the rules' scaling


def warn_temperatures(model: nn.Module, base_modules: dict[str, nn.Module], rules: Parametrization) -> None:
    """Warn, per temperature site whose beta can be read at the model and the base, when beta / beta_base is not the
    rules' (N / N_base)^temperature_exponent, and when beta is an nn.Parameter. Under the DenseAM rules only: there the
    site's multiplier is 1 at every size, so a `beta` read with or without it is the beta the forward uses (under SP it
    is N / N_base, and a stored beta0/N the forward multiplies by it would be read as shrinking)."""
    if rules.temperature_multiplier(2.0) != 1.0:
        return
    for name, module in model.named_modules():
        base = base_modules.get(name)
        if getattr(module, "scaleplan_site", None) != "temperature" or base is None:
            continue
        attribute, beta = _beta(module)
        where = f"{name}.{attribute}" if name else attribute
        if isinstance(beta, nn.Parameter):
            warnings.warn(
                f"{where} is a learned parameter: its Adam lr is the same at every N while the DenseAM rules "
                "shrink beta as beta0/N, so the steps move it far more at large N; learn beta0 (or log beta0) and compute "
                "beta = beta0 / features * multiplier in the forward",
                ParametrizationWarning,
                stacklevel=3,
            )
            continue
        _, base_beta = _beta(base)
        value, base_value = _number(beta), _number(base_beta)
        features, base_features = getattr(module, "features", None), getattr(base, "features", None)
        if None in (value, base_value) or not (is_finite_number(features) and is_finite_number(base_features)):
            continue
        m = float(features) / float(base_features)  # type: ignore[arg-type]
        expected = m**rules.temperature_exponent
        ratio = value / base_value  # type: ignore[operator]
        if abs(ratio / expected - 1) <= RATIO_TOLERANCE:
            continue
        grows = math.log(ratio) / math.log(m) if m != 1 and ratio > 0 else float("nan")
        warnings.warn(
            f"{where} is {value:.4g} at N = {features:g} and {base_value:.4g} at the base's N = {base_features:g}, "
            f"so beta goes as N^{grows:.3g}; under {rules.name!r} it must go as N^{rules.temperature_exponent:g} "
            f"(x{expected:.4g} here): write beta = beta0 / features * multiplier (the multiplier is what the "
            f"parametrization sets), with beta0 the same at every size (scaleplan reads the site's {attribute!r} as the "
            "inverse temperature its forward uses: if it holds beta0, name it beta0)",
            ParametrizationWarning,
            stacklevel=3,
        )


def _beta(module: nn.Module) -> tuple[str, object]:
    """The site's inverse temperature as (attribute name, value), the first of BETA_NAMES it has (None if none)."""
    for attribute in BETA_NAMES:
        value = getattr(module, attribute, None)
        if value is not None and not callable(value):
            return attribute, value
    return BETA_NAMES[0], None


def _number(value: object) -> float | None:
    """A positive finite float from a number or a one-element tensor, else None (a beta that is not one number)."""
    if isinstance(value, torch.Tensor):
        value = float(value.detach()) if value.numel() == 1 and value.device.type != "meta" else None
    return float(value) if is_finite_number(value) and float(value) > 0 else None  # type: ignore[arg-type]

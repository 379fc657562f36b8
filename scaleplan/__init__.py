"""scaleplan: hyperparameter transfer and scaling-law planning.

The top-level names are imported lazily: `from scaleplan import load_law` does not import torch;
`scaleplan.param_groups` / `scaleplan.apply_parametrization` do, on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_law": "scaleplan.laws",
    "list_laws": "scaleplan.laws",
    "LawFile": "scaleplan.laws",
    "Prediction": "scaleplan.laws",
    "ScaleplanError": "scaleplan.errors",
    "ParametrizationWarning": "scaleplan.errors",
    "parse_size": "scaleplan.plan.sizes",
    "prescribe": "scaleplan.plan.prescribe",
    "apply_parametrization": "scaleplan.parametrization",
    "param_groups": "scaleplan.parametrization",
    "attention_scale": "scaleplan.parametrization",
    "readout_multiplier": "scaleplan.parametrization",
    "calibrate_memory_eps": "scaleplan.parametrization",
    "fold_multipliers": "scaleplan.parametrization",
    "initialize": "scaleplan.parametrization",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scaleplan' has no attribute {name!r}")

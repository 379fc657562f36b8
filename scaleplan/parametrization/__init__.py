"""Parametrizations (SP, muP + CompleteP depth, DenseAM) and applying them to torch models.

`scaleplan.core.rules` is pure Python (the planner prints per-layer LRs with it);
the torch-facing names below are imported on first use, so importing this package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from scaleplan.core.rules import (
    PARAMETRIZATIONS,
    ROLES,
    Parametrization,
    RoleMultipliers,
    RoleRule,
    attention_scale,
    get_parametrization,
)

_LAZY = {
    "apply_parametrization": "scaleplan.parametrization.apply",
    "ParametrizationState": "scaleplan.parametrization.apply",
    "find_state": "scaleplan.parametrization.apply",
    "readout_multiplier": "scaleplan.parametrization.apply",
    "param_groups": "scaleplan.parametrization.groups",
    "tensor_multipliers": "scaleplan.parametrization.groups",
    "calibrate_memory_eps": "scaleplan.parametrization.memory_eps",
    "fold_multipliers": "scaleplan.parametrization.fold",
    "initialize": "scaleplan.parametrization.meta_init",
}

__all__ = ["PARAMETRIZATIONS", "ROLES", "Parametrization", "RoleMultipliers", "RoleRule", "attention_scale", "get_parametrization", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scaleplan.parametrization' has no attribute {name!r}")

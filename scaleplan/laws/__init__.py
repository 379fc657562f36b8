"""Law files: the schema, `load_law` (by shipped name or path) and the list of shipped laws."""

from __future__ import annotations

from scaleplan.laws.registry import list_laws, load_law, shipped_dir
from scaleplan.laws.schema import (
    SCHEMA_VERSION,
    Estimate,
    LawFile,
    LossLaw,
    PowerLaw,
    Prediction,
    Provenance,
    Variable,
)
from scaleplan.laws.surge import SurgeLaw

__all__ = [
    "SCHEMA_VERSION",
    "Estimate",
    "LawFile",
    "LossLaw",
    "PowerLaw",
    "Prediction",
    "Provenance",
    "SurgeLaw",
    "Variable",
    "list_laws",
    "load_law",
    "shipped_dir",
]

"""What counts as a number among scaleplan's inputs (law files, spec kwargs, API arguments): an int or a float, never
a bool (True would pass as 1), and, where it must be finite, not inf or NaN."""

from __future__ import annotations

import math
from typing import Any


def is_number(value: Any) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """An int or a float, not a bool, that is finite."""
    return is_number(value) and math.isfinite(value)

"""Parse human sizes: `7B`, `125M`, `1.5e9`, `70b`, `2T`, `300k` -> positive finite floats."""

from __future__ import annotations

import math
import re

from scaleplan.errors import InputError, ScaleplanError

SUFFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}
_SIZE = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)\s*([kmbgtp]?)\s*$", re.IGNORECASE)


def parse_size(text: str | float | int, what: str = "size", most: float | None = None) -> float:
    """`7B` -> 7e9; raises ScaleplanError naming `what` for anything not a positive finite size (at most `most`)."""
    if isinstance(text, (int, float)):
        value = float(text)
    elif str(text).strip().lower().lstrip("+-") in {"nan", "inf", "infinity"}:
        raise ScaleplanError(f"{what}: must be a finite positive number, got '{text}'")
    else:
        match = _SIZE.match(str(text))
        if not match:
            raise ScaleplanError(
                f"{what}: cannot parse '{text}' as a size (examples: 7B, 125M, 2T, 1.5e9; suffixes k M B T)"
            )
        value = float(match.group(1)) * SUFFIXES[match.group(2).lower()]
    if not math.isfinite(value):
        raise ScaleplanError(f"{what}: must be finite, got '{text}'")
    if value <= 0:
        raise ScaleplanError(f"{what}: must be positive, got '{text}'")
    if most is not None and value > most:
        raise InputError(f"{what}: {value:.3g} is above the largest value scaleplan plans for ({most:.3g})")
    return value


def format_size(value: float) -> str:
    """7e9 -> '7B', 1.3e9 -> '1.3B', 2.5e12 -> '2.5T': the inverse of parse_size for display."""
    for suffix, scale in (("P", 1e15), ("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"

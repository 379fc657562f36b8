"""Click value types shared by the commands: numbers that must be finite (click's FloatRange lets nan and inf through)."""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteFloat(click.FloatRange):
    """A float in a range that is also finite: `--band nan` or `--lr inf` is a usage error, not a crash later."""

    name = "float"  # "'x' is not a valid float."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


POSITIVE = FiniteFloat(min=0, min_open=True)
SEED = click.IntRange(min=0, max=2**32 - 1)  # numpy's and torch's seed range

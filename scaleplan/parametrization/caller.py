"""Where a warning raised inside a hook should point: the user's line that ran the model or stepped the optimizer."""

from __future__ import annotations

import os
import sys

import torch

_SKIP = (os.path.dirname(torch.__file__), os.path.dirname(__file__))


def caller_stacklevel() -> int:
    """The warnings stacklevel, seen from the function that calls warnings.warn, of the first frame outside torch
    and scaleplan.parametrization: the training loop's `opt.step()` or `model(x)`."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_SKIP):
        frame, level = frame.f_back, level + 1
    return level

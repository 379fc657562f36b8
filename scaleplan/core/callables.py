"""Import a user's function named `pkg.mod:fn` (a sweep objective, a coord-check model builder)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Callable

from scaleplan.errors import ScaleplanError


def import_callable(target: str, what: str) -> Callable[..., Any]:
    """The function `target` ("pkg.mod:fn"), importable from the working directory; one-line errors."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ScaleplanError(f"{what} '{target}' must be written 'pkg.module:function'")
    if str(Path.cwd()) not in sys.path:  # console scripts do not put the working directory on the path
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ScaleplanError(f"cannot import {what} module '{module_name}': {exc} (run from the directory that holds it)") from None
    except Exception as exc:  # the user's module fails as it runs (a syntax error, a NameError): their code, not ours
        raise ScaleplanError(f"{what} module '{module_name}' raised while importing: {type(exc).__name__}: {exc}") from None
    if not hasattr(module, attr):
        raise ScaleplanError(f"{what} '{target}': module '{module_name}' has no function '{attr}'")
    fn = getattr(module, attr)
    if not callable(fn):
        raise ScaleplanError(f"{what} '{target}': '{attr}' is not a function (it is {fn!r:.40})")
    return fn

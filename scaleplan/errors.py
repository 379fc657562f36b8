"""User-facing errors: the CLI prints them as one line and exits with code 2.

One base class, `ScaleplanError`, and a subclass per stage boundary so that callers (and tests) can
tell a bad spec from an unreachable storage or a law file that does not fit the model.
"""

from __future__ import annotations


class ScaleplanError(Exception):
    """A problem with the user's input (a spec, a size, a law file, a storage URL).

    The message is one line that names the problem and, where possible, the fix.
    """

    exit_code = 2


class InputError(ScaleplanError):
    """A command-line value or size outside what scaleplan can work with (caught before any work)."""


class SpecError(ScaleplanError):
    """A sweep spec that cannot be run: unknown keys, bad values, an impossible plan."""


class StorageError(ScaleplanError):
    """Sweep storage that cannot be opened, read or trusted (unreachable server, corrupt file)."""


class ParametrizationError(ScaleplanError):
    """A model that cannot be parametrized as asked: an unknown role, a base that does not match."""


class LawFileError(ScaleplanError):
    """A law file that is missing, malformed, or does not fit the model or question it is used for."""


class FitError(ScaleplanError):
    """Data that cannot support the fit asked for (too few points, too narrow a range, no optimum)."""


class Interrupted(ScaleplanError):
    """A run stopped by Ctrl-C or SIGTERM (not bad input): one line saying what was kept, exit 128 + the signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class ParametrizationWarning(UserWarning):
    """A parametrized model (or its optimizer) scaleplan cannot vouch for: attention or a readout it cannot reach, a
    kept init, a tied readout, a rule measured to fail, groups an optimizer lost; each names the fix."""

"""User-facing errors: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class ScaleplanError(Exception):
    """A problem with the user's input (a spec, a size, a law file, a storage URL).

    The message is one line that names the problem and, where possible, the fix.
    """

    exit_code = 2

"""Hide credentials: a password in a URL (`scheme://user:PASSWORD@host`, `?password=...`) becomes `***`.

Storage URLs carry database passwords; everything scaleplan stores (study attributes, law files) or
prints (errors, warnings, provenance) passes through `redact` first. Pure Python, no imports.
"""

from __future__ import annotations

import re

HIDDEN = "***"
# user:password@ after a scheme; the password runs to the last '@' of the token (an unescaped '@' stays hidden)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):(?P<secret>\S*)@")
_QUERY = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)(?P<secret>[^&\s]*)", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every URL password replaced by `***` (text without one comes back unchanged)."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{HIDDEN}@", text)
    return _QUERY.sub(lambda m: f"{m['head']}{HIDDEN}", text)

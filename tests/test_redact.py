"""Passwords in URLs are hidden wherever scaleplan stores or prints a URL."""

from __future__ import annotations

import pytest

from scaleplan.redact import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://sweeper:secret@db-host/scaleplan", "postgresql://sweeper:***@db-host/scaleplan"),
        ("postgresql+psycopg2://u:p@ss:w@h:5432/db", "postgresql+psycopg2://u:***@h:5432/db"),  # unescaped '@' in it
        ("postgresql://:secret@h/db", "postgresql://:***@h/db"),
        ("postgresql://h/db?sslmode=require&password=secret", "postgresql://h/db?sslmode=require&password=***"),
        ("cannot reach postgresql://a:x@h/d; or postgresql://b:y@i/e", "cannot reach postgresql://a:***@h/d; or postgresql://b:***@i/e"),
        ("postgresql://sweeper@db-host/scaleplan", "postgresql://sweeper@db-host/scaleplan"),  # no password: unchanged
        ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
        ("sweeps/mlp.journal", "sweeps/mlp.journal"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected

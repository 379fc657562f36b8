"""Running scaleplan's command line in-process, as the bad-input tests do: its exit code, its stderr, its one line."""

from __future__ import annotations

import pytest

from scaleplan.cli import main


def exit_code(argv: list[str]) -> int:
    """Run `scaleplan argv` in this process; its exit code (0 when it returns)."""
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def run_main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """(exit code, stderr) of `scaleplan argv` run in this process."""
    code = exit_code(argv)
    return code, capsys.readouterr().err


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """Assert exit 2 and one `error:` line (no internal error); return the line."""
    code, err = run_main(argv, capsys)
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "internal error" not in err, err
    return lines[0]

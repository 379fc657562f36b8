"""Where results are written: check an output path before the work, and make a failed write one line.

The rule for folders: a file named with `-o FILE` goes into a folder that exists (nothing is created
for it, so a typo never leaves new folders behind); a folder named for several outputs (`--plot DIR`,
`--out DIR`) and scaleplan's default folders (`fits/`, `coord-check/`, `benchmarks/results/`) are
created when missing, with their parents, as `mkdir -p` would.
Law files, trial exports, reports, plots, run records and the population cache all go through here, so a
missing, unwritable or misplaced output path is a `ScaleplanError` naming the path and the fix, never a
traceback, and a write is whole or absent.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scaleplan.errors import InputError


TRIALS_SUFFIXES = (".csv", ".parquet")  # the files of trials `sweep export` writes (and `fit` reads)


def _failed(path: Path, what: str, reason: str) -> InputError:
    return InputError(f"cannot write {what} to {path}: {reason}; choose a writable path")


def ensure_writable(path: str | Path, what: str, make_folder: bool = True) -> Path:
    """Check, without creating anything, that a file can be written at `path`; call before long work.

    `make_folder`: the file's folder may be missing (it is made, with its parents, on writing); without
    it (a `-o FILE` output) the folder must exist.
    """
    out = Path(path)
    if out.is_dir():
        raise _failed(out, what, "it is a directory")
    if out.exists() and not out.is_file():  # a device or a pipe (/dev/stdout): written in place, its folder untouched
        if not os.access(out, os.W_OK):
            raise _failed(out, what, "permission denied")
        return out
    folder = next(p for p in (out.parent, *out.parent.parents) if p.exists())
    if not folder.is_dir():
        raise _failed(out, what, f"{folder} is a file, not a directory")
    if folder != out.parent and not make_folder:
        raise _failed(out, what, f"folder {out.parent} does not exist (create it first)")
    if not os.access(folder, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise _failed(out, what, "permission denied")
    return out


@contextlib.contextmanager
def writing(path: str | Path, what: str, make_folder: bool = True) -> Iterator[Path]:
    """`with writing(path, "law file") as part: part.write_text(...)`: checked as `ensure_writable`, the folder made
    if allowed, the block writes a temporary file beside `path` (same suffix) that replaces it only when the block
    succeeds, so a kill or an error mid-write leaves the old file (or none), never half of the new one (a SIGKILL can
    leave the hidden `.NAME.PID.part` file); an OSError in the block is one line. An existing output that is not a
    regular file (/dev/stdout, /dev/null, a named pipe) is written to directly, never replaced."""
    out = ensure_writable(path, what, make_folder)
    real = Path(os.path.realpath(out))  # a symlinked output keeps its link: the file it points to is replaced
    if real.exists() and not real.is_file():  # /dev/stdout, /dev/null, a pipe: written to, never replaced
        try:
            yield real
        except OSError as exc:
            raise _failed(out, what, exc.strerror or str(exc)) from None
        return
    part = real.with_name(f".{real.stem}.{os.getpid()}.part{real.suffix}")
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        yield part
        if real.exists():
            os.chmod(part, stat.S_IMODE(real.stat().st_mode))  # a replaced file keeps its permissions
        os.replace(part, real)
    except OSError as exc:
        raise _failed(out, what, exc.strerror or str(exc)) from None
    finally:
        part.unlink(missing_ok=True)


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (plots are files, never windows); imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int) -> Path:
    """Write a matplotlib figure as a PNG at `path` (folder made, a failed write one line) and close it."""
    import matplotlib.pyplot as plt

    out = Path(path)
    try:
        with writing(out, "plot") as part:
            fig.savefig(part, dpi=dpi)
    finally:
        plt.close(fig)
    return out

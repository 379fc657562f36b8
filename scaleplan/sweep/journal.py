"""Journal files that survive crashes: a kernel lock that dies with its holder, and a cut-off tail set aside.

Optuna's default journal lock is a lock *file*: a worker killed while appending leaves it behind,
and every other worker then stalls 30 s (with raw warnings) before breaking it. `FlockLock` takes
an `fcntl.flock` on the journal itself instead, which the kernel drops when its holder dies.

A crash or a full disk can leave the journal's last record cut off. Optuna skips such a line when
reading but appends the next record right after it, which merges both into one invalid line that
every later read refuses: the whole study would be lost. `check_journal` (run, under the
lock, before a journal is opened) moves the bytes after the last complete record into a side file
and truncates the journal there, so the study stays readable and resumable. `CheckedBackend` numbers
the records Optuna reads, so a record it cannot replay is named by its line, and after a failed write
(a full disk) it writes nothing more: the cut-off record stays last, for `check_journal` to set aside.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from optuna.storages.journal import BaseJournalBackend, JournalFileBackend

from scaleplan.errors import StorageError

RECORD_START = b'{"op_code":'  # every Optuna journal record begins so (json.dumps of {"op_code": ..., ...})
_CHUNK = 1 << 16


class FlockLock:
    """An exclusive `flock` on the journal file: released by the kernel if the holding process dies.

    `JournalFileBackend(path, lock_obj=FlockLock(path))` calls only `acquire` and `release` (Optuna's lock
    base class is not public, so this follows its interface without deriving from it).
    """

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._thread_lock = threading.Lock()  # one holder per process at a time: `_fd` is shared state
        self._fd: int | None = None

    def acquire(self) -> bool:
        self._thread_lock.acquire()
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            self._thread_lock.release()
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        finally:
            self._thread_lock.release()


class CheckedBackend(BaseJournalBackend):
    """Optuna's journal file backend (with a `FlockLock`) that names a bad record by its line and stops writing
    after a failed write, each as a one-line StorageError."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file = JournalFileBackend(str(path), lock_obj=FlockLock(path))  # type: ignore[arg-type]  # see FlockLock
        self._write_failure: StorageError | None = None
        self.line = 0  # the line (1-based) of the last record read

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        self.line = log_number_from
        try:
            for record in self._file.read_logs(log_number_from):
                self.line += 1
                yield record
        except ValueError as exc:  # not JSON: Optuna raises it on reading the line after the bad one
            raise bad_record(self._path, self.line + 1, exc) from None
        except OSError as exc:
            raise StorageError(f"cannot read the journal {self._path}: {exc.strerror or exc}") from None

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if self._write_failure is not None:  # a partial record may end the file: appending would merge into it
            raise self._write_failure
        try:
            self._file.append_logs(logs)
        except OSError as exc:
            self._write_failure = write_failure(self._path, exc)
            raise self._write_failure from None


def bad_record(path: Path, line: int, exc: Exception) -> StorageError:
    """The error for the record at `line` that is not JSON or that Optuna cannot replay; the file is left as it is."""
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:120]
    return StorageError(
        f"{path}, line {line}: not a valid Optuna journal record ({reason}); the file is unchanged - "
        "repair or remove that line (keep a copy of the file first), or point --storage at a new path"
    )


def write_failure(path: Path, exc: OSError) -> StorageError:
    """A failed journal write as one line: the records before it are whole (`check_journal` sets a cut-off one aside)."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return StorageError(
        f"cannot write to the sweep journal {path}: {exc.strerror or exc}{' (disk full?)' if full else ''}; the finished "
        f"trials are kept - {'free some space' if full else 'fix that'} and re-run the same command to resume"
    )


def check_journal(path: Path) -> Path | None:
    """Refuse a file that is not an Optuna journal; move a cut-off last record into a side file (returned).

    A non-empty file that does not begin like a journal is refused untouched: Optuna would read one
    without a newline as an empty journal and append to it.
    """
    if not path.is_file():
        return None
    lock = FlockLock(path)
    lock.acquire()
    try:
        with open(path, "rb+") as handle:
            head = handle.read(len(RECORD_START))
            if head and head != RECORD_START[: len(head)]:
                raise StorageError(
                    f"{path} is not an Optuna journal file (it does not begin with a journal record); "
                    "point --storage at the sweep's .journal file or a new path"
                )
            size = handle.seek(0, os.SEEK_END)
            end = _after_last_newline(handle, size)
            _check_last_record(path, handle, end)
            if end == size:
                return None
            handle.seek(end)
            tail = handle.read()
            side = _side_file(path)
            try:
                with open(side, "xb") as out:  # never overwrites: a new name each time
                    out.write(tail)
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as exc:  # e.g. the disk is still full: change nothing
                side.unlink(missing_ok=True)
                raise StorageError(
                    f"{path}: its last record was cut off, and setting it aside in {side.name} failed "
                    f"({exc.strerror or exc}); free some space and re-run"
                ) from None
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        lock.release()
    warnings.warn(
        f"{path}: its last record was cut off (a crash or a full disk); moved the {len(tail)} partial bytes to "
        f"{side.name} and kept the {end} bytes of complete records (a trial it was recording will be re-run)",
        stacklevel=2,
    )
    return side


def _after_last_newline(handle: BinaryIO, size: int) -> int:
    """Offset just past the last b'\\n' of the file (0 when it has none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - _CHUNK)
        handle.seek(start)
        index = handle.read(pos - start).rfind(b"\n")
        if index >= 0:
            return start + index + 1
        pos = start
    return 0


def _check_last_record(path: Path, handle: BinaryIO, end: int) -> None:
    """Refuse a journal whose last complete line (ending at `end`) is not JSON: Optuna would skip it, then fail on
    it once a record follows."""
    if end == 0:
        return
    start = _after_last_newline(handle, end - 1)
    handle.seek(start)
    try:
        json.loads(handle.read(end - start))
    except ValueError as exc:
        raise bad_record(path, _line_at(handle, start), exc) from None


def _line_at(handle: BinaryIO, offset: int) -> int:
    """The line number (1-based) of the line that begins at byte `offset`."""
    handle.seek(0)
    line = 1
    while handle.tell() < offset:
        line += handle.read(min(_CHUNK, offset - handle.tell())).count(b"\n")
    return line


def _side_file(path: Path) -> Path:
    """`sweep.journal.partial-20261126T101500` (a counter appended if that exists already)."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    candidate = path.with_name(f"{path.name}.partial-{stamp}")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.partial-{stamp}-{n}")
        n += 1
    return candidate

"""Optuna storage for sweeps: resolve where a study lives, open it, and lock it for bookkeeping.

Local default: a journal file next to the spec (~3 ms/trial); `*.db` or `sqlite:///` gives SQLite;
`postgresql://` gives Optuna's RDB storage for workers on many machines. The lock serializes the
short plan bookkeeping (enqueue missing slots, fail stale trials) across all workers of a study.
Creating Optuna's tables in a new SQLite or PostgreSQL database is serialized the same way.
A relative `--storage` path is relative to the current directory, like any path on a command line;
the spec's `storage` key (and the default) is relative to the spec's folder.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from scaleplan.errors import ScaleplanError, StorageError
from scaleplan.redact import redact

if TYPE_CHECKING:
    import optuna
    import sqlalchemy

    from scaleplan.sweep.spec import SweepSpec

JOURNAL_SUFFIXES = (".journal", ".log")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
CONNECT_TIMEOUT_S = 10
SCHEMA_LOCK_KEY = zlib.crc32(b"scaleplan:optuna-schema")  # serializes creating Optuna's tables in a new database


@dataclass(frozen=True)
class StorageTarget:
    """A resolved storage: kind ('journal' | 'sqlite' | 'postgresql'), the URL, and the local file if any."""

    kind: str
    url: str
    path: Path | None = None

    def display(self) -> str:
        """The URL with any password hidden, for messages and logs."""
        return redact(self.url)


def resolve_storage(url: str | None, spec: SweepSpec | None = None) -> StorageTarget:
    """Turn `--storage`, the spec's `storage` key or the default (sweeps/<name>.journal) into a target.

    A relative path is relative to where it is written: a `--storage` (`url`) to the current directory, the
    spec's `storage` key and the default to the spec's folder.
    """
    base = Path.cwd()
    if url is None and spec is not None:
        url = spec.storage
        base = spec.path.parent if spec.path is not None else base
    if url is None:
        if spec is None:
            raise ScaleplanError("no storage given: pass a sweep spec or --storage URL")
        path = base / f"{spec.name}.journal"
        return StorageTarget("journal", str(path), path)
    if url.startswith(("postgresql://", "postgresql+", "postgres://")):
        return StorageTarget("postgresql", _checked_url(_with_driver(url)))
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        path = path if path.is_absolute() else base / path
        return StorageTarget("sqlite", f"sqlite:///{path}", path)
    if url.startswith("journal:///"):
        url = url[len("journal:///") :]
    elif "://" in url:
        scheme = url.split("://")[0]
        raise ScaleplanError(
            f"unsupported storage scheme '{scheme}://': use a .journal or .db file path, sqlite:///FILE or postgresql://USER:PASS@HOST/DB"
        )
    path = Path(url)
    path = path if path.is_absolute() else base / path
    if path.suffix in SQLITE_SUFFIXES:
        return StorageTarget("sqlite", f"sqlite:///{path}", path)
    if path.suffix in JOURNAL_SUFFIXES:
        return StorageTarget("journal", str(path), path)
    raise ScaleplanError(
        f"storage file '{url}' must end in .journal (journal file) or .db (SQLite), or be a postgresql:// URL"
    )


def _checked_url(url: str) -> str:
    """The URL unchanged if SQLAlchemy can parse it; else a one-line error (a bad port, stray colons)."""
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        make_url(url)
    except (ValueError, sqlalchemy.exc.ArgumentError) as exc:
        raise ScaleplanError(
            f"malformed storage URL: {exc} (expected postgresql://USER:PASS@HOST[:PORT]/DB with a numeric port)"
        ) from None
    return url


def _with_driver(url: str) -> str:
    """Name an installed PostgreSQL driver: psycopg 3 (what `scaleplan[postgres]` installs, and SQLAlchemy 2.1's
    default, so plain URLs also work in optuna-dashboard), else psycopg2 (SQLAlchemy 2.0's default)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if not url.startswith("postgresql://"):
        return url  # the user named a driver
    for driver in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(driver) is not None:
            return f"postgresql+{driver}://" + url[len("postgresql://") :]
    raise ScaleplanError("postgresql storage needs a driver: `pip install 'scaleplan[postgres]'` (psycopg 3)")


def open_storage(target: StorageTarget) -> optuna.storages.BaseStorage:
    """Open (creating if needed) the Optuna storage; an unreachable server or bad path is one line."""
    import optuna
    import sqlalchemy.exc

    if target.path is not None and not target.path.parent.is_dir():
        raise ScaleplanError(f"storage directory does not exist: {target.path.parent} (create it or choose another --storage)")
    if target.path is not None and target.path.is_dir():
        raise StorageError(f"storage {target.path} is a directory; point --storage at a file in it, e.g. {target.path / 'sweep'}{target.path.suffix}")
    if target.kind == "journal":
        assert target.path is not None, "a journal target has its file (resolve_storage)"
        return _open_journal(target.path)
    engine_kwargs: dict[str, object] = {}
    if target.kind == "postgresql":
        engine_kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    try:
        # Optuna creates its tables, version row and alembic stamp without a lock: workers meeting an empty
        # database together collide ("table studies already exists", "duplicate key ... pg_type_typname_nsp_index"),
        # so they take turns: under a file lock for a SQLite file, a PostgreSQL advisory lock otherwise.
        if target.path is not None:
            with _sqlite_schema_lock(target.path):
                return optuna.storages.RDBStorage(target.url, engine_kwargs=engine_kwargs)
        lock_engine = sqlalchemy.create_engine(target.url, **engine_kwargs)
        try:
            with _advisory_lock(lock_engine, SCHEMA_LOCK_KEY):
                return optuna.storages.RDBStorage(target.url, engine_kwargs=engine_kwargs)
        finally:
            lock_engine.dispose()
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
        reason = " ".join(str(getattr(exc, "orig", exc)).split())[:200]
        hint = "is the server running and the URL right?" if target.kind == "postgresql" else "can this user read and write that file and folder?"
        raise ScaleplanError(f"cannot reach storage {target.display()}: {reason} ({hint})") from None
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
        raise ScaleplanError(f"bad storage URL {target.display()}: {exc} (postgresql needs `pip install 'scaleplan[postgres]'`)") from None
    except sqlalchemy.exc.DatabaseError as exc:  # after OperationalError, its subclass: e.g. a file that is not SQLite
        reason = " ".join(str(getattr(exc, "orig", exc)).split())[:200]
        raise ScaleplanError(f"cannot use storage {target.display()}: {reason} (point --storage at a new file or an Optuna database)") from None


def readable(target: StorageTarget) -> StorageTarget:
    """`target` to read a study from: a journal this user cannot write (a colleague's, a read-only mount) as a private
    copy, since Optuna opens a journal for writing (status, export and fit only read; the original is untouched)."""
    path = target.path
    if target.kind != "journal" or path is None or (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        return target
    folder = tempfile.mkdtemp(prefix="scaleplan-readonly-")
    atexit.register(shutil.rmtree, folder, True)
    try:
        copy = Path(shutil.copyfile(path, Path(folder) / path.name))
    except OSError as exc:
        raise StorageError(f"cannot read journal storage {path}: {exc.strerror or exc}") from None
    return dataclasses.replace(target, path=copy)


def _open_journal(path: Path) -> optuna.storages.BaseStorage:
    """Open a journal file (setting a cut-off last record aside); a record Optuna cannot replay is named by its line."""
    from optuna.storages.journal import JournalStorage

    from scaleplan.sweep.journal import CheckedBackend, bad_record, check_journal

    try:
        check_journal(path)
        backend = CheckedBackend(path)
    except OSError as exc:
        raise StorageError(f"cannot open journal storage {path}: {exc.strerror or exc}") from None
    try:
        return JournalStorage(backend)
    except (KeyError, TypeError, ValueError, AssertionError, IndexError, AttributeError) as exc:  # a record that does not replay
        raise bad_record(path, backend.line, exc) from None


@contextlib.contextmanager
def database_failures(target: StorageTarget) -> Iterator[None]:
    """Turn a database that fails mid-sweep (a full disk, a lost server) into one line: its transactions either
    committed or rolled back, so finished trials are kept and a re-run resumes."""
    import optuna
    import sqlalchemy.exc

    try:
        yield
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
        cause = exc.__cause__ or exc
        reason = " ".join(str(getattr(cause, "orig", cause)).split())[:200]
        raise StorageError(f"storage {target.display()} failed: {reason}; the finished trials are kept - free some space "
                           "or fix the server, then re-run the same command to resume") from None


@contextlib.contextmanager
def storage_lock(target: StorageTarget, storage: optuna.storages.BaseStorage, study_name: str) -> Iterator[None]:
    """Hold an exclusive lock for `study_name`: a file lock beside a local file, a PostgreSQL advisory lock."""
    if target.path is not None:
        with _file_lock(target.path.with_name(target.path.name + ".plan-lock"), target):  # not ".lock": Optuna's journal lock
            yield
        return
    with _advisory_lock(storage.engine, zlib.crc32(f"scaleplan:{study_name}".encode())):  # type: ignore[attr-defined]
        yield


@contextlib.contextmanager
def _file_lock(lock_path: Path, target: StorageTarget) -> Iterator[None]:
    """An exclusive flock on `lock_path` beside the storage file `target`."""
    try:
        handle = open(lock_path, "a+")
    except OSError as exc:  # a read-only folder or lock file: the storage cannot be written either
        raise StorageError(f"cannot open the lock file {lock_path} of storage {target.display()}: "
                           f"{exc.strerror or exc} (can this user write that folder and file?)") from None
    with _flocked(handle):
        yield


@contextlib.contextmanager
def _sqlite_schema_lock(database: Path) -> Iterator[None]:
    """An exclusive flock on a file in the temporary directory named by the database's real path, so processes
    creating a new SQLite file's tables take turns (SQLite is one machine's) and nothing is left beside the user's
    files, even when the storage turns out unusable. A lock file this user cannot open (another user's) is skipped:
    the race it prevents is between one user's workers."""
    name = hashlib.sha256(str(database.resolve()).encode()).hexdigest()[:16]
    try:
        handle = open(Path(tempfile.gettempdir()) / f"scaleplan-sqlite-{name}.lock", "a+")
    except OSError:
        handle = None
    with _flocked(handle) if handle is not None else contextlib.nullcontext():
        yield


@contextlib.contextmanager
def _flocked(handle: IO[str]) -> Iterator[None]:
    """Hold an exclusive flock on an open file, closing it after (the kernel drops the lock if the process dies)."""
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _advisory_lock(engine: sqlalchemy.engine.Engine, key: int) -> Iterator[None]:
    """A PostgreSQL session-level advisory lock on its own connection (released if the process dies)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()

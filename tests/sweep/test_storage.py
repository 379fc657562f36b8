"""Sweep storage: where a study lives by default, URL forms, unreachable servers, the plan lock."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import pytest

from scaleplan.errors import ScaleplanError
from scaleplan.sweep.spec import parse_spec
from scaleplan.sweep.storage import open_storage, resolve_storage, storage_lock


def make_spec(tmp_path: Path, storage: str | None = None):
    sweep = {"name": "toy", **({"storage": storage} if storage else {})}
    raw = {"sweep": sweep, "ladder": {"widths": [8], "steps": [1]}, "search": {"lr": [0.1]}, "objective": {"callable": "m:f"}}
    return parse_spec(raw, path=tmp_path / "toy.toml")


@pytest.mark.parametrize(
    ("url", "kind", "expected"),
    [
        (None, "journal", "{spec}/toy.journal"),
        ("other.journal", "journal", "{cwd}/other.journal"),
        ("/abs/x.log", "journal", "/abs/x.log"),
        ("journal:////abs/y.journal", "journal", "/abs/y.journal"),
        ("journal:///rel.journal", "journal", "{cwd}/rel.journal"),
        ("runs.db", "sqlite", "sqlite:///{cwd}/runs.db"),
        ("sqlite:///rel.db", "sqlite", "sqlite:///{cwd}/rel.db"),
        ("postgresql://u:p@h/db", "postgresql", "postgresql+psycopg://u:p@h/db"),
        ("postgres://u:p@h/db", "postgresql", "postgresql+psycopg://u:p@h/db"),
        ("postgresql+psycopg2://u:p@h/db", "postgresql", "postgresql+psycopg2://u:p@h/db"),
    ],
)
def test_resolve_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str | None, kind: str, expected: str) -> None:
    """A relative --storage is relative to the current directory (with or without a spec); the default to the spec's folder."""
    spec_dir, cwd = tmp_path / "sweeps", tmp_path / "here"
    spec_dir.mkdir(), cwd.mkdir()
    monkeypatch.chdir(cwd)
    target = resolve_storage(url, make_spec(spec_dir))
    assert (target.kind, target.url) == (kind, expected.format(spec=spec_dir, cwd=cwd))
    if url is not None:
        assert resolve_storage(url).url == target.url  # the same file as `sweep status --storage URL` without a spec


@pytest.mark.parametrize(
    ("installed", "expected"),
    [({"psycopg", "psycopg2"}, "postgresql+psycopg://"), ({"psycopg"}, "postgresql+psycopg://"),
     ({"psycopg2"}, "postgresql+psycopg2://"), (set(), None)],
)
def test_driver_resolution_works_with_either_driver(monkeypatch: pytest.MonkeyPatch, installed: set, expected: str | None) -> None:
    import importlib.machinery
    import importlib.util

    real = importlib.util.find_spec
    fake = importlib.machinery.ModuleSpec("driver", None)  # resolution asks only whether a driver is importable
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (fake if name in installed else None) if name.startswith("psycopg") else real(name, *a))
    if expected is None:
        with pytest.raises(ScaleplanError, match="postgresql storage needs a driver"):
            resolve_storage("postgresql://u:p@h/db")
    else:
        assert resolve_storage("postgresql://u:p@h/db").url == f"{expected}u:p@h/db"


def test_spec_storage_key_is_relative_to_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    assert resolve_storage(None, make_spec(tmp_path, "s.db")).url == f"sqlite:///{tmp_path}/s.db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost", "unsupported storage scheme 'redis://'"),
        ("trials.txt", "must end in .journal (journal file) or .db (SQLite)"),
        ("postgresql://u:p@host:port/db", "malformed storage URL"),
        ("postgresql://::::", "malformed storage URL"),
    ],
)
def test_bad_storage_urls(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(ScaleplanError, match=re.escape(message)):
        resolve_storage(url, make_spec(tmp_path))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_postgres_is_one_line() -> None:
    target = resolve_storage(f"postgresql://u:secret@127.0.0.1:{_closed_port()}/db")
    with pytest.raises(ScaleplanError) as info:
        open_storage(target)
    text = str(info.value)
    assert text.startswith("cannot reach storage postgresql+psycopg://u:***@127.0.0.1") and "secret" not in text
    assert "\n" not in text


def test_file_that_is_not_sqlite_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("not a database")
    with pytest.raises(ScaleplanError, match=r"cannot use storage sqlite:///.*notes\.db: file is not a database"):
        open_storage(resolve_storage(None, make_spec(tmp_path, "notes.db")))


def test_file_that_is_not_a_journal_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.journal").write_text("my notes\n{not json\n")
    with pytest.raises(ScaleplanError, match=r"notes\.journal is not an Optuna journal file"):
        open_storage(resolve_storage(None, make_spec(tmp_path, "notes.journal")))


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ScaleplanError, match="storage directory does not exist"):
        open_storage(resolve_storage(str(tmp_path / "absent" / "x.journal")))


@pytest.mark.parametrize("name", ["s.journal", "s.db"])
def test_file_lock_excludes(tmp_path: Path, name: str) -> None:
    target = resolve_storage(str(tmp_path / name))
    storage = open_storage(target)
    events: list[str] = []

    def hold() -> None:
        with storage_lock(target, storage, "toy"):
            events.append("second")

    with storage_lock(target, storage, "toy"):
        other = threading.Thread(target=hold)
        other.start()
        time.sleep(0.2)
        events.append("first")
    other.join(5)
    assert events == ["first", "second"]


@pytest.mark.parametrize("name", ["s.journal", "s.db"])
def test_a_lock_file_that_cannot_be_opened_is_one_line(tmp_path: Path, name: str) -> None:
    """Before: a read-only folder or lock file beside an existing storage was `internal error: PermissionError` (exit 1).
    Root may write anything, so the lock's path is a folder here, which nobody can open as a file."""
    target = resolve_storage(str(tmp_path / name))
    storage = open_storage(target)
    (tmp_path / f"{name}.plan-lock").mkdir()
    with pytest.raises(ScaleplanError, match=rf"cannot open the lock file .*{name}\.plan-lock of storage .*: Is a directory"):
        with storage_lock(target, storage, "toy"):
            pass


def test_a_journal_this_user_cannot_write_is_read_from_a_private_copy(tmp_path: Path) -> None:
    """status, export and fit of a colleague's sweep on a read-only mount: Optuna opens a journal for writing, so they
    failed with 'Operation not permitted'; they read a copy now, and the journal stays untouched."""
    import shutil
    import subprocess

    from scaleplan.sweep.export import open_study_readonly
    from scaleplan.sweep.runner import run_sweep
    from scaleplan.sweep.spec import load_spec

    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    folder = tmp_path / "shared"
    folder.mkdir()
    spec = folder / "toy.toml"
    spec.write_text('[sweep]\nname = "toy"\nsampler = "grid"\n[ladder]\nwidths = [8, 16]\nsteps = [10]\n[search]\n'
                    'lr = [1e-3, 1e-2]\nbatch_size = [4]\n[objective]\ncallable = "sweep_objectives:quadratic"\n')
    run_sweep(load_spec(spec))
    journal = folder / "toy.journal"
    before = journal.read_bytes()
    if subprocess.run(["chattr", "+i", str(journal), str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot make files immutable here (chattr +i needs CAP_LINUX_IMMUTABLE)")
    try:
        with pytest.raises(ScaleplanError, match="Operation not permitted"):  # what reading it directly meets
            open_storage(resolve_storage(None, load_spec(spec)))
        study = open_study_readonly(load_spec(spec))
        assert len(study.get_trials()) == 4 and journal.read_bytes() == before
    finally:
        subprocess.run(["chattr", "-i", str(journal), str(folder)], check=True)


def _open_after(barrier, path: str, errors) -> None:
    """One process of the race below: wait for the others, then open the storage."""
    barrier.wait()
    try:
        open_storage(resolve_storage(path))
    except Exception as exc:  # noqa: BLE001 - reported to the test, which names it
        errors.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_fresh_sqlite_file_together_all_succeed(tmp_path: Path) -> None:
    """Before: Optuna created its tables unlocked, and one of two sweeps started together on a new SQLite file failed
    about one time in three ("table studies already exists", "UNIQUE constraint failed: alembic_version"); without
    the lock, three processes collided in 8 of 9 attempts here, so three attempts all but always catch it."""
    import multiprocessing

    import optuna.storages  # noqa: F401 - imported once here, not in every forked process

    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    for attempt in range(3):
        barrier = context.Barrier(3)
        path = str(tmp_path / f"race{attempt}.db")
        workers = [context.Process(target=_open_after, args=(barrier, path, errors)) for _ in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert [worker.exitcode for worker in workers] == [0] * 3
    assert [errors.get(timeout=5) for _ in range(errors.qsize())] == []


def test_the_sqlite_schema_lock_leaves_nothing_beside_the_database(tmp_path: Path) -> None:
    """The lock lives in the temporary directory: a fresh database's folder holds the database alone, and a file that is
    no database (bad input) gets nothing beside it."""
    folder = tmp_path / "shared"
    folder.mkdir()
    open_storage(resolve_storage(str(folder / "s.db")))
    assert sorted(p.name for p in folder.iterdir()) == ["s.db"]

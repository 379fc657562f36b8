"""A fresh PostgreSQL database per test (or per benchmark repetition), dropped afterwards.

A sweep's first workers meet an empty database; a shared test database that earlier runs already
filled with Optuna's tables hides every race of that first start, so the distributed tests make a
new database each time from the server named by SCALEPLAN_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

URL_ENV = "SCALEPLAN_TEST_POSTGRES_URL"
PREFIX = "scaleplan_t_"
TESTS = Path(__file__).resolve().parent


def admin_url() -> str | None:
    """The test server's URL (its database is used only to create and drop the fresh ones)."""
    return os.environ.get(URL_ENV)


@contextlib.contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """Create an empty, uniquely named database on `url`'s server; yield its URL; drop it (forcibly) after."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from scaleplan.sweep.storage import resolve_storage

    admin = make_url(resolve_storage(url).url)
    name = f"{PREFIX}{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(url).set(database=name).render_as_string(hide_password=False)
        finally:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


SPEC = """
[sweep]
name = "{name}"
sampler = "tpe"
trials_per_point = 5
[ladder]
widths = [8, 16]
steps = [10, 20]
[search]
lr = {{low = 1e-4, high = 1e-1}}
batch_size = [4]
[objective]
callable = "sweep_objectives:slow_logged"
"""
PLANNED_SLOTS = [f"w{w}-s{s}-b4-seed0#{i}" for w in (8, 16) for s in (10, 20) for i in range(5)]


@dataclass(frozen=True)
class WorkersRun:
    """What N workers started together left: exit codes, stderr, COMPLETE trials per slot, objective calls."""

    returncodes: list[int]
    stdout: list[str]
    stderr: list[str]
    complete_slots: Counter[str]
    calls: int

    @property
    def started(self) -> int:
        """Workers that ran to a clean exit (a worker that dies at start exits non-zero)."""
        return sum(rc == 0 for rc in self.returncodes)

    @property
    def exactly_once(self) -> bool:
        """Every planned trial COMPLETE exactly once, and the objective called once per planned trial."""
        return self.complete_slots == Counter(PLANNED_SLOTS) and self.calls == len(PLANNED_SLOTS)


def run_workers(url: str, folder: Path, workers: int = 4, sleep_s: float = 0.05) -> WorkersRun:
    """Start `workers` `scaleplan sweep` processes at the same instant on one study of `url`; wait for all."""
    from scaleplan.sweep.export import load_trials

    spec = folder / "pg.toml"
    spec.write_text(SPEC.format(name=f"pg-{uuid.uuid4().hex[:8]}"))
    log = folder / "calls.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")]),
           "SWEEP_TEST_LOG": str(log), "SWEEP_TEST_SLEEP": str(sleep_s)}
    command = [sys.executable, "-m", "scaleplan.cli", "sweep", str(spec), "--storage", url]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(workers)]
    outputs = [p.communicate(timeout=300) for p in procs]
    frame = load_trials(spec, storage=url)
    complete = Counter(frame.loc[frame["state"] == "COMPLETE", "slot"])
    calls = len(log.read_text().splitlines()) if log.exists() else 0
    return WorkersRun([p.returncode for p in procs], [o for o, _ in outputs], [e for _, e in outputs], complete, calls)

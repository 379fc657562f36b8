"""PostgreSQL storage: four workers on one study record every planned trial exactly once.

Needs a server: SCALEPLAN_TEST_POSTGRES_URL=postgresql://USER:PASS@127.0.0.1:5432/scaleplan_test
(.ci/run starts one from Debian's packages); skipped when unset.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from scaleplan.sweep.export import load_trials
from scaleplan.sweep.storage import open_storage, resolve_storage

URL = os.environ.get("SCALEPLAN_TEST_POSTGRES_URL")
TESTS = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not URL, reason="SCALEPLAN_TEST_POSTGRES_URL is not set")]


@pytest.fixture
def study_name() -> str:
    name = f"pg-test-{uuid.uuid4().hex[:8]}"
    yield name
    storage = open_storage(resolve_storage(URL))
    if name in [s.study_name for s in storage.get_all_studies()]:
        optuna.delete_study(study_name=name, storage=storage)


def test_four_workers_share_one_study(tmp_path: Path, study_name: str) -> None:
    spec = tmp_path / "pg.toml"
    spec.write_text(f"""
[sweep]
name = "{study_name}"
sampler = "tpe"
trials_per_point = 5
[ladder]
widths = [8, 16]
steps = [10, 20]
[search]
lr = {{low = 1e-4, high = 1e-1}}
batch_size = [4]
[objective]
callable = "sweep_objectives:quadratic"
""")
    env = {**os.environ, "PYTHONPATH": f"{TESTS}:{TESTS.parent}"}
    command = [sys.executable, "-m", "scaleplan.cli", "sweep", str(spec), "--storage", URL]
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0, 0], [err for _, err in outputs]
    frame = load_trials(spec, storage=URL)
    assert frame["state"].tolist() == ["COMPLETE"] * 20
    assert Counter(frame["slot"]) == {f"w{w}-s{s}-b4-seed0#{i}": 1 for w in (8, 16) for s in (10, 20) for i in range(5)}
    assert Counter(frame["point"]) == {f"w{w}-s{s}-b4-seed0": 5 for w in (8, 16) for s in (10, 20)}
    # a worker that stops while others still run says so; the last one sees the whole plan done
    assert "20/20 planned trials complete" in [out.strip() for out, _ in outputs]


def test_rerun_on_postgres_repeats_nothing(tmp_path: Path, study_name: str) -> None:
    from scaleplan.sweep.runner import RunSummary, run_sweep
    from scaleplan.sweep.spec import load_spec

    spec = tmp_path / "pg.toml"
    spec.write_text(f"""
[sweep]
name = "{study_name}"
sampler = "grid"
[ladder]
widths = [8]
steps = [10]
[search]
lr = [1e-3, 1e-2, 1e-1]
[objective]
callable = "sweep_objectives:quadratic"
""")
    assert run_sweep(load_spec(spec), URL, max_trials=2) == RunSummary(2, 3, 0)
    assert run_sweep(load_spec(spec), URL) == RunSummary(3, 3, 0)
    trials = optuna.load_study(study_name=study_name, storage=open_storage(resolve_storage(URL))).get_trials()
    assert sorted(t.params["lr"] for t in trials if t.state == TrialState.COMPLETE) == [1e-3, 1e-2, 1e-1]
    assert len(trials) == 3


@pytest.fixture
def fresh_database() -> str:
    """A new, empty PostgreSQL database (h12_<random>) on the test server, dropped afterwards: its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(resolve_storage(URL).url)
    name = f"h12_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    open_storage(resolve_storage(url)).engine.dispose()  # Optuna's tables, before 4 workers race to create them
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


ADAPTIVE_SPEC = """
[sweep]
name = "adaptive-pg"
sampler = "adaptive"
seeds = [0, 1]
[ladder]
widths = [8, 16, 32]
steps = [10, 20]
[search]
lr = {low = 1e-5, high = 1e-1}
batch_size = [4]
[objective]
callable = "sweep_objectives:quadratic"
"""


def test_four_workers_run_every_adaptive_proposal_once(tmp_path: Path, fresh_database: str) -> None:
    """4 workers on one adaptive study: each proposal once, and the same proposals as one worker alone."""
    spec = tmp_path / "a.toml"
    spec.write_text(ADAPTIVE_SPEC)
    alone = tmp_path / "alone.journal"
    env = {**os.environ, "PYTHONPATH": f"{TESTS}:{TESTS.parent}"}
    single = subprocess.run([sys.executable, "-m", "scaleplan.cli", "sweep", str(spec), "--storage", str(alone)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr
    command = [sys.executable, "-m", "scaleplan.cli", "sweep", str(spec), "--storage", fresh_database]
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [w.communicate(timeout=180) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0, 0], [err for _, err in outputs]
    shared, reference = load_trials(spec, storage=fresh_database), load_trials(spec, storage=str(alone))
    assert set(shared["state"]) == {"COMPLETE"} and shared["slot"].is_unique
    lrs = lambda frame: dict(zip(frame["slot"], frame["lr"]))  # noqa: E731
    assert lrs(shared).keys() == lrs(reference).keys()
    assert all(lrs(shared)[k] == pytest.approx(lrs(reference)[k], rel=1e-12) for k in lrs(shared))
    n = len(shared)
    assert f"{n}/{n} planned trials complete" in [out.strip() for out, _ in outputs]

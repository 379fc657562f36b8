"""PostgreSQL storage, on a fresh database per test: four workers started together on an empty
database all start and record every planned trial exactly once; a re-run repeats nothing.

Needs a server where the user may CREATE DATABASE: SCALEPLAN_TEST_POSTGRES_URL=postgresql://USER:PASS@
127.0.0.1:5432/scaleplan_test (.ci/run starts one from Debian's packages); skipped when unset.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from postgres_db import PLANNED_SLOTS, admin_url, fresh_database, run_workers
from scaleplan.sweep.export import load_trials
from scaleplan.sweep.storage import open_storage, resolve_storage

URL = admin_url()
TESTS = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not URL, reason="SCALEPLAN_TEST_POSTGRES_URL is not set")]


@pytest.fixture
def fresh_url() -> Iterator[str]:
    assert URL is not None
    with fresh_database(URL) as url:
        yield url


def test_four_workers_started_together_on_a_fresh_database(tmp_path: Path, fresh_url: str) -> None:
    run = run_workers(fresh_url, tmp_path, workers=4)
    assert run.returncodes == [0, 0, 0, 0], run.stderr
    assert run.complete_slots == {slot: 1 for slot in PLANNED_SLOTS}
    assert run.calls == len(PLANNED_SLOTS)  # the objective ran once per planned trial, none twice
    # a worker that stops while others still run says so; the last one sees the whole plan done
    assert "20/20 planned trials complete" in [out.strip() for out in run.stdout]


def test_rerun_on_postgres_repeats_nothing(tmp_path: Path, fresh_url: str) -> None:
    from scaleplan.sweep.runner import RunSummary, run_sweep
    from scaleplan.sweep.spec import load_spec

    spec = tmp_path / "pg.toml"
    spec.write_text("""
[sweep]
name = "rerun"
sampler = "grid"
[ladder]
widths = [8]
steps = [10]
[search]
lr = [1e-3, 1e-2, 1e-1]
[objective]
callable = "sweep_objectives:quadratic"
""")
    assert run_sweep(load_spec(spec), fresh_url, max_trials=2) == RunSummary(2, 3, 0)
    assert run_sweep(load_spec(spec), fresh_url) == RunSummary(3, 3, 0)
    trials = optuna.load_study(study_name="rerun", storage=open_storage(resolve_storage(fresh_url))).get_trials()
    assert sorted(t.params["lr"] for t in trials if t.state == TrialState.COMPLETE) == [1e-3, 1e-2, 1e-1]
    assert len(trials) == 3


def test_fit_reads_the_sweep_from_postgres_and_writes_no_password(tmp_path: Path, fresh_url: str) -> None:
    import shlex

    from scaleplan.cli import main
    from scaleplan.laws import LawFile
    from scaleplan.redact import redact
    from scaleplan.sweep.runner import run_sweep
    from scaleplan.sweep.spec import load_spec

    spec = tmp_path / "shift.toml"
    spec.write_text("""
[sweep]
name = "shift"
sampler = "grid"
[model]
parametrization = "mup"
[ladder]
widths = [8, 16, 32]
steps = [10]
[search]
lr = {low = 1e-4, high = 1.0, points = 9}
[objective]
callable = "sweep_objectives:shifting"
""")
    run_sweep(load_spec(spec), fresh_url)
    out = tmp_path / "law.json"
    main(["fit", "--storage", fresh_url, "-o", str(out), "--bootstrap", "5"])  # returns: exit 0
    law = LawFile.load(out)
    assert law.parametrization is not None and (law.parametrization.name, law.parametrization.base_width) == ("mup", 8)
    assert law.provenance.command == shlex.join(["scaleplan", "fit", "--storage", redact(fresh_url), "--output", str(out),
                                                 "--bootstrap", "5"])
    password = fresh_url.split("@")[0].split(":")[-1]
    assert f":{password}@" not in out.read_text() and ":***@" in law.provenance.command


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


def test_four_workers_run_every_adaptive_proposal_once(tmp_path: Path, fresh_url: str) -> None:
    """4 workers on one adaptive study: each proposal once, and the same proposals as one worker alone."""
    spec = tmp_path / "a.toml"
    spec.write_text(ADAPTIVE_SPEC)
    alone = tmp_path / "alone.journal"
    env = {**os.environ, "PYTHONPATH": f"{TESTS}:{TESTS.parent}"}
    single = subprocess.run([sys.executable, "-m", "scaleplan.cli", "sweep", str(spec), "--storage", str(alone)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr
    command = [sys.executable, "-m", "scaleplan.cli", "sweep", str(spec), "--storage", fresh_url]
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [w.communicate(timeout=180) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0, 0], [err for _, err in outputs]
    shared, reference = load_trials(spec, storage=fresh_url), load_trials(spec, storage=str(alone))
    assert set(shared["state"]) == {"COMPLETE"} and shared["slot"].is_unique
    lrs = lambda frame: dict(zip(frame["slot"], frame["lr"]))  # noqa: E731
    assert lrs(shared).keys() == lrs(reference).keys()
    assert all(lrs(shared)[k] == pytest.approx(lrs(reference)[k], rel=1e-12) for k in lrs(shared))
    n = len(shared)
    assert f"{n}/{n} planned trials complete" in [out.strip() for out, _ in outputs]

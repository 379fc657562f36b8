"""optuna-dashboard on the storages a sweep writes: its WSGI app, in-process (no browser, no network),
opened with the storage string a user types: the sweep's journal file, sqlite:///FILE, and a plain
postgresql:// URL (no driver named: SQLAlchemy's default, psycopg 3, which `scaleplan[postgres]` installs)."""

from __future__ import annotations

import io
import json
import wsgiref.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postgres_db import admin_url, fresh_database
from scaleplan.sweep.runner import run_sweep
from scaleplan.sweep.spec import load_spec

optuna_dashboard = pytest.importorskip("optuna_dashboard")  # in the test extra

SPEC = """
[sweep]
name = "watched"
sampler = "grid"
storage = "postgresql://sweeper:s3cret@db-host/scaleplan"
[model]
parametrization = "mup"
[ladder]
widths = [8, 16]
steps = [10]
[search]
lr = [1e-3, 1e-2, 1e-1]
[objective]
callable = "sweep_objectives:diverging"
"""


def get(app: Any, path: str) -> Any:
    """GET `path` from a WSGI app; the JSON body."""
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    wsgiref.util.setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


def check_dashboard(storage: str) -> None:
    """The dashboard lists the sweep's study and shows its 6 trials, the diverged ones flagged, no password."""
    app = optuna_dashboard.wsgi(storage)
    studies = get(app, "/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["watched"]
    detail = get(app, f"/api/studies/{studies[0]['study_id']}")
    trials = detail["trials"]
    assert [t["state"] for t in trials] == ["Complete"] * 6
    diverged = [next(a["value"] for a in t["user_attrs"] if a["key"] == "diverged") for t in trials]
    assert diverged == ["False", "False", "True"] * 2
    text = json.dumps(detail) + json.dumps(studies)
    assert "s3cret" not in text and "sweeper:***@db-host" in text  # the spec is shown with its password hidden


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "watched.toml"
    path.write_text(SPEC)
    return path


@pytest.mark.parametrize("storage", ["watched.journal", "watched.db"])
def test_dashboard_reads_a_local_sweep(spec: Path, storage: str) -> None:
    run_sweep(load_spec(spec), str(spec.parent / storage))
    typed = str(spec.parent / storage) if storage.endswith(".journal") else f"sqlite:///{spec.parent / storage}"
    check_dashboard(typed)


@pytest.fixture
def fresh_url() -> Iterator[str]:
    url = admin_url()
    if url is None:
        pytest.skip("SCALEPLAN_TEST_POSTGRES_URL is not set")
    with fresh_database(url) as fresh:
        yield fresh


@pytest.mark.postgres
def test_dashboard_and_optuna_read_a_postgres_sweep_by_its_plain_url(spec: Path, fresh_url: str) -> None:
    import optuna

    assert fresh_url.startswith("postgresql://")  # as users write it: no +driver
    run_sweep(load_spec(spec), fresh_url)
    check_dashboard(fresh_url)
    assert len(optuna.load_study(study_name="watched", storage=fresh_url).trials) == 6

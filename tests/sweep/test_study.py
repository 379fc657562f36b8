"""The sweep study: what it records (the spec without passwords, the parametrization reference)."""

from __future__ import annotations

import json
from pathlib import Path

from scaleplan.core.reference import ParametrizationRef
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.study import SPEC_ATTR, open_sweep, study_reference

SPEC = """
[sweep]
name = "creds"
storage = "postgresql://sweeper:s3cret@db-host/scaleplan"
trials_per_point = 1
[model]
parametrization = "mup"
base_width = 16
[ladder]
widths = [8, 16]
steps = [10]
[search]
lr = {low = 1e-4, high = 1e-1}
[objective]
callable = "sweep_objectives:quadratic"
"""


def test_the_study_keeps_the_spec_without_its_password(tmp_path: Path) -> None:
    spec = tmp_path / "creds.toml"
    spec.write_text(SPEC)
    session = open_sweep(load_spec(spec), str(tmp_path / "local.journal"))  # the spec's server, overridden here
    attrs = session.study.user_attrs
    assert "s3cret" not in json.dumps(attrs) and "s3cret" not in (tmp_path / "local.journal").read_text()
    assert attrs[SPEC_ATTR]["sweep"]["storage"] == "postgresql://sweeper:***@db-host/scaleplan"
    assert study_reference(session.study) == ParametrizationRef("mup", base_width=16)
    assert open_sweep(load_spec(spec), str(tmp_path / "local.journal")).study.user_attrs == attrs  # resumes: same plan


def test_a_study_stored_with_a_password_is_scrubbed_when_reopened(tmp_path: Path) -> None:
    spec = tmp_path / "creds.toml"
    spec.write_text(SPEC)
    session = open_sweep(load_spec(spec), str(tmp_path / "old.db"))
    session.study.set_user_attr(SPEC_ATTR, load_spec(spec).raw)  # as the first release stored it
    assert "s3cret" in json.dumps(session.study.user_attrs)
    again = open_sweep(load_spec(spec), str(tmp_path / "old.db"))
    assert "s3cret" not in json.dumps(again.study.user_attrs)

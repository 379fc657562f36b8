"""Shared test setup: the tests folder is importable (`sweep_objectives` for callable objectives)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture(autouse=True, scope="session")
def _population_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Population sizes: 8, not measured (tests stay fast and alike on every machine; tests/train/test_calibrate.py
    measures), and any measurement goes to a folder of this test session, not the user's ~/.cache."""
    os.environ["SCALEPLAN_CACHE_DIR"] = str(tmp_path_factory.mktemp("scaleplan-cache"))
    os.environ.setdefault("SCALEPLAN_POPULATION", "8")

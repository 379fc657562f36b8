"""Population size by measurement: the choice from measured costs, the early stop, the cache, the override."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from scaleplan.errors import ScaleplanError
from scaleplan.train import calibrate
from scaleplan.train.calibrate import cache_key, calibrated_population, choose, measure_costs
from scaleplan.train.config import TrialConfig

TINY = TrialConfig(width=8, base_width=8, steps=5, batch_size=4, task_kwargs={"in_dim": 4, "out_dim": 2, "n_eval": 16})


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SCALEPLAN_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SCALEPLAN_POPULATION", raising=False)
    monkeypatch.setattr(calibrate, "_memory", {})
    return tmp_path / "population.json"


@pytest.mark.parametrize(
    ("costs", "expected"),
    [({1: 1.0, 4: 0.3, 16: 0.1, 64: 0.095}, 16),  # 64 is within 10% of 16: take the smaller
     ({1: 1.0, 4: 0.3, 16: 0.1, 64: 0.05}, 64),
     ({1: 1.0, 4: 1.05}, 1)],  # batching does not pay (a wide model on a CPU)
)
def test_choose_takes_the_smallest_size_within_ten_percent_of_the_cheapest(costs, expected) -> None:
    assert choose(costs) == expected


def test_measuring_stops_once_four_times_more_members_stop_paying() -> None:
    seen: list[int] = []

    def fake(cfg: TrialConfig, k: int) -> float:
        seen.append(k)
        return {1: 1.0, 4: 0.5, 16: 0.48, 64: 0.1}[k]

    assert measure_costs(TINY, fake) == {1: 1.0, 4: 0.5, 16: 0.48} and seen == [1, 4, 16]


def test_out_of_memory_ends_the_measurement_without_failing() -> None:
    def fake(cfg: TrialConfig, k: int) -> float:
        if k == 16:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return 1.0 / k

    assert measure_costs(TINY, fake) == {1: 1.0, 4: 0.25}


def test_measured_once_then_cached_per_device_and_configuration(cache: Path) -> None:
    calls: list[tuple[int, int]] = []

    def fake(cfg: TrialConfig, k: int) -> float:
        calls.append((cfg.width, k))
        return 1.0 / k if cfg.width == 8 else 1.0

    assert calibrated_population(TINY, fake) == 64
    assert calibrated_population(dataclasses.replace(TINY, lr=0.5, seed=3, steps=999), fake) == 64  # same cost
    calibrate._memory.clear()  # a new process reads the file
    assert calibrated_population(TINY, fake) == 64
    assert calibrated_population(dataclasses.replace(TINY, width=256), fake) == 1
    assert calls == [(8, 1), (8, 4), (8, 16), (8, 64), (256, 1), (256, 4)]
    stored = json.loads(cache.read_text())
    assert {entry["k"] for entry in stored.values()} == {64, 1} and cache_key(TINY) in stored
    assert "cpu" in json.loads(cache_key(TINY))["device"]


def test_an_unwritable_cache_measures_once_for_this_process(cache: Path) -> None:
    cache.mkdir()  # a directory where the cache file should be: nothing can be written there
    calls: list[int] = []

    def fake(cfg: TrialConfig, k: int) -> float:
        calls.append(k)
        return 1.0 / k

    assert calibrated_population(TINY, fake) == 64
    assert calls == [1, 4, 16, 64]  # measured once, not again after the failed write
    assert cache.is_dir() and not list(cache.parent.glob(".population*"))  # no partial file left beside it


def test_a_failed_cache_write_keeps_the_previous_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calibrated_population(TINY, lambda cfg, k: 1.0 / k)
    before = cache.read_text()
    calibrate._memory.clear()

    def torn(self: Path, text: str) -> int:  # the worker is stopped halfway through writing the cache
        with open(self, "w") as handle:
            handle.write(text[: len(text) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", torn)
    with pytest.raises(KeyboardInterrupt):
        calibrated_population(dataclasses.replace(TINY, width=256), lambda cfg, k: 1.0)
    assert cache.read_text() == before


def test_a_real_measurement_on_a_tiny_model(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibrate, "MIN_SECONDS", 0.02)  # a quick measurement: only the path is tested here
    k = calibrated_population(TINY)
    assert k in calibrate.CPU_SIZES
    costs = json.loads(cache.read_text())[cache_key(TINY)]["seconds_per_trial_step"]
    assert all(c > 0 for c in costs.values()) and str(k) in costs


def test_override(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALEPLAN_POPULATION", "5")
    assert calibrated_population(TINY, lambda cfg, k: pytest.fail("measured")) == 5
    monkeypatch.setenv("SCALEPLAN_POPULATION", "lots")
    with pytest.raises(ScaleplanError, match="SCALEPLAN_POPULATION must be a positive integer"):
        calibrated_population(TINY)


@pytest.mark.parametrize("entry", [{"k": "abc"}, {"seconds_per_trial_step": {}}, {"k": 0}, {"k": True}, {"k": 4.5}, "16", None])
def test_a_malformed_cache_entry_is_measured_again_and_rewritten(cache: Path, entry: object) -> None:
    other = {"k": 4, "measured": "2026-01-01"}  # another configuration's entry is kept as it is
    cache.write_text(json.dumps({cache_key(TINY): entry, "other": other}))
    calls: list[int] = []

    def fake(cfg: TrialConfig, k: int) -> float:
        calls.append(k)
        return 1.0 / k

    assert calibrated_population(TINY, fake) == 64
    assert calls == [1, 4, 16, 64]
    stored = json.loads(cache.read_text())
    assert stored[cache_key(TINY)]["k"] == 64 and stored["other"] == other


@pytest.mark.parametrize("value", ["²", "٣", "８", "-3", "0", "3.0", " 3"])
def test_override_takes_ascii_digits_only(cache: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SCALEPLAN_POPULATION", value)
    with pytest.raises(ScaleplanError, match="SCALEPLAN_POPULATION must be a positive integer such as 8"):
        calibrated_population(TINY, lambda cfg, k: pytest.fail("measured"))


def test_a_clip_threshold_does_not_change_the_cache_key() -> None:
    """Clipping costs one norm per step: a clipped sweep reuses the unclipped one's measurement (and old caches)."""
    assert cache_key(dataclasses.replace(TINY, clip_grad_norm=1.0)) == cache_key(TINY)

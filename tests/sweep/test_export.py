"""Export: one row per trial with the columns the fit reads, to CSV or parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scaleplan.errors import ScaleplanError
from scaleplan.sweep.export import COLUMNS, REFERENCE_COLUMNS, frame_reference, load_trials, write_trials
from scaleplan.sweep.runner import run_sweep
from scaleplan.sweep.spec import load_spec

SPEC = """
[sweep]
name = "exp"
sampler = "grid"
[ladder]
widths = [8, 16]
steps = [10]
[search]
lr = [1e-3, 1e-1]
batch_size = [4]
[objective]
callable = "sweep_objectives:diverging"
"""


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "exp.toml"
    path.write_text(SPEC)
    run_sweep(load_spec(path))
    return path


PLAIN_REFERENCE = [f"parametrization.{k}" for k in ("name", "base_width", "base_depth", "optimizer", "completep")]


def test_columns_and_values(spec_path: Path) -> None:
    frame = load_trials(spec_path)
    assert tuple(frame.columns[: len(COLUMNS)]) == COLUMNS
    assert list(frame.columns[len(COLUMNS) :]) == ["train_loss", "seconds", "value", "point", "slot", "error", *PLAIN_REFERENCE]
    # the sweep's parametrization reference rides along (SP by default, base width the smallest width); SGD's momentum
    # columns only where the sweep set one
    assert frame[PLAIN_REFERENCE].drop_duplicates().values.tolist() == [["sp", 8, None, "adam", False]]
    assert frame[["width", "lr", "diverged", "state"]].values.tolist() == [
        [8, 1e-3, False, "COMPLETE"], [8, 1e-1, True, "COMPLETE"], [16, 1e-3, False, "COMPLETE"], [16, 1e-1, True, "COMPLETE"],
    ]
    assert frame["loss"].tolist()[0] == pytest.approx(0.25 + 1 / 8) and frame["loss"].isna().tolist() == [False, True, False, True]
    assert frame["D"].tolist() == [40] * 4 and frame["study"].unique().tolist() == ["exp"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip(spec_path: Path, tmp_path: Path, suffix: str) -> None:
    frame = load_trials(spec_path)
    out = write_trials(frame, tmp_path / f"trials{suffix}")
    back = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert back["lr"].tolist() == frame["lr"].tolist() and back["width"].tolist() == [8, 8, 16, 16]
    assert frame_reference(back, str(out)) == frame_reference(frame, "storage") is not None


@pytest.mark.parametrize(
    "train, recorded, absent",
    [
        ('optimizer = "sgd"\nmomentum = 0.9\nnesterov = true\n', {"momentum": 0.9, "nesterov": True}, {"parametrization.betas"}),
        ('optimizer = "adamw"\nbetas = [0.9, 0.95]\n', {"betas": (0.9, 0.95)}, {"parametrization.momentum", "parametrization.nesterov"}),
    ],
)
def test_an_optimizer_setting_is_exported_and_read_back(tmp_path: Path, train: str, recorded: dict, absent: set) -> None:
    """SGD's momentum and Adam's betas (a list, as the CSV holds it) go into the export's reference columns and back."""
    path = tmp_path / "opt.toml"
    path.write_text(SPEC.replace('name = "exp"', 'name = "opt"') + "[train]\n" + train)
    spec = load_spec(path)
    run_sweep(spec)
    frame = load_trials(path)
    assert set(REFERENCE_COLUMNS) - set(frame.columns) == absent
    back = pd.read_csv(write_trials(frame, tmp_path / "trials.csv"))
    assert frame_reference(back, "trials.csv") == frame_reference(frame, "storage") == spec.reference
    assert {k: getattr(spec.reference, k) for k in recorded} == recorded


def test_mixed_references_are_refused(spec_path: Path) -> None:
    frame = load_trials(spec_path)
    frame.loc[0, "parametrization.name"] = "mup"
    with pytest.raises(ScaleplanError, match="trials.csv: the trials carry 2 different parametrization references \\(mup, sp\\)"):
        frame_reference(frame, "trials.csv")


def test_load_by_storage_path(spec_path: Path) -> None:
    frame = load_trials(str(spec_path.parent / "exp.journal"))
    assert len(frame) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"study": "nope"}, "no study 'nope' in"),
        ({"storage": "missing.journal"}, "no sweep storage at"),
    ],
)
def test_load_errors(spec_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ScaleplanError, match=message):
        load_trials(spec_path, **kwargs)


def test_export_goes_into_an_existing_folder_and_names_an_unwritable_path(spec_path: Path, tmp_path: Path) -> None:
    frame = load_trials(spec_path)
    assert write_trials(frame, tmp_path / "t.csv").is_file()
    with pytest.raises(ScaleplanError, match=r"cannot write trials to .*t\.csv/x\.csv: .*t\.csv is a file, not a directory"):
        write_trials(frame, tmp_path / "t.csv" / "x.csv")
    with pytest.raises(ScaleplanError, match=r"cannot write trials to .*new/t\.csv: folder .*new does not exist \(create it first\)"):
        write_trials(frame, tmp_path / "new" / "t.csv")  # a file named with -o: no folder is made for it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_bad_export_suffix(spec_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ScaleplanError, match="must end in .csv or .parquet"):
        write_trials(load_trials(spec_path), tmp_path / "t.xlsx")


def test_a_spec_the_study_was_not_made_from_is_refused(spec_path: Path) -> None:
    """Reading a study with another spec would label its trials with that spec's parametrization (a wrong law)."""
    changed = spec_path.parent / "changed.toml"
    changed.write_text(SPEC.replace('sampler = "grid"', 'sampler = "grid"\nstorage = "exp.journal"').replace(
        "[objective]", '[model]\nparametrization = "mup"\n[objective]'))
    with pytest.raises(ScaleplanError, match=r"study 'exp' in .*exp.journal was made from a different spec \(\[model\] changed\)"):
        load_trials(changed)
    assert len(load_trials(spec_path)) == 4  # the spec it was made from reads it

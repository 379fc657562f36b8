"""Tests of scaleplan.fit.data: column mapping, validation and exclusion of failed/diverged trials."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaleplan.errors import FitError, ScaleplanError
from scaleplan.fit.data import parse_column_map, prepare_trials


def frame(**extra: list) -> pd.DataFrame:
    base = dict(N=[1e6, 1e6, 4e6, 4e6], D=[1e8] * 4, lr=[1e-3, 2e-3, 1e-3, 2e-3], loss=[2.0, 1.9, 1.8, 1.7])
    return pd.DataFrame({**base, **extra})


def test_missing_columns_are_named_with_the_fix() -> None:
    with pytest.raises(ScaleplanError) as err:
        prepare_trials(frame().drop(columns=["lr"]), source="runs.csv")
    message = str(err.value)
    assert "runs.csv: missing column(s) ['lr']" in message and "--column lr=" in message and "\n" not in message


def test_column_map_renames_and_replaces_a_shadowed_column() -> None:
    raw = frame(**{"smooth loss": [1.0, 2.0, 3.0, 4.0], "bs": [1, 2, 1, 2]})
    trials = prepare_trials(raw, columns=parse_column_map(["loss=smooth loss", "batch_size=bs"]), batch_unit_scale=2048)
    assert trials.frame["loss"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert trials.frame["batch_size"].tolist() == [2048, 4096, 2048, 4096]
    assert trials.has_batch and not trials.has_tokens and trials.cell_columns == ["N", "D"]


@pytest.mark.parametrize("pair", ["batch_size", "=bs", "lr="])
def test_bad_column_option(pair: str) -> None:
    with pytest.raises(ScaleplanError, match="--column expects CANONICAL=SOURCE"):
        parse_column_map([pair])


def test_a_canonical_name_scaleplan_does_not_read_is_refused() -> None:
    """--column bogus=lr would rename the lr column away and fit a loss law instead: refused, naming the valid names."""
    with pytest.raises(ScaleplanError, match=r"--column bogus=lr: 'bogus' is not a column scaleplan reads; the name before '=' is one of loss, "):
        parse_column_map(["bogus=lr"])


def test_unknown_source_column() -> None:
    with pytest.raises(ScaleplanError, match=r"--column source\(s\) \['bs'\] not in the data"):
        prepare_trials(frame(), columns={"bs": "batch_size"})


def test_failed_diverged_and_nonfinite_trials_are_excluded_and_counted() -> None:
    raw = frame(state=["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"], diverged=[False, False, "True", False])
    raw.loc[3, "loss"] = np.nan
    trials = prepare_trials(raw)
    assert len(trials.frame) == 1
    assert trials.dropped == {"not COMPLETE": 1, "diverged": 1, "non-finite or non-positive": 1}


def test_pruned_trials_are_excluded_and_counted() -> None:
    raw = frame(state=["COMPLETE", "PRUNED", "COMPLETE", "PRUNED"], diverged=[False] * 4)
    raw.loc[[1, 3], "loss"] = np.nan  # a pruned lr has no final loss
    trials = prepare_trials(raw)
    assert trials.frame["lr"].tolist() == [1e-3, 1e-3] and trials.dropped == {"not COMPLETE": 2}


def test_a_cell_that_lost_every_trial_is_named() -> None:
    """N=4e6 diverged at both lrs, and model b's cell has only a non-finite loss: both cells are gone from the fit."""
    raw = frame(diverged=[False, False, True, True], model=["a"] * 4)
    raw = pd.concat([raw, pd.DataFrame(dict(N=[1e6], D=[1e8], lr=[1e-3], loss=[np.inf], diverged=[False], model=["b"]))])
    trials = prepare_trials(raw)
    assert trials.lost == ("N=1e+06, D=1e+08, model=b", "N=4e+06, D=1e+08, model=a")
    assert prepare_trials(frame(diverged=[False, True, False, True])).lost == ()  # every cell kept a trial


def test_a_batch_size_that_lost_every_trial_is_named_where_batch_sizes_were_swept() -> None:
    """A tokens ladder over batch sizes fits one optimum per (N, D, B): a batch size whose runs all diverged is a lost
    cell, named in the fit's units (here sequences of 512 tokens)."""
    raw = pd.concat([frame(diverged=[False] * 4).assign(batch_size=32), frame(diverged=[False, False, True, True]).assign(batch_size=64)])
    assert prepare_trials(raw, batch_unit_scale=512).lost == ("N=4e+06, D=1e+08, batch_size=3.277e+04",)
    assert prepare_trials(frame(diverged=[False, False, True, True]).assign(batch_size=64)).lost == ("N=4e+06, D=1e+08",)


def test_all_diverged() -> None:
    with pytest.raises(ScaleplanError, match=r"no usable trials left \(4 diverged\); nothing to fit"):
        prepare_trials(frame(diverged=[True] * 4))


def test_width_as_size_variable() -> None:
    trials = prepare_trials(frame(width=[64, 64, 256, 256]).drop(columns=["N"]), x="width")
    assert trials.x == "width" and trials.cell_columns == ["width", "D"]
    with pytest.raises(ScaleplanError, match="--x must be one of N, width, depth"):
        prepare_trials(frame(), x="layers")
    with pytest.raises(ScaleplanError, match=r"missing column\(s\) \['depth'\]"):
        prepare_trials(frame(), x="depth")


def test_a_missing_size_names_the_size_column_the_data_has() -> None:
    """A width sweep fitted without --x (or an export's empty depth column with --x depth) was told to rename a column
    with --column N=your_name; the fix is --x width."""
    widths = frame(width=[64, 64, 256, 256]).drop(columns=["N"])
    with pytest.raises(ScaleplanError, match=r"missing column\(s\) \['N'\] \(found .*\); the size is in column 'width': pass --x width$"):
        prepare_trials(widths)
    with pytest.raises(ScaleplanError, match=r"column\(s\) \['depth'\] hold no values in any of its 4 row\(s\); the size is in "
                                             r"column 'width': pass --x width$"):
        prepare_trials(widths.assign(depth=np.nan), x="depth")


def test_empty_optional_columns_are_ignored() -> None:
    trials = prepare_trials(frame(D=[None] * 4, batch_size=[np.nan] * 4))
    assert len(trials.frame) == 4 and trials.cell_columns == ["N"] and not trials.has_batch


def test_two_models_with_equal_n_and_d_are_never_merged() -> None:
    """Two architectures with the same N and D, each swept over the same lrs: refused without a model column..."""
    rows = [dict(N=1e8, D=2e9, lr=lr, loss=2.0 + lr, arch=arch) for arch in ("wide", "deep") for lr in (1e-3, 2e-3, 4e-3)]
    rows += [dict(N=4e8, D=2e9, lr=lr, loss=1.9 + lr, arch="wide") for lr in (1e-3, 2e-3, 4e-3)]
    raw = pd.DataFrame(rows)
    with pytest.raises(FitError, match=r"cell N=1e\+08, D=2e\+09 has 2 runs with the same lr=0.001: different models") as err:
        prepare_trials(raw, source="runs.csv")
    assert "--column model=COLUMN" in str(err.value) and "--column seed=COLUMN" in str(err.value)
    # ...and kept apart with one: three cells, two of them at (1e8, 2e9)
    trials = prepare_trials(raw, columns=parse_column_map(["model=arch"]))
    assert trials.cell_columns == ["N", "D", "model"] and trials.frame.groupby(trials.cell_columns).ngroups == 3


def test_repeated_configurations_with_a_seed_column_are_seeds_only_when_the_seeds_differ() -> None:
    rows = [dict(N=n, D=2e9, lr=lr, loss=2.0 + lr, seed=s) for n in (1e8, 4e8) for lr in (1e-3, 2e-3) for s in (0, 1)]
    assert len(prepare_trials(pd.DataFrame(rows)).frame) == 8
    with pytest.raises(FitError, match="has 2 runs with the same lr=0.001, seed=0") as err:
        prepare_trials(pd.DataFrame(rows + [rows[0]]))
    assert "--column seed" not in str(err.value)


def test_loss_only_data_needs_no_lr() -> None:
    trials = prepare_trials(frame().drop(columns=["lr"]), required=("loss", "D"))
    assert not trials.has_lr and len(trials.frame) == 4


@pytest.mark.parametrize("column, x", [("width", "width"), ("N", "width"), ("seed", "N"), ("lr", "N")])
def test_text_in_a_numeric_column_is_refused_naming_column_row_and_value(column: str, x: str) -> None:
    """Before: a size column other than x (or seed) reached the fit as text (internal error), x's text was dropped silently."""
    raw = frame(width=[64, 64, 256, 256], seed=[0, 0, 0, 0])
    raw[column] = raw[column].astype(object)
    raw.loc[2, column] = "big"
    with pytest.raises(FitError) as err:
        prepare_trials(raw, x=x, source="runs.csv")
    assert str(err.value) == f"runs.csv: column '{column}', row 3 after the header: 'big' is not a number; correct it or delete the row"


def test_a_renamed_column_is_named_as_the_data_names_it() -> None:
    raw = frame(bs=[16, "sixteen", 16, 16])
    with pytest.raises(FitError, match=r"runs.csv: column 'bs' \(batch_size\), row 2 after the header: 'sixteen' is not a number"):
        prepare_trials(raw, columns=parse_column_map(["batch_size=bs"]), source="runs.csv")


def test_empty_and_numeric_text_cells_are_numbers() -> None:
    trials = prepare_trials(frame(N=["1e6", " 1000000 ", "4e6", ""]))
    assert trials.frame["N"].tolist() == [1e6, 1e6, 4e6] and trials.dropped == {"non-finite or non-positive": 1}


@pytest.mark.parametrize("value", ["maybe", "2", 2, "diverged?"])
def test_a_diverged_cell_that_is_not_boolean_is_refused(value: object) -> None:
    """Before: anything but true/1/yes/y/t counted as not diverged, so 'maybe' kept the run."""
    with pytest.raises(FitError) as err:
        prepare_trials(frame(diverged=[False, value, False, False]), source="runs.csv")
    assert str(err.value) == (f"runs.csv: column 'diverged', row 2 after the header: {value!r} is neither true nor false; "
                              "write true/false, yes/no or 1/0 (empty = not diverged)")


def test_diverged_accepts_boolean_words_numbers_and_empty() -> None:
    flags = [True, "TRUE", " yes ", "y", "T", 1, 1.0, "1", False, "false", "No", "n", "f", 0, "0", "", None, np.nan]
    raw = pd.DataFrame(dict(N=[1e6] * len(flags), lr=[1e-3 * (i + 1) for i in range(len(flags))], loss=[2.0] * len(flags),
                            diverged=flags))
    trials = prepare_trials(raw)
    assert trials.dropped == {"diverged": 8} and len(trials.frame) == len(flags) - 8


def test_cli_fit_of_text_in_a_size_column_is_one_line(tmp_path) -> None:
    import subprocess
    import sys

    raw = frame(width=[64, 64, 256, 256])
    raw["width"] = raw["width"].astype(object)
    raw.loc[1, "width"] = "big"
    raw.to_csv(tmp_path / "runs.csv", index=False)
    out = subprocess.run([sys.executable, "-m", "scaleplan.cli", "fit", "runs.csv", "-o", "law.json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: runs.csv: column 'width', row 2 after the header: 'big' is not a number; correct it or delete the row"]
    assert not (tmp_path / "law.json").exists()


def test_a_stopped_runs_d_from_an_older_sweep_keys_its_grid_points_cell() -> None:
    """Sweeps before 2026-11-28 recorded a diverged run's D as the tokens it trained (steps_run x batch): the fit must not
    take its D for a cell of its own (the walk-through's first law was flagged for 3 'lost' cells), yet a cell whose every
    run diverged is still named, at its planned D."""
    runs = dict(steps=[100] * 4, batch_size=[1000] * 4)  # D = 1e8 = 100 steps x 1000 examples x 1000 tokens
    old = frame(diverged=[False, True, False, False], steps_run=[100, 1, 100, 100], **runs)
    old.loc[1, "D"] = 1e6  # 1 of 100 steps: D / 100
    assert prepare_trials(old).lost == ()
    lost = frame(diverged=[False, False, True, True], steps_run=[100, 100, 1, 2], **runs)
    assert prepare_trials(lost).lost == ("N=4e+06, D=1e+08",)  # today's record: the planned D, kept as it is
    lost.loc[[2, 3], "D"] = [1e6, 2e6]
    assert prepare_trials(lost).lost == ("N=4e+06, D=1e+08",)


@pytest.mark.parametrize("stand_in", [0.0, -1.0])
def test_a_loss_of_zero_or_below_beside_positive_ones_is_refused_as_a_stand_in(stand_in: float) -> None:
    """An export's 0 (or -1) for a diverged run would be the best run of its cell: a law 3.8x too high in a probe."""
    with pytest.raises(FitError, match=rf"column 'loss', row 4 after the header: {stand_in:g} beside positive losses "
                                        r"\(1 row\(s\) at 0 or below\): a diverged run's stand-in\?"):
        prepare_trials(frame(loss=[2.0, 1.9, 1.8, stand_in]))


def test_an_objective_below_zero_everywhere_is_kept() -> None:
    assert prepare_trials(frame(loss=[-2.0, -1.9, -1.8, -1.7])).frame["loss"].tolist() == [-2.0, -1.9, -1.8, -1.7]


def test_float_noise_does_not_split_a_size_or_an_lr() -> None:
    """N x (1 + 1e-12) and lr x (1 + 1e-9) from an export are the same size and lr (two cells would narrow the law's
    interval; two lrs would each hold fewer seeds); values 1e-6 apart stay apart."""
    raw = frame(N=[1e6, 1e6 * (1 + 1e-12), 4e6, 4e6 * (1 + 1e-6)], lr=[1e-3, 1e-3 * (1 + 1e-9), 2e-3, 2e-3], seed=[0, 1, 0, 0])
    trials = prepare_trials(raw)
    assert trials.frame["N"].tolist() == [1e6, 1e6, 4e6, 4e6 * (1 + 1e-6)]
    assert trials.frame["lr"].tolist() == [1e-3, 1e-3, 2e-3, 2e-3]
    with pytest.raises(FitError, match="has 2 runs with the same lr=0.001"):  # without seeds: one lr run twice, refused
        prepare_trials(raw.drop(columns="seed"))


def test_one_column_read_from_two_sources_is_refused() -> None:
    with pytest.raises(ScaleplanError, match="--column loss=val_loss: 'loss' is already read from 'train_loss'"):
        parse_column_map(["loss=train_loss", "loss=val_loss"])


def test_states_none_of_which_is_complete_are_listed() -> None:
    """A Weights & Biases export's states ('finished', 'crashed') are not Optuna's: the message shows them."""
    with pytest.raises(ScaleplanError, match=r"no trial's state is COMPLETE \(an Optuna state; found 'finished', 'crashed'\)"):
        prepare_trials(frame(state=["finished", "crashed", "finished", "finished"]))


def test_columns_that_look_like_the_lr_or_the_loss_and_were_not_read_are_named() -> None:
    """An export's `lr` (the decayed final lr) beside `learning_rate` (the peak), and a train `loss` beside `val_loss`,
    were read without a word (a probe: a law 10x too low); a --column choice, or a sweep's own train_loss, is quiet."""
    raw = frame(learning_rate=[1e-2, 2e-2, 1e-2, 2e-2], val_loss=[2.1, 2.0, 1.9, 1.8], train_loss=[1.0] * 4)
    with pytest.warns(UserWarning) as caught:
        prepare_trials(raw)
    assert [str(w.message) for w in caught] == [
        "trials: the lr is read from column 'lr'; 'learning_rate' looks alike and is not read: if one is the lr meant, "
        "--column lr=learning_rate",
        "trials: the loss is read from column 'loss'; 'val_loss' looks alike and is not read: if one is the loss meant, "
        "--column loss=val_loss"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_trials(raw.drop(columns=["lr", "loss"]), columns={"learning_rate": "lr", "val_loss": "loss"})
        prepare_trials(frame(train_loss=[1.0] * 4))

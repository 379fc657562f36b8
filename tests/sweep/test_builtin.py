"""The built-in objective: a sweep of scaleplan's own MLP through scaleplan.train, populations included."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState

from scaleplan.errors import ScaleplanError
from scaleplan.sweep.builtin import BuiltinObjective
from scaleplan.sweep.export import load_trials
from scaleplan.sweep.plan import GridPoint
from scaleplan.sweep.runner import RunSummary, run_sweep
from scaleplan.sweep.spec import load_spec
from scaleplan.sweep.study import open_sweep, trial_id
from scaleplan.sweep.trial import TrialRequest
from scaleplan.sweep.worker import claim

SPEC = """
[sweep]
name = "tiny"
sampler = "grid"
[task]
name = "teacher-student"
kwargs = {in_dim = 8, out_dim = 2, teacher_width = 16, n_eval = 64}
[model]
name = "mlp"
parametrization = "mup"
base_width = 8
[ladder]
widths = [8, 16]
steps = [5]
[search]
lr = [1e-2, 1e-1, 1e3]
batch_size = [4]
"""


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(SPEC)
    return path


def test_builtin_sweep_records_n_d_and_divergence(spec_path: Path) -> None:
    assert run_sweep(load_spec(spec_path)) == RunSummary(6, 6, 0, diverged=2)  # lr 1e3 at both widths
    frame = load_trials(spec_path)
    assert frame["D"].tolist()[:2] == [20, 20]  # 5 steps x batch 4 samples
    # MLP depth 2, in 8, out 2, biases: N (non-embedding) = the hidden layer w^2 + w; with the input layer
    # (8w + w) and the readout (2w + 2), N_total = w^2 + 12w + 2
    assert frame.groupby("width")["N"].unique().map(list).to_dict() == {8: [72], 16: [272]}
    assert frame.groupby("width")["N_total"].unique().map(list).to_dict() == {8: [162], 16: [450]}
    assert frame.loc[frame.lr == 1e3, "diverged"].tolist() == [True, True]
    assert frame.loc[frame.lr < 1, "loss"].notna().all() and frame.loc[frame.lr == 1e3, "loss"].isna().all()


def test_population_claims_one_grid_point_together(spec_path: Path) -> None:
    spec = load_spec(spec_path)
    session = open_sweep(spec)
    objective = BuiltinObjective(spec)
    first = claim(session, objective, limit=100)
    points = {t.user_attrs["point"] for t in session.study.get_trials() if trial_id(session, t) in first}
    assert len(first) == 3 and points == {"w8-s5-b4-seed0"}  # populations of up to 8 (tests/conftest.py): the point's 3
    assert len(claim(session, objective, limit=2)) == 2
    assert [t.state for t in session.study.get_trials()].count(TrialState.WAITING) == 1


def test_depth_and_tokens_ladders_train_the_shapes_they_name(spec_path: Path) -> None:
    """Grid points (width, depth, D, B): each depth trains its own model (N grows by one hidden layer), D is the
    same at both batch sizes, and a population only holds trials of one shape, batch size and length."""
    spec_path.write_text(SPEC.replace("steps = [5]", "depths = [1, 2]\ntokens = [32]").replace("batch_size = [4]", "batch_size = [4, 8]")
                         .replace("lr = [1e-2, 1e-1, 1e3]", "lr = [1e-2, 1e-1]").replace("widths = [8, 16]", "widths = [8]"))
    spec = load_spec(spec_path)
    assert run_sweep(spec) == RunSummary(8, 8, 0)
    frame = load_trials(spec_path)
    assert set(zip(frame["depth"], frame["N"])) == {(1, 0), (2, 72)}  # depth 1: no hidden layer; 2: one (w^2 + w)
    assert set(zip(frame["batch_size"], frame["steps"], frame["D"])) == {(4, 8, 32), (8, 4, 32)}
    other = replace(spec, name="claims", storage=str(spec_path.with_name("claims.journal")))
    session = open_sweep(other)
    first = claim(session, BuiltinObjective(other), limit=100)
    assert {t.user_attrs["point"] for t in session.study.get_trials() if t._trial_id in first} == {"w8-d1-s8-b4-seed0"}


def test_the_adaptive_search_trains_each_depth_it_names(spec_path: Path) -> None:
    """Before: the adaptive cells dropped the depth, and every trial trained the model's default depth (exit 0)."""
    spec_path.write_text(SPEC.replace('sampler = "grid"', 'sampler = "adaptive"\ntrials_per_point = 4\nround_size = 2')
                         .replace("steps = [5]", "depths = [1, 2]\nsteps = [5]").replace("widths = [8, 16]", "widths = [8]")
                         .replace("lr = [1e-2, 1e-1, 1e3]", "lr = {low = 1e-3, high = 1e-1}"))
    summary = run_sweep(load_spec(spec_path))
    frame = load_trials(spec_path)
    assert summary == RunSummary(len(frame), len(frame), 0) and set(frame["state"]) == {"COMPLETE"}
    assert frame.groupby("depth").size().to_dict() == {1: 4, 2: 4}
    assert set(zip(frame["depth"], frame["N"])) == {(1, 0), (2, 72)}  # depth 1: no hidden layer; 2: one (w^2 + w)


def test_a_model_with_dropout_trains_one_trial_at_a_time_as_alone(tmp_path: Path) -> None:
    """Before: population training of a model with dropout failed with vmap's "called random operation while in
    randomness error mode ... fix the objective", though each trial trains fine alone."""
    pytest.importorskip("transformers")
    from scaleplan.train.loop import train_trial

    path = tmp_path / "hfd.toml"
    path.write_text("""
[sweep]
name = "hfd"
sampler = "grid"
[task]
name = "charlm"
kwargs = {seq_len = 16, n_eval = 8}
[model]
name = "hf-gpt2"
parametrization = "mup"
kwargs = {depth = 1, n_heads = 2, dropout = 0.3, tied = false}
[ladder]
widths = [16]
steps = [5]
[search]
lr = [1e-3, 1e-2]
init_std = [0.02]
batch_size = [4]
""")
    spec = load_spec(path)
    assert run_sweep(spec) == RunSummary(2, 2, 0)  # populations of 8 asked for (tests/conftest.py), of 1 trained
    objective = BuiltinObjective(spec)
    for t in open_sweep(spec).study.get_trials():
        alone = train_trial(objective.config(TrialRequest(GridPoint.from_attrs(t.user_attrs), dict(t.params))))
        assert t.user_attrs["loss"] == alone.loss


def test_unknown_task_fails_before_any_trial(spec_path: Path) -> None:
    spec_path.write_text(SPEC.replace('name = "teacher-student"', 'name = "teacher-studnet"'))
    with pytest.raises(ScaleplanError, match="unknown task 'teacher-studnet'"):
        run_sweep(load_spec(spec_path))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("batch_size = [4]", "batch_size = [4]\ninit_std = [0.5, -1.0]", "init_std must be >= 0, got -1.0"),
        ("batch_size = [4]", "batch_size = [4]\nweight_decay = {low = -0.1, high = 0.1, log = false, points = 3}",
         "weight_decay must be >= 0, got -0.1"),
        ("widths = [8, 16]", "widths = [16, 4]", "base width 8 is larger than width 4"),
    ],
)
def test_bad_value_anywhere_in_the_plan_fails_before_any_trial(spec_path: Path, old: str, new: str, message: str) -> None:
    spec_path.write_text(SPEC.replace(old, new))
    with pytest.raises(ScaleplanError, match=message):
        run_sweep(load_spec(spec_path))
    assert not (spec_path.parent / "tiny.journal").exists()


EXPLODING_DENSEAM = """
[sweep]
name = "relu"
sampler = "grid"
[task]
name = "patterns"
[model]
name = "denseam"
parametrization = "sp"
base_width = 32
kwargs = {energy = "relu-poly", degree = 3, steps = 8, n_memories = 64}
[ladder]
widths = [32, 64, 128]
steps = [5]
[search]
lr = [1e-3, 1e-2]
beta0 = [32.0, 16.0]
batch_size = [16]
"""


def test_a_denseam_exploding_at_init_is_refused_before_any_trial(tmp_path: Path) -> None:
    """Under SP beta stays beta0/N_base, so the overlaps grow with N and the descent explodes at the wider
    widths even at the gentlest searched beta0 (16): every trial there would diverge, so the sweep is refused."""
    from scaleplan.errors import ParametrizationError

    path = tmp_path / "relu.toml"
    path.write_text(EXPLODING_DENSEAM)
    with pytest.raises(ParametrizationError, match=r"^DenseAM relu-poly n=3, T=8, N=64, K=64, beta0=16, tau=1 under 'sp': "
                       r"the energy descent explodes at init .* or use parametrization 'denseam'"):
        run_sweep(load_spec(path))
    assert not (tmp_path / "relu.journal").exists()
    path.write_text(EXPLODING_DENSEAM.replace('"sp"', '"denseam"'))
    BuiltinObjective(load_spec(path))  # the DenseAM rules keep the same descent stable at every width
def test_a_timescale_sweep_trains_lambda_from_tau(spec_path: Path) -> None:
    text = SPEC.replace("[ladder]", '[train]\noptimizer = "adamw"\n[ladder]').replace(
        "lr = [1e-2, 1e-1, 1e3]", "lr = [1e-2, 3e-2]\nwd_tau = [0.5, 5.0]")
    spec_path.write_text(text)  # tau 0.5 of 5 steps: lr x lambda = 1/(tau steps) = 0.4 a step (tau 0.05 gave 4: diverged)
    assert run_sweep(load_spec(spec_path)) == RunSummary(8, 8, 0, diverged=0)
    frame = load_trials(spec_path)
    assert sorted(frame["wd_tau"].unique()) == [0.5, 5.0]
    short, long = (frame[frame["wd_tau"] == tau].sort_values(["width", "lr"])["loss"].to_numpy() for tau in (0.5, 5.0))
    assert np.isfinite(short).all() and (short != long).all()  # the timescale reached the trainer


def test_a_bad_decay_spec_is_exit_2_on_the_cli(spec_path: Path) -> None:
    import subprocess
    import sys

    spec_path.write_text(SPEC.replace("lr = [1e-2, 1e-1, 1e3]", "lr = [1e-2]\nwd_tau = [0.5]"))  # optimizer adam
    out = subprocess.run([sys.executable, "-m", "scaleplan.cli", "sweep", str(spec_path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "wd_tau needs decoupled weight decay, but [train] optimizer is 'adam'" in lines[0]

"""TrialConfig/TrialResult, the lr schedule, divergence, and train_trial (one model, torch.optim)."""

from __future__ import annotations

import dataclasses
import math

from pathlib import Path

import pytest
import torch
from cli_runs import one_line_error
from tiny_specs import MLP_GRID

from scaleplan.errors import ScaleplanError
from scaleplan.train.build import build_model, build_task, param_groups_for
from scaleplan.train.config import TrialConfig, TrialResult
from scaleplan.train.loop import make_optimizer, train_trial
from scaleplan.train.monitor import diverged, tail_mean
from scaleplan.train.schedule import lr_factor

SMALL = dict(width=32, base_width=16, steps=60, batch_size=32, model_kwargs={"depth": 2})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"optimizer": "lion"}, "unknown optimizer 'lion'; use one of adam, adamw, sgd"),
        ({"schedule": "step"}, "unknown schedule 'step'; use one of constant, cosine, linear"),
        ({"lr": 0.0}, "lr must be > 0, got 0.0"),
        ({"lr": float("nan")}, "lr must be a finite number, got nan"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"width": 64.0}, "width must be a positive integer"),
        ({"warmup_steps": 200}, r"warmup_steps must be in \[0, steps=200\)"),
        ({"weight_decay": -1.0}, "weight_decay must be >= 0"),
        ({"weight_decay": "big"}, "weight_decay must be a finite number, got 'big'"),
        ({"init_std": -1.0}, "init_std must be >= 0, got -1.0"),
        ({"init_std": float("inf")}, "init_std must be a finite number"),
        ({"output_mult": 0.0}, "output_mult must be > 0, got 0.0"),
        ({"beta0": -2.0}, "beta0 must be > 0"),
        ({"tau": "x"}, "tau must be a finite number, got 'x'"),
        ({"warmup_steps": 2.5}, "warmup_steps must be an integer, got 2.5"),
        ({"threads": 0}, "threads must be >= 1 or None"),
        ({"weight_decay": float("nan")}, "weight_decay must be a finite number, got nan"),
        ({"wd_tau": -0.5, "optimizer": "adamw"}, "wd_tau must be > 0, got -0.5"),
        ({"wd_tau": 0.5}, "wd_tau .* needs optimizer 'adamw'; 'adam' has no decoupled decay"),
        ({"wd_tau": 0.5, "weight_decay": 0.1, "optimizer": "adamw"}, "give weight_decay or wd_tau"),
        ({"wd_tau": 0.05, "steps": 5, "optimizer": "adamw"},  # decays 4x a weight per step: every run diverged
         r"wd_tau = 0.05 of a 5-step run is a decay timescale of 0.25 step\(s\): .* would remove 4x each weight"),
        ({"wd_tau": 0.2, "steps": 5, "optimizer": "adamw", "decay_convention": "independent"}, r"use wd_tau above 1/steps = 0.2"),
        ({"decay_convention": "independent"}, "optimizer 'adam' has L2 decay: use optimizer 'adamw'"),
        ({"decay_convention": "coupled", "optimizer": "adamw"}, "unknown decay_convention 'coupled'"),
        ({"clip_grad_norm": 0.0}, "clip_grad_norm must be > 0, got 0.0"),
        ({"clip_grad_norm": -1.0}, "clip_grad_norm must be > 0, got -1.0"),
        ({"clip_grad_norm": float("inf")}, "clip_grad_norm must be a finite number, got inf"),
        ({"clip_grad_norm": float("nan")}, "clip_grad_norm must be a finite number, got nan"),
        ({"clip_grad_norm": "1.0"}, "clip_grad_norm must be a finite number, got '1.0'"),
        ({"clip_grad_norm": True}, "clip_grad_norm must be a finite number, got True"),
        ({"no_decay": ["norm", "vector"]}, r"no_decay: unknown role\(s\) 'norm'; roles are input, hidden, output, vector"),
        ({"no_decay": 5}, r"no_decay must be a role or a list of roles, got 5"),
        ({"no_decay": [1, "vector", ["fixed"]]}, r"no_decay: unknown role\(s\) 1, \['fixed'\]; roles are"),
        ({"momentum": 0.9}, r"momentum and nesterov are SGD's; optimizer 'adam' has its own first moment"),
        ({"momentum": 1.0, "optimizer": "sgd"}, r"momentum \(SGD's\) must be a number in \[0, 1\), got 1.0"),
        ({"momentum": -0.1, "optimizer": "sgd"}, r"must be a number in \[0, 1\), got -0.1"),
        ({"momentum": "0.9", "optimizer": "sgd"}, r"must be a number in \[0, 1\), got '0.9'"),
        ({"momentum": True, "optimizer": "sgd"}, r"must be a number in \[0, 1\), got True"),
        ({"nesterov": True, "optimizer": "sgd"}, "nesterov needs a momentum above 0"),
        ({"nesterov": "yes", "optimizer": "sgd", "momentum": 0.9}, "nesterov must be true or false, got 'yes'"),
    ],
)
def test_config_rejects_bad_values(kwargs, message) -> None:
    with pytest.raises(ScaleplanError, match=message):
        TrialConfig(**kwargs)


def test_config_round_trips_and_names_unknown_keys() -> None:
    cfg = TrialConfig(lr=3e-3, task_kwargs={"noise_std": 0.3}, beta0=2.0)
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ScaleplanError, match="unknown trial config key.*learning_rate"):
        TrialConfig.from_dict({"learning_rate": 1e-3})


def test_population_key_leaves_out_per_member_fields() -> None:
    a = TrialConfig(lr=1e-3, seed=1, init_std=0.5, output_mult=2.0, clip_grad_norm=1.0)
    b = TrialConfig(lr=1e-2, seed=2, init_std=1.0, output_mult=1.0)
    assert a.population_key() == b.population_key()
    assert a.population_key() != TrialConfig(width=128).population_key()


@pytest.mark.parametrize(
    ("schedule", "warmup", "step", "expected"),
    [
        ("constant", 0, 0, 1.0),
        ("constant", 4, 0, 0.2),
        ("constant", 4, 3, 0.8),
        ("constant", 4, 4, 1.0),
        ("cosine", 0, 0, 1.0),
        ("cosine", 0, 5, 0.5),
        ("cosine", 0, 10, 0.0),
        ("cosine", 2, 1, 2 / 3),
        ("cosine", 2, 2, 1.0),
        ("cosine", 2, 10, 0.0),
        ("linear", 0, 5, 0.5),
        ("linear", 2, 2, 1.0),
        ("linear", 2, 6, 0.5),
        ("linear", 2, 10, 0.0),
    ],
)
def test_lr_factor(schedule, warmup, step, expected) -> None:
    cfg = TrialConfig(steps=11, warmup_steps=warmup, schedule=schedule)
    assert lr_factor(step, cfg) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("loss", "first", "expected"),
    [(1.0, 1.0, False), (99.0, 1.0, False), (101.0, 1.0, True), (float("nan"), 1.0, True), (float("inf"), 1.0, True)],
)
def test_diverged(loss, first, expected) -> None:
    assert bool(diverged(torch.tensor(loss), torch.tensor(first))) is expected


def test_tail_mean_uses_the_last_tenth_of_the_steps_run() -> None:
    losses = torch.arange(40.0)
    assert float(tail_mean(losses, 40)) == pytest.approx(37.5)  # mean of 36..39
    assert float(tail_mean(losses, 5)) == 4.0  # at least one step


def test_train_trial_reports_what_it_trained() -> None:
    result = train_trial(TrialConfig(lr=3e-3, **SMALL))
    assert isinstance(result, TrialResult)
    assert not result.diverged and math.isfinite(result.loss)
    # MLP 32 -> 32 -> 32 -> 8 with biases
    assert result.n_params == (32 * 32 + 32) * 2 + 32 * 8 + 8
    assert result.tokens_or_samples == 60 * 32
    assert result.steps_run == 60
    assert 0.25 < result.loss < 1.25  # above the noise floor, below the zero predictor
    assert result.seconds > 0


def test_same_config_gives_the_same_loss_and_seed_changes_it() -> None:
    cfg = TrialConfig(lr=3e-3, seed=3, **SMALL)
    first, second = train_trial(cfg), train_trial(cfg)
    assert first.loss == second.loss and first.train_loss == second.train_loss
    assert train_trial(TrialConfig(lr=3e-3, seed=4, **SMALL)).loss != first.loss


def test_held_out_loss_has_an_interior_optimum_in_lr() -> None:
    losses = [train_trial(TrialConfig(lr=lr, **{**SMALL, "steps": 100})).loss for lr in (1e-4, 3e-3, 3e-1)]
    assert losses[1] < losses[0] and losses[1] < losses[2]


def test_blown_up_trial_is_reported_diverged() -> None:
    result = train_trial(TrialConfig(lr=50.0, **SMALL))
    assert result.diverged and result.loss == math.inf and result.train_loss == math.inf
    assert result.steps_run < 60 and result.tokens_or_samples == 60 * 32  # its grid point's D, not the steps it ran


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_other_optimizers_and_schedules_train(optimizer: str) -> None:
    lr = 3e-3 if optimizer == "adamw" else 3e-2
    plain = train_trial(TrialConfig(lr=lr, optimizer=optimizer, **SMALL))
    decayed = train_trial(TrialConfig(lr=lr, optimizer=optimizer, weight_decay=0.1, warmup_steps=10, schedule="cosine", **SMALL))
    assert math.isfinite(plain.loss) and math.isfinite(decayed.loss) and plain.loss != decayed.loss


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_reaches_torch_and_changes_training(nesterov: bool) -> None:
    cfg = TrialConfig(lr=3e-2, optimizer="sgd", momentum=0.9, nesterov=nesterov, **SMALL)
    groups = make_optimizer(param_groups_for(build_model(cfg, build_task(cfg)), cfg), cfg).param_groups
    assert {(g["momentum"], g["nesterov"], g["dampening"]) for g in groups} == {(0.9, nesterov, 0)}
    assert train_trial(cfg).loss != train_trial(dataclasses.replace(cfg, momentum=0.0, nesterov=False)).loss


def test_adam_betas_reach_torch_and_change_training() -> None:
    cfg = TrialConfig.from_dict(TrialConfig(lr=3e-3, optimizer="adamw", betas=[0.9, 0.95], **SMALL).to_dict())  # type: ignore[arg-type]
    groups = make_optimizer(param_groups_for(build_model(cfg, build_task(cfg)), cfg), cfg).param_groups
    assert {g["betas"] for g in groups} == {(0.9, 0.95)}
    assert train_trial(cfg).loss != train_trial(dataclasses.replace(cfg, betas=None)).loss  # None: torch's (0.9, 0.999)


@pytest.mark.parametrize(
    "convention, lr, tau, steps, expected", [("torch", 1e-2, 0.5, 200, 1.0), ("independent", 1e-2, 0.5, 200, 0.01)]
)
def test_wd_tau_sets_lambda_per_trial(convention: str, lr: float, tau: float, steps: int, expected: float) -> None:
    cfg = TrialConfig(optimizer="adamw", lr=lr, wd_tau=tau, steps=steps, decay_convention=convention)
    assert cfg.effective_weight_decay == pytest.approx(expected, rel=1e-12)  # lambda = 1/(tau * steps [* lr])
    same = TrialConfig(optimizer="adamw", lr=lr, weight_decay=expected, steps=steps, decay_convention=convention, **{
        k: v for k, v in SMALL.items() if k != "steps"})
    assert train_trial(dataclasses.replace(same, weight_decay=0.0, wd_tau=tau)).loss == train_trial(same).loss


@pytest.mark.parametrize("convention", ["torch", "independent"])
def test_mup_equals_sp_at_base_width_with_decay(convention: str) -> None:
    kwargs = dict(SMALL, base_width=SMALL["width"], optimizer="adamw", weight_decay=0.3, lr=3e-3,
                  decay_convention=convention, schedule="cosine", warmup_steps=5)
    mup, sp = train_trial(TrialConfig(parametrization="mup", **kwargs)), train_trial(TrialConfig(parametrization="sp", **kwargs))
    assert (mup.loss, mup.train_loss) == (sp.loss, sp.train_loss)
    assert mup.loss != train_trial(TrialConfig(parametrization="mup", **{**kwargs, "weight_decay": 0.0})).loss


def test_charlm_counts_tokens() -> None:
    cfg = TrialConfig(task="charlm", model="gpt", width=16, base_width=16, steps=3, batch_size=4, lr=1e-3,
                      task_kwargs={"seq_len": 8, "n_eval": 4}, model_kwargs={"depth": 1, "n_heads": 2})
    result = train_trial(cfg)
    assert result.tokens_or_samples == 3 * 4 * 8
    assert result.loss == pytest.approx(math.log(128), rel=0.05)  # barely trained: about uniform


def test_train_trial_restores_the_thread_count() -> None:
    before = torch.get_num_threads()
    train_trial(TrialConfig(lr=3e-3, threads=1, **{**SMALL, "steps": 2}))
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "gpt"}, "model 'gpt' cannot train on task 'teacher-student'; use one of: mlp, denseam"),
        ({"model_kwargs": {"in_dim": 5}}, "model kwarg in_dim=5 contradicts task 'teacher-student'"),
        ({"task": "imagenet"}, "unknown task 'imagenet'"),
        ({"parametrization": "ntk"}, "ntk"),
        ({"device": "abacus"}, "unknown device 'abacus'"),
    ],
)
def test_bad_trial_input_is_a_scaleplan_error(kwargs, message) -> None:
    with pytest.raises(ScaleplanError, match=message):
        train_trial(TrialConfig(**{**SMALL, **kwargs}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_scaleplan_error() -> None:
    with pytest.raises(ScaleplanError, match="torch sees no CUDA GPU; use device='cpu'"):
        train_trial(TrialConfig(device="cuda", **SMALL))


def test_checkpoint_reports_held_out_loss_and_can_stop_the_trial() -> None:
    cfg = TrialConfig(width=16, base_width=16, steps=30, batch_size=16)
    seen: list[tuple[int, float]] = []
    kept = train_trial(cfg, lambda steps, loss: seen.append((steps, loss)) is not None, checkpoint_every=10)
    assert [s for s, _ in seen] == [10, 20]  # none at the last step: its loss is the final one
    assert (kept.loss, kept.pruned, kept.steps_run) == (train_trial(cfg).loss, False, 30)
    stopped = train_trial(cfg, lambda steps, loss: steps == 20, checkpoint_every=10)
    assert (stopped.pruned, stopped.diverged, stopped.steps_run, stopped.loss) == (True, False, 20, seen[1][1])
    assert stopped.tokens_or_samples == 30 * 16  # the planned D: a pruned run belongs to its grid point's cell


def test_non_embedding_params_of_the_gpt_is_about_12_l_d_squared() -> None:
    """N excludes the token/position tables and the readout, as the planner's 12 L d^2 does (plus LN and biases)."""
    from scaleplan.models import build_model
    from scaleplan.train.build import n_params, non_embedding_params

    model = build_model("gpt", 64, depth=3, vocab=50, seq_len=16)
    d, L = 64, 3
    per_block = 12 * d * d + 4 * d + d + 4 * d  # attention 4d^2, MLP 8d^2 + biases 4d + d, two LayerNorms 4d
    assert non_embedding_params(model) == L * per_block + 2 * d  # + the final LayerNorm
    assert n_params(model) == non_embedding_params(model) + 50 * d + 16 * d + d * 50


def test_a_clip_above_every_gradient_norm_trains_exactly_as_no_clip() -> None:
    """Clipping only scales gradients (by exactly 1 below the threshold); without it nothing is recorded."""
    plain = train_trial(TrialConfig(lr=3e-3, **SMALL))
    loose = train_trial(TrialConfig(lr=3e-3, clip_grad_norm=1e30, **SMALL))
    assert (loose.loss, loose.train_loss, loose.clipped_fraction) == (plain.loss, plain.train_loss, 0.0)
    assert plain.clipped_fraction is None


@pytest.mark.parametrize(("section", "value", "message"), [
    ("[train]", "clip_grad_norm = 0", "clip_grad_norm must be > 0, got 0"),
    ("[train]", 'clip_grad_norm = "1"', "clip_grad_norm must be a finite number, got '1'"),
    ("[search]", "clip_grad_norm = [1.0, -0.5]", "clip_grad_norm must be > 0, got -0.5"),
])
def test_a_bad_clip_grad_norm_is_one_line_before_any_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture, section: str, value: str, message: str
) -> None:
    spec = tmp_path / "clip.toml"
    spec.write_text(MLP_GRID.replace(section, f"{section}\n{value}"))
    assert message in one_line_error(["sweep", str(spec)], capsys)
    assert list(tmp_path.iterdir()) == [spec]


def test_a_sweep_clips_with_train_clip_grad_norm(tmp_path: Path) -> None:
    """The [train] key reaches every trial of a built-in sweep (a config the spec could not build would fail), and the
    share of steps clipped is recorded with each trial."""
    from scaleplan.sweep.builtin import BuiltinObjective
    from scaleplan.sweep.plan import grid_points
    from scaleplan.sweep.spec import load_spec
    from scaleplan.sweep.trial import TrialRequest

    spec = tmp_path / "clip.toml"
    spec.write_text(MLP_GRID.replace("[train]", "[train]\nclip_grad_norm = 0.5"))
    loaded = load_spec(spec)
    objective = BuiltinObjective(loaded)
    request = TrialRequest(grid_points(loaded)[0], {"lr": 1e-3})
    assert objective.config(request).clip_grad_norm == 0.5
    (outcome,) = objective.evaluate([request])
    assert 0.0 <= outcome.extras["clipped_fraction"] <= 1.0  # recorded with the trial, where the sweep can show it


def test_a_sweep_leaves_the_train_no_decay_roles_undecayed(tmp_path: Path) -> None:
    """[train] no_decay reaches every trial's optimizer groups: those roles get no weight decay, the others the rules'."""
    from scaleplan.sweep.builtin import BuiltinObjective
    from scaleplan.sweep.plan import grid_points
    from scaleplan.sweep.spec import load_spec
    from scaleplan.sweep.trial import TrialRequest
    from scaleplan.train.build import build_model, build_task, param_groups_for

    spec = tmp_path / "nodecay.toml"
    spec.write_text(MLP_GRID.replace("[train]", '[train]\noptimizer = "adamw"\nweight_decay = 0.1\nno_decay = ["vector", "fixed"]'))
    loaded = load_spec(spec)
    cfg = BuiltinObjective(loaded).config(TrialRequest(grid_points(loaded)[-1], {"lr": 1e-3}))
    assert cfg.no_decay == ("fixed", "vector") and TrialConfig.from_dict(cfg.to_dict()) == cfg
    model = build_model(cfg, build_task(cfg))
    roles = {name: record.role for name, record in model.scaleplan_state.tensors.items()}
    decays = {name: g["weight_decay"] for g in param_groups_for(model, cfg) for name in g["names"]}
    assert {roles[n] for n, wd in decays.items() if wd == 0} == {"vector", "fixed"}
    assert all(wd > 0 for n, wd in decays.items() if roles[n] not in ("vector", "fixed"))

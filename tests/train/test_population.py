"""Population training: K trials in one batched computation equal K sequential train_trial runs."""

from __future__ import annotations

import dataclasses
import math

import pytest

from scaleplan.errors import ScaleplanError
from scaleplan.train.config import TrialConfig
from scaleplan.train.loop import train_trial
from scaleplan.train.population import population_size_for, train_population

BASE = TrialConfig(width=64, base_width=32, steps=40, batch_size=32, model_kwargs={"depth": 3})


def members(**per_member: list) -> list[TrialConfig]:
    n = len(next(iter(per_member.values())))
    return [dataclasses.replace(BASE, **{k: v[i] for k, v in per_member.items()}) for i in range(n)]


def assert_same_as_sequential(cfgs: list[TrialConfig], rel: float = 1e-5) -> None:
    population = train_population(cfgs)
    for cfg, together in zip(cfgs, population):
        alone = train_trial(cfg)
        assert together.diverged == alone.diverged
        assert together.loss == pytest.approx(alone.loss, rel=rel)
        assert together.train_loss == pytest.approx(alone.train_loss, rel=rel)
        assert (together.n_params, together.tokens_or_samples, together.steps_run) == (
            alone.n_params, alone.tokens_or_samples, alone.steps_run)


@pytest.mark.parametrize(
    ("optimizer", "lrs", "weight_decay"),
    [
        ("adam", [1e-3, 3e-3, 1e-2], 0.0),
        ("adam", [1e-3, 3e-3, 1e-2], 0.05),
        ("adamw", [1e-3, 3e-3, 1e-2], 0.1),
        ("sgd", [1e-2, 3e-2, 1e-1], 0.0),
    ],
)
def test_population_equals_sequential_runs(optimizer, lrs, weight_decay) -> None:
    cfgs = members(lr=lrs, seed=[0, 1, 0], optimizer=[optimizer] * 3, weight_decay=[weight_decay] * 3,
                   schedule=["cosine"] * 3, warmup_steps=[5] * 3)
    assert_same_as_sequential(cfgs)


@pytest.mark.parametrize("nesterov", [False, True])
def test_population_sgd_momentum_equals_sequential_runs(nesterov: bool) -> None:
    # the momentum buffer starts at the first gradient, decay enters it (coupled), a schedule scales the step
    cfgs = members(lr=[1e-2, 3e-2, 1e-1], seed=[0, 1, 0], optimizer=["sgd"] * 3, momentum=[0.9] * 3,
                   nesterov=[nesterov] * 3, weight_decay=[0.0, 0.05, 0.0], schedule=["cosine"] * 3, warmup_steps=[5] * 3)
    assert_same_as_sequential(cfgs)


def test_population_adam_betas_equal_sequential_runs() -> None:
    cfgs = members(lr=[1e-3, 3e-3, 1e-2], seed=[0, 1, 0], optimizer=["adam"] * 3, betas=[(0.8, 0.95)] * 3,
                   schedule=["cosine"] * 3, warmup_steps=[5] * 3)
    assert_same_as_sequential(cfgs)


@pytest.mark.parametrize("convention", ["torch", "independent"])
def test_population_adamw_decay_equals_sequential_to_1e_6(convention: str) -> None:
    # members differ in lr and in lambda (given directly, or through the timescale wd_tau), muP hidden x m
    cfgs = members(lr=[1e-3, 3e-3, 1e-2, 3e-3], seed=[0, 1, 0, 2], optimizer=["adamw"] * 4,
                   weight_decay=[0.5, 2.0, 0.0, 0.0], wd_tau=[None, None, 0.2, 1.0], decay_convention=[convention] * 4,
                   schedule=["cosine"] * 4, warmup_steps=[5] * 4)
    assert_same_as_sequential(cfgs, rel=1e-6)


def test_members_may_differ_in_init_std_output_mult_and_weight_decay() -> None:
    cfgs = members(lr=[3e-3] * 3, init_std=[0.5, 1.0, None], output_mult=[1.0, 2.0, 1.0],
                   weight_decay=[0.0, 0.1, 0.0])
    assert_same_as_sequential(cfgs)


def test_denseam_population_with_different_beta0_and_tau() -> None:
    base = dict(task="patterns", model="denseam", parametrization="denseam", steps=20,
                model_kwargs={"n_memories": 16, "steps": 2})
    cfgs = [dataclasses.replace(BASE, lr=lr, beta0=b, tau=t, **base) for lr, b, t in [(1e-2, 1.0, 1.0), (3e-2, 2.0, 1.0), (1e-2, 1.0, 0.5)]]
    assert_same_as_sequential(cfgs)


def test_gpt_population_on_charlm() -> None:
    cfgs = [TrialConfig(task="charlm", model="gpt", width=32, base_width=16, steps=8, batch_size=4, lr=lr, seed=seed,
                        task_kwargs={"seq_len": 16, "n_eval": 8}, model_kwargs={"depth": 1, "n_heads": 2})
            for lr, seed in [(1e-3, 0), (3e-3, 1)]]
    assert_same_as_sequential(cfgs, rel=1e-4)


@pytest.mark.parametrize("tied", [True, False])
def test_hf_gpt2_population_on_charlm(tied: bool) -> None:
    """transformers' GPT-2 under vmap: tied weights survive the meta skeleton (they did not: wrong losses)."""
    pytest.importorskip("transformers")
    cfgs = [TrialConfig(task="charlm", model="hf-gpt2", width=32, base_width=16, steps=6, batch_size=4, lr=lr, seed=seed,
                        task_kwargs={"seq_len": 16, "n_eval": 8}, model_kwargs={"depth": 1, "n_heads": 2, "tied": tied},
                        init_std=0.02)
            for lr, seed in [(1e-3, 0), (1e-2, 1)]]
    assert_same_as_sequential(cfgs, rel=1e-4)


def test_a_model_with_dropout_is_sized_one_and_refused_as_a_population() -> None:
    """vmap cannot draw each member's dropout masks as its own run does (it refused with "called random operation
    while in randomness error mode"), so such a model trains one trial at a time, whatever SCALEPLAN_POPULATION says."""
    pytest.importorskip("transformers")
    kwargs = {"depth": 1, "n_heads": 2, "tied": False}
    cfg = TrialConfig(task="charlm", model="hf-gpt2", width=16, base_width=16, steps=2, batch_size=4, init_std=0.02,
                      task_kwargs={"seq_len": 16, "n_eval": 8}, model_kwargs={**kwargs, "dropout": 0.3})
    assert population_size_for(cfg) == 1
    assert population_size_for(dataclasses.replace(cfg, model_kwargs={**kwargs, "dropout": 0.0})) == 8  # tests/conftest.py
    with pytest.raises(ScaleplanError, match="^a model with dropout cannot train in a population: train its trials one"):
        train_population([cfg, dataclasses.replace(cfg, seed=1)])


def test_a_diverged_member_does_not_poison_the_others() -> None:
    cfgs = members(lr=[3e-3, 50.0, 1e-2], seed=[0, 0, 1])
    population = train_population(cfgs)
    assert population[1].diverged and population[1].loss == math.inf and population[1].steps_run < BASE.steps
    assert population[1].tokens_or_samples == population[0].tokens_or_samples  # its grid point's planned D
    for i in (0, 2):
        alone = train_trial(cfgs[i])
        assert not population[i].diverged
        assert population[i].loss == pytest.approx(alone.loss, rel=1e-5)


def test_all_members_diverged() -> None:
    results = train_population(members(lr=[40.0, 80.0]))
    assert [r.diverged for r in results] == [True, True]


def test_members_must_share_width_and_budget() -> None:
    with pytest.raises(ScaleplanError, match="these differ: steps, width"):
        train_population([BASE, dataclasses.replace(BASE, width=128, steps=10)])


def test_empty_population() -> None:
    assert train_population([]) == []


def test_a_pruned_member_does_not_change_the_others() -> None:
    cfgs = members(lr=[3e-3, 1e-4, 1e-2], seed=[0, 0, 1])
    calls: list[tuple[int, list[bool]]] = []

    def prune_member_1_at_20(steps_done: int, losses: list[float]) -> list[bool]:
        calls.append((steps_done, [math.isfinite(v) for v in losses]))
        return [steps_done == 20 and i == 1 for i in range(len(losses))]

    pruned = train_population(cfgs, prune_member_1_at_20, checkpoint_every=10)
    plain = train_population(cfgs)
    # checkpoints after steps 10, 20, 30 (not at the end); member 1 is NaN once stopped
    assert calls == [(10, [True] * 3), (20, [True] * 3), (30, [True, False, True])]
    assert pruned[1].pruned and not pruned[1].diverged and pruned[1].steps_run == 20
    assert math.isfinite(pruned[1].loss) and pruned[1].loss != plain[1].loss
    for i in (0, 2):
        assert not pruned[i].pruned and pruned[i].steps_run == BASE.steps
        assert (pruned[i].loss, pruned[i].train_loss) == (plain[i].loss, plain[i].train_loss)


def test_pruning_every_member_stops_training() -> None:
    results = train_population(members(lr=[1e-3, 3e-3]), lambda steps, losses: [True] * len(losses), checkpoint_every=10)
    assert [(r.pruned, r.steps_run) for r in results] == [(True, 10), (True, 10)]
    assert all(math.isfinite(r.loss) for r in results)


def test_denseam_population_with_retrieval_memory_eps_trains_together_and_equals_sequential() -> None:
    """memory_eps="retrieval": each member's memories get their own calibrated eps (seeds differ, so do their
    gradients at init), yet the members share one batched computation and match sequential runs."""
    from scaleplan.train.build import build_model, build_task
    from scaleplan.train.population import _static_state

    base = dict(task="patterns", model="denseam", parametrization="denseam", steps=20, memory_eps="retrieval",
                model_kwargs={"energy": "lse", "beta0": 4.0, "n_memories": 16, "steps": 2})
    cfgs = [dataclasses.replace(BASE, lr=lr, seed=seed, **base) for lr, seed in [(1e-2, 0), (3e-2, 1)]]
    task = build_task(cfgs[0])
    first, second = (build_model(cfg, task) for cfg in cfgs)
    eps = [next(r.eps_value for r in m.scaleplan_state.tensors.values() if r.eps_value is not None) for m in (first, second)]
    assert eps[0] != eps[1] and _static_state(first) == _static_state(second)
    assert_same_as_sequential(cfgs)


def test_mup_members_that_differ_only_in_their_seed_share_one_batched_computation() -> None:
    """The parametrization records each member's own draws (to recognise a re-initialization); they differ by seed and
    must not split a population into one group per member."""
    from scaleplan.train.build import build_model, build_task
    from scaleplan.train.population import _static_state

    cfgs = [dataclasses.replace(BASE, parametrization="mup", width=256, base_width=32, seed=seed) for seed in (0, 1)]
    first, second = (build_model(cfg, build_task(cfg)) for cfg in cfgs)
    assert first.scaleplan_state.own_inits != second.scaleplan_state.own_inits
    assert _static_state(first) == _static_state(second)


@pytest.mark.parametrize(("optimizer", "lr", "clips"), [("adam", 1e-2, [0.3, None, 1.0]), ("sgd", 1e-1, [0.15, None, 0.1])])
def test_clipped_members_equal_their_sequential_runs(optimizer: str, lr: float, clips: list) -> None:
    """clip_grad_norm in a population is clip_grad_norm_ of each member's sequential run; it clips here, and it matters."""
    cfgs = members(lr=[lr] * 3, seed=[0, 1, 2], optimizer=[optimizer] * 3, clip_grad_norm=clips)
    assert_same_as_sequential(cfgs)
    population = train_population(cfgs)
    unclipped = train_population([dataclasses.replace(cfg, clip_grad_norm=None) for cfg in cfgs])
    for cfg, clipped, plain in zip(cfgs, population, unclipped):
        if cfg.clip_grad_norm is None:
            assert clipped.clipped_fraction is None and clipped.loss == plain.loss
        else:
            assert clipped.clipped_fraction == train_trial(cfg).clipped_fraction
            assert 0 < clipped.clipped_fraction <= 1 and clipped.loss != pytest.approx(plain.loss, rel=1e-4)


def test_each_member_is_clipped_by_its_own_norm() -> None:
    """A member with huge gradients (output multiplier 100) beside one with small ones: a norm pooled over members
    would clip the small one by the huge one's norm; each must follow its own sequential run."""
    cfgs = members(lr=[1e-1, 1e-1], seed=[0, 1], optimizer=["sgd", "sgd"], output_mult=[1.0, 100.0],
                   clip_grad_norm=[0.15, 0.15])
    together = train_population(cfgs)
    for cfg, result in zip(cfgs, together):
        alone = train_trial(cfg)
        assert result.loss == pytest.approx(alone.loss, rel=1e-5)
        assert result.clipped_fraction == alone.clipped_fraction
    assert 0 < together[0].clipped_fraction < together[1].clipped_fraction == 1


def test_a_stopped_members_clipped_share_counts_only_the_steps_it_ran() -> None:
    """A diverged member is frozen (zeroed) and its later gradients are not its steps: its share matches its run alone."""
    cfgs = members(lr=[3e-3, 50.0], seed=[0, 0], clip_grad_norm=[0.3, 0.3])
    together = train_population(cfgs)
    alone = [train_trial(cfg) for cfg in cfgs]
    assert together[1].diverged and together[1].steps_run < BASE.steps
    assert [r.clipped_fraction for r in together] == [r.clipped_fraction for r in alone]

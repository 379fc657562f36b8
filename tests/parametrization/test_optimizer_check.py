"""An optimizer whose lrs lost muP's per-layer ratios is warned about once, at the training loop's step; one that
keeps them is not: the check must neither miss the common ways of losing them nor cry wolf on correct schedules."""

from __future__ import annotations

import warnings
from typing import Callable

import pytest
import torch
from torch import nn

from scaleplan.core.reference import ParametrizationRef
from scaleplan.errors import ParametrizationWarning
from scaleplan.laws import Estimate, Prediction
from scaleplan.models import build_parametrized
from scaleplan.parametrization import apply_parametrization, param_groups
from scaleplan.parametrization.optimizer_check import FACTOR_KEY, schedule_problem

Schedule = Callable[[torch.optim.Optimizer, int], None]


def mlp(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3))


def parametrized(width: int = 256, parametrization: str = "mup") -> nn.Sequential:
    torch.manual_seed(0)
    return apply_parametrization(mlp(width), parametrization, base=mlp(64))


def warnings_of(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 4, schedule: Schedule | None = None,
                scheduler: Callable[[torch.optim.Optimizer], object] | None = None) -> list[warnings.WarningMessage]:
    """Train a few steps; the warnings given meanwhile (the model was parametrized before: only the step warns)."""
    x = torch.randn(16, 8)
    sched = scheduler(optimizer) if scheduler else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(steps):
            if schedule:
                schedule(optimizer, step)
            optimizer.zero_grad()
            model(x).pow(2).mean().backward()
            optimizer.step()
            if sched is not None:
                sched.step()  # type: ignore[attr-defined]
    return list(caught)


def adam_groups(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(param_groups(model, 1e-3))


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD])
def test_one_lr_for_every_tensor_is_warned_about_once_at_the_step(optimizer) -> None:
    model = parametrized()
    caught = warnings_of(model, optimizer(model.parameters(), lr=1e-3))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "scaleplan.param_groups(model, lr)" in message and "2.weight" in message
    assert caught[0].filename == __file__  # points at the training loop's optimizer.step(), not into torch
    assert caught[0].category is ParametrizationWarning  # one filter for every warning about a parametrized model


def test_nanogpt_weight_decay_groups_are_warned_about() -> None:
    model = parametrized()
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": matrices, "weight_decay": 0.1}, {"params": vectors, "weight_decay": 0.0}], lr=1e-3)
    assert len(warnings_of(model, optimizer)) == 1


def test_a_group_added_later_is_checked() -> None:
    model = parametrized()
    first, rest = list(model.parameters())[:2], list(model.parameters())[2:]  # the input layer alone: one factor
    optimizer = torch.optim.Adam(first, lr=1e-3)
    assert warnings_of(model, optimizer, steps=2) == []
    optimizer.add_param_group({"params": rest})
    assert len(warnings_of(model, optimizer, steps=2)) == 1


def test_hand_made_groups_that_follow_the_roles_are_not_warned_about() -> None:
    model = parametrized()
    groups = [{"params": g["params"], "lr": g["lr"]} for g in param_groups(model, 1e-3)]  # no factor key: as by hand
    assert warnings_of(model, torch.optim.Adam(groups)) == []


@pytest.mark.parametrize("width, parametrization", [(64, "mup"), (256, "sp")])
def test_one_lr_is_right_where_every_factor_is_one(width: int, parametrization: str) -> None:
    model = parametrized(width, parametrization)
    assert warnings_of(model, torch.optim.Adam(model.parameters(), lr=1e-3)) == []


def flatten(optimizer: torch.optim.Optimizer, step: int) -> None:
    for group in optimizer.param_groups:
        group["lr"] = 1e-3 * (step + 1) / 4  # nanoGPT's loop


def scale(optimizer: torch.optim.Optimizer, step: int) -> None:
    for group in optimizer.param_groups:
        group["lr"] = 1e-3 * (step + 1) / 4 * group[FACTOR_KEY]


@pytest.mark.parametrize(
    "schedule, scheduler, warned",
    [
        (None, None, False),
        (flatten, None, True),
        (scale, None, False),
        (None, lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-3, total_steps=10), True),
        (None, lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=[g["lr"] for g in o.param_groups], total_steps=10), False),
        (None, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4, eta_min=1e-4), True),
        (None, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4), False),
        (None, lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: min(1.0, s / 2)), False),  # warmup from lr 0
    ],
    ids=["constant", "loop-sets-lr", "loop-scales-lr", "onecycle-scalar", "onecycle-list", "cosine-eta-min", "cosine",
         "lambda-warmup"],
)
def test_schedules_that_flatten_the_ratios_are_warned_about(schedule, scheduler, warned: bool) -> None:
    model = parametrized()
    caught = warnings_of(model, adam_groups(model), schedule=schedule, scheduler=scheduler)
    assert len(caught) == (1 if warned else 0)
    if warned:
        assert "g['lr'] = lr * g['scaleplan_lr_factor']" in str(caught[0].message)


def flatten_decay(optimizer: torch.optim.Optimizer, step: int) -> None:
    for g in optimizer.param_groups:  # a DINO/ViT-style weight-decay schedule, written over every group
        g["weight_decay"] = 0.1 * (1 + step) / 4


def scale_decay(optimizer: torch.optim.Optimizer, step: int) -> None:
    for g in optimizer.param_groups:
        g["weight_decay"] = g["scaleplan_initial_weight_decay"] * (1 + step) / 4


@pytest.mark.parametrize("no_decay, schedule, warned", [
    ((), flatten_decay, "weight decays are now 0.0625x to 0.25x the ones param_groups set"),
    (("vector", "fixed"), flatten_decay, "was built without weight decay (no_decay) and now has weight_decay 0.025"),
    ((), scale_decay, None), (("vector", "fixed"), scale_decay, None),
])
def test_a_weight_decay_schedule_that_flattens_the_roles_is_warned_about(no_decay: tuple, schedule: Schedule,
                                                                        warned: str | None) -> None:
    # muP scales AdamW's (torch convention) weight decay by the fan-in multiplier: the hidden matrix decays 4x at 4x width
    model = parametrized()
    optimizer = torch.optim.AdamW(param_groups(model, 1e-3, optimizer="adamw", weight_decay=0.1, no_decay=no_decay))
    caught = warnings_of(model, optimizer, schedule=schedule)
    assert [warned in str(w.message) for w in caught] == ([True] if warned else [])
    if warned:
        assert "g['weight_decay'] = g['scaleplan_initial_weight_decay'] * factor" in str(caught[0].message)


def test_schedule_problem_names_both_groups_and_their_factors() -> None:
    groups = [{"lr": 1e-3, FACTOR_KEY: 1.0, "names": ["a.weight"]}, {"lr": 1e-3, FACTOR_KEY: 0.25, "names": ["b.weight"]}]
    message = schedule_problem(groups)
    assert message is not None
    assert "group 0 (a.weight) has lr 0.001 = 0.001 x its factor 1" in message
    assert "group 1 (b.weight) has lr 0.001 = 0.004 x its factor 0.25" in message
    assert schedule_problem([{**g, "lr": 0.0} for g in groups]) is None  # a warmup's first step: all at 0


@pytest.mark.parametrize(
    "built, optimizer, kwargs, warned_fix",
    [
        ("adam", torch.optim.SGD, {}, "optimizer='sgd'"),
        ("sgd", torch.optim.Adam, {}, "optimizer='adam'"),
        ("sgd", torch.optim.AdamW, {}, "optimizer='adamw'"),
        ("adamw", torch.optim.Adam, {"weight_decay": 0.1, "decay": "independent"}, "optimizer='adam'"),
        ("adam", torch.optim.AdamW, {}, None),
        ("adamw", torch.optim.Adam, {}, None),  # no decay: the same groups
        ("sgd", torch.optim.SGD, {}, None),
    ],
)
def test_groups_built_for_another_optimizer_are_warned_about(built: str, optimizer, kwargs: dict, warned_fix: str | None) -> None:
    model = parametrized()
    caught = warnings_of(model, optimizer(param_groups(model, 1e-3, optimizer=built, **kwargs)))
    assert [w for w in caught if warned_fix and warned_fix in str(w.message)] == caught
    assert len(caught) == (1 if warned_fix else 0)


@pytest.mark.parametrize(
    "fitted, sgd_kwargs, warned",
    [
        ((0.9, False), {"momentum": 0.9}, None),
        ((0.9, False), {}, "fitted with SGD momentum 0.9, but torch.optim.SGD steps group 0 with momentum 0"),
        ((0.0, False), {"momentum": 0.9}, "fitted with SGD momentum 0, but torch.optim.SGD steps group 0 with momentum 0.9"),
        ((0.9, True), {"momentum": 0.9}, "momentum 0.9, nesterov, but torch.optim.SGD steps group 0 with momentum 0.9:"),
        ((0.9, True), {"momentum": 0.9, "nesterov": True}, None),
    ],
)
def test_sgd_momentum_other_than_the_laws_is_warned_about(fitted: tuple, sgd_kwargs: dict, warned: str | None) -> None:
    model = apply_parametrization(mlp(256), "mup", base=mlp(64), base_width=64)  # a known width, checked against the law's
    law = ParametrizationRef("mup", base_width=64, optimizer="sgd", momentum=fitted[0], nesterov=fitted[1])
    groups = param_groups(model, Prediction("law", {"W": 256}, {"lr": Estimate(1e-3)}, (), law), optimizer="sgd")
    messages = [str(w.message) for w in warnings_of(model, torch.optim.SGD(groups, lr=1e-3, **sgd_kwargs))]
    assert len(messages) == (0 if warned is None else 1) and all(warned in m for m in messages)


def test_momentum_is_not_checked_without_an_sgd_law() -> None:
    model = parametrized()  # a plain lr: no law says which momentum the lr is for
    assert warnings_of(model, torch.optim.SGD(param_groups(model, 1e-3, optimizer="sgd"), lr=1e-3, momentum=0.9)) == []


@pytest.mark.parametrize(
    "groups_kwargs, optimizer_kwargs, warned",
    [
        ({}, {"weight_decay": 0.1}, "pass weight_decay=0.1 to param_groups"),  # silently no decay without the check
        ({}, {}, None),  # AdamW's own default 0.01: not taken to be meant
        ({"weight_decay": 0.1}, {"weight_decay": 0.1}, None),
        ({"weight_decay": 0.1}, {}, None),
    ],
)
def test_a_weight_decay_given_to_the_optimizer_is_not_silently_dropped(groups_kwargs: dict, optimizer_kwargs: dict,
                                                                        warned: str | None) -> None:
    model = parametrized()
    optimizer = torch.optim.AdamW(param_groups(model, 1e-3, optimizer="adamw", **groups_kwargs), **optimizer_kwargs)
    caught = warnings_of(model, optimizer)
    assert [str(w.message) for w in caught if warned and warned in str(w.message)] == [str(w.message) for w in caught]
    assert len(caught) == (1 if warned else 0)


@pytest.mark.parametrize("optimizer_eps, groups_eps, warned", [(1e-6, 1e-8, True), (1e-6, 1e-6, False), (1e-8, 1e-8, False)])
def test_an_eps_given_to_the_optimizer_is_checked_where_the_rules_scale_it(optimizer_eps: float, groups_eps: float,
                                                                           warned: bool) -> None:
    torch.manual_seed(0)
    model = build_parametrized("gpt", 64, "mup", 32, completep=True, base_depth=1, depth=2, n_heads=2, vocab=16, seq_len=8)
    groups = param_groups(model, 1e-3, eps=groups_eps)
    assert all("eps" in g for g in groups)  # CompleteP scales Adam's eps by 1/(m * m_L)
    optimizer = torch.optim.Adam(groups, eps=optimizer_eps)
    x = torch.randint(0, 16, (2, 8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(x).sum().backward()
        optimizer.step()
    messages = [str(w.message) for w in caught if "param_groups" in str(w.message)]
    assert messages == (["torch.optim.Adam(eps=1e-06) is overridden by param_groups' groups, which set their own eps from "
                         "eps=1e-08: pass eps=1e-06 to param_groups(model, lr, ...), which scales it per role"] if warned else [])


def test_an_eps_given_to_the_optimizer_reaches_groups_the_rules_leave_alone() -> None:
    model = parametrized()
    caught = warnings_of(model, torch.optim.Adam(param_groups(model, 1e-3), eps=1e-6))
    assert caught == []


class FusedHead(nn.Module):
    """A readout used through its weight (as chunked or fused cross-entropy code does): its module never runs."""

    def __init__(self, width: int, manual: bool = False) -> None:
        super().__init__()
        self.body, self.out, self.manual = nn.Linear(8, width), nn.Linear(width, 3), manual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.body(x))
        if self.manual:  # the fix the warning names
            from scaleplan.parametrization import readout_multiplier
            h = h * readout_multiplier(self, "out.weight")
        return nn.functional.linear(h, self.out.weight, self.out.bias)


@pytest.mark.parametrize("manual", [False, True])
def test_a_readout_used_through_its_weight_is_named_at_the_step(manual: bool) -> None:
    torch.manual_seed(0)
    model = apply_parametrization(FusedHead(256, manual), "mup", base=FusedHead(64))
    caught = warnings_of(model, adam_groups(model))
    assert [str(w.message)[:105] for w in caught] == ([] if manual else [
        "the readout out.weight has a gradient, but its module's forward did not run since the last step, so muP's"])


def test_an_evaluation_forward_through_the_readout_does_not_excuse_a_fused_training_path() -> None:
    # a step-0 evaluation (or generate) calls the head module once; training then uses its weight (Liger's fused
    # linear + cross-entropy): the flag set by the evaluation used to stay set, and the check to stay silent
    torch.manual_seed(0)
    model = apply_parametrization(FusedHead(256), "mup", base=FusedHead(64))
    with torch.no_grad():
        model.out(torch.relu(model.body(torch.randn(4, 8))))
    caught = warnings_of(model, adam_groups(model), steps=3)
    assert len(caught) == 1 and "forward did not run since the last step" in str(caught[0].message)
    assert warnings_of(parametrized(), adam_groups(parametrized()), steps=3) == []  # a module called every step: silent


@pytest.mark.parametrize("optimizer", [torch.optim.NAdam, torch.optim.RAdam, torch.optim.RMSprop, torch.optim.Adagrad])
def test_adaptive_optimizers_follow_adams_rules_in_the_check(optimizer) -> None:
    model = parametrized()
    assert len(warnings_of(model, optimizer(model.parameters(), lr=1e-3))) == 1
    assert warnings_of(model, optimizer(param_groups(model, 1e-3))) == []


@pytest.mark.parametrize("build", [
    lambda model: torch.optim.Muon([p for p in model.parameters() if p.dim() == 2], lr=1e-3),  # Muon takes matrices only
    lambda model: torch.optim.Adafactor(param_groups(model, 1e-3)),
])
def test_an_optimizer_without_mup_rules_is_warned_about_once_at_the_step(build) -> None:
    """Muon orthogonalizes its updates and Adafactor scales them relatively: neither follows the Adam (or SGD) lrs that
    param_groups sets, so the lr may not transfer: said once, at the step; an unparametrized model is left alone."""
    model = parametrized()
    caught = warnings_of(model, build(model))
    assert len(caught) == 1 and caught[0].filename == __file__
    assert str(caught[0].message).startswith("scaleplan has no muP rules for torch.optim.")
    assert "0.weight" in str(caught[0].message)
    plain = mlp(256)
    assert warnings_of(plain, torch.optim.Adafactor(plain.parameters(), lr=1e-3)) == []


@pytest.fixture
def swap_on_conversion():
    """torch swaps a module's parameters for new ones on .to() (as it does for FSDP2's DTensor parameters)."""
    torch.__future__.set_swap_module_params_on_conversion(True)
    yield
    torch.__future__.set_swap_module_params_on_conversion(False)


def test_tensors_replaced_after_apply_are_still_checked(swap_on_conversion) -> None:
    model = parametrized()
    model.to(torch.float64)  # swaps each tensor's contents and attributes with a new one's
    assert not hasattr(model[2].weight, "_scaleplan_lr_factors")  # the tag is gone
    x = torch.randn(16, 8, dtype=torch.float64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(x).pow(2).mean().backward()
        optimizer.step()
    assert len(caught) == 1 and "scaleplan.param_groups(model, lr)" in str(caught[0].message)


class TwoHeads(nn.Module):
    """A body with two readouts used on alternate steps (multi-task), and an input embedding tied to a third."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.emb, self.body = nn.Embedding(20, width), nn.Linear(width, width)
        self.head_a, self.head_b, self.tied = nn.Linear(width, 3), nn.Linear(width, 3), nn.Linear(width, 20, bias=False)
        self.tied.weight = self.emb.weight

    def forward(self, ids: torch.Tensor, head: str) -> torch.Tensor:
        return getattr(self, head)(torch.relu(self.body(self.emb(ids)))).pow(2).mean()


@pytest.mark.parametrize("set_to_none", [True, False])
def test_readouts_a_step_does_not_use_are_not_warned_about(set_to_none: bool) -> None:
    # a zero gradient kept by zero_grad(set_to_none=False), and a tied embedding trained as an input alone once its
    # readout has run, are no readout used through its weight
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tied embedding's own warning
        model = apply_parametrization(TwoHeads(256), "mup", base=TwoHeads(64))
    optimizer = adam_groups(model)
    ids = torch.randint(0, 20, (4, 5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for head in ("tied", "head_a", "head_b", "body", "head_a", "head_b"):
            optimizer.zero_grad(set_to_none=set_to_none)
            (model(ids, head) if head != "body" else model.body(model.emb(ids)).pow(2).mean()).backward()
            optimizer.step()
    assert [str(w.message) for w in caught] == []

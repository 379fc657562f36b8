"""param_groups checks a model against the law prediction it is given: a mismatch is an error, not a wrong lr."""

from __future__ import annotations

import pytest
from torch import nn

from scaleplan.core.reference import ParametrizationRef
from scaleplan.errors import ParametrizationError, ScaleplanError
from scaleplan.laws import Estimate, Prediction
from scaleplan.models import build_parametrized
from scaleplan.parametrization import apply_parametrization, param_groups


def prediction(width: float, ref: ParametrizationRef) -> Prediction:
    return Prediction("law", {"W": width}, {"lr": Estimate(0.01)}, (), ref)


def mlp(width: int, base_width: int, parametrization: str = "mup"):
    return build_parametrized("mlp", width, parametrization, base_width, in_dim=8, out_dim=4)


def test_matching_model_gets_the_muP_lrs() -> None:
    groups = param_groups(mlp(256, 64), prediction(256, ParametrizationRef("mup", base_width=64)))
    lrs = {name: g["lr"] for g in groups for name in g["names"]}
    assert lrs["hidden.0.weight"] == pytest.approx(0.01 / 4) and lrs["readout.weight"] == pytest.approx(0.01)


@pytest.mark.parametrize(
    "model, pred, optimizer, fragment",
    [
        (lambda: mlp(256, 32), prediction(256, ParametrizationRef("mup", base_width=64)), "adam", "base width 32 (law: 64)"),
        (lambda: mlp(256, 64, "sp"), prediction(256, ParametrizationRef("mup", base_width=64)), "adam", "parametrization 'sp'"),
        (lambda: mlp(128, 64), prediction(256, ParametrizationRef("mup", base_width=64)), "adam",
         "the prediction is for width 256 but the model has width 128"),
        (lambda: mlp(256, 64), prediction(256, ParametrizationRef("mup", base_width=64)), "sgd", "optimizer 'sgd'"),
    ],
)
def test_mismatches_are_refused(model, pred: Prediction, optimizer: str, fragment: str) -> None:
    with pytest.raises(ParametrizationError) as info:
        param_groups(model(), pred, optimizer=optimizer)
    assert fragment in str(info.value)


def test_a_plain_float_lr_is_not_checked() -> None:
    assert param_groups(mlp(128, 64), 0.01)


# Per-tensor AdamW lambda at m = 1, 2, 8 (base lambda WD), number by number: (group lr, decay per step at peak lr)
# torch:       p *= 1 - lr_role * lambda_role with lambda_role = lambda x m on hidden: decay lr*WD on every role
# independent: p *= 1 - lambda_role with lambda_role = lambda on every role
LR, WD = 1e-2, 0.1
ROLES = {"input.weight": "input", "input.bias": "vector", "hidden.0.weight": "hidden", "hidden.0.bias": "vector",
         "readout.weight": "output", "readout.bias": "fixed"}
LAMBDA = {  # (convention, m) -> {role: lambda_role / WD}
    ("torch", 1): {"input": 1, "hidden": 1, "output": 1, "vector": 1, "fixed": 1},
    ("torch", 2): {"input": 1, "hidden": 2, "output": 1, "vector": 1, "fixed": 1},
    ("torch", 8): {"input": 1, "hidden": 8, "output": 1, "vector": 1, "fixed": 1},
    ("independent", 1): {"input": 1, "hidden": 1, "output": 1, "vector": 1, "fixed": 1},
    ("independent", 2): {"input": 1, "hidden": 1, "output": 1, "vector": 1, "fixed": 1},
    ("independent", 8): {"input": 1, "hidden": 1, "output": 1, "vector": 1, "fixed": 1},
}
HIDDEN_LR = {1: LR, 2: LR / 2, 8: LR / 8}


@pytest.mark.parametrize("decay, m", sorted(LAMBDA))
def test_adamw_lambda_per_role_keeps_every_timescale(decay: str, m: int) -> None:
    import torch

    net = mlp(32 * m, 32)
    groups = param_groups(net, LR, WD, "adamw", decay=decay)
    torch_wd = {name: (g["lr"], g["weight_decay"]) for g in groups for name in g["names"]}
    for name, role in ROLES.items():
        lr, wd = torch_wd[name]
        assert lr == pytest.approx(HIDDEN_LR[m] if role == "hidden" else LR, rel=1e-12), name
        lam = WD * LAMBDA[decay, m][role]
        assert wd == pytest.approx(lam if decay == "torch" else lam / lr, rel=1e-12), name
    # one AdamW step with zero gradients only decays: p_new = (1 - decay per step) p, the same on every role
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    net(torch.zeros(1, 8))  # a forward, as training has (the optimizer check wants the readout's module to have run)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    torch.optim.AdamW(groups).step()
    per_step = LR * WD if decay == "torch" else WD
    for name, p in net.named_parameters():
        assert torch.allclose(p.detach(), before[name] * (1 - per_step), rtol=1e-6, atol=0), name


def wd_prediction(width: float, ref: ParametrizationRef, lam: float = 0.05, convention: str = "independent") -> Prediction:
    values = {"lr": Estimate(0.01), "wd_tau": Estimate(0.3), "weight_decay": Estimate(lam)}
    return Prediction("law", {"W": width}, values, (), ref, convention)


def test_a_predicted_lambda_lands_in_the_groups() -> None:
    groups = param_groups(mlp(256, 64), wd_prediction(256, ParametrizationRef("mup", base_width=64, optimizer="adamw")),
                          optimizer="adamw")
    decay = {name: g["lr"] * g["weight_decay"] for g in groups for name in g["names"]}  # independent: lr * wd = lambda
    assert decay["hidden.0.weight"] == pytest.approx(0.05) and decay["readout.weight"] == pytest.approx(0.05)
    explicit = param_groups(mlp(256, 64), wd_prediction(256, ParametrizationRef("mup", base_width=64, optimizer="adamw")),
                            weight_decay=0.0, optimizer="adamw")
    assert all(g["weight_decay"] == 0.0 for g in explicit)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"optimizer": "adam"}, "optimizer 'adam' has L2 decay"),
        ({"optimizer": "adamw", "decay": "torch"}, "is in the 'independent' convention, not 'torch'"),
    ],
)
def test_a_predicted_lambda_is_refused_where_it_does_not_apply(kwargs: dict, fragment: str) -> None:
    ref = ParametrizationRef("mup", base_width=64, optimizer="adamw")
    with pytest.raises(ParametrizationError) as info:
        param_groups(mlp(256, 64), wd_prediction(256, ref), **kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"weight_decay": -0.1, "optimizer": "adamw"}, "weight_decay must be a finite number >= 0, got -0.1"),
        ({"weight_decay": float("nan"), "optimizer": "adamw"}, "weight_decay must be a finite number >= 0, got nan"),
        ({"weight_decay": 0.1, "optimizer": "adam", "decay": "independent"}, "optimizer 'adam' has L2 decay"),
        ({"weight_decay": 0.1, "optimizer": "adamw", "decay": "lr-free"}, "unknown weight-decay convention 'lr-free'"),
    ],
)
def test_bad_weight_decay_is_one_line(kwargs: dict, fragment: str) -> None:
    from scaleplan.errors import ScaleplanError

    with pytest.raises(ScaleplanError) as info:
        param_groups(mlp(128, 64), 0.01, **kwargs)
    assert fragment in str(info.value)


class WithHead(nn.Module):
    """A parametrized backbone inside a model whose own head was added around it."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = mlp(128, 64)
        self.head = nn.Linear(4, 5)


def test_parameters_outside_the_parametrized_module_are_refused_not_left_out() -> None:
    with pytest.raises(ParametrizationError, match=r"^parameter\(s\) head.weight, head.bias are outside the parametrized "
                                                   r"module\(s\) \(backbone\).*would never train them"):
        param_groups(WithHead(), 0.01)


def test_each_parametrized_module_gets_its_own_groups() -> None:
    model = nn.Sequential(mlp(128, 64), mlp(256, 64))  # an encoder and a decoder parametrized apart
    groups = param_groups(model, 0.01)
    lrs = {name: g["lr"] for g in groups for name in g["names"]}
    assert set(lrs) == {name for name, _ in model.named_parameters()}
    assert lrs["0.hidden.0.weight"] == pytest.approx(0.01 / 2) and lrs["1.hidden.0.weight"] == pytest.approx(0.01 / 4)
    assert lrs["0.readout.weight"] == lrs["1.readout.weight"] == pytest.approx(0.01)


def test_a_model_without_a_base_width_names_the_fix_when_checked_against_a_law() -> None:
    def plain(width: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3))

    unknown = apply_parametrization(plain(256), "mup", base=plain(64))
    with pytest.raises(ParametrizationError, match="the model's base width is unknown.*give the model and its base a .width "
                                                   "attribute, or pass base_width= to apply_parametrization"):
        param_groups(unknown, prediction(256, ParametrizationRef("mup", base_width=64)))
    known = apply_parametrization(plain(256), "mup", base=plain(64), base_width=64)  # its width follows: 256
    assert param_groups(known, prediction(256, ParametrizationRef("mup", base_width=64)))
    with pytest.raises(ParametrizationError, match="the prediction is for width 4096 but the model has width 256"):
        param_groups(known, prediction(4096, ParametrizationRef("mup", base_width=64)))


def test_an_unparametrized_model_is_refused_naming_apply() -> None:
    with pytest.raises(ParametrizationError, match=r"no scaleplan parametrization; call apply_parametrization\(model, 'mup', base=\.\.\.\) first"):
        param_groups(nn.Linear(4, 4), 1e-3)


def test_no_decay_roles_get_no_weight_decay_and_keep_their_lrs() -> None:
    model = mlp(256, 64)
    roles = {name: record.role for name, record in model.scaleplan_state.tensors.items()}
    assert {"vector", "fixed"} <= set(roles.values())  # hidden biases; the readout's bias

    def settings(**kwargs) -> dict[str, tuple[float, float]]:
        return {n: (g["lr"], g["weight_decay"]) for g in param_groups(model, 0.01, weight_decay=0.1, optimizer="adamw", **kwargs)
                for n in g["names"]}

    plain, kept = settings(), settings(no_decay=("vector", "fixed"))
    assert all(wd > 0 for _, wd in plain.values())
    assert kept == {n: (lr, 0.0 if roles[n] in ("vector", "fixed") else wd) for n, (lr, wd) in plain.items()}
    assert {roles[n] for n, (_, wd) in settings(no_decay="vector").items() if wd == 0} == {"vector"}  # one role by name
    with pytest.raises(ScaleplanError, match=r"^no_decay: unknown role\(s\) 'bias'; roles are input, hidden, output, vector, "):
        settings(no_decay=("bias",))


def test_ddp_and_fsdp2_wrapped_models_get_the_same_groups(tmp_path) -> None:
    """A parametrized model wrapped for data parallel training (DDP, FSDP2's fully_shard; one CPU process with gloo)
    keeps its per-role lrs, and FSDP2's sharded tensors take an optimizer step."""
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel

    def lrs(model: nn.Module) -> dict[str, float]:
        return {name.removeprefix("module."): g["lr"] for g in param_groups(model, 0.01) for name in g["names"]}

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        plain = lrs(mlp(256, 64))
        assert plain["hidden.0.weight"] == pytest.approx(0.01 / 4) and plain["readout.weight"] == pytest.approx(0.01)
        assert lrs(DistributedDataParallel(mlp(256, 64))) == plain
        sharded = fully_shard(mlp(256, 64))
        assert lrs(sharded) == plain
        optimizer = torch.optim.Adam(param_groups(sharded, 0.01))
        sharded(torch.randn(4, 8)).pow(2).mean().backward()
        optimizer.step()
    finally:
        dist.destroy_process_group()

"""`scaleplan roles`: each tensor's role and factors, module multipliers, and every warning about a model (apply,
first forward, first optimizer step), so a mis-parametrized model is seen before it trains."""

from __future__ import annotations

import json

import pytest
import torch

from cli_runs import exit_code, one_line_error
from scaleplan.diagnostics.coord_check import builtin_batch
from scaleplan.diagnostics.roles import inspect_model, role_rows
from scaleplan.models import build_parametrized
from scaleplan.parametrization.groups import tensor_multipliers


def test_rows_are_the_optimizers_factors() -> None:
    model = build_parametrized("mlp", 256, "mup", 64, in_dim=8, out_dim=4, depth=2)
    for optimizer in ("adam", "sgd"):
        factors = tensor_multipliers(model, optimizer)
        rows = {r.name: r for r in role_rows(model, optimizer)}
        assert set(rows) == {name for name, _ in model.named_parameters()}
        assert all((r.lr, r.init_std, r.forward, r.weight_decay) == (factors[n].lr, factors[n].init_std, factors[n].forward,
                                                                    factors[n].weight_decay) for n, r in rows.items())
    adam = {r.name: r for r in role_rows(model)}
    assert (adam["hidden.0.weight"].role, adam["hidden.0.weight"].m, adam["hidden.0.weight"].lr) == ("hidden", 4.0, 0.25)
    assert (adam["readout.weight"].role, adam["readout.weight"].forward, adam["readout.weight"].shape) == ("output", 0.25, (4, 256))


def test_a_builtin_model_has_no_warnings_and_its_attention_sites_are_listed() -> None:
    found = inspect_model(lambda: builtin_batch("gpt", 128, "mup", 32))
    assert found.warnings == []
    assert {(s.module, s.kind, s.multiplier) for s in found.sites if s.kind != "residual"} == {
        ("blocks.0.attn", "attention", 0.5), ("blocks.1.attn", "attention", 0.5),  # 1/d_head over SP's 1/sqrt(d_head), 4x
        ("lm_head", "readout input", 0.25)}


def test_cli_names_what_the_forward_and_the_step_find(capsys: pytest.CaptureFixture) -> None:
    assert exit_code(["roles", "--model", "roles_models:hand_tied", "--width", "256", "--base-width", "64"]) == 0
    out = capsys.readouterr().out
    assert "attn.qkv.weight 768x256 hidden 4 0.25 0.5 1 4" in " ".join(out.split())
    assert "2 warning(s):" in out and "F.scaled_dot_product_attention without scale" in out
    assert "output is computed from emb.weight (50, 256), which scaleplan read as an input weight" in out
    assert exit_code(["roles", "--model", "roles_models:through_weight", "--width", "64", "--base-width", "16",
                      "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [t["role"] for t in data["tensors"]] == ["input", "vector", "hidden", "vector", "output", "fixed"]
    assert len(data["warnings"]) == 1 and "the readout head.weight has a gradient, but its module's forward did not run" in data["warnings"][0]


def test_strict_exits_1_on_a_warning_and_0_without(capsys: pytest.CaptureFixture) -> None:
    assert exit_code(["roles", "--model", "roles_models:hand_tied", "--width", "128", "--base-width", "64", "--strict"]) == 1
    assert exit_code(["roles", "--model", "mlp", "--width", "128", "--base-width", "64", "--strict"]) == 0
    assert "0 warning(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet"], "unknown model 'resnet'; use one of mlp, gpt, denseam or pkg.mod:build_fn"),
        (["--model", "mlp", "--init-std", "0.02"], "--init-std is for your own model"),
        (["--model", "mlp", "--base-width", "512"], "--base-width 512 is larger than --width 128"),
        (["--model", "no_such_pkg.mod:build"], "cannot import model builder module 'no_such_pkg.mod'"),
        (["--model", "math:sqrt"], "the model builder must return (model, batch) for a width, got float"),
        (["--model", "mlp", "--parametrization", "mu-p"], "unknown parametrization 'mu-p'"),
        (["--model", "mlp", "--width", "0"], "Invalid value for '--width'"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    argv = ["roles", "--width", "128", "--base-width", "64", *args]
    assert message in one_line_error(argv, capsys)


def test_every_parametrized_part_is_shown_with_its_full_name() -> None:
    """An encoder and a decoder parametrized apart (param_groups serves both): both parts' tensors and readouts."""
    from torch import nn

    model = nn.Sequential(build_parametrized("mlp", 128, "mup", 64, in_dim=8, out_dim=4, depth=2),
                          build_parametrized("mlp", 256, "mup", 64, in_dim=4, out_dim=4, depth=2))
    rows = {r.name: r for r in role_rows(model)}
    assert set(rows) == {name for name, _ in model.named_parameters()}
    assert (rows["0.hidden.0.weight"].lr, rows["1.hidden.0.weight"].lr) == (0.5, 0.25)
    found = inspect_model(lambda: (model, (torch.randn(4, 8), torch.tensor([0, 1, 2, 3]))))
    assert {(s.module, s.multiplier) for s in found.sites} == {("0.readout", 0.5), ("1.readout", 0.25)}


def test_a_constant_init_is_named_at_a_width_where_only_the_base_shows_it(capsys: pytest.CaptureFixture) -> None:
    # 0.02 is within 2.5x of a fan-in init at width 256: the base's own weights (width 32, also 0.02) show that it does
    # not shrink with the width; the base used to be built on the meta device, without weights, and nothing was said
    assert exit_code(["roles", "--model", "roles_models:constant_init", "--width", "256", "--base-width", "32"]) == 0
    out = capsys.readouterr().out
    assert "1 warning(s):" in out and "init_std=None keeps an init that is not fan-in scaled" in out and "hidden.weight" in out

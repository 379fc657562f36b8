"""A model re-initialized after apply_parametrization is warned about at param_groups; trained or loaded weights are not."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from scaleplan import initialize
from scaleplan.errors import ParametrizationWarning
from scaleplan.parametrization import apply_parametrization, param_groups


def mlp(width: int, hf_init: bool = False) -> nn.Sequential:
    """Three hidden layers; `hf_init` draws every matrix from transformers' constant N(0, 0.02)."""
    model = nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width),
                          nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    if hf_init:
        init_weights(model)
    return model


def init_weights(model: nn.Module) -> None:
    """A transformers-style _init_weights applied to every Linear."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)


def reset(model: nn.Module, only: tuple[int, ...] | None = None) -> None:
    """PyTorch's own init again (reset_parameters), of every Linear or of the layers at `only`."""
    for i, module in enumerate(model):
        if isinstance(module, nn.Linear) and (only is None or i in only):
            module.reset_parameters()


def reinit_warnings(model: nn.Module) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        param_groups(model, 1e-3)
    return [str(w.message) for w in caught if issubclass(w.category, ParametrizationWarning) and "re-initialized" in str(w.message)]


def test_reset_parameters_after_apply_is_named() -> None:
    torch.manual_seed(0)
    model = apply_parametrization(mlp(512), "mup", base=mlp(64))
    assert not reinit_warnings(model)
    reset(model)
    [message] = reinit_warnings(model)
    assert "1 of the 1 weight(s)" in message and "8.weight" in message and "before apply_parametrization" in message


def test_hf_init_weights_after_apply_with_init_std_is_named() -> None:
    """init_std=0.02 sets the hidden matrices to 0.02/sqrt(8); the model's own init_weights puts them back at 0.02."""
    torch.manual_seed(0)
    model = apply_parametrization(mlp(512, hf_init=True), "mup", base=mlp(64, hf_init=True), init_std=0.02)
    assert set(model.scaleplan_state.own_inits) == {"2.weight", "4.weight", "6.weight"}
    assert not reinit_warnings(model)
    init_weights(model)
    [message] = reinit_warnings(model)
    assert "3 of the 3 weight(s)" in message and "it set 0.007" in message


def test_two_thirds_of_the_rescaled_weights_redrawn_is_the_threshold() -> None:
    torch.manual_seed(0)
    model = apply_parametrization(mlp(512, hf_init=True), "mup", base=mlp(64, hf_init=True), init_std=0.02)
    with torch.no_grad():
        model[2].weight.normal_(0, 0.02)
    assert not reinit_warnings(model)  # one layer drawn again (a deliberate re-draw of one layer, say)
    with torch.no_grad():
        model[4].weight.normal_(0, 0.02)
    assert reinit_warnings(model)


def test_a_draw_of_another_distribution_at_the_same_std_is_not_taken_for_the_model_s_own() -> None:
    """The kurtosis tells PyTorch's uniform init (1.8) from a normal one at the same std (3.0)."""
    torch.manual_seed(0)
    model = apply_parametrization(mlp(512), "mup", base=mlp(64))
    std = model.scaleplan_state.own_inits["8.weight"].std
    with torch.no_grad():
        model[8].weight.normal_(0, std)
    assert not reinit_warnings(model)


def test_training_and_a_resumed_checkpoint_are_not_taken_for_a_reinitialization() -> None:
    """Training moves the hidden std from 0.02/sqrt(8) through HF's 0.02 (within 5% at a checked step): no step is
    taken for a re-initialization, nor is the trained model loaded again."""
    torch.manual_seed(0)
    model = apply_parametrization(mlp(128, hf_init=True), "mup", base=mlp(16, hf_init=True), init_std=0.02)
    optimizer = torch.optim.AdamW(param_groups(model, 3e-3))
    x = torch.randn(2048, 16)
    y = (x[:, :10] * 3).argmax(1)
    alarms, stds = [], []
    for step in range(200):
        i = torch.randint(0, 2048, (128,))
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 9:
            stds.append(float(model[2].weight.std()))
            alarms += [step] if reinit_warnings(model) else []
    assert min(abs(std / 0.02 - 1) for std in stds) < 0.05 and not alarms
    resumed = apply_parametrization(mlp(128, hf_init=True), "mup", base=mlp(16, hf_init=True), init_std=0.02)
    resumed.load_state_dict(model.state_dict())
    assert not reinit_warnings(resumed)


def test_a_model_initialized_on_the_meta_device_is_checked_too() -> None:
    with torch.device("meta"):
        model = mlp(512)
    apply_parametrization(model, "mup", base=mlp(64))
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    reset(model)
    initialize(model)
    assert not reinit_warnings(model)
    reset(model)
    assert reinit_warnings(model)


def test_a_state_pickled_before_the_record_is_not_checked() -> None:
    torch.manual_seed(0)
    model = apply_parametrization(mlp(512), "mup", base=mlp(64))
    del model.scaleplan_state.own_inits
    reset(model)
    assert not reinit_warnings(model)

"""A model parametrized on the meta device gets its init once materialized (initialize), and is refused until then."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from scaleplan import initialize
from scaleplan.errors import ParametrizationError, ParametrizationWarning
from scaleplan.parametrization import apply_parametrization, param_groups


def mlp(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4))


def materialized(width: int, seed: int, **kwargs: object) -> nn.Sequential:
    """Built on the meta device, parametrized there, then to_empty and PyTorch's own init drawn from `seed`."""
    with torch.device("meta"):
        model = mlp(width)
    apply_parametrization(model, base=mlp(32), **kwargs)  # type: ignore[arg-type]
    model.to_empty(device="cpu")
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.reset_parameters()
    return model


def built(width: int, seed: int, **kwargs: object) -> nn.Sequential:
    """The same model built with values and parametrized, as apply_parametrization is usually called."""
    torch.manual_seed(seed)
    model = mlp(width)
    apply_parametrization(model, base=mlp(32), **kwargs)  # type: ignore[arg-type]
    return model


@pytest.mark.parametrize("kwargs", [{"parametrization": "mup"}, {"parametrization": "mup", "init_std": 0.05},
                                    {"parametrization": "sp", "init_std": 0.05}])
def test_initialize_gives_the_weights_apply_parametrization_gives_a_model_built_with_values(kwargs: dict) -> None:
    model = materialized(512, seed=3, **kwargs)
    with pytest.raises(ParametrizationError, match=r"meta device .* call scaleplan.initialize\(model\)"):
        param_groups(model, 1e-3)
    base = mlp(32)
    if "init_std" in kwargs:  # a re-draw: the same randomness for both (biases keep their own init, drawn from seed 3)
        torch.manual_seed(3)
        reference = mlp(512)
        torch.manual_seed(11)
        initialize(model, base=base)
        torch.manual_seed(11)
        apply_parametrization(reference, base=base, **kwargs)
    else:
        initialize(model, base=base)
        reference = built(512, seed=3, **kwargs)
    for (name, ours), (_, theirs) in zip(model.named_parameters(), reference.named_parameters()):
        assert torch.equal(ours, theirs), name
    assert param_groups(model, 1e-3)  # no longer refused


def test_muP_rescales_the_readout_and_biases_drawn_after_materializing() -> None:
    # without initialize these would train at SP's readout and bias scales: the check above is not vacuous
    model, reference = materialized(512, seed=3, parametrization="mup"), built(512, seed=3, parametrization="mup")
    assert not torch.equal(model[4].weight, reference[4].weight) and not torch.equal(model[2].bias, reference[2].bias)


def test_sp_without_init_std_has_nothing_to_set_and_is_not_refused() -> None:
    model = materialized(256, seed=0, parametrization="sp")
    assert len(param_groups(model, 1e-3)) >= 1
    with pytest.raises(ParametrizationError, match="nothing to initialize"):
        initialize(model)


def test_a_model_with_values_has_nothing_to_initialize() -> None:
    with pytest.raises(ParametrizationError, match="nothing to initialize"):
        initialize(built(256, seed=0, parametrization="mup"))


def test_a_model_still_on_the_meta_device_is_refused_naming_to_empty() -> None:
    with torch.device("meta"):
        model = mlp(256)
    apply_parametrization(model, "mup", base=mlp(32))
    with pytest.raises(ParametrizationError, match=r"still on the meta device: materialize .*to_empty"):
        initialize(model)


def test_a_materialized_model_without_its_own_init_is_refused() -> None:
    with torch.device("meta"):
        model = mlp(256)
    apply_parametrization(model, "mup", base=mlp(32))
    model.to_empty(device="cpu")
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()  # what to_empty may leave: rescaling zeros would train from zeros
    with pytest.raises(ParametrizationError, match=r"every input and hidden matrix \(0.weight, 2.weight\) is all zero: .*own init"):
        initialize(model)
    assert model.scaleplan_state.init_pending  # refused before anything was set: still pending


def test_one_matrix_zero_on_purpose_is_kept() -> None:
    # a zero-initialized residual projection (modded-nanoGPT), a class token, LoRA's B: a choice, not a missing init
    model = materialized(256, seed=0, parametrization="mup")
    with torch.no_grad():
        model[2].weight.zero_()
    initialize(model)
    assert not model[2].weight.any() and model[0].weight.any()


def test_a_constant_init_drawn_after_materializing_is_named_as_when_applied() -> None:
    # nanoGPT's N(0, 0.02) on every matrix, at the model and at the base: the base's weights show it does not shrink
    def constant(width: int) -> nn.Sequential:
        model = mlp(width)
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.02)
        return model

    with torch.device("meta"):
        model = mlp(1024)
    apply_parametrization(model, "mup", base=constant(32))
    model.to_empty(device="cpu")
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)
            nn.init.zeros_(module.bias)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        initialize(model, base=constant(32))
    kept = [str(w.message) for w in caught if issubclass(w.category, ParametrizationWarning) and "init_std=None keeps" in str(w.message)]
    assert len(kept) == 1 and "2.weight" in kept[0]


def test_a_transformers_model_built_on_the_meta_device_is_initialized_after_init_weights() -> None:
    transformers = pytest.importorskip("transformers")

    def gpt2(width: int) -> nn.Module:
        config = transformers.GPT2Config(n_embd=width, n_layer=1, n_head=4, vocab_size=64, n_positions=16,
                                         bos_token_id=0, eos_token_id=0, tie_word_embeddings=False)
        return transformers.GPT2LMHeadModel(config)

    base = gpt2(32)
    with torch.device("meta"):
        model = gpt2(256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParametrizationWarning)
        apply_parametrization(model, "mup", base=base)
    model.to_empty(device="cpu")
    model.init_weights()  # transformers' own init: N(0, initializer_range) on every matrix
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        initialize(model, base=base)
    assert any("init_std=None keeps HF's N(0, 0.02)" in str(w.message) for w in caught)
    assert param_groups(model, 1e-3)

"""apply_parametrization / param_groups: roles, per-tensor numbers, muP = SP at base, persistence, errors."""

from __future__ import annotations

import copy
import io
import math
import re
import warnings

import pytest
import torch
from torch import nn

from scaleplan.errors import ParametrizationError, ParametrizationWarning, ScaleplanError
from scaleplan.models import build_model, build_parametrized
from scaleplan.parametrization import apply_parametrization, param_groups, tensor_multipliers

LR, WD = 1e-2, 0.1

MLP_ROLES = {
    "input.weight": "input", "input.bias": "vector", "hidden.0.weight": "hidden", "hidden.0.bias": "vector",
    "readout.weight": "output", "readout.bias": "fixed",
}


def gpt_roles(tied: bool) -> dict[str, str]:
    roles = {"wte.weight": "input", "wpe.weight": "input", "ln_f.weight": "vector", "ln_f.bias": "vector"}
    for name in ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "fc.bias", "fc_proj.bias"):
        roles[f"blocks.0.{name}"] = "vector"
    for name in ("attn.query.weight", "attn.key.weight", "attn.value.weight", "attn.proj.weight", "fc.weight", "fc_proj.weight"):
        roles[f"blocks.0.{name}"] = "hidden"
    if not tied:
        roles["lm_head.weight"] = "output"
    return roles


# (lr, weight_decay) factors per role and optimizer at m = 2 and m = 4, written out number by number
EXPECTED = {
    ("adam", 2): {"input": (1, 1), "hidden": (0.5, 2), "output": (1, 1), "vector": (1, 1), "fixed": (1, 1)},
    ("adam", 4): {"input": (1, 1), "hidden": (0.25, 4), "output": (1, 1), "vector": (1, 1), "fixed": (1, 1)},
    ("sgd", 2): {"input": (2, 0.5), "hidden": (1, 1), "output": (2, 0.5), "vector": (2, 0.5), "fixed": (1, 1)},
    ("sgd", 4): {"input": (4, 0.25), "hidden": (1, 1), "output": (4, 0.25), "vector": (4, 0.25), "fixed": (1, 1)},
}
MODELS = {
    "mlp": (MLP_ROLES, {"depth": 2}),
    "gpt": (gpt_roles(tied=False), {"depth": 1, "vocab": 32, "seq_len": 8}),
    "gpt-tied": (gpt_roles(tied=True), {"depth": 1, "vocab": 32, "seq_len": 8, "tied": True}),
}


WIDE_FAN_IN_BIASES = {"hidden.0.bias", "readout.bias", "blocks.0.fc.bias", "blocks.0.fc_proj.bias"}


def per_tensor(groups: list[dict]) -> dict[str, tuple[float, float]]:
    return {name: (g["lr"], g["weight_decay"]) for g in groups for name in g["names"]}


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("m", [2, 4])
def test_per_tensor_lr_and_wd_equal_the_table(model: str, optimizer: str, m: int) -> None:
    roles, kwargs = MODELS[model]
    net = build_parametrized(model.split("-")[0], 32 * m, "mup", 32, **kwargs)
    assert {n: r.role for n, r in net.scaleplan_state.tensors.items()} == roles
    got = per_tensor(param_groups(net, LR, WD, optimizer))
    expected = {name: (LR * EXPECTED[optimizer, m][role][0], WD * EXPECTED[optimizer, m][role][1]) for name, role in roles.items()}
    assert got.keys() == expected.keys()
    for name in roles:
        assert got[name] == pytest.approx(expected[name], rel=1e-12), name


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("m", [2, 4])
def test_init_and_forward_multipliers_equal_the_table(model: str, m: int) -> None:
    roles, kwargs = MODELS[model]
    name = model.split("-")[0]
    torch.manual_seed(0)
    plain = build_model(name, 32 * m, **kwargs)
    torch.manual_seed(0)
    net = build_parametrized(name, 32 * m, "mup", 32, **kwargs)
    # the model's own init is SP (fan-in); muP rescales the readout by sqrt(m) (variance x m) and, as mup
    # does, the bias of every layer whose fan-in is a width by sqrt(fan-in mult)
    for pname, p in net.named_parameters():
        factor = m**0.5 if roles[pname] == "output" or pname in WIDE_FAN_IN_BIASES else 1.0
        assert torch.equal(p, dict(plain.named_parameters())[pname] * factor), pname
    readout = "readout" if name == "mlp" else "lm_head"
    hooks = list(net.get_submodule(readout)._forward_pre_hooks.values())
    assert [h.multiplier for h in hooks] == [1 / m]  # alpha_out / m, also for the tied readout
    if name == "gpt":
        assert net.blocks[0].attn.multiplier == m**-0.5  # 1/d_head relative to 1/sqrt(d_head)
        assert net.blocks[0].multiplier == 1.0


@pytest.mark.parametrize("role, expected_std", [("hidden", 0.02 / 2), ("input", 0.02), ("output", 0.02)])
def test_init_std_redraws_with_rule_factors(role: str, expected_std: float) -> None:
    torch.manual_seed(0)
    net = build_parametrized("mlp", 256, "mup", 64, init_std=0.02, in_dim=256, out_dim=256)
    weight = {"hidden": net.hidden[0].weight, "input": net.input.weight, "output": net.readout.weight}[role]
    assert weight.std().item() == pytest.approx(expected_std, rel=0.02)


@pytest.mark.parametrize("name, kwargs", [("mlp", {}), ("gpt", {"depth": 2, "seq_len": 8}), ("gpt", {"tied": True, "seq_len": 8}), ("denseam", {})])
@pytest.mark.parametrize("optimizer, decay", [("adam", "torch"), ("sgd", "torch"), ("adamw", "torch"), ("adamw", "independent")])
@pytest.mark.filterwarnings("ignore:SGD with the DenseAM")
def test_mup_equals_sp_bit_for_bit_at_base_width(name: str, kwargs: dict, optimizer: str, decay: str) -> None:
    inputs = torch.randint(0, 64, (2, 8)) if name == "gpt" else torch.randn(4, 16)
    models, updates = {}, {}
    param = "denseam" if name == "denseam" else "mup"
    for p in ("sp", param):
        torch.manual_seed(0)
        models[p] = build_parametrized(name, 64, p, 64, **kwargs)
        opt_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer]
        opt = opt_cls(param_groups(models[p], LR, WD, optimizer, decay=decay))
        before = {n: q.detach().clone() for n, q in models[p].named_parameters()}
        out = models[p](inputs)
        out.square().mean().backward()
        opt.step()
        updates[p] = (out.detach(), {n: q.detach() - before[n] for n, q in models[p].named_parameters()})
    assert torch.equal(updates["sp"][0], updates[param][0])
    for n, delta in updates["sp"][1].items():
        assert torch.equal(delta, updates[param][1][n]), n


def _roundtrip_save(model: nn.Module) -> nn.Module:
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.mark.parametrize("copier", [copy.deepcopy, _roundtrip_save])
def test_metadata_survives_save_load_and_deepcopy(copier) -> None:
    net = build_parametrized("gpt", 128, "mup", 32, depth=1, seq_len=8, tied=True)
    clone = copier(net)
    assert clone.scaleplan_state == net.scaleplan_state
    tokens = torch.randint(0, 64, (2, 8))
    assert torch.equal(clone(tokens), net(tokens))  # readout hook and attention multiplier came along
    assert [g["lr"] for g in param_groups(clone, LR)] == [g["lr"] for g in param_groups(net, LR)]
    with pytest.raises(ScaleplanError, match="already parametrized"):
        apply_parametrization(clone, "mup", base=build_model("gpt", 32, depth=1, seq_len=8, tied=True))


def test_applying_twice_is_refused() -> None:
    net = build_parametrized("mlp", 128, "mup", 64)
    with pytest.raises(ScaleplanError, match=r"already parametrized \('mup'\).*apply once"):
        apply_parametrization(net, "sp", base=build_model("mlp", 64))


@pytest.mark.parametrize("compiled", ["model", "base"])
def test_a_compiled_wrapper_is_refused_with_the_order_that_works(compiled: str) -> None:
    model, base = build_model("mlp", 128), build_model("mlp", 64)
    wrapped = {"model": model, "base": base}
    wrapped[compiled] = torch.compile(wrapped[compiled])  # wrapping only: nothing is compiled until it runs
    with pytest.raises(ScaleplanError, match=r"before torch.compile.*torch.compile\(apply_parametrization\(model"):
        apply_parametrization(wrapped["model"], "mup", base=wrapped["base"])
    assert torch.compile(apply_parametrization(model, "mup", base=base)).scaleplan_state.parametrization == "mup"


def test_fsdp1_flat_parameters_are_refused_naming_use_orig_params() -> None:
    """FSDP1 without use_orig_params moves a module's parameters into one `_flat_param` (needs an accelerator to
    build, so its layout is reproduced here: the originals become plain tensors, the flat one is registered)."""
    model = build_parametrized("mlp", 128, "mup", 64)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    for module in list(model.modules()):
        for name in list(module._parameters):
            setattr(module, name, module._parameters.pop(name).detach())
    model._parameters["_flat_param"] = nn.Parameter(flat)  # where FSDP1 registers it (_unshard_param_utils)
    with pytest.raises(ScaleplanError, match=r"^_flat_param is FSDP's flat parameter.*use_orig_params=True.*fully_shard"):
        param_groups(model, LR)


def test_a_model_changed_after_apply_is_refused_by_param_groups() -> None:
    added = build_parametrized("mlp", 128, "mup", 64)
    added.extra = nn.Linear(4, 4)
    with pytest.raises(ScaleplanError, match=r"^parameter\(s\) extra.weight, extra.bias were added after apply_parametrization"):
        param_groups(added, LR)
    replaced = build_parametrized("mlp", 128, "mup", 64)
    name = next(n for n, r in replaced.scaleplan_state.tensors.items() if r.role == "output" and n.endswith("weight"))
    module_name = name.rsplit(".", 1)[0]
    old = replaced.get_submodule(module_name)
    replaced.set_submodule(module_name, nn.Linear(old.in_features, old.out_features))
    with pytest.raises(ScaleplanError, match=f"^the readout {name} lost its muP output multiplier"):
        param_groups(replaced, LR)


class Aliased(nn.Module):
    """The readout registered under two names (a legacy alias): one module, used once."""

    def __init__(self, width: int, alias: bool) -> None:
        super().__init__()
        self.body, self.out = nn.Linear(8, width), nn.Linear(width, 3)
        if alias:
            self.head = self.out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.body(x)))


def test_a_readout_registered_under_two_names_gets_its_multiplier_once() -> None:
    torch.manual_seed(0)
    aliased = apply_parametrization(Aliased(256, True), "mup", base=Aliased(64, True))
    torch.manual_seed(0)
    plain = apply_parametrization(Aliased(256, False), "mup", base=Aliased(64, False))
    assert [h.multiplier for h in aliased.out._forward_pre_hooks.values()] == [0.25]
    x = torch.randn(4, 8)
    assert torch.equal(aliased(x), plain(x))


def test_a_readout_called_with_its_input_by_keyword_is_scaled_as_by_position() -> None:
    net = build_parametrized("mlp", 128, "mup", 64)
    name = next(n for n, r in net.scaleplan_state.tensors.items() if r.role == "output" and n.endswith("weight"))
    readout = net.get_submodule(name.rsplit(".", 1)[0])
    h = torch.randn(4, readout.in_features)
    assert torch.equal(readout(input=h), readout(h))
    assert torch.allclose(readout(h), nn.functional.linear(h * 0.5, readout.weight, readout.bias))


def test_base_width_is_checked_against_the_base_and_gives_a_width_to_a_model_without_one() -> None:
    def mlp(width: int) -> nn.Sequential:  # no .width attribute
        return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3))

    assert apply_parametrization(mlp(256), "mup", base=mlp(64), base_width=64).scaleplan_state.width == 256
    assert apply_parametrization(mlp(256), "mup", base=mlp(64)).scaleplan_state.width is None
    with pytest.warns(ParametrizationWarning, match=r"base_width=32 is none of the base's width sizes \(64\)"):
        apply_parametrization(mlp(256), "mup", base=mlp(64), base_width=32)


def test_functional_call_vmap_over_stacked_models() -> None:
    torch.manual_seed(0)
    nets = [build_parametrized("mlp", 128, "mup", 32) for _ in range(3)]
    params, buffers = torch.func.stack_module_state(nets)
    x = torch.randn(5, 16)
    call = lambda p, b: torch.func.functional_call(nets[0], (p, b), (x,))  # noqa: E731
    stacked = torch.vmap(call)(params, buffers)
    for k, net in enumerate(nets):
        assert torch.allclose(stacked[k], net(x), atol=1e-6)
    assert set(tensor_multipliers(nets[0])) == set(params)


def test_declared_roles_without_base() -> None:
    net = build_model("mlp", 256, depth=1)
    roles = {"input.weight": "input", "input.bias": "vector", "readout.weight": "output", "readout.bias": "fixed"}
    apply_parametrization(net, "mup", roles=roles, base_width=64)
    assert per_tensor(param_groups(net, LR, optimizer="sgd"))["readout.weight"] == (pytest.approx(LR * 4), 0.0)
    assert net.readout._forward_pre_hooks[next(iter(net.readout._forward_pre_hooks))].multiplier == 0.25


def test_completep_depth_transfer() -> None:
    base = build_model("gpt", 32, depth=2, seq_len=8)
    net = apply_parametrization(build_model("gpt", 64, depth=4, seq_len=8), "mup", base=build_model("gpt", 32, depth=4, seq_len=8), base_depth=2, completep=True)
    assert [b.multiplier for b in net.blocks] == [0.5] * 4
    groups = param_groups(net, LR, optimizer="adam", eps=1e-8)
    assert [g["eps"] for g in groups] == [pytest.approx(1e-8 / (2 * 2))] * len(groups)
    assert sorted({g["lr"] for g in groups}) == [LR / 2, LR]  # hidden lr is eta/m, unchanged by depth
    with pytest.raises(ScaleplanError, match="needs residual blocks"):
        apply_parametrization(build_model("mlp", 64), "mup", base=build_model("mlp", 32), base_depth=1, completep=True)
    with pytest.raises(ScaleplanError, match="base depth 8 is larger"):
        apply_parametrization(build_model("gpt", 64, depth=2, seq_len=8), "mup", base=base, base_depth=8, completep=True)


def test_sgd_with_denseam_softmax_warns() -> None:
    net = build_parametrized("denseam", 128, "denseam", 64, energy="lse")
    with pytest.warns(ParametrizationWarning, match="erratic near divergence.*validated with Adam: use Adam"):
        param_groups(net, LR, optimizer="sgd")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        param_groups(net, LR, optimizer="adam")
        param_groups(build_parametrized("denseam", 128, "denseam", 64, energy="relu-poly"), LR, optimizer="sgd")


class Classifier(nn.Module):
    """A user's classifier: its number of classes is not a width, though no delta says so."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.body, self.out = nn.Linear(8, width), nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.body(x)))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: build_parametrized("mlp", 128, "mu-p", 64), "unknown parametrization 'mu-p'; valid names: sp, mup, denseam"),
        (lambda: apply_parametrization(build_model("mlp", 128, depth=3), "mup", base=build_model("mlp", 64, depth=2)), "different parameters"),
        (lambda: apply_parametrization(build_model("mlp", 128), "mup", base=build_model("mlp", 64, in_dim=32)), "base width larger than width"),
        (lambda: apply_parametrization(build_model("mlp", 64), "mup", base=build_model("mlp", 128)), "base width larger than width"),
        (lambda: build_parametrized("mlp", 64, "mup", 128), "base width 128 is larger than width 64"),
        (lambda: apply_parametrization(build_model("mlp", 128), "mup", base={"input.weight": (64, 16, 3)}), "different parameters"),
        (lambda: apply_parametrization(build_model("mlp", 128), "mup", base_width=64), "no role declared"),
        (lambda: apply_parametrization(build_model("mlp", 128), "mup", base=build_model("mlp", 64), roles={"input.weight": "embedding"}), "unknown role 'embedding'"),
        (lambda: apply_parametrization(build_model("mlp", 128), "mup", base=build_model("mlp", 64), roles={"nope": "input"}), "not a parameter"),
        (lambda: build_parametrized("denseam", 128, "mup", 64), "no rule for role 'memory'; use one of: sp, denseam"),
        (lambda: param_groups(build_model("mlp", 64), LR), "call apply_parametrization"),
        (lambda: param_groups(build_parametrized("mlp", 64, "mup", 64), LR, optimizer="lion"), "unknown optimizer 'lion'"),
        (lambda: param_groups(build_parametrized("mlp", 64, "mup", 64), -1.0), "learning rate must be a finite positive number"),
        *[(lambda lr=lr: param_groups(build_parametrized("mlp", 64, "mup", 64), lr), "learning rate must be a finite positive number")
          for lr in (math.inf, math.nan, None, "0.01", True)],
        *[(lambda v=v: apply_parametrization(build_model("mlp", 128), "mup", base=build_model("mlp", 64), output_mult=v),
           "output_mult must be a finite positive number") for v in (math.nan, math.inf, 0.0)],
        *[(lambda v=v: apply_parametrization(build_model("mlp", 128), "mup", base=build_model("mlp", 64), init_std=v),
           "init_std must be a finite number >= 0") for v in (math.inf, math.nan, "0.02")],
        (lambda: apply_parametrization(build_model("mlp", 128), "mup", base=build_model("mlp", 64), roles=["input.weight"]),
         "roles must be a mapping"),
        (lambda: apply_parametrization(nn.Sequential(nn.LazyLinear(8)), "mup", base=nn.Sequential(nn.LazyLinear(4))),
         "lazy parameters without a shape yet; run one forward pass"),
        (lambda: apply_parametrization(Classifier(128, 100), "mup", base=Classifier(32, 10)), "the base has num_classes=10"),
        (lambda: apply_parametrization(build_model("mlp", 128), "mup", base=build_model("mlp", 64), base_width=32),
         "base_width=32 but the base has width 64"),
    ],
)
def test_bad_input_raises_clear_error(call, message: str) -> None:
    with pytest.raises(ScaleplanError, match=message):
        call()


def test_param_groups_accept_an_object_with_lr_and_build_optimizers() -> None:
    class Prediction:
        lr = 3e-3

    net = build_parametrized("mlp", 128, "mup", 64)
    for opt in (torch.optim.Adam, torch.optim.AdamW):
        assert sorted(g["lr"] for g in opt(param_groups(net, Prediction(), WD)).param_groups) == [1.5e-3, 3e-3]
    assert sorted(g["lr"] for g in torch.optim.SGD(param_groups(net, Prediction(), optimizer="sgd")).param_groups) == [3e-3, 6e-3]


@pytest.mark.parametrize("parametrization, beta_at_4x", [("denseam", 1.0 / 128), ("sp", 1.0 / 32)])
def test_denseam_temperature_follows_the_parametrization(parametrization, beta_at_4x):
    from scaleplan.models import build_parametrized

    base = build_parametrized("denseam", 32, parametrization, 32, beta0=1.0)
    wide = build_parametrized("denseam", 128, parametrization, 32, beta0=1.0)
    assert base.beta == 1.0 / 32  # every parametrization agrees at the base width
    assert wide.beta == beta_at_4x  # beta0/N under the DenseAM rules, constant beta0/N_base under SP


class TiedLM(nn.Module):
    """An embedding whose matrix is also the readout (x @ E^T), as tied language models do."""

    def __init__(self, width: int, tied: bool = True) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, width)
        self.body = nn.Linear(width, width)
        self.head = nn.Linear(width, 50, bias=False)
        if tied:
            self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(self.embed(tokens))))


@pytest.mark.parametrize("parametrization, tied, warns", [("mup", True, True), ("mup", False, False), ("sp", True, False)])
def test_tied_embeddings_under_mup_warn_naming_the_fix(parametrization: str, tied: bool, warns: bool) -> None:
    """A tied embedding under muP trains worse than SP (measured on HF GPT-2, benchmarks/results/hf-gpt2-tied.txt):
    warned, naming the tensor and the fix; untied, or under SP, nothing is said."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_parametrization(TiedLM(64, tied), parametrization, base=TiedLM(16, tied))
    said = [str(w.message) for w in caught if "tied input/output embedding" in str(w.message)]
    assert len(said) == warns
    if warns:
        assert said[0].startswith("tied input/output embedding(s) embed.weight under 'mup'") and "untie them" in said[0]


class Hopfield(nn.Module):
    """A user's own DenseAM layer: memories (K, N) under any name, lse energy with beta = beta0 / N, T shared steps."""

    def __init__(self, n: int, k: int, name: str = "xi", roles: bool = True, site: bool = True, sizes: bool = True,
                 shape: tuple[int, ...] | None = None, energy: str | None = None) -> None:
        super().__init__()
        self.name = name
        if energy is not None:
            self.energy = energy
        self.register_parameter(name, nn.Parameter(0.1 * torch.randn(*(shape or (k, n)))))
        if roles:
            self.scaleplan_roles = {name: "memory"}
        if site:
            self.scaleplan_site, self.multiplier = "temperature", 1.0
        if sizes:
            self.features, self.n_memories, self.gradient_order = n, k, 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xi = getattr(self, self.name)
        for _ in range(3):
            x = x + torch.softmax(4.0 / xi.shape[1] * x @ xi.T, dim=-1) @ xi / 3
        return x


class HopfieldNet(nn.Module):
    def __init__(self, n: int, k: int, **layer: object) -> None:
        super().__init__()
        self.inp, self.am, self.out = nn.Linear(8, n), Hopfield(n, k, **layer), nn.Linear(n, 3)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.am(self.inp(x)))


def test_a_users_dense_associative_memory_gets_the_memory_rules_whatever_its_memories_are_called() -> None:
    named = apply_parametrization(HopfieldNet(256, 64, name="xi"), "denseam", base=HopfieldNet(32, 64, name="xi"))
    builtin_name = apply_parametrization(HopfieldNet(256, 64, name="memories"), "denseam", base=HopfieldNet(32, 64, name="memories"))
    record, reference = named.scaleplan_state.tensors["am.xi"], builtin_name.scaleplan_state.tensors["am.memories"]
    assert (record.role, record.m, record.eps) == (reference.role, reference.m, reference.eps) == ("memory", 8.0, 8.0 ** -2)


@pytest.mark.parametrize(
    "layer, base, message",
    [
        (dict(roles=False, site=False), None, r"^parametrization 'denseam' found no memory matrix.*scaleplan_roles"),
        (dict(sizes=False), None, r"^am: a DenseAM site needs a positive number attribute 'features', got None"),
        (dict(roles=False), None, r"^parametrization 'denseam' found no memory matrix"),
        (dict(), "shapes", r"^memory tensor\(s\) am.xi: .*pass base=<the model at the base size> as a module"),
    ],
)
def test_a_dense_associative_memory_the_rules_cannot_place_is_refused_in_one_line(layer: dict, base: str | None, message: str) -> None:
    base_model = HopfieldNet(32, 64, **layer)
    given = {n: tuple(p.shape) for n, p in base_model.named_parameters()} if base == "shapes" else base_model
    with pytest.raises(ScaleplanError) as info:
        apply_parametrization(HopfieldNet(256, 64, **layer), "denseam", base=given)
    assert "\n" not in str(info.value) and re.search(message, str(info.value)), str(info.value)


@pytest.mark.parametrize(
    "stored, message",
    [
        ("NK", r"^memory matrix am.xi has shape \[256, 64\], but its site declares K = 64 memories of N = 256 features, "
               r"\(K, N\) = \(64, 256\): store it \(K, N\), one memory per row"),
        ("other", r"^memory matrix am.xi has shape \[64, 255\].*: set the site's n_memories \(K\) and features \(N\) to"),
    ],
)
def test_a_memory_matrix_stored_against_its_declared_sizes_is_refused_in_one_line(stored: str, message: str) -> None:
    """calibrate_memory_eps takes each row for a memory: an (N, K) matrix would silently get per-feature gradients."""
    shape = (256, 64) if stored == "NK" else (64, 255)
    with pytest.raises(ParametrizationError) as info:
        apply_parametrization(HopfieldNet(256, 64, shape=shape), "denseam", base=HopfieldNet(32, 64))
    assert "\n" not in str(info.value) and re.search(message, str(info.value)), str(info.value)


@pytest.mark.parametrize("n, k", [(64, 32), (32, 128), (128, 64), (256, 256)])
@pytest.mark.parametrize("energy", [None, "lse"])
def test_the_memories_sgd_lr_factor_is_n_over_n_base_times_k_over_k_base_but_lse_drops_k(n: int, k: int, energy: str | None) -> None:
    """A declared log-sum-exp memory keeps N/N_base only: a retrieved memory's gradient has no 1/K (denseam-sgd.md)."""
    model = apply_parametrization(HopfieldNet(n, k, energy=energy), "denseam", base=HopfieldNet(32, 32, energy=energy))
    assert tensor_multipliers(model, "sgd")["am.xi"].lr == (n / 32) * (1.0 if energy == "lse" else k / 32)
    assert tensor_multipliers(model, "adam")["am.xi"].lr == 1.0


class EnergyMethodHopfield(Hopfield):
    """An energy-based layer whose `energy` is a method: it names its energy in `scaleplan_energy`."""

    scaleplan_energy = "lse"

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.logsumexp(4.0 / self.xi.shape[1] * x @ self.xi.T, dim=-1)


def test_an_lse_memory_whose_energy_is_a_method_is_declared_with_scaleplan_energy() -> None:
    def net(n: int, k: int) -> HopfieldNet:
        model = HopfieldNet(n, k)
        model.am = EnergyMethodHopfield(n, k)
        return model

    model = apply_parametrization(net(64, 128), "denseam", base=net(32, 32))
    assert tensor_multipliers(model, "sgd")["am.xi"].lr == 2.0  # N/N_base alone, as for energy = "lse"
    assert model.scaleplan_state.softmax_energy


def test_a_square_memory_matrix_is_read_as_memories_by_features() -> None:
    """N == K: the orientation cannot be told from the shape; it is taken as (K, N), as documented."""
    state = apply_parametrization(HopfieldNet(64, 64), "denseam", base=HopfieldNet(32, 32)).scaleplan_state
    assert (state.tensors["am.xi"].m, state.tensors["am.xi"].eps) == (4.0, 1 / (2.0**2 * 2.0))


def test_memories_without_a_temperature_site_are_warned_about() -> None:
    with pytest.warns(ParametrizationWarning, match=r"memory tensor\(s\) am.xi belong to no module with scaleplan_site = 'temperature'") as caught:
        state = apply_parametrization(HopfieldNet(256, 64, site=False), "denseam", base=HopfieldNet(32, 64, site=False)).scaleplan_state
    assert state.tensors["am.xi"].eps == 1.0
    assert [w.filename for w in caught if "temperature" in str(w.message)] == [__file__]  # at the caller's line


class SharedSteps(nn.Module):
    """T step modules sharing one memory matrix, each declaring it: one tensor, declared T times."""

    def __init__(self, n: int, k: int) -> None:
        super().__init__()
        self.am = Hopfield(n, k)
        self.steps = nn.ModuleList(nn.Module() for _ in range(3))
        for step in self.steps:
            step.xi = self.am.xi
            step.scaleplan_roles = {"xi": "memory"}


def test_a_memory_declared_by_every_module_that_shares_it_is_one_tensor() -> None:
    state = apply_parametrization(SharedSteps(256, 64), "denseam", base=SharedSteps(32, 64)).scaleplan_state
    assert [n for n, r in state.tensors.items() if r.role == "memory"] == ["am.xi"]


class Stacked(nn.Module):
    """One raw (layers, d, d) weight for all layers (a scan): the layer count is not a width."""

    def __init__(self, width: int, layers: int) -> None:
        super().__init__()
        self.inp, self.w, self.head = nn.Linear(8, width), nn.Parameter(torch.randn(layers, width, width) / width**0.5), nn.Linear(width, 3)


def test_a_stacked_weight_whose_layer_count_grows_with_the_width_is_refused_naming_the_depth() -> None:
    with pytest.raises(ParametrizationError, match=r"^w: more than 2 width dimensions in shape \[4, 128, 128\] \(base \[2, 32, 32\]\): "
                       r"if one is a layer count .* build the base and delta at the model's depth"):
        apply_parametrization(Stacked(128, 4), "mup", base=Stacked(32, 2), delta=Stacked(64, 3))
    at_depth = apply_parametrization(Stacked(128, 4), "mup", base=Stacked(32, 4), delta=Stacked(64, 4))
    assert (at_depth.scaleplan_state.tensors["w"].role, at_depth.scaleplan_state.tensors["w"].m) == ("hidden", 4.0)
    declared = apply_parametrization(Stacked(128, 4), "mup", base=Stacked(32, 2), delta=Stacked(64, 3), roles={"w": "hidden"})
    assert (declared.scaleplan_state.tensors["w"].role, declared.scaleplan_state.tensors["w"].m) == ("hidden", 4.0)


class LinearMemory(nn.Module):
    """A temperature site whose memory is a child nn.Linear's weight, or which declares keys and values both memories."""

    scaleplan_site = "temperature"

    def __init__(self, n: int, two: bool) -> None:
        super().__init__()
        self.features, self.n_memories, self.gradient_order, self.multiplier = n, 64, 1.5, 1.0
        if two:
            self.keys, self.values = nn.Parameter(torch.randn(64, n)), nn.Parameter(torch.randn(64, n))
            self.scaleplan_roles = {"keys": "memory", "values": "memory"}
        else:
            self.mem = nn.Linear(n, 64, bias=False)
            self.scaleplan_roles = {"mem.weight": "memory"}


@pytest.mark.parametrize("two, hint", [
    (False, r"but 0 memory tensors of its own \(its memory am.mem.weight belongs to a submodule: declare the site"),
    (True, r"but 2 memory tensors of its own \(am.keys, am.values: one site holds one memory matrix; keys and values"),
])
def test_a_site_that_does_not_own_one_memory_names_why(two: bool, hint: str) -> None:
    def net(n: int) -> nn.Module:
        model = nn.Module()
        model.inp, model.am = nn.Linear(8, n), LinearMemory(n, two)
        return model

    with pytest.raises(ParametrizationError, match=hint):
        apply_parametrization(net(256), "denseam", base=net(32))

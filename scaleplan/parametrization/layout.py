"""Which dimension of a weight is its fan-in and which its fan-out, read from the module that uses it.

`nn.Linear` and convolutions store (out, in, ...), HF's `Conv1D` and transposed convolutions
(in, out, ...), an embedding (index, out), transformers' MoE routers (`*Router`: a raw (experts, hidden)
`weight` used as F.linear(x, weight)) and recurrent layers' (`nn.LSTM`, `nn.GRU`, `nn.RNN`, cells) gate
weights (out, in), `nn.Bilinear` (out, in1, in2), read with its fan-in in the second input. Any other raw
`nn.Parameter` used in a module's own forward has no layout scaleplan can see. Roles follow from which of
those dimensions are widths (differ from the base, or from `delta` at the base width): both -> hidden, only
the fan-out -> input, only the fan-in -> output (a readout). A raw tensor is inferred only where that is safe: a vector-like (..., d) tensor
(its width is the last dimension: a position embedding, a cls token) is added to activations, so it
is an input; anything else must be declared with `roles=`.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import torch
from torch import nn

from scaleplan.errors import ParametrizationError, ParametrizationWarning

if TYPE_CHECKING:
    from scaleplan.parametrization.apply import TensorRecord

_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)
RECURRENT = (nn.RNNBase, nn.RNNCellBase)  # LSTM, GRU, RNN and their cells: gate weights (gates x hidden, in)
_MHA_PROJECTIONS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")  # used as F.linear


@dataclass(frozen=True)
class Use:
    """One module's use of a weight: where its fan-in and fan-out are, and whether it computes x @ W."""

    module_name: str
    module: nn.Module
    fan_in: int
    fan_out: int
    kind: str  # "linear" (computes from its input), "embedding" (a lookup), "functional" (its own forward, not hookable)


def is_hf_conv1d(module: nn.Module) -> bool:
    """transformers' Conv1D (GPT-2, GPT, ...): a linear layer whose weight is stored (in, out)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "nx")


def is_router(module: nn.Module) -> bool:
    """transformers' MoE router (MixtralTopKRouter, Qwen2MoeTopKRouter, GptOssTopKRouter, ...): a raw 2-D `weight`."""
    weight = module._parameters.get("weight")
    return type(module).__name__.lower().endswith("router") and weight is not None and weight.dim() == 2


_ROUTERS_CHECKED: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def computes_from_input(module: nn.Module) -> bool:
    """Whether the module's input reaches its outputs only through x @ weight.T, so that multiplying the input (a
    readout multiplier) is multiplying the weight: every output of (2x, random weight R) must equal that of (x, 2R).
    A router that normalizes its input first, or needs other arguments, fails and is left to the user."""
    if module not in _ROUTERS_CHECKED:
        _ROUTERS_CHECKED[module] = _same_outputs_for_doubled_input_or_weight(module)
    return _ROUTERS_CHECKED[module]


def _same_outputs_for_doubled_input_or_weight(module: nn.Module) -> bool:
    weight = module._parameters["weight"]
    assert weight is not None
    generator = torch.Generator().manual_seed(0)
    random = torch.randn(tuple(weight.shape), generator=generator).to(weight)
    saved, training = weight.detach().clone(), module.training
    module.eval()
    try:
        for shape in ((4, weight.shape[1]), (1, 4, weight.shape[1])):  # routers take tokens flat or (batch, seq, hidden)
            x = torch.randn(shape, generator=generator).to(weight)
            try:
                with torch.no_grad():
                    weight.copy_(random)
                    doubled_input = _tensors(module(2 * x))
                    weight.copy_(2 * random)
                    doubled_weight = _tensors(module(x))
                    return bool(doubled_input) and len(doubled_input) == len(doubled_weight) and all(
                        a.shape == b.shape and torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-7)
                        for a, b in zip(doubled_input, doubled_weight))
            except Exception:  # a third-party forward that cannot run on this probe (another input shape, more arguments)
                continue
        return False
    finally:
        with torch.no_grad():
            weight.copy_(saved)
        module.train(training)


def _tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _tensors(item)]
    return []


def _layout(module: nn.Module, local: str) -> tuple[int, int, str] | None:
    """(fan-in dim, fan-out dim, kind) of `module`'s parameter `local`, None where unknown (a raw tensor)."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd) and local == "weight":
        return 0, 1, "linear"
    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) and local == "weight":
        return 1, 0, "linear"
    if is_hf_conv1d(module) and local == "weight":
        return 0, 1, "linear"
    if isinstance(module, _EMBEDDINGS) and local == "weight":
        return 0, 1, "embedding"
    if isinstance(module, nn.MultiheadAttention) and local in _MHA_PROJECTIONS:
        return 1, 0, "functional"
    if is_router(module) and local == "weight":
        return 1, 0, "linear" if computes_from_input(module) else "functional"
    if isinstance(module, RECURRENT) and local.startswith("weight_"):  # weight_ih_l0, weight_hh(_l0), weight_hr_l0: F.linear
        return 1, 0, "functional"
    if isinstance(module, nn.Bilinear) and local == "weight":  # linear in input1 too: scaling it scales the weight's effect
        return 2, 0, "linear"
    return None


def uses(model: nn.Module, param: nn.Parameter) -> Iterator[tuple[str, nn.Module, str]]:
    """Every (module name, module, local name) that holds `param` directly (tied weights have several)."""
    for module_name, module in model.named_modules(remove_duplicate=False):
        for local, p in module._parameters.items():
            if p is param:
                yield module_name, module, local


def known_uses(model: nn.Module, param: nn.Parameter) -> list[Use]:
    """The uses of `param` whose layout scaleplan knows (empty for a raw parameter)."""
    found = []
    for module_name, module, local in uses(model, param):
        layout = _layout(module, local)
        if layout is not None:
            found.append(Use(module_name, module, *layout))
    return found


@dataclass(frozen=True)
class Inferred:
    """A tensor's role and its fan-in / fan-out width multipliers (m: the one its role's rules use)."""

    role: str
    m: float
    m_out: float | None = None  # hidden tensors whose fan-out multiplier differs from their fan-in's


def infer_role(name: str, shape: tuple[int, ...], mults: list[float | None], layouts: list[Use]) -> Inferred:
    """Role of parameter `name` from its width multipliers per dimension (None: not a width) and its uses."""
    inf = [i for i, mult in enumerate(mults) if mult is not None]
    if not inf:
        return Inferred("fixed", 1.0)
    if len(shape) == 1:
        return Inferred("vector", mults[0] or 1.0)
    if not layouts:
        return _infer_raw(name, shape, mults, inf)
    roles = []
    for use in layouts:
        _check_dims(name, shape, inf, use)
        m_in, m_out = mults[use.fan_in], mults[use.fan_out]
        if m_in is not None and m_out is not None:
            roles.append(Inferred("hidden", m_in, m_out if m_out != m_in else None))
        elif m_out is not None:
            roles.append(Inferred("input", m_out))
        else:
            roles.append(Inferred("output", m_in or 1.0))
    for role in ("hidden", "input", "output"):  # a tied embedding + readout is an input (mup: vector-like)
        for inferred in roles:
            if inferred.role == role:
                return inferred
    raise AssertionError("unreachable: every use gave a role")


def _check_dims(name: str, shape: tuple[int, ...], inf: list[int], use: Use) -> None:
    """Refuse a width in a dimension that cannot be one: an embedding's index (vocab), a conv kernel."""
    if use.kind == "embedding" and use.fan_in in inf:
        raise ParametrizationError(
            f"{name}: the number of embeddings ({shape[use.fan_in]}) differs from the base's, but a vocabulary "
            "is not a width; build the base with the same vocabulary (and positions) as the model"
        )
    other = [i for i in inf if i not in (use.fan_in, use.fan_out)]
    if other and isinstance(use.module, nn.Bilinear):
        raise ParametrizationError(
            f"{name}: {use.module_name or 'the model'} (Bilinear)'s first input is a width (size {shape[1]}); its fan-in is "
            "in1 x in2, and scaleplan reads the width from the second input: pass the width input second, nn.Bilinear(k, d, "
            "out); a form of two width inputs (fan-in d1 x d2, muP's output multiplier 1/m^2) has no role here"
        )
    if other:
        raise ParametrizationError(
            f"{name}: dimension {other[0]} (size {shape[other[0]]}) differs from the base but is neither the fan-in "
            f"nor the fan-out of {use.module_name or 'the model'} ({type(use.module).__name__}); build the base with "
            "the same non-width sizes (kernel, vocabulary) as the model"
        )


def _infer_raw(name: str, shape: tuple[int, ...], mults: list[float | None], inf: list[int]) -> Inferred:
    """A raw parameter: vector-like (..., d) tensors are inputs; equal-width matrices hidden; else refused."""
    if inf == [len(shape) - 1]:
        return Inferred("input", mults[-1] or 1.0)  # added to activations: position embedding, cls token
    if len(inf) == 2 and mults[inf[0]] == mults[inf[1]]:
        return Inferred("hidden", mults[inf[1]] or 1.0)  # fan-in and fan-out scale alike: layout does not matter
    raise ParametrizationError(
        f"cannot infer the role of raw parameter {name!r} (shape {list(shape)}, width dims {inf}): its layout is "
        f"unknown; declare it, roles={{{name!r}: 'output'}} if only its fan-in is a width (a readout used as x @ w), "
        f"'input' if only its fan-out is (e.g. an MoE expert's down projection at a fixed FFN width, a LoRA B (d, r), whose "
        "A (r, d) is then an 'output'), 'vector' if it is a per-channel table, not a weight (an SSM's A_log (d, d_state): "
        "init_std re-draws an 'input', a 'vector' keeps its init), 'hidden' if both are; or make it an nn.Linear"
    )


def declared_role(name: str, role: str, shape: tuple[int, ...], mults: list[float | None], layouts: list[Use]) -> Inferred:
    """A role the user or the model declared, with the multiplier its rules use read from the layout."""
    inf = [i for i, mult in enumerate(mults) if mult is not None]
    if role == "memory":  # a DenseAM memory matrix (K, N): m = (N/N_base)(K/K_base), its gradient's 1/(NK)
        return Inferred(role, math.prod(mults[i] or 1.0 for i in inf))
    main = mults[inf[-1]] if inf else 1.0  # mup's convention: the last width dimension
    if layouts and len(shape) >= 2:
        m_in, m_out = mults[layouts[0].fan_in] or 1.0, mults[layouts[0].fan_out] or 1.0
        if role == "output" and mults[layouts[0].fan_out] is not None:
            raise ParametrizationError(
                f"{name!r} is declared output, but its fan-out is a width too (shape {list(shape)}): a readout maps the width "
                "to a fixed size (classes, vocabulary); a width-to-width matrix is hidden"
            )
        if role == "hidden":
            return Inferred(role, m_in, m_out if m_out != m_in else None)
        return Inferred(role, {"input": m_out, "output": m_in}.get(role, main or 1.0))
    if role == "hidden" and len(inf) == 2 and mults[inf[0]] != mults[inf[1]]:
        raise ParametrizationError(
            f"raw parameter {name!r} is declared hidden but its two width dims scale differently "
            f"(shape {list(shape)}); its fan-in is unknown: make it an nn.Linear (or transformers Conv1D)"
        )
    return Inferred(role, main or 1.0)


def refuse_low_rank_inputs(model: nn.Module, records: Mapping[str, TensorRecord], declared: Mapping[str, str]) -> None:
    """Refuse a raw (r, d) tensor inferred an input (the position-embedding rule) beside a raw (d, r) input in its module:
    the A of a low-rank adapter (loralib's lora_A, lora_B), which maps the width to r as a readout does; as an input it
    would get no 1/m and, under Adam, update m times too fast (LoRA+, Hayou et al. 2024: lr_B / lr_A ~ width)."""
    names = {id(p): name for name, p in model.named_parameters()}

    def inferred(p: nn.Parameter) -> tuple[str, tuple[int, ...]]:
        return records[names[id(p)]].role, records[names[id(p)]].width_dims

    for module in model.modules():
        raw = [p for local, p in module._parameters.items() if p is not None and p.dim() == 2 and _layout(module, local) is None]
        for a in raw:
            name = names[id(a)]
            if name in declared or inferred(a) != ("input", (1,)):
                continue
            partner = next((names[id(b)] for b in raw if b.shape == a.shape[::-1] and inferred(b) == ("input", (0,))), None)
            if partner is not None:
                raise ParametrizationError(
                    f"raw {name!r} {list(a.shape)} beside {partner!r} {list(a.shape[::-1])} is a low-rank adapter's A, which maps "
                    f"the width to a fixed rank as a readout does (LoRA+: lr_B / lr_A ~ width), not an input: declare "
                    f"roles={{{name!r}: 'output', {partner!r}: 'input'}} and multiply A's input by readout_multiplier(model, "
                    f"{name!r}), or make them nn.Linear layers"
                )


def refuse_recurrent_readouts(model: nn.Module, records: Mapping[str, TensorRecord]) -> None:
    """Refuse an LSTM's projection read as a readout (weight_hr with a fixed proj_size): it maps the width to a fixed
    size inside torch's kernel, where no 1/m can be applied (a weight_ih readout's input is the user's to scale)."""
    for name, param in model.named_parameters():
        if records[name].role != "output" or not name.rpartition(".")[2].startswith("weight_hr"):
            continue
        uses = known_uses(model, param)
        if uses and isinstance(uses[0].module, RECURRENT):
            raise ParametrizationError(
                f"{name}: {uses[0].module_name} ({type(uses[0].module).__name__}) projects its width hidden state to a fixed "
                f"size {param.shape[0]} inside torch's kernel, where the readout multiplier 1/m cannot be applied: scale "
                "proj_size with the width, or drop proj_size and read the hidden state out with an nn.Linear"
            )


def warn_fused_widths(shapes: Mapping[str, tuple[int, ...]], base: Mapping[str, tuple[int, ...]],
                      delta: Mapping[str, tuple[int, ...]]) -> None:
    """Warn about a width dimension that grows by a fixed part plus a width-sized one (Mamba's x_proj rows, dt_rank =
    d/16 beside 2 d_state; a Linear over [x, fixed features]): one role cannot fit both parts. Sizes a + c w of one
    width family share (size - base)/(delta - base) with the family's proportional ones (a = 0) but grow less from the
    base to the delta; families that scale apart have other ratios, and a model at the base's shapes is not checked."""
    dims = [(name, i, b, d, s) for name, shape in shapes.items() for i, (b, d, s) in enumerate(zip(base[name], delta[name], shape))
            if b != d and s != b]
    largest: dict[Fraction, Fraction] = {}
    for _, _, b, d, s in dims:
        family = Fraction(s - b, d - b)
        largest[family] = max(largest.get(family, Fraction(0)), Fraction(d, b))
    fused = [(name, i, b, d, s) for name, i, b, d, s in dims if Fraction(d, b) < largest[Fraction(s - b, d - b)]]
    if fused:
        name, i, b, d, s = fused[0]
        warnings.warn(
            f"{name}: dimension {i} grows {b} -> {d} -> {s} (base, delta, model), less than in proportion to the widths "
            f"that grow alike: a fixed-size part fused with a width-sized one (Mamba's x_proj with dt_rank = d/16 beside "
            "2 d_state, a Linear over [x, fixed features]), for which one role is wrong for one part: split it into two "
            "layers, or keep the width-sized part's size fixed",
            ParametrizationWarning,
            stacklevel=4,
        )

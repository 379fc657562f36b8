"""The first forward of a parametrized model, watched for what apply_parametrization cannot see from its parameters.

Two silent wrong answers live in a model's forward, not in its parameters: attention written inline (a call to
F.scaled_dot_product_attention without `scale`, or softmax(q @ k^T / sqrt(d_head)) in a block's own code), which
keeps 1/sqrt(d_head) where muP needs 1/d_head; and an output computed from a tensor read as an input weight (a raw
(classes, d) head, an embedding tied by hand as h @ emb.weight.T, a head under weight_norm), which gets none of
muP's 1/m. A one-shot hook on the parametrized module watches its first forward with a TorchFunctionMode: each
tensor carries the parameter it last went through (a matrix op over a width), whether it is computed from
parameters alone, and the scalar factors applied to it; softmax over q @ k^T then shows its logit scale, and the
output shows its last weight. Findings are warned once, with the fix. Forwards under torch.compile or torch.func
transforms (scaleplan's own populations) are not watched.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from scaleplan.errors import ParametrizationWarning
from scaleplan.parametrization.attention import opaque_attention
from scaleplan.parametrization.caller import caller_stacklevel

if TYPE_CHECKING:
    from scaleplan.parametrization.apply import ParametrizationState

_T = torch.Tensor
_MATRIX_OPS = {F.linear, F.bilinear, F.embedding, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d,
               F.conv_transpose3d, torch.matmul, _T.matmul, _T.__matmul__, torch.mm, _T.mm, torch.bmm, _T.bmm}
_REVERSED_MATRIX_OPS = {_T.__rmatmul__}  # other @ self
_SCALE_OPS = {torch.mul, _T.mul, _T.mul_, _T.__mul__, _T.__rmul__, _T.__imul__}
_DIVIDE_OPS = {torch.div, _T.div, _T.div_, _T.__truediv__, _T.__itruediv__}
# ops that keep a tensor's values (views, casts) or only mask them: a logit's scale survives them
_KEEP_OPS = {_T.view, _T.reshape, torch.reshape, _T.transpose, torch.transpose, _T.permute, torch.permute, _T.contiguous,
             _T.to, _T.float, _T.half, _T.bfloat16, _T.type_as, _T.masked_fill, _T.masked_fill_, torch.masked_fill,
             _T.__add__, _T.__radd__, _T.__iadd__, _T.add, _T.add_, torch.add, _T.__getitem__, torch.where, _T.clone,
             _T.squeeze, _T.unsqueeze, torch.squeeze, torch.unsqueeze, _T.t, _T.T.__get__, _T.mT.__get__,  # type: ignore[attr-defined]
             _T.expand, _T.repeat_interleave, torch.repeat_interleave, _T.flatten, torch.flatten, _T.unflatten}
_SOFTMAX_OPS = {F.softmax, torch.softmax, _T.softmax}
_SDPA = F.scaled_dot_product_attention
_SDPA_SCALE_POSITION = 6  # (query, key, value, attn_mask, dropout_p, is_causal, scale, ...)


@dataclass(frozen=True)
class _Info:
    """What the audit knows about one tensor."""

    origin: str | None = None  # the last parameter over a width a matrix op took it through
    scaled: bool = False  # that op ran inside a module whose input gets the readout multiplier
    weight: str | None = None  # computed from parameters alone (a view, cast or norm of this parameter)
    factor: float = 1.0  # the product of the scalars it was multiplied by since its last matrix op
    logits_dim: int | None = None  # q @ k^T of two activations: the size of the dot product


class _Watch(TorchFunctionMode):
    """Tags every tensor the watched forward computes (see _Info) and records softmax logits at 1/sqrt(d)."""

    def __init__(self, params: dict[int, str], widths: set[str], hooked: set[str]) -> None:
        super().__init__()
        self.params, self.widths, self.hooked = params, widths, hooked
        self.infos: dict[int, tuple[weakref.ref, _Info]] = {}
        self.stack: list[str] = []  # the names of the modules whose forward is running
        self.entered: set[str] = set()  # every module whose forward ran
        self.logits: list[tuple[tuple[str, ...], int, str | None]] = []  # (module stack, d_head, how if at 1/sqrt(d_head))

    def enter(self, name: str | None) -> None:
        if name is not None:
            self.stack.append(name)
            self.entered.add(name)

    def leave(self, name: str | None) -> None:
        if name is not None and self.stack and self.stack[-1] == name:  # the watched module itself was never entered
            self.stack.pop()

    def info(self, obj: Any) -> _Info | None:
        if not isinstance(obj, torch.Tensor):
            return None
        if id(obj) in self.params:
            return _Info(weight=self.params[id(obj)])
        entry = self.infos.get(id(obj))
        return entry[1] if entry is not None and entry[0]() is obj else None

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            info = self._derive(func, args, kwargs)
        except Exception:  # the audit must never change what the forward computes or raises
            info = None
        if info is not None:
            for tensor in _tensors(out):
                self.infos[id(tensor)] = (weakref.ref(tensor), info)
        return out

    def mark_inputs(self, inputs: Any) -> None:
        """The forward's tensor inputs are activations; tensors with no info (buffers, masks) are constants."""
        for tensor in _tensors(inputs):
            self.infos[id(tensor)] = (weakref.ref(tensor), _Info())

    def _derive(self, func: Any, args: tuple, kwargs: dict) -> _Info | None:
        tensors = list(_tensors((args, kwargs)))
        infos = [self.info(t) for t in tensors]
        known = [i for i in infos if i is not None]
        if not known:
            return None  # constants alone
        if all(i.weight is not None for i in known):  # computed from parameters (and constants) alone
            return _Info(weight=next((i.weight for i in known if i.weight in self.widths), known[0].weight))
        carried = next(i for i in known if i.weight is None)  # the first activation
        carrier = next((i for i in known if i.weight is None and i.origin is not None), carried)
        origin = _Info(origin=carrier.origin, scaled=carrier.scaled)
        if func in _MATRIX_OPS or func in _REVERSED_MATRIX_OPS or func is torch.einsum:
            return self._matrix(func, args, tensors, infos, origin)
        if func is _SDPA:
            scale = kwargs.get("scale", args[_SDPA_SCALE_POSITION] if len(args) > _SDPA_SCALE_POSITION else None)
            how = "F.scaled_dot_product_attention without scale" if scale is None else None
            self.logits.append((tuple(self.stack), int(tensors[0].shape[-1]), how))
            return origin
        if func in _SOFTMAX_OPS and carried.logits_dim is not None:
            standard = math.isclose(carried.factor * math.sqrt(carried.logits_dim), 1.0, rel_tol=1e-3)
            self.logits.append((tuple(self.stack), carried.logits_dim, "softmax(q @ k^T / sqrt(d_head))" if standard else None))
            return origin
        if func in _SCALE_OPS or func in _DIVIDE_OPS:
            scalar = _scalar(args, kwargs, self)
            if scalar is None:
                return origin
            return replace(origin, factor=carried.factor * (scalar if func in _SCALE_OPS else 1.0 / scalar), logits_dim=carried.logits_dim)
        if func in _KEEP_OPS:
            return replace(origin, factor=carried.factor, logits_dim=carried.logits_dim)
        return origin

    def _matrix(self, func: Any, args: tuple, tensors: list[torch.Tensor], infos: list[_Info | None], origin: _Info) -> _Info:
        weights = [i.weight for i in infos if i is not None and i.weight is not None]
        width_weight = next((w for w in weights if w in self.widths), None)
        if width_weight is not None:
            return _Info(origin=width_weight, scaled=bool(self.stack) and self.stack[-1] in self.hooked)
        a, b = (infos + [None, None])[:2]
        if weights or a is None or b is None:  # a weight without a width (a fixed mixing matrix), a constant: the origin passes
            return origin
        left = tensors[1] if func in _REVERSED_MATRIX_OPS else tensors[0]  # __rmatmul__(self, other) is other @ self
        dim = _einsum_contraction(args[0], tensors) if func is torch.einsum else int(left.shape[-1])
        return replace(origin, factor=a.factor * b.factor, logits_dim=dim)


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """The tensors in nested tuples, lists and dicts."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def _scalar(args: tuple, kwargs: dict, watch: _Watch) -> float | None:
    """The number a tensor is multiplied or divided by: a Python number or a one-element constant tensor (not a
    parameter: a learned temperature is the user's own scale)."""
    other = args[1] if len(args) > 1 else kwargs.get("other")
    if isinstance(other, (int, float)) and not isinstance(other, bool):
        return float(other)
    if isinstance(other, torch.Tensor) and other.numel() == 1 and watch.info(other) is None and not other.requires_grad:
        return float(other.item())
    return None


def _einsum_contraction(equation: Any, tensors: list[torch.Tensor]) -> int:
    """The product of the sizes summed over in a two-operand einsum ('bhid,bhjd->bhij': d)."""
    inputs, _, output = str(equation).replace(" ", "").partition("->")
    first, _, second = inputs.partition(",")
    sizes = dict(zip(first, tensors[0].shape)) | dict(zip(second, tensors[1].shape))
    return math.prod(int(sizes[c]) for c in set(first) & set(second) if c not in output)


class ForwardAudit:
    """The one-shot forward pre-hook and hook on a parametrized module (picklable; removed after one watched forward)."""

    def __init__(self) -> None:
        self._run: tuple[_Watch, list[RemovableHandle]] | None = None

    def before(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        from scaleplan.parametrization.apply import ScaleInput  # apply installs this audit: imported when it runs

        if self._run is not None or torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
            return
        state = module.__dict__.get("scaleplan_state")
        if state is None:  # fold_multipliers' copy (its state deleted): nothing to audit
            _remove(module)
            return
        params = {id(p): name for name, p in module.named_parameters()}
        widths = {name for name in params.values() if getattr(state.tensors.get(name), "role", None) not in ("fixed", "vector")}
        names = {id(m): name for name, m in module.named_modules()}
        watch = _Watch(params, widths, {name for name, m in module.named_modules() if any(isinstance(h, ScaleInput) for h in m._forward_pre_hooks.values())})
        handles = [nn.modules.module.register_module_forward_pre_hook(lambda m, _: watch.enter(names.get(id(m)))),
                   nn.modules.module.register_module_forward_hook(lambda m, _, __: watch.leave(names.get(id(m))), always_call=True)]
        self._run = (watch, handles)
        watch.mark_inputs((args, kwargs))
        watch.__enter__()

    def after(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self._run is None:
            return
        watch, handles = self._run
        self._run = None
        watch.__exit__(None, None, None)
        for handle in handles:
            handle.remove()
        _remove(module)  # one forward is watched, even one that raised (its findings are not reported)
        if output is None:
            return
        state = module.__dict__["scaleplan_state"]
        for problem in (_attention_problem(module, state, watch), _readout_problem(module, state, watch, output)):
            if problem is not None:
                warnings.warn(problem, ParametrizationWarning, stacklevel=caller_stacklevel())


def install(model: nn.Module) -> None:
    """Watch `model`'s next forward (apply_parametrization calls this under rules that scale attention or the readout)."""
    audit = ForwardAudit()
    model.register_forward_pre_hook(audit.before, with_kwargs=True)
    model.register_forward_hook(audit.after, with_kwargs=True, always_call=True)


def _remove(model: nn.Module) -> None:
    """Drop `model`'s audit hooks."""
    for hooks in (model._forward_pre_hooks, model._forward_hooks):
        for key in [k for k, hook in hooks.items() if isinstance(getattr(hook, "__self__", None), ForwardAudit)]:
            del hooks[key]
            model._forward_pre_hooks_with_kwargs.pop(key, None)
            model._forward_hooks_with_kwargs.pop(key, None)
            model._forward_hooks_always_called.pop(key, None)


def _attention_problem(model: nn.Module, state: ParametrizationState, watch: _Watch) -> str | None:
    """Softmax logits at 1/sqrt(d_head) outside the attention scaleplan sets, and modules named like attention (which
    scaleplan cannot set) whose logits it could not read; nn.MultiheadAttention was named when applied."""
    modules = dict(model.named_modules())
    skipped = set(state.sites) | set(state.scalings) | {n for n, m in modules.items() if isinstance(m, nn.MultiheadAttention)}
    found: dict[str, None] = {}
    for stack, d_head, how in watch.logits:
        if how is not None and not skipped.intersection(stack):
            where = stack[-1] if stack else ""
            found[f"{where or 'the model'} ({type(modules[where]).__name__}, d_head {d_head}): {how}"] = None
    read = {name for stack, _, _ in watch.logits for name in stack}
    unread = [f"{n} ({type(modules[n]).__name__})" for n in sorted(watch.entered - read - skipped) if opaque_attention(modules[n])]
    if not found and not unread:
        return None
    parts = [f"attention scaleplan cannot set computes its logits with 1/sqrt(d_head): {_some(list(found))}"] if found else []
    if unread:
        parts.append(f"scaleplan cannot set or read the attention-logit scale of {_some(unread)} (no softmax over q @ k^T or "
                     "F.scaled_dot_product_attention it can see): if it is 1/sqrt(d_head)")
    return ("; ".join(parts) + ". muP needs 1/d_head (the logits grow with a growing head size): pass "
            "scale=scaleplan.attention_scale(d_head, base_d_head) to F.scaled_dot_product_attention or multiply q @ k^T by it; "
            "if d_head stays fixed as the width grows, 1/sqrt(d_head) is right: pass scale= explicitly or filter "
            "scaleplan.ParametrizationWarning")


def _some(items: list[str]) -> str:
    """The first three of `items`, and whether there are more."""
    return "; ".join(items[:3]) + (" and more" if len(items) > 3 else "")


def _readout_problem(model: nn.Module, state: ParametrizationState, watch: _Watch, output: Any) -> str | None:
    """The output's last weight over a width, where it is one that gets no readout multiplier."""
    logits = _main_output(output)
    info = watch.info(logits) if logits is not None else None
    name = info.origin if info is not None and not info.scaled else None
    if name is None or name in state.manual_readouts or getattr(state.tensors.get(name), "role", None) != "input":
        return None  # (a tensor added after apply_parametrization has no record: param_groups refuses the model)
    param = dict(model.named_parameters())[name]
    return (f"the model's output is computed from {name} {tuple(param.shape)}, which scaleplan read as an input weight, "
            "so it gets none of muP's 1/m output multiplier and trains as SP: if it is the readout, compute it with an "
            f"nn.Linear (tied: share the embedding's weight), or declare roles={{{name!r}: 'output'}} and multiply its "
            f"input by scaleplan.readout_multiplier(model, {name!r}) in your forward")


def _main_output(output: Any) -> torch.Tensor | None:
    """The model's prediction: the tensor itself, `logits` of a mapping (transformers' outputs), else its first tensor."""
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    return next(_tensors(output), None)

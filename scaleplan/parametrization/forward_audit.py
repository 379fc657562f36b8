"""The first forward of a parametrized model, watched for what apply_parametrization cannot see from its parameters.

Silent wrong answers live in a model's forward, not in its parameters: attention written inline (a call to
F.scaled_dot_product_attention without `scale`, or softmax(q @ k^T / sqrt(d_head)) in a block's own code), which
keeps 1/sqrt(d_head) where muP needs 1/d_head; and an output computed from a tensor read as an input weight (a raw
(classes, d) head, an embedding tied by hand as h @ emb.weight.T, a head under weight_norm), which gets none of
muP's 1/m; and a Hopfield layer's memories, read as softmax(x @ W^T) @ W, that were not declared (their rules are the
DenseAM ones). A one-shot hook on the parametrized module watches its first forward with a TorchFunctionMode: each
tensor carries the parameter it last went through (a matrix op over a width), whether it is computed from
parameters alone, and the scalar factors applied to it; softmax over q @ k^T then shows its logit scale, and the
output shows its last weight. Findings are warned once, with the fix. A softmax's scale is not judged at the base
width, where muP's equals SP's. Forwards under torch.compile or torch.func transforms (scaleplan's own populations),
and other threads' forwards meanwhile, are not watched.
"""

from __future__ import annotations

import math
import threading
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
               F.conv_transpose3d, torch.matmul, _T.matmul, _T.__matmul__, torch.mm, _T.mm, torch.bmm, _T.bmm,
               torch.mv, _T.mv, torch.inner, _T.inner, torch.tensordot, torch.dot, _T.dot}
_REVERSED_MATRIX_OPS = {_T.__rmatmul__}  # other @ self
_ADDED_MATRIX_OPS = {torch.addmm, _T.addmm, torch.baddbmm, _T.baddbmm}  # beta * input + alpha * (mat1 @ mat2): BLOOM's logits
# ops that take (input, weight): an input computed from parameters (a learned query, a position table) makes an activation
_INPUT_WEIGHT_OPS = {F.linear, F.embedding, F.conv1d, F.conv2d, F.conv3d}
_SCALE_OPS = {torch.mul, _T.mul, _T.mul_, _T.__mul__, _T.__rmul__, _T.__imul__}
_DIVIDE_OPS = {torch.div, _T.div, _T.div_, _T.__truediv__, _T.__itruediv__}
# ops that keep a tensor's values (views, casts) or only mask them: a logit's scale survives them
_KEEP_OPS = {_T.view, _T.reshape, torch.reshape, _T.transpose, torch.transpose, _T.permute, torch.permute, _T.contiguous,
             _T.to, _T.float, _T.half, _T.bfloat16, _T.type_as, _T.masked_fill, _T.masked_fill_, torch.masked_fill,
             _T.__add__, _T.__radd__, _T.__iadd__, _T.add, _T.add_, torch.add, _T.__getitem__, torch.where, _T.clone,
             _T.squeeze, _T.unsqueeze, torch.squeeze, torch.unsqueeze, _T.t, _T.T.__get__, _T.mT.__get__,  # type: ignore[attr-defined]
             _T.expand, _T.repeat_interleave, torch.repeat_interleave, _T.flatten, torch.flatten, _T.unflatten, _T.type,
             _T.double, _T.__sub__, _T.__isub__, _T.sub, _T.sub_, torch.sub}  # minus a row max or an ALiBi bias
_SOFTMAX_OPS = {F.softmax, torch.softmax, _T.softmax}
_SUM_OPS = {torch.sum, _T.sum, torch.mean, _T.mean}  # (h * v).sum(-1): h @ v written out
_SDPA = F.scaled_dot_product_attention
_SDPA_SCALE_POSITION = 6  # (query, key, value, attn_mask, dropout_p, is_causal, scale, ...)
_MHA = F.multi_head_attention_forward  # always 1/sqrt(d_head): CLIP's AttentionPool2d calls it with its own weights
_MHA_HEADS_POSITION, _MHA_OUT_POSITION = 4, 11  # (query, key, value, embed_dim, num_heads, ..., out_proj_weight, ...)


@dataclass(frozen=True)
class _Info:
    """What the audit knows about one tensor."""

    origin: str | None = None  # the last parameter over a width a matrix op took it through
    scaled: bool = False  # that op ran inside a module whose input gets the readout multiplier
    weight: str | None = None  # computed from parameters alone (a view, cast or norm of this parameter)
    factor: float | None = 1.0  # the product of the scalars it was multiplied by since its last matrix op (None: unknown)
    logits_dim: int | None = None  # q @ k^T of two activations: the size of the dot product
    gain: str | None = None  # the width vector it was just multiplied by, elementwise: summed over the width, a readout
    through: str | None = None  # an activation @ this width weight (^T): a memory's overlaps, if a softmax follows
    retrieved: str | None = None  # softmax over such overlaps: @ the same weight again, a Hopfield retrieval


@dataclass(frozen=True)
class _Logits:
    """One attention's logits as the watched forward computed them."""

    stack: tuple[str, ...]  # the modules whose forward was running
    d_head: int
    how: str | None  # how they sit at SP's scale; None where they do not
    measured: bool = True  # their scale was read off the arithmetic (a softmax's), not off a call that takes none
    known: bool = True  # that scale could be read (not through a per-head or learned vector)
    explicit: bool = False  # a scale passed to SDPA: judged only in a module whose head grew (ParametrizationState.head_ratios)


class _Watch(TorchFunctionMode):
    """Tags every tensor the watched forward computes (see _Info) and records attention logits (see _Logits)."""

    def __init__(self, params: dict[int, str], widths: set[str], vectors: set[str], hooked: set[str]) -> None:
        super().__init__()
        self.params, self.widths, self.vectors, self.hooked = params, widths, vectors, hooked
        self.thread = threading.get_ident()  # other threads' modules (a server's, DataParallel's) are not this forward's
        self.infos: dict[int, tuple[weakref.ref, _Info]] = {}
        self.stack: list[str] = []  # the names of the modules whose forward is running
        self.entered: set[str] = set()  # every module whose forward ran
        self.logits: list[_Logits] = []
        self.memories: dict[str, tuple[str, ...]] = {}  # weight read as softmax(x @ W^T) @ W -> the modules running

    def enter(self, name: str | None) -> None:
        if name is not None and threading.get_ident() == self.thread:
            self.stack.append(name)
            self.entered.add(name)

    def leave(self, name: str | None) -> None:
        if name is not None and self.stack and self.stack[-1] == name and threading.get_ident() == self.thread:
            self.stack.pop()  # (the watched module itself was never entered)

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

    def _scaled(self) -> bool:
        """Whether the running module's input gets the readout multiplier."""
        return bool(self.stack) and self.stack[-1] in self.hooked

    def _derive(self, func: Any, args: tuple, kwargs: dict) -> _Info | None:
        tensors = list(_tensors((args, kwargs)))
        infos = [self.info(t) for t in tensors]
        known = [i for i in infos if i is not None]
        if not known:
            return None  # constants alone
        if func is _SDPA or func is _MHA:
            return self._attention_call(func, args, kwargs, tensors, known)
        activations = [(t, i) for t, i in zip(tensors, infos) if i is not None and i.weight is None]
        if not activations:
            return self._from_parameters(func, known)
        # the logits, where one operand carries them (torch.where(mask, logits, -inf), bias + logits), else the first
        held, carried = next(((t, i) for t, i in activations if i.logits_dim is not None), activations[0])
        carrier = next((i for _, i in activations if i.origin is not None), carried)
        origin = _Info(origin=carrier.origin, scaled=carrier.scaled)
        if func in _MATRIX_OPS or func in _REVERSED_MATRIX_OPS or func in _ADDED_MATRIX_OPS or func is torch.einsum:
            return self._matrix(func, args, kwargs, tensors, infos, origin)
        if func in _SOFTMAX_OPS and carried.logits_dim is not None:
            self.logits.append(_Logits(tuple(self.stack), carried.logits_dim, _sp_scale(carried.factor, carried.logits_dim),
                                       known=carried.factor is not None))
            return origin
        if func in _SOFTMAX_OPS and carried.through is not None:
            return replace(origin, retrieved=carried.through)
        if func in _SCALE_OPS or func in _DIVIDE_OPS:
            gain = next((i.weight for i in known if i.weight in self.vectors), None) if func in _SCALE_OPS else None
            return replace(origin, factor=self._rescaled(func, args, kwargs, held, carried.factor), logits_dim=carried.logits_dim,
                           gain=gain, through=carried.through, retrieved=carried.retrieved)
        if func in _SUM_OPS and carried.gain is not None and _over_last_dim(held, _argument(args, kwargs, 1, "dim")):
            return _Info(origin=carried.gain, scaled=self._scaled())
        if func in _KEEP_OPS:
            return replace(origin, factor=carried.factor, logits_dim=carried.logits_dim, through=carried.through,
                           retrieved=carried.retrieved)
        if func is F.dropout:  # on a retrieval's softmax weights
            return replace(origin, retrieved=carried.retrieved)
        return origin

    def _from_parameters(self, func: Any, known: list[_Info]) -> _Info:
        """A tensor computed from parameters and constants alone: a weight, or where a layer took one (or a constant) as
        its input (a learned query through its projection, a position table, an input the audit could not mark), an
        activation."""
        widths = [i.weight for i in known if i.weight in self.widths]
        if func in _INPUT_WEIGHT_OPS and widths:
            return _Info(origin=widths[-1], scaled=self._scaled())  # the layer's weight, after its input
        return _Info(weight=widths[0] if widths else known[0].weight)

    def _attention_call(self, func: Any, args: tuple, kwargs: dict, tensors: list[torch.Tensor], known: list[_Info]) -> _Info:
        """Record a call computing attention whole: SDPA at its `scale` (1/sqrt(d_head) without one),
        F.multi_head_attention_forward always at 1/sqrt(d_head) (its output then comes from out_proj_weight)."""
        carrier = next((i for i in known if i.weight is None and i.origin is not None), _Info())
        if func is _SDPA:
            d_head, scale = int(tensors[0].shape[-1]), _argument(args, kwargs, _SDPA_SCALE_POSITION, "scale")
            if scale is None:
                self.logits.append(_Logits(tuple(self.stack), d_head, "F.scaled_dot_product_attention without scale", measured=False))
            else:  # a fixed head size passes SP's scale on purpose: only a grown head's is judged
                sp = _sp_factor(float(scale), d_head)
                how = None if sp is None else f"F.scaled_dot_product_attention(scale={sp}) while its head size grows with the width"
                self.logits.append(_Logits(tuple(self.stack), d_head, how, measured=False, explicit=True))
            return _Info(origin=carrier.origin, scaled=carrier.scaled)
        heads = int(_argument(args, kwargs, _MHA_HEADS_POSITION, "num_heads"))
        self.logits.append(_Logits(tuple(self.stack), int(tensors[0].shape[-1]) // heads,
                                   "F.multi_head_attention_forward (always 1/sqrt(d_head))", measured=False))
        out = self.info(_argument(args, kwargs, _MHA_OUT_POSITION, "out_proj_weight"))
        name = out.weight if out is not None and out.weight in self.widths else carrier.origin
        return _Info(origin=name, scaled=self._scaled())

    def _matrix(self, func: Any, args: tuple, kwargs: dict, tensors: list[torch.Tensor], infos: list[_Info | None],
                origin: _Info) -> _Info:
        weights = [i.weight for i in infos if i is not None and i.weight is not None]
        width_weight = next((w for w in weights if w in self.widths), None)
        if width_weight is not None:
            activation = next((i for i in infos if i is not None and i.weight is None), None)
            if activation is not None and activation.retrieved == width_weight:
                self.memories.setdefault(width_weight, tuple(self.stack))
            # a (K, N) weight with K != N: a second product with it contracts its other side (W^T, then W), a retrieval;
            # a square one could be the same map applied twice
            matrix = next(t for t, i in zip(tensors, infos) if i is not None and i.weight == width_weight)
            overlaps = activation is not None and matrix.dim() == 2 and matrix.shape[0] != matrix.shape[1]
            return _Info(origin=width_weight, scaled=self._scaled(), through=width_weight if overlaps else None)
        first = 1 if func in _ADDED_MATRIX_OPS else 0  # addmm(input, mat1, mat2)
        a, b = (infos[first:] + [None, None])[:2]
        vector = next((i.weight for i in (a, b) if i is not None and i.weight in self.vectors), None)
        if vector is not None:  # h @ v over a width (a value head, a pooling score): v is what the output came through
            return _Info(origin=vector, scaled=self._scaled())
        if weights or a is None or b is None:  # a weight without a width (a fixed mixing matrix), a constant: the origin passes
            return origin
        left = tensors[first + 1] if func in _REVERSED_MATRIX_OPS else tensors[first]  # __rmatmul__(self, other) is other @ self
        dim = _einsum_contraction(args[0], tensors) if func is torch.einsum else int(left.shape[-1])
        alpha = float(kwargs.get("alpha", 1.0))
        factor = None if a.factor is None or b.factor is None else a.factor * b.factor * alpha
        return replace(origin, factor=factor, logits_dim=dim)

    def _rescaled(self, func: Any, args: tuple, kwargs: dict, held: torch.Tensor, factor: float | None) -> float | None:
        """`held`'s factor once multiplied or divided: by a number (a Python scalar, a one-element constant, a learned
        temperature at its value now), kept by a constant table (rotary's cos and sin, a mask), unknown otherwise."""
        first, second = (*args, kwargs.get("other"), None)[:2]
        other = second if first is held else first
        if factor is None or (other is first and func in _DIVIDE_OPS):  # c / logits
            return None
        info = self.info(other)
        if isinstance(other, (int, float)):
            number = float(other)
        elif not isinstance(other, torch.Tensor) or (info is not None and info.weight is None):  # an activation
            return None
        elif other.numel() == 1:  # a constant, or computed from parameters alone (a learned temperature)
            number = float(other.item())
        else:  # a constant table keeps it; a learned one (a per-head gain) makes it unknown
            return factor if info is None else None
        return factor * number if func in _SCALE_OPS else factor / number


def _sp_factor(factor: float | None, d_head: int) -> str | None:
    """Which of SP's scales this factor on q.k is: "1/sqrt(d_head)"; or "1", unscaled (T5's, its 1/sqrt(d_head) folded
    into the query's init): q.k grows with d_head all the same once training aligns q and k (Tensor Programs V), so
    muP's 1/d_head applies to both. None: neither."""
    if factor is None:
        return None
    if math.isclose(factor * math.sqrt(d_head), 1.0, rel_tol=1e-3):
        return "1/sqrt(d_head)"
    return "1" if math.isclose(factor, 1.0, rel_tol=1e-3) else None


def _sp_scale(factor: float | None, d_head: int) -> str | None:
    """How softmax logits with this factor on q.k sit at SP's scale (see _sp_factor), as the warning names them."""
    return {"1/sqrt(d_head)": "softmax(q @ k^T / sqrt(d_head))", "1": "softmax(q @ k^T) unscaled (T5's 1)"}.get(
        _sp_factor(factor, d_head) or "")


def _over_last_dim(tensor: torch.Tensor, dim: Any) -> bool:
    """Whether a reduction's `dim` (an int or a sequence; None: all) takes in the tensor's last dimension."""
    dims = range(tensor.dim()) if dim is None else dim if isinstance(dim, (tuple, list)) else (dim,)
    return any(isinstance(d, int) and d % max(tensor.dim(), 1) == tensor.dim() - 1 for d in dims)


def _argument(args: tuple, kwargs: dict, position: int, name: str) -> Any:
    """A call's argument, passed by position or by name."""
    return kwargs.get(name, args[position] if len(args) > position else None)


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


def _einsum_contraction(equation: Any, tensors: list[torch.Tensor]) -> int:
    """The product of the sizes summed over in a two-operand einsum ('bhid,bhjd->bhij': d)."""
    inputs, _, output = str(equation).replace(" ", "").partition("->")
    first, _, second = inputs.partition(",")
    sizes = dict(zip(first, tensors[0].shape)) | dict(zip(second, tensors[1].shape))
    return math.prod(int(sizes[c]) for c in set(first) & set(second) if c not in output)


_CLAIM = threading.Lock()  # one thread at a time claims or ends an audit's watch (a model served from several threads)


@dataclass
class _Run:
    """A watched forward in progress: its watch, the global module hooks it added, and how deep the model has called
    itself since (its inner calls end nothing)."""

    watch: _Watch
    handles: list[RemovableHandle]
    depth: int = 0


class ForwardAudit:
    """The one-shot forward pre-hook and hook on a parametrized module (picklable; removed after one watched forward)."""

    ended = False  # a class default, so audits pickled before the flag existed read False

    def __init__(self) -> None:
        self._run: _Run | None = None

    def before(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
            return
        with _CLAIM:
            if self._run is not None and self._run.watch.thread == threading.get_ident():
                self._run.depth += 1  # the model calling itself
            if self._run is not None or self.ended:  # another thread's forward is watched, or was
                return
            if module.__dict__.get("scaleplan_state") is None:  # fold_multipliers' copy (its state deleted): nothing to audit
                _remove(module)
                return
            watch = _watch(module)
            names = {id(m): name for name, m in module.named_modules()}
            handles = [nn.modules.module.register_module_forward_pre_hook(lambda m, _: watch.enter(names.get(id(m)))),
                       nn.modules.module.register_module_forward_hook(lambda m, _, __: watch.leave(names.get(id(m))), always_call=True)]
            self._run = _Run(watch, handles)
        watch.mark_inputs((args, kwargs))
        watch.__enter__()

    def after(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self._run is None:  # no watch (a forward under torch.func, as every step of scaleplan's populations): no lock
            return
        with _CLAIM:
            run = self._run
            if run is None or run.watch.thread != threading.get_ident():
                return
            if run.depth:
                run.depth -= 1
                return
            self._run, self.ended = None, True
        run.watch.__exit__(None, None, None)
        for handle in run.handles:
            handle.remove()
        _remove(module)  # one forward is watched, even one that raised (its findings are not reported)
        if output is None:
            return
        state = module.__dict__["scaleplan_state"]
        for problem in (_attention_problem(module, state, run.watch), _readout_problem(module, state, run.watch, output),
                        _memory_problem(module, state, run.watch)):
            if problem is not None:
                warnings.warn(problem, ParametrizationWarning, stacklevel=caller_stacklevel())


def _watch(module: nn.Module) -> _Watch:
    """A watch of `module`'s parameters, those over a width, and the modules whose input gets the readout multiplier."""
    from scaleplan.parametrization.apply import ScaleInput  # apply installs this audit: imported when it runs

    state = module.__dict__["scaleplan_state"]
    params = {id(p): name for name, p in module.named_parameters()}
    records = {name: state.tensors.get(name) for name in params.values()}
    widths = {name for name, r in records.items() if getattr(r, "role", None) not in ("fixed", "vector")}
    vectors = {name for name, r in records.items() if getattr(r, "role", None) == "vector" and r.width_dims}  # type: ignore[union-attr]
    hooked = {name for name, m in module.named_modules() if any(isinstance(h, ScaleInput) for h in m._forward_pre_hooks.values())}
    return _Watch(params, widths, vectors, hooked)


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
    """Logits at SP's scale outside the attention scaleplan sets, and modules named like attention (which scaleplan
    cannot set) whose logit scale it could not read; nn.MultiheadAttention was named when applied."""
    modules = dict(model.named_modules())
    skipped = set(state.sites) | set(state.scalings) | {n for n, m in modules.items() if isinstance(m, nn.MultiheadAttention)}
    # at the base width muP's scale is SP's (attention_scale(d, d) is 1/sqrt(d)): a softmax's number cannot tell the fix
    # from the problem there, so only a call that takes no scale is named; the model at any other width is judged
    at_base = all(r.m == 1 and r.m_out in (None, 1) for r in state.tensors.values())
    grown = {name for name, ratio in getattr(state, "head_ratios", {}).items() if ratio != 1}  # (states pickled before it)
    found: dict[str, None] = {}
    for logits in watch.logits:
        if logits.explicit and not grown.intersection(logits.stack):
            continue
        if logits.how is not None and not skipped.intersection(logits.stack) and not (logits.measured and at_base):
            where = logits.stack[-1] if logits.stack else ""
            found[f"{where or 'the model'} ({type(modules[where]).__name__}, d_head {logits.d_head}): {logits.how}"] = None
    read = {name for logits in watch.logits if logits.known for name in logits.stack}
    unread = [f"{n} ({type(modules[n]).__name__})" for n in sorted(watch.entered - read - skipped) if opaque_attention(modules[n])]
    if not found and not unread:
        return None
    parts = [f"attention scaleplan cannot set computes its logits at SP's scale: {_some(list(found))}"] if found else []
    if unread:
        parts.append(f"scaleplan cannot set or read the attention-logit scale of {_some(unread)} (no softmax over q @ k^T at "
                     "a scale it can read, nor F.scaled_dot_product_attention): if it is 1/sqrt(d_head)")
    return ("; ".join(parts) + ". muP needs 1/d_head (the logits grow with a growing head size): pass "
            "scale=scaleplan.attention_scale(d_head, base_d_head) to F.scaled_dot_product_attention or multiply q @ k^T by it; "
            "if d_head stays fixed as the width grows, SP's scale is right: pass scale= to F.scaled_dot_product_attention "
            "explicitly, or filter scaleplan.ParametrizationWarning")


def _some(items: list[str]) -> str:
    """The first three of `items`, and whether there are more."""
    return "; ".join(items[:3]) + (" and more" if len(items) > 3 else "")


def _readout_problem(model: nn.Module, state: ParametrizationState, watch: _Watch, output: Any) -> str | None:
    """The output's last weight over a width, where it is one that gets no readout multiplier."""
    logits = _main_output(output)
    info = watch.info(logits) if logits is not None else None
    name = info.origin if info is not None and not info.scaled else None
    if name is None or name in state.manual_readouts:
        return None
    read = {"input": "an input weight", "vector": "a vector (a bias or a gain)"}.get(getattr(state.tensors.get(name), "role", ""))
    if read is None:
        return None  # (a tensor added after apply_parametrization has no record: param_groups refuses the model)
    param = dict(model.named_parameters())[name]
    return (f"the model's output is computed from {name} {tuple(param.shape)}, which scaleplan read as {read}, "
            "so it gets none of muP's 1/m output multiplier and trains as SP: if it is the readout, compute it with an "
            f"nn.Linear (tied: share the embedding's weight), or declare roles={{{name!r}: 'output'}} and multiply its "
            f"input by scaleplan.readout_multiplier(model, {name!r}) in your forward")


def _memory_problem(model: nn.Module, state: ParametrizationState, watch: _Watch) -> str | None:
    """Weights the forward used as a Hopfield layer's memories, softmax(x @ W^T) @ W, that are not declared memories:
    their rules are the DenseAM ones (beta = beta0/N, the memories' Adam eps), which shapes cannot tell from a Linear's."""
    tables = {f"{m}.{n}" if m else n for m, module in model.named_modules() if isinstance(module, nn.Embedding)
              for n, _ in module.named_parameters(recurse=False)}  # a token table soft-embedding a prediction is no memory
    undeclared = [(name, stack) for name, stack in watch.memories.items()
                  if getattr(state.tensors.get(name), "role", "memory") != "memory" and name not in tables]
    if not undeclared:
        return None
    found = [f"{name} (in {stack[-1] if stack else 'the model'}, read as {state.tensors[name].role})" for name, stack in undeclared]
    return (f"the forward retrieves from {_some(found)} as a Hopfield layer does, softmax(x @ W^T) @ W, but scaleplan "
            f"parametrized it under {state.parametrization!r} as an ordinary weight: a dense associative memory's rules "
            "(beta = beta0/N, its memories' Adam eps) are 'denseam''s; declare it on its module (scaleplan_roles = "
            "{'<name>': 'memory'}, scaleplan_site = 'temperature' and its sizes; README, DenseAM rules) and apply 'denseam'")


def _main_output(output: Any) -> torch.Tensor | None:
    """The model's prediction: the tensor itself, `logits` of a mapping (transformers' outputs), else its first tensor."""
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    return next(_tensors(output), None)

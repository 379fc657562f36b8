"""The first forward of a parametrized model is watched: inline attention at 1/sqrt(d_head) and an output computed
from an input weight are warned once, naming the module or tensor and the fix; nothing else changes."""

from __future__ import annotations

import copy
import math
import pickle
import re
import threading
import warnings
from collections import UserDict
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from scaleplan import ParametrizationWarning, attention_scale
from scaleplan.models import build_parametrized
from scaleplan.parametrization import apply_parametrization, readout_multiplier
from scaleplan.parametrization.forward_audit import ForwardAudit

VOCAB, HEADS = 40, 4


class Mixer(nn.Module):
    """A block computing attention in its own forward (not a module named like attention), in one of several styles."""

    def __init__(self, d: int, style: str) -> None:
        super().__init__()
        self.qkv, self.proj, self.style = nn.Linear(d, 3 * d), nn.Linear(d, d), style
        self.temperature = nn.Parameter(torch.tensor((d // HEADS) ** -0.5))  # a learned one, at SP's scale
        self.query = nn.Parameter(torch.randn(1, 1, d))  # a learned query (Perceiver's latents, Q-Former's tokens)
        self.gain = nn.Parameter(torch.ones(HEADS, 1, 1))  # a learned per-head gain: the logit scale it gives is unknown

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (y.view(b, t, HEADS, d // HEADS).transpose(1, 2) for y in self.qkv(x).split(d, dim=-1))
        if self.style == "learned-query":
            q = self.qkv(self.query.expand(b, t, d))[..., :d].view(b, t, HEADS, d // HEADS).transpose(1, 2)
        d_head = q.shape[-1]
        if self.style in MORE_STYLES:
            y = self.more_styles(q, k, v, x)
        elif self.style == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif self.style == "sdpa-mup":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=attention_scale(d_head, 8))
        elif self.style == "manual":
            logits = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d_head))
            y = F.softmax(logits.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf")), dim=-1) @ v
        elif self.style == "divided":
            y = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(d_head), dim=-1) @ v
        elif self.style == "einsum-prescaled":  # timm's q = q * self.scale, then the product
            y = torch.einsum("bhij,bhjd->bhid", torch.einsum("bhid,bhjd->bhij", q * d_head ** -0.5, k).softmax(-1), v)
        else:  # "manual-mup": 1/d_head
            y = torch.softmax((q @ k.transpose(-2, -1)) / d_head, dim=-1) @ v
        return x + self.proj(y.transpose(1, 2).reshape(b, t, d))

    def more_styles(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits at 1/sqrt(d_head) (unscaled for "unscaled", unknown for "gain") written as real models write them."""
        d_head, t = q.shape[-1], q.shape[-2]
        logits = q @ k.transpose(-2, -1)
        if self.style == "row-max":  # softmax(x - max) by hand; ALiBi subtracts its bias the same way
            logits = logits / math.sqrt(d_head)
            logits = logits - logits.amax(-1, keepdim=True)
        elif self.style == "where-input-mask":  # a mask computed from the input comes first
            keep = (x.sum(-1) > -1e9)[:, None, None, :] & torch.ones(t, t, dtype=torch.bool).tril()
            logits = torch.where(keep, logits * d_head ** -0.5, float("-inf"))
        elif self.style == "tensor-first":
            logits = torch.mul(torch.tensor(d_head ** -0.5), logits)
        elif self.style == "temperature":
            logits = logits * self.temperature
        elif self.style == "learned-query":
            logits = logits / math.sqrt(d_head)
        elif self.style == "rotary":  # rotary's cos and sin tables (scale after; timm's EVA scales before)
            cos, sin = torch.rand(t, d_head).cos(), torch.rand(t, d_head).sin()
            q, k = (y * cos + torch.cat((-y[..., d_head // 2:], y[..., :d_head // 2]), -1) * sin for y in (q * d_head ** -0.5, k))
            logits = q @ k.transpose(-2, -1)
        elif self.style == "baddbmm":  # BLOOM's
            flat = [y.reshape(-1, t, d_head) for y in (q, k)]
            logits = torch.baddbmm(torch.zeros(flat[0].shape[0], t, t), flat[0], flat[1].transpose(1, 2), alpha=d_head ** -0.5)
            logits = logits.view(-1, HEADS, t, t)
        elif self.style == "multi-head-forward":  # CLIP's AttentionPool2d calls it with its own weights
            h = x.transpose(0, 1)
            y, _ = F.multi_head_attention_forward(h, h, h, h.shape[-1], HEADS, self.qkv.weight, self.qkv.bias, None, None, False, 0.0,
                                                  self.proj.weight, self.proj.bias, need_weights=False)
            return y.transpose(0, 1).view(x.shape[0], t, HEADS, d_head).transpose(1, 2)
        elif self.style == "gain":
            logits = (q * self.gain) @ k.transpose(-2, -1)
        return logits.softmax(-1) @ v


MORE_STYLES = ("row-max", "where-input-mask", "tensor-first", "temperature", "rotary", "learned-query", "baddbmm",
               "multi-head-forward", "unscaled", "gain")


class LM(nn.Module):
    """An embedding, one Mixer and a readout of one of several kinds."""

    def __init__(self, d: int, style: str = "manual-mup", head: str = "linear") -> None:
        super().__init__()
        self.emb, self.mixer, self.head_kind = nn.Embedding(VOCAB, d), Mixer(d, style), head
        if head in ("raw", "raw-tensordot", "raw-inner"):
            self.w = nn.Parameter(torch.randn(VOCAB, d) / d ** 0.5)
        elif head in ("value", "value-sum", "value-declared"):  # a (d,) value head: one number per position
            self.v = nn.Parameter(torch.randn(d) / d ** 0.5)
        elif head == "weight-norm":
            self.head = weight_norm(nn.Linear(d, VOCAB))
        elif head == "spectral-norm":
            self.head = spectral_norm(nn.Linear(d, VOCAB))
        elif head in ("linear", "tied"):
            self.head = nn.Linear(d, VOCAB, bias=False)
            if head == "tied":
                self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.mixer(self.emb(ids))
        if self.head_kind == "raw":
            return F.linear(h, self.w)
        if self.head_kind == "raw-tensordot":
            return torch.tensordot(h, self.w, dims=([-1], [1]))
        if self.head_kind == "raw-inner":
            return torch.inner(h, self.w)
        if self.head_kind == "value":
            return h @ self.v
        if self.head_kind == "value-sum":
            return (h * self.v).sum(-1)
        if self.head_kind == "value-declared":
            return (h * readout_multiplier(self, "v")) @ self.v
        if self.head_kind == "by-hand":  # tied by hand
            return h @ self.emb.weight.T
        return self.head(h)


def parametrized(style: str = "manual-mup", head: str = "linear", parametrization: str = "mup") -> nn.Module:
    roles = {"v": "output"} if head == "value-declared" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # apply's own warnings (a tied readout) are tested elsewhere
        return apply_parametrization(LM(64, style, head), parametrization, base=LM(32, style, head), delta=LM(48, style, head),
                                     roles=roles)


def audit_warnings(model: nn.Module, forwards: int = 1) -> list[warnings.WarningMessage]:
    ids = torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(forwards):
            model(ids)
    return [w for w in caught if issubclass(w.category, ParametrizationWarning)]


def has_audit(model: nn.Module) -> bool:
    hooks = [*model._forward_pre_hooks.values(), *model._forward_hooks.values()]
    return any(isinstance(getattr(h, "__self__", None), ForwardAudit) for h in hooks)


@pytest.mark.parametrize("style, how", [
    ("sdpa", "F.scaled_dot_product_attention without scale"),
    ("manual", r"softmax\(q @ k\^T / sqrt\(d_head\)\)"),
    ("divided", r"softmax\(q @ k\^T / sqrt\(d_head\)\)"),
    ("einsum-prescaled", r"softmax\(q @ k\^T / sqrt\(d_head\)\)"),
    *[(style, r"softmax\(q @ k\^T / sqrt\(d_head\)\)")
      for style in ("row-max", "where-input-mask", "tensor-first", "temperature", "rotary", "learned-query", "baddbmm")],
    ("unscaled", r"softmax\(q @ k\^T\) unscaled \(T5's 1\)"),
    ("multi-head-forward", r"F.multi_head_attention_forward \(always 1/sqrt\(d_head\)\)"),
])
def test_inline_attention_at_one_over_sqrt_d_head_is_named_once(style: str, how: str) -> None:
    caught = audit_warnings(parametrized(style), forwards=2)
    assert len(caught) == 1
    assert caught[0].filename == __file__  # it points at the line that ran the model
    message = str(caught[0].message)
    assert re.search(rf"^attention scaleplan cannot set .*: mixer \(Mixer, d_head 16\): {how}\. muP needs 1/d_head", message)
    assert "scale=scaleplan.attention_scale(d_head, base_d_head)" in message and "\n" not in message


@pytest.mark.parametrize("style", ["sdpa-mup", "manual-mup", "gain"])  # a per-head learned gain: its scale is unknown
def test_attention_at_the_rules_scale_is_not_warned(style: str) -> None:
    assert audit_warnings(parametrized(style)) == []


@pytest.mark.parametrize("style, warned", [("sdpa", True), ("manual", False), ("unscaled", False)])
def test_at_the_base_width_only_a_call_without_scale_is_named(style: str, warned: bool) -> None:
    """muP's scale at the base width is SP's (attention_scale(d, d) is 1/sqrt(d)): a softmax's number cannot tell the
    fix the warning names from the problem there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = apply_parametrization(LM(32, style), "mup", base=LM(32, style), delta=LM(48, style))
    assert len(audit_warnings(model)) == warned


@pytest.mark.parametrize("head, name", [("raw", "w"), ("raw-tensordot", "w"), ("raw-inner", "w"), ("by-hand", "emb.weight"),
                                        ("weight-norm", "head.parametrizations.weight.original1"),
                                        ("spectral-norm", "head.parametrizations.weight.original")])
def test_an_output_computed_from_an_input_weight_is_named(head: str, name: str) -> None:
    caught = audit_warnings(parametrized(head=head))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(f"the model's output is computed from {name} ({VOCAB}, 64), which scaleplan read as an input weight")
    assert f"roles={{{name!r}: 'output'}}" in message and f"readout_multiplier(model, {name!r})" in message


@pytest.mark.parametrize("head", ["value", "value-sum"])
def test_an_output_computed_through_a_width_vector_is_named(head: str) -> None:
    """A raw (d,) value head, h @ v or (h * v).sum(-1), is read as a vector (a bias's or a gain's rules: no 1/m), so it
    trains as SP."""
    caught = audit_warnings(parametrized(head=head))
    assert len(caught) == 1
    assert str(caught[0].message).startswith("the model's output is computed from v (64,), which scaleplan read as a vector "
                                             "(a bias or a gain), so it gets none of muP's 1/m")


@pytest.mark.parametrize("head", ["linear", "tied", "value-declared"])
def test_a_hooked_readout_is_not_warned(head: str) -> None:
    assert audit_warnings(parametrized(head=head)) == []


def test_inputs_in_a_container_the_audit_does_not_open_are_still_followed() -> None:
    """Token ids in a UserDict (or a dataclass) look like constants to the audit: the embedding taking them makes an
    activation all the same (the whole forward used to read as computed from parameters alone, and nothing was named)."""
    class Boxed(LM):
        def forward(self, batch: UserDict) -> torch.Tensor:  # type: ignore[override]
            return super().forward(batch["ids"])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = apply_parametrization(Boxed(64, "manual", "raw"), "mup", base=Boxed(32, "manual", "raw"), delta=Boxed(48, "manual", "raw"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(UserDict(ids=torch.randint(0, VOCAB, (2, 6))))
    messages = [str(w.message) for w in caught if issubclass(w.category, ParametrizationWarning)]
    assert len(messages) == 2 and "mixer (Mixer, d_head 16)" in messages[0] and messages[1].startswith("the model's output is computed from w (")


def test_sp_installs_no_audit() -> None:
    model = parametrized("sdpa", "raw", parametrization="sp")
    assert not has_audit(model) and audit_warnings(model) == []


def test_the_audit_leaves_outputs_alone_and_removes_itself() -> None:
    model = parametrized("manual", "raw")
    unwatched = copy.deepcopy(model)
    unwatched._forward_pre_hooks.clear()
    unwatched._forward_hooks.clear()
    ids = torch.randint(0, VOCAB, (2, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(model(ids), unwatched(ids))
    assert not has_audit(model)
    assert not model._forward_hooks_always_called and not model._forward_pre_hooks_with_kwargs


def test_copies_and_pickles_made_before_the_first_forward_are_watched() -> None:
    model = parametrized("sdpa")
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert len(audit_warnings(copied)) == 1
    assert len(audit_warnings(model)) == 1


def test_a_forward_that_raises_is_unchanged_and_ends_the_audit() -> None:
    model = parametrized("sdpa")
    with pytest.raises(IndexError):
        model(torch.full((2, 6), VOCAB))  # an id outside the embedding
    assert not has_audit(model)


def test_a_forward_in_another_thread_meanwhile_is_neither_watched_nor_broken() -> None:
    """A model served from several threads: the watched forward is the first thread's; other threads' forwards run
    meanwhile neither end it (one used to, from the wrong thread, and raise) nor move it out of the module it is in
    (the tied readout's multiplier then went unseen, and was warned about)."""
    model, errors = parametrized(head="tied"), []
    in_head, in_mixer, done = threading.Event(), threading.Event(), threading.Event()

    def meet(arrived: threading.Event, other: threading.Event, thread: str) -> Any:
        def pause(module: nn.Module, args: tuple) -> None:  # the two forwards inside each other's modules
            if threading.current_thread().name == thread:
                arrived.set()
                other.wait(10)
        return pause

    def watched() -> None:
        try:
            model(torch.randint(0, VOCAB, (2, 6)))
            assert torch._C._len_torch_function_stack() == 0
        except Exception as error:  # reported in the test's thread
            errors.append(error)
        done.set()

    model.head.register_forward_pre_hook(meet(in_head, in_mixer, "watched"))
    thread = threading.Thread(target=watched, name="watched")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thread.start()
        in_head.wait(10)
        model(torch.randint(0, VOCAB, (2, 6)))  # a whole forward meanwhile
        model.mixer.register_forward_pre_hook(meet(in_mixer, done, threading.current_thread().name))
        model(torch.randint(0, VOCAB, (2, 6)))  # and one the watched forward runs inside of
        thread.join()
    assert errors == [] and not has_audit(model) and torch._C._len_torch_function_stack() == 0
    assert [w for w in caught if issubclass(w.category, ParametrizationWarning)] == []


def test_an_audit_that_watched_a_forward_never_starts_again() -> None:
    """A thread whose forward began before the watched one ended still runs the pre-hook it collected: it must not
    start a watch whose end (the hook since removed) would never come."""
    model = parametrized()
    audit = next(h.__self__ for h in model._forward_pre_hooks.values() if isinstance(getattr(h, "__self__", None), ForwardAudit))
    audit_warnings(model)
    audit.before(model, (torch.randint(0, VOCAB, (2, 6)),), {})
    assert torch._C._len_torch_function_stack() == 0


def test_a_model_calling_itself_is_judged_by_its_outer_output() -> None:
    class Halves(nn.Module):
        def __init__(self, d: int) -> None:
            super().__init__()
            self.emb, self.w = nn.Embedding(VOCAB, d), nn.Parameter(torch.randn(VOCAB, d) / d ** 0.5)

        def forward(self, ids: torch.Tensor, inner: bool = False) -> torch.Tensor:
            if inner:
                return self.emb(ids)
            return F.linear(torch.cat([self(ids[:1], True), self(ids[1:], True)]), self.w)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = apply_parametrization(Halves(64), "mup", base=Halves(32))
    caught = audit_warnings(model)
    assert len(caught) == 1 and str(caught[0].message).startswith("the model's output is computed from w (")


def test_forwards_under_torch_func_transforms_are_not_watched() -> None:
    model = parametrized("sdpa", "raw")
    params = {k: v.detach().unsqueeze(0).repeat(2, *[1] * v.dim()) for k, v in model.named_parameters()}
    ids = torch.randint(0, VOCAB, (2, 2, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParametrizationWarning)
        vmap(lambda p, x: functional_call(model, p, (x,)))(params, ids)
    assert has_audit(model)  # still waiting for a plain forward


@pytest.mark.parametrize("name, kwargs, x", [
    ("gpt", {"vocab": 40, "seq_len": 8}, torch.randint(0, 40, (2, 8))),
    ("gpt", {"vocab": 40, "seq_len": 8, "tied": True}, torch.randint(0, 40, (2, 8))),
    ("mlp", {"in_dim": 8}, torch.randn(4, 8)),
    ("denseam", {"in_dim": 8}, torch.randn(4, 8)),
    ("hf-gpt2", {"vocab": 40, "seq_len": 8}, torch.randint(0, 40, (2, 8))),
])
def test_built_in_models_pass_the_audit(name: str, kwargs: dict, x: torch.Tensor) -> None:
    if name == "hf-gpt2":
        pytest.importorskip("transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tied readout's warning
        model = build_parametrized(name, 64, "denseam" if name == "denseam" else "mup", base_width=32, **kwargs)
    assert has_audit(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParametrizationWarning)
        model(x)
    assert not has_audit(model)


def test_a_folded_copy_carries_no_audit() -> None:
    from scaleplan import fold_multipliers

    model = parametrized("manual-mup")
    folded = fold_multipliers(model, example=torch.randint(0, VOCAB, (2, 6)))
    assert not has_audit(folded)


def test_a_head_added_after_apply_does_not_break_the_watched_forward() -> None:
    class Late(nn.Module):
        def __init__(self, d: int) -> None:
            super().__init__()
            self.emb, self.head = nn.Embedding(VOCAB, d), nn.Linear(d, VOCAB)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return (self.late if hasattr(self, "late") else self.head)(self.emb(ids))

    model = apply_parametrization(Late(64), "mup", base=Late(32))
    model.late = nn.Linear(64, VOCAB)  # no role (param_groups refuses the model)
    assert audit_warnings(model) == [] and not has_audit(model)


class SelfAttention(nn.Module):
    """Named like attention, so scaleplan cannot set its scale: its first forward's arithmetic decides."""

    def __init__(self, d: int, style: str) -> None:
        super().__init__()
        self.qkv, self.style = nn.Linear(d, 3 * d), style
        self.gain = nn.Parameter(torch.ones(HEADS, 1, 1))  # a learned per-head gain: a logit scale scaleplan cannot read
        if style != "sdpa-sp-scale-headless":  # as ModernBERT's: its head size, which scaleplan compares with the base's
            self.head_dim = d // HEADS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (y.view(b, t, HEADS, d // HEADS).transpose(1, 2) for y in self.qkv(x).split(d, dim=-1))
        if self.style in ("baddbmm", "broadcast", "gain"):
            scale = q.shape[-1] ** -0.5
            if self.style == "baddbmm":  # BLOOM's, read
                flat = [y.reshape(b * HEADS, t, -1) for y in (q, k)]
                logits = torch.baddbmm(torch.zeros(b * HEADS, t, t), flat[0], flat[1].transpose(1, 2), alpha=scale).view(b, HEADS, t, t)
            elif self.style == "gain":
                logits = (q * self.gain) @ k.transpose(-2, -1) * scale
            else:  # q.k as a broadcast product summed: logits scaleplan cannot read
                logits = (q.unsqueeze(-2) * k.unsqueeze(-3)).sum(-1) * scale
            return x + (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        scale = {"sdpa-mup": attention_scale(q.shape[-1], 8), "sdpa-sp-scale": q.shape[-1] ** -0.5,
                 "sdpa-sp-scale-headless": q.shape[-1] ** -0.5}.get(self.style)
        return x + F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2).reshape(b, t, d)


class NamedLM(nn.Module):
    def __init__(self, d: int, style: str) -> None:
        super().__init__()
        self.emb, self.attn, self.head = nn.Embedding(VOCAB, d), SelfAttention(d, style), nn.Linear(d, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(self.emb(ids)))


@pytest.mark.parametrize("style, expected", [
    ("sdpa-mup", None),  # the fix the warning names silences it
    ("sdpa", r"attention scaleplan cannot set computes its logits at SP's scale: attn \(SelfAttention, d_head 16\): F.scaled"),
    # SP's scale passed explicitly (ModernBERT's head_dim**-0.5): wrong where the head grew, which its head_dim shows;
    # without a head size to compare, an explicit scale is how a fixed head says SP is right, and is trusted
    ("sdpa-sp-scale", r"at SP's scale: attn \(SelfAttention, d_head 16\): F.scaled_dot_product_attention\(scale=1/sqrt\(d_head\)\) "
                      r"while its head size grows with the width"),
    ("sdpa-sp-scale-headless", None),
    ("baddbmm", r"attention scaleplan cannot set computes its logits at SP's scale: attn \(SelfAttention, d_head 16\): softmax"),
    ("broadcast", r"scaleplan cannot set or read the attention-logit scale of attn \(SelfAttention\) \(no softmax over q @ k\^T"),
    ("gain", r"scaleplan cannot set or read the attention-logit scale of attn \(SelfAttention\) \(no softmax over q @ k\^T"),
])
def test_a_module_named_like_attention_is_judged_by_its_first_forward(style: str, expected: str | None) -> None:
    with warnings.catch_warnings(record=True) as applied:
        warnings.simplefilter("always")
        model = apply_parametrization(NamedLM(64, style), "mup", base=NamedLM(32, style))
    assert applied == []  # its name alone is no longer a warning
    caught = audit_warnings(model)
    if expected is None:
        assert caught == []
    else:
        assert len(caught) == 1 and re.search(expected, str(caught[0].message))


def test_multihead_attention_is_named_once_when_applied_not_again_at_the_forward() -> None:
    class Encoder(nn.Module):
        def __init__(self, d: int) -> None:
            super().__init__()
            self.emb, self.head = nn.Embedding(VOCAB, d), nn.Linear(d, VOCAB)
            self.layer = nn.TransformerEncoderLayer(d, HEADS, 2 * d, dropout=0.0, batch_first=True)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.layer(self.emb(ids)))

    with pytest.warns(ParametrizationWarning, match=r"attention-logit scale of layer.self_attn \(MultiheadAttention\)"):
        model = apply_parametrization(Encoder(64), "mup", base=Encoder(32))
    assert audit_warnings(model) == []


def test_an_explicit_sp_scale_at_the_base_width_is_not_named() -> None:
    """At the base width the head has not grown: SP's scale is muP's there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = apply_parametrization(NamedLM(32, "sdpa-sp-scale"), "mup", base=NamedLM(32, "sdpa-sp-scale"),
                                      delta=NamedLM(64, "sdpa-sp-scale"))
    assert model.scaleplan_state.head_ratios == {"attn": 1.0} and audit_warnings(model) == []


class HopfieldPooling(nn.Module):
    """A model with a user's modern Hopfield layer (Ramsauer et al.), memories a raw tensor or an nn.Linear's weight."""

    def __init__(self, n: int, linear: bool = False, declared: bool = False) -> None:
        super().__init__()
        self.inp, self.out, self.linear = nn.Linear(8, n), nn.Linear(n, 3), linear
        if linear:
            self.memory = nn.Linear(n, 64, bias=False)
        else:
            self.xi = nn.Parameter(torch.randn(64, n))
        if declared:  # the README's protocol
            self.scaleplan_roles, self.scaleplan_site, self.multiplier = {"xi": "memory"}, "temperature", 1.0
            self.features, self.n_memories, self.gradient_order, self.energy = n, 64, 1.5, "lse"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        xi = self.memory.weight if self.linear else self.xi
        for _ in range(3):  # T steps sharing the memories
            overlaps = (4.0 / h.shape[-1]) * (F.linear(h, xi) if self.linear else h @ xi.T)
            h = h + torch.softmax(overlaps, dim=-1) @ xi / 3
        return self.out(h)


def forward_warnings(model: nn.Module) -> list[str]:
    """The ParametrizationWarnings of a float-input model's first forward."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(torch.randn(2, 8, generator=torch.Generator().manual_seed(0)))
    return [str(w.message) for w in caught if issubclass(w.category, ParametrizationWarning)]


@pytest.mark.parametrize("linear, role", [(False, "input"), (True, "output")])
def test_a_hopfield_retrieval_through_an_undeclared_memory_is_named(linear: bool, role: str) -> None:
    model = apply_parametrization(HopfieldPooling(256, linear), "mup", base=HopfieldPooling(32, linear))
    (message,) = [m for m in forward_warnings(model) if "Hopfield" in m]
    name = "memory.weight" if linear else "xi"
    assert message.startswith(f"the forward retrieves from {name} (in the model, read as {role}) as a Hopfield layer does")
    assert "apply 'denseam'" in message


def test_a_declared_memory_and_a_softmax_classifier_are_not_named() -> None:
    declared = apply_parametrization(HopfieldPooling(256, declared=True), "denseam", base=HopfieldPooling(32, declared=True))
    assert not [m for m in forward_warnings(declared) if "Hopfield" in m]

    class Classifier(nn.Module):  # softmax over h @ W^T, never @ W again: an ordinary readout
        def __init__(self, n: int) -> None:
            super().__init__()
            self.inp, self.out = nn.Linear(8, n), nn.Linear(n, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.out(torch.relu(self.inp(x))), dim=-1)

    assert forward_warnings(apply_parametrization(Classifier(256), "mup", base=Classifier(32))) == []


class SoftmaxTwice(nn.Module):
    """softmax(x @ W^T) then W again: the same square map twice (not a retrieval), a token table soft-embedding its own
    prediction (not a memory), or a retrieval with dropout and a scale between (a memory)."""

    def __init__(self, n: int, style: str) -> None:
        super().__init__()
        self.inp, self.out, self.style = nn.Linear(8, n), nn.Linear(n, 3), style
        self.square, self.table = nn.Linear(n, n), nn.Embedding(50, n)
        self.xi = nn.Parameter(torch.randn(64, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        if self.style == "square":
            h = self.square(torch.softmax(self.square(h), dim=-1))
        elif self.style == "soft-embedding":
            h = h + torch.softmax(h @ self.table.weight.T, dim=-1) @ self.table.weight
        else:
            h = h + F.dropout(torch.softmax(h @ self.xi.T / 8, dim=-1), 0.1) * 0.5 @ self.xi
        return self.out(h)


@pytest.mark.parametrize("style, named", [("square", False), ("soft-embedding", False), ("dropout", True)])
def test_a_retrieval_is_told_from_a_square_map_twice_and_a_token_table(style: str, named: bool) -> None:
    model = apply_parametrization(SoftmaxTwice(256, style), "mup", base=SoftmaxTwice(32, style))
    assert [m.startswith("the forward retrieves from xi") for m in forward_warnings(model) if "Hopfield" in m] == (
        [True] if named else [])

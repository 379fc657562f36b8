"""The mup-style coordinate check: mean |activation| of every layer over a few training steps, across widths.

Under a correct parametrization the curves are flat in width; under SP with a constant Adam LR
some layers grow with width. Each width trains the same synthetic batch (fixed per seed) with
Adam (or SGD) using the parametrization's per-tensor learning rates.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from scaleplan.diagnostics.attention_probe import attention_logits
from scaleplan.errors import ScaleplanError
from scaleplan.models import build_parametrized
from scaleplan.parametrization.groups import param_groups

DEFAULT_WIDTHS = (64, 128, 256, 512, 1024)

# muP's recommended zero-initialized readout and query keep the vanishing step-0 noise out of
# the check. Width 64 is far from the infinite-width limit for attention: one head (d_head =
# width) and few tokens per batch keep finite-size effects on the logits small (measured; a
# batch of 8 x 16 tokens with 4 heads shrinks the muP logits 2.5x from width 64 to 1024).
# Small O(1) DenseAM memories (std 0.1) let the learned overlaps dominate the random ones,
# which vanish as N^-1/2 under beta = beta0/N.
_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"in_dim": 16, "out_dim": 10, "depth": 3, "readout_zero_init": True},
    "gpt": {"depth": 2, "n_heads": 1, "vocab": 64, "seq_len": 4, "readout_zero_init": True, "query_zero_init": True},
    "denseam": {"in_dim": 16, "out_dim": 10, "steps": 4, "memory_std": 0.1, "readout_zero_init": True},
}
DEFAULT_LR = {"mlp": 1e-2, "gpt": 3e-3, "denseam": 0.2}
DEFAULT_BATCH = {"mlp": 64, "gpt": 1, "denseam": 64}  # samples (gpt: sequences)


@dataclass
class _Recorder:
    """Forward hooks collecting mean |output| per module (averaged over repeated calls)."""

    sums: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, output: Any) -> None:
        if isinstance(output, (tuple, list)) and output:  # nn.LSTM's (output, (h, c)), a block's (hidden, extras)
            output = output[0]
        if isinstance(output, torch.Tensor):
            self.sums.setdefault(name, []).append(output.detach().abs().float().mean().item())

    def hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        return lambda module, args, output: self.add(name, output)

    def pop(self) -> dict[str, float]:
        means = {name: sum(v) / len(v) for name, v in self.sums.items()}
        self.sums = {}
        return means


Batch = Union[tuple, dict]  # (inputs, targets) or keyword arguments of a model that returns .loss
Builder = Callable[[int], tuple[nn.Module, Batch]]


def _batch(model_name: str, kwargs: dict[str, Any], size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed synthetic batch (inputs, targets) that does not depend on the width."""
    gen = torch.Generator().manual_seed(seed)
    if model_name == "gpt":
        tokens = torch.randint(0, kwargs["vocab"], (size, kwargs["seq_len"] + 1), generator=gen)
        return tokens[:, :-1], tokens[:, 1:]
    return torch.randn(size, kwargs["in_dim"], generator=gen), torch.randint(0, kwargs["out_dim"], (size,), generator=gen)


def builtin_batch(model_name: str, width: int, parametrization: str, base_width: int, batch_size: int | None = None,
                  seed: int = 0, **model_kwargs: Any) -> tuple[nn.Module, Batch]:
    """A reference model at `width`, parametrized against `base_width` with coord-check's defaults, and its batch."""
    kwargs = {**_MODEL_DEFAULTS[model_name], **model_kwargs}
    model = build_parametrized(model_name, width, parametrization, base_width, **kwargs)
    return model, _batch(model_name, kwargs, batch_size or DEFAULT_BATCH[model_name], seed)


def batch_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The training loss of `batch`: model(**batch).loss for a dict, cross-entropy of model(inputs) otherwise; the
    model's own failure on its batch (a shape mismatch) is one line that says it was the model's."""
    try:
        return _batch_loss(model, batch)
    except ScaleplanError:
        raise
    except Exception as exc:
        first = next(iter(str(exc).splitlines()), "")
        raise ScaleplanError(f"the model's forward and loss on its batch raised {type(exc).__name__}: {first} (check the "
                             "(model, batch) its builder returns: an (inputs, targets) batch is trained on the "
                             "cross-entropy of model(inputs); for another loss return a dict batch and have the model "
                             "return its loss)") from None


def _batch_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    if isinstance(batch, dict):
        output = model(**batch)
        loss = output["loss"] if isinstance(output, dict) else getattr(output, "loss", None)
        if loss is None and isinstance(output, (tuple, list)):  # nanoGPT's (logits, loss): its one scalar
            scalars = [t for t in output if isinstance(t, torch.Tensor) and t.dim() == 0]
            loss = scalars[0] if len(scalars) == 1 else None
        if not isinstance(loss, torch.Tensor):
            raise ScaleplanError("a dict batch must make the model return its loss: an output with .loss or ['loss'] "
                                 "(transformers' with labels=), or a tuple holding one scalar (nanoGPT's (logits, loss))")
        return loss
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise ScaleplanError(f"a batch is (inputs, targets) or a dict of model kwargs, got {type(batch).__name__}")
    inputs, targets = batch
    output = model(inputs)
    logits = output if isinstance(output, torch.Tensor) else getattr(output, "logits", None)
    if not isinstance(logits, torch.Tensor):
        raise ScaleplanError(f"an (inputs, targets) batch is trained on the cross-entropy of model(inputs), which must be "
                             f"logits (a tensor, or an output with .logits), not a {type(output).__name__}: for another "
                             "output or loss, return a dict batch of model kwargs and have the model return its loss")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def coord_check(
    model_name: str,
    parametrization: str,
    widths: tuple[int, ...] = DEFAULT_WIDTHS,
    steps: int = 3,
    lr: float | None = None,
    seeds: int = 1,
    base_width: int | None = None,
    optimizer: str = "adam",
    batch_size: int | None = None,
    eps: float = 1e-8,
    **model_kwargs: Any,
) -> pd.DataFrame:
    """DataFrame (width, step, layer, mean_abs) for a reference model: mean |activation| per layer, averaged
    over seeds. step 0 is the initial forward pass, step t the forward pass after t optimizer updates.
    """
    if model_name not in _MODEL_DEFAULTS:
        raise ScaleplanError(f"unknown model {model_name!r}; valid models: {', '.join(_MODEL_DEFAULTS)} or pkg.mod:build_fn")
    _check_args(widths, steps, seeds, batch_size)
    if model_kwargs.get("readout") == "denoise":
        raise ScaleplanError("coord-check trains the DenseAM classifier read-out; drop readout='denoise'")
    base = min(widths) if base_width is None else base_width

    def build(width: int, seed: int) -> tuple[nn.Module, Batch]:
        return builtin_batch(model_name, width, parametrization, base, batch_size, seed, **model_kwargs)

    return _run(build, widths, steps, DEFAULT_LR[model_name] if lr is None else lr, seeds, optimizer, eps)


def coord_check_model(
    build: Builder,
    parametrization: str,
    widths: tuple[int, ...] = DEFAULT_WIDTHS,
    steps: int = 3,
    lr: float = 1e-3,
    seeds: int = 1,
    base_width: int | None = None,
    optimizer: str = "adam",
    init_std: float | None = None,
    output_mult: float = 1.0,
    eps: float = 1e-8,
) -> pd.DataFrame:
    """The coordinate check of your own model: `build(width)` returns an unparametrized model and a batch
    (the same at every width: (inputs, targets), or model kwargs for a model returning .loss). Each width
    is parametrized against build(base_width) (base_width: the smallest width by default)."""
    _check_args(widths, steps, seeds, None)
    base_w = min(widths) if base_width is None else base_width

    def parametrized(width: int, seed: int) -> tuple[nn.Module, Batch]:
        torch.manual_seed(seed)
        return parametrize_built(build, parametrization, width, base_w, init_std, output_mult)

    return _run(parametrized, widths, steps, lr, seeds, optimizer, eps)


def parametrize_built(build: Builder, parametrization: str, width: int, base_width: int, init_std: float | None = None,
                      output_mult: float = 1.0) -> tuple[nn.Module, Batch]:
    """`build(width)`'s model, parametrized against `build(base_width)` (and, at the base width itself, against
    `build(2 * base_width)` as delta, to tell widths from fixed sizes, on the meta device), and its batch. The base is
    built with values, the random state restored after it: its weights show an init that does not shrink with the
    width (a constant N(0, 0.02)), which the model's own std alone cannot at every width."""
    from scaleplan.parametrization.apply import apply_parametrization

    model, batch = _call_builder(build, width)
    state = torch.random.get_rng_state()
    base, _ = _call_builder(build, base_width)
    torch.random.set_rng_state(state)
    with torch.device("meta"):
        delta = _call_builder(build, 2 * base_width)[0] if width == base_width else None
    apply_parametrization(model, parametrization, base=base, delta=delta, init_std=init_std, output_mult=output_mult)
    return model, batch


def refuse_oversized(make: Callable[[], tuple[nn.Module, Batch]], width: int) -> None:
    """Refuse a model whose training (weights, gradients and Adam's two moments: 4 copies) needs more memory than this
    machine has free, measured by building it on the meta device first: at width 65,536 the kernel killed the command
    with no message. A builder that cannot run on the meta device is not checked."""
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the real build warns, once
            model, _ = make()
    except Exception:
        return
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    free = _free_memory()
    if free is not None and 4 * size > free:
        raise ScaleplanError(f"the model at width {width} holds {size / 2**30:.3g} GiB of parameters; training it takes about "
                             f"{4 * size / 2**30:.3g} GiB (weights, gradients, Adam's two moments), more than the "
                             f"{free / 2**30:.3g} GiB free here: choose a smaller width")


def _free_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), None where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            line = next(line for line in meminfo if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) * 1024


def dropout_rates(build: Builder, width: int) -> str | None:
    """The dropout modules of `build(width)`'s model that drop anything ("3 x p=0.1"), built on the meta device; None
    without any (or for a builder that cannot run on the meta device)."""
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, _ = _call_builder(build, width)
    except Exception:
        return None
    rates = Counter(m.p for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0)
    return ", ".join(f"{n} x p={p:g}" for p, n in sorted(rates.items())) or None


def _call_builder(build: Builder, width: int) -> tuple[nn.Module, Batch]:
    try:
        result = build(width)
    except ScaleplanError:
        raise
    except Exception as exc:  # the user's builder: its failure is one line, like a sweep objective's
        raise ScaleplanError(f"the model builder failed at width {width}: {type(exc).__name__}: {exc}") from None
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module)):
        raise ScaleplanError(f"the model builder must return (model, batch) for a width, got {type(result).__name__}")
    return result


def _check_args(widths: tuple[int, ...], steps: int, seeds: int, batch_size: int | None) -> None:
    if not widths or min(widths) < 1 or steps < 1 or seeds < 1 or (batch_size is not None and batch_size < 1):
        raise ScaleplanError("coord-check needs positive widths, steps >= 1, seeds >= 1 and batch_size >= 1")


def _run(build: Callable[[int, int], tuple[nn.Module, Batch]], widths: tuple[int, ...], steps: int, lr: float, seeds: int,
         optimizer: str, eps: float) -> pd.DataFrame:
    """Train each width `steps` times on its batch, recording mean |output| of every module per step (Adam eps `eps` at
    the base: a relu-poly DenseAM of degree 5 or more needs one far below PyTorch's 1e-8)."""
    rows = []
    for seed in range(seeds):
        for width in widths:
            torch.manual_seed(seed)
            model, batch = build(width, seed)
            rows += [(seed, width, *row) for row in trace_training(model, batch, steps, lr, optimizer, eps)]
    return average_seeds(rows)


def trace_training(
    model: nn.Module, batch: Batch, steps: int, lr: float, optimizer: str = "adam", eps: float = 1e-8,
) -> list[tuple[int, str, float]]:
    """(step, layer, mean |output|) of every named submodule of a parametrized `model` (and attention logits)
    over `steps` optimizer updates on one fixed batch, with the parametrization's per-tensor lrs (and Adam
    eps: `eps` at the base)."""
    groups = param_groups(model, lr, optimizer=optimizer, eps=eps)
    opt: torch.optim.Optimizer = torch.optim.SGD(groups) if optimizer == "sgd" else torch.optim.Adam(groups, eps=eps)
    recorder = _Recorder()
    for name, module in model.named_modules():
        if name:
            module.register_forward_hook(recorder.hook(name))
    rows = []
    with attention_logits(model, recorder.add):
        for step in range(steps + 1):
            loss = batch_loss(model, batch)
            rows += [(step, layer, value) for layer, value in recorder.pop().items()]
            if step < steps:
                opt.zero_grad()
                loss.backward()
                opt.step()
    return rows


def first_divergence(frame: pd.DataFrame) -> tuple[int, int] | None:
    """(width, step) where activations first went non-finite (the narrowest diverged width first), else None."""
    bad = frame[~frame["mean_abs"].apply(math.isfinite)]
    if bad.empty:
        return None
    first = bad.sort_values(["width", "step"]).iloc[0]
    return int(first["width"]), int(first["step"])


def average_seeds(rows: list[tuple[int, int, int, str, float]]) -> pd.DataFrame:
    """(seed, width, step, layer, value) rows -> frame (width, step, layer, mean_abs), averaged over seeds."""
    frame = pd.DataFrame(rows, columns=["seed", "width", "step", "layer", "mean_abs"])
    return frame.groupby(["width", "step", "layer"], as_index=False, sort=False)["mean_abs"].mean()


def width_table(frame: pd.DataFrame, step: int) -> pd.DataFrame:
    """Mean |activation| at `step`: one row per layer, one column per width."""
    return frame[frame["step"] == step].pivot(index="layer", columns="width", values="mean_abs")


def width_ratios(frame: pd.DataFrame, step: int) -> pd.Series:
    """Per layer: mean |activation| at the largest width / at the smallest width, at `step`."""
    at_step = width_table(frame, step)
    return at_step[at_step.columns.max()] / at_step[at_step.columns.min()]

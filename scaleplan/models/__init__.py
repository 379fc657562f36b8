"""Reference models (MLP, decoder-only GPT, DenseAM) and builders that parametrize them.

build_model(name, width, **kwargs) kwargs per model:
  mlp      in_dim=16, out_dim=10, depth=2, bias=True, readout_zero_init=False
  gpt      depth=2, n_heads=4, vocab=64, seq_len=32, tied=False, mlp_ratio=4,
           readout_zero_init=False, query_zero_init=False
  denseam  in_dim=16, out_dim=10, n_memories=32, steps=4 (T), beta0=1.0, tau=1.0,
           energy="lse"|"relu-poly", degree=3, readout="classifier"|"denoise", centered=True,
           memory_std=1.0, readout_zero_init=False, leak=False, width_axis="features"|"memories"|"both",
           features (N when the width is K), load (K/N when both scale)
  hf-gpt2  transformers' GPT2LMHeadModel, the gpt kwargs plus dropout=0.0 (tied=True by default);
           registered only where transformers is installed (pip install 'scaleplan[hf]')
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

from scaleplan.errors import ScaleplanError

def hf_available() -> bool:
    """Whether transformers is installed (the `hf-*` models are registered only then; not imported here)."""
    return importlib.util.find_spec("transformers") is not None


MODEL_NAMES = ("mlp", "gpt", "denseam", *(("hf-gpt2",) if hf_available() else ()))


def _constructor(name: str) -> Callable[..., Any]:
    if name == "mlp":
        from scaleplan.models.mlp import MLP

        return lambda width, in_dim=16, out_dim=10, **kw: MLP(in_dim, width, out_dim, **kw)
    if name == "gpt":
        from scaleplan.models.gpt import GPT

        return GPT
    if name == "denseam":
        from scaleplan.models.denseam import DenseAM

        return DenseAM
    if name == "hf-gpt2" and name in MODEL_NAMES:
        from scaleplan.models.hf import HFGPT2

        return HFGPT2
    raise ScaleplanError(f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)}")


def build_model(name: str, width: int, **kwargs: Any) -> Any:
    """An unparametrized reference model `name` at `width` (PyTorch default init)."""
    constructor = _constructor(name)
    try:
        return constructor(width=width, **kwargs)
    except TypeError as exc:
        raise ScaleplanError(f"bad option for model {name!r}: {exc}") from None


def _kwargs_at(name: str, width: int, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The kwargs of the same model at another width (the denoise DenseAM's input is its width)."""
    if name == "denseam" and kwargs.get("readout") == "denoise" and kwargs.get("width_axis") != "memories":
        return {**kwargs, "in_dim": width}
    return dict(kwargs)


def build_parametrized(
    name: str,
    width: int,
    parametrization: str,
    base_width: int,
    init_std: float | None = None,
    output_mult: float = 1.0,
    completep: bool = False,
    base_depth: int | None = None,
    **kwargs: Any,
) -> Any:
    """Model `name` at `width`, parametrized relative to the same model built at `base_width`.

    The base model is built only for its shapes. For the denoise DenseAM the input dimension is
    the number of features N, so in_dim follows the width in the base model too unless the width
    is the number of memories (width_axis="memories").
    """
    from scaleplan.parametrization.apply import apply_parametrization

    if base_width > width:
        raise ScaleplanError(f"base width {base_width} is larger than width {width}; use base_width <= width")
    model = build_model(name, width, **kwargs)  # first, so a seed gives the same weights as build_model
    base = build_model(name, base_width, **_kwargs_at(name, base_width, kwargs))
    delta = None
    if width == base_width:  # at the base width only a model of another width shows which dims are widths
        import torch

        with torch.device("meta"):
            delta = build_model(name, 2 * base_width, **_kwargs_at(name, 2 * base_width, kwargs))
    return apply_parametrization(
        model,
        parametrization,
        base=base,
        delta=delta,
        base_depth=base_depth,
        init_std=init_std,
        output_mult=output_mult,
        completep=completep,
    )

"""A HuggingFace transformers GPT-2 as a scaleplan model (`hf-gpt2`): built from a config, never downloaded.

`HFGPT2` wraps `GPT2LMHeadModel` so the built-in trainer can call it on token ids and get logits; its
parameters keep HF's names under `hf.` and its init is HF's own (N(0, 0.02)). apply_parametrization
reads the layout (HF `Conv1D` stores (in, out)) and sets the attention `scaling`; pass init_std (a
sweep key) to give the hidden weights muP's 1/sqrt(fan-in) init. Needs `pip install 'scaleplan[hf]'`.
"""

from __future__ import annotations

import torch
from torch import nn

from scaleplan.errors import ScaleplanError
from scaleplan.models import hf_available


def gpt2_config(width: int, depth: int, n_heads: int, vocab: int, seq_len: int, tied: bool, mlp_ratio: int, dropout: float):
    """A GPT2Config for these sizes (no dropout by default; token ids 0 so no warning about vocab), eager attention."""
    from transformers import GPT2Config

    config = GPT2Config(
        n_embd=width, n_layer=depth, n_head=n_heads, vocab_size=vocab, n_positions=seq_len, n_inner=mlp_ratio * width,
        tie_word_embeddings=tied, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=0, eos_token_id=0,
    )
    config._attn_implementation = "eager"  # vmap-able (population training); SDPA has no CPU batching rule
    return config


INITS = ("hf", "fan-in")


def _fan_in_init(model: nn.Module) -> None:
    """PyTorch's default init on a transformers model: U(+-1/sqrt(fan-in)) weights (Conv1D stores (in, out)),
    N(0, 1) embeddings; biases and norms keep HF's zeros and ones."""
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor):
            continue
        if isinstance(module, nn.Embedding):
            weight.normal_(0.0, 1.0)
        elif isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            fan_in = weight.shape[0] if type(module).__name__ == "Conv1D" else weight.shape[1]
            weight.uniform_(-(fan_in**-0.5), fan_in**-0.5)


class HFGPT2(nn.Module):
    """transformers' GPT2LMHeadModel at `width`: logits (batch, time, vocab) from token ids.

    kwargs as scaleplan's GPT: depth, n_heads, vocab, seq_len, tied, mlp_ratio, readout_zero_init,
    query_zero_init (the query third of the fused c_attn), dropout, init: "hf" (HF's N(0, 0.02) everywhere)
    or "fan-in" (PyTorch's defaults: weights U(+-1/sqrt(fan-in)), embeddings N(0, 1), biases 0), the SP init
    that apply_parametrization rescales to muP without init_std.
    """

    def __init__(
        self,
        width: int,
        depth: int = 2,
        n_heads: int = 4,
        vocab: int = 64,
        seq_len: int = 32,
        tied: bool = True,
        mlp_ratio: int = 4,
        readout_zero_init: bool = False,
        query_zero_init: bool = False,
        dropout: float = 0.0,
        init: str = "hf",
    ) -> None:
        super().__init__()
        if not hf_available():
            raise ScaleplanError("model 'hf-gpt2' needs transformers: pip install 'scaleplan[hf]'")
        if min(width, depth, n_heads, vocab, seq_len, mlp_ratio) < 1 or width % n_heads:
            raise ScaleplanError(f"hf-gpt2 needs positive sizes and width divisible by n_heads (width={width}, n_heads={n_heads})")
        if init not in INITS:
            raise ScaleplanError(f"unknown hf-gpt2 init {init!r}; valid: {', '.join(INITS)}")
        if tied and readout_zero_init:
            raise ScaleplanError("readout_zero_init with tied embeddings would zero the token embedding; use one or the other")
        from transformers import GPT2LMHeadModel
        from transformers.utils import logging

        logging.set_verbosity_error()  # a from-config build logs nothing useful
        self.width, self.depth, self.seq_len = width, depth, seq_len
        self.hf = GPT2LMHeadModel(gpt2_config(width, depth, n_heads, vocab, seq_len, tied, mlp_ratio, dropout))
        with torch.no_grad():
            if init == "fan-in":
                _fan_in_init(self.hf)
            if readout_zero_init:
                self.hf.lm_head.weight.zero_()
            if query_zero_init:
                for block in self.hf.transformer.h:  # torch types a submodule's attributes as Tensor | Module
                    block.attn.c_attn.weight[:, :width].zero_()  # type: ignore[union-attr, index]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.shape[1] > self.seq_len:
            raise ScaleplanError(f"sequence of length {idx.shape[1]} is longer than the model's seq_len={self.seq_len}")
        return self.hf(input_ids=idx).logits


def coord_check_gpt2(width: int, tied: bool = False) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """HF GPT-2 for `scaleplan coord-check --model scaleplan.models.hf:coord_check_gpt2`: 2 blocks, one head
    (d_head = width), PyTorch's fan-in init, zero readout and query (muP's recommendation), and a batch
    of 1 x 4 tokens drawn from torch's global seed before the model, so it is the same at every width."""
    ids = torch.randint(0, 64, (1, 4))
    model = HFGPT2(width, depth=2, n_heads=1, vocab=64, seq_len=4, tied=tied, readout_zero_init=not tied, query_zero_init=True, init="fan-in")
    return model.hf, {"input_ids": ids, "labels": ids}


def coord_check_gpt2_tied(width: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """coord_check_gpt2 with the readout tied to the token embedding (HF's default; no zero readout)."""
    return coord_check_gpt2(width, tied=True)

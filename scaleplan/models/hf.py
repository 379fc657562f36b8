"""A HuggingFace transformers GPT-2 as a scaleplan model (`hf-gpt2`): built from a config, never downloaded.

`HFGPT2` wraps `GPT2LMHeadModel` so the built-in trainer can call it on token ids and get logits; its
parameters keep HF's names under `hf.` and its init is HF's own (N(0, 0.02)). apply_parametrization
reads the layout (HF `Conv1D` stores (in, out)) and sets the attention `scaling`; pass init_std (a
sweep key) to give the hidden weights muP's 1/sqrt(fan-in) init. Needs `pip install 'scaleplan[hf]'`.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from scaleplan.errors import ScaleplanError


def hf_available() -> bool:
    """Whether transformers is installed (the `hf-*` models are registered only then; not imported here)."""
    return importlib.util.find_spec("transformers") is not None


def gpt2_config(width: int, depth: int, n_heads: int, vocab: int, seq_len: int, tied: bool, mlp_ratio: int, dropout: float):
    """A GPT2Config for these sizes (no dropout by default; token ids 0 so no warning about vocab)."""
    from transformers import GPT2Config

    return GPT2Config(
        n_embd=width, n_layer=depth, n_head=n_heads, vocab_size=vocab, n_positions=seq_len, n_inner=mlp_ratio * width,
        tie_word_embeddings=tied, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=0, eos_token_id=0,
    )


class HFGPT2(nn.Module):
    """transformers' GPT2LMHeadModel at `width`: logits (batch, time, vocab) from token ids.

    kwargs as scaleplan's GPT: depth, n_heads, vocab, seq_len, tied, mlp_ratio, readout_zero_init,
    query_zero_init (the query third of the fused c_attn), dropout.
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
    ) -> None:
        super().__init__()
        if not hf_available():
            raise ScaleplanError("model 'hf-gpt2' needs transformers: pip install 'scaleplan[hf]'")
        if min(width, depth, n_heads, vocab, seq_len, mlp_ratio) < 1 or width % n_heads:
            raise ScaleplanError(f"hf-gpt2 needs positive sizes and width divisible by n_heads (width={width}, n_heads={n_heads})")
        if tied and readout_zero_init:
            raise ScaleplanError("readout_zero_init with tied embeddings would zero the token embedding; use one or the other")
        from transformers import GPT2LMHeadModel
        from transformers.utils import logging

        logging.set_verbosity_error()  # a from-config build logs nothing useful
        self.width, self.depth, self.seq_len = width, depth, seq_len
        self.hf = GPT2LMHeadModel(gpt2_config(width, depth, n_heads, vocab, seq_len, tied, mlp_ratio, dropout))
        with torch.no_grad():
            if readout_zero_init:
                self.hf.lm_head.weight.zero_()
            if query_zero_init:
                for block in self.hf.transformer.h:
                    block.attn.c_attn.weight[:, :width].zero_()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.shape[1] > self.seq_len:
            raise ScaleplanError(f"sequence of length {idx.shape[1]} is longer than the model's seq_len={self.seq_len}")
        return self.hf(input_ids=idx).logits

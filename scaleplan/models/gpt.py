"""A small decoder-only transformer (pre-LN, like nanoGPT) with muP hooks for attention and depth.

muP touch points (set by scaleplan.parametrization.apply_parametrization, not here):
  readout `lm_head`            input x alpha_out/m (forward pre-hook), init and LR by role
  attention logits             `CausalSelfAttention.multiplier` / sqrt(d_head): 1/d_head under muP
  residual branches            `Block.multiplier`: (L/L_base)^-1 under CompleteP
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from scaleplan.errors import ScaleplanError


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention; logits are q.k * multiplier / sqrt(d_head)."""

    scaleplan_site = "attention"

    def __init__(self, width: int, n_heads: int, query_zero_init: bool) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, width // n_heads
        self.multiplier = 1.0
        self.query = nn.Linear(width, width, bias=False)
        self.key = nn.Linear(width, width, bias=False)
        self.value = nn.Linear(width, width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.logits = nn.Identity()  # probe: the coordinate check records the attention logits here
        if query_zero_init:
            nn.init.zeros_(self.query.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (layer(x).view(b, t, self.n_heads, self.d_head).transpose(1, 2) for layer in (self.query, self.key, self.value))
        logits = self.logits((q @ k.transpose(-2, -1)) * (self.multiplier / math.sqrt(self.d_head)))
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = F.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    """Pre-LN block: x + multiplier * attn(ln(x)), then x + multiplier * mlp(ln(x))."""

    scaleplan_site = "residual"

    def __init__(self, width: int, n_heads: int, mlp_ratio: int, query_zero_init: bool) -> None:
        super().__init__()
        self.multiplier = 1.0
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, n_heads, query_zero_init)
        self.ln_2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, mlp_ratio * width)
        self.fc_proj = nn.Linear(mlp_ratio * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.multiplier * self.attn(self.ln_1(x))
        return x + self.multiplier * self.fc_proj(F.gelu(self.fc(self.ln_2(x))))


class GPT(nn.Module):
    """Token + position embeddings, `depth` pre-LN blocks, final LN, readout to the vocabulary.

    kwargs: depth (blocks), n_heads (width must divide), vocab, seq_len (max context), tied
    (readout shares the token embedding), mlp_ratio, readout_zero_init, query_zero_init (muP's
    recommendations; they apply to every parametrization, so muP = SP at the base width).
    """

    scaleplan_outside_n = ("lm_head",)  # with the embedding tables: not counted in N (non-embedding parameters)

    def __init__(
        self,
        width: int,
        depth: int = 2,
        n_heads: int = 4,
        vocab: int = 64,
        seq_len: int = 32,
        tied: bool = False,
        mlp_ratio: int = 4,
        readout_zero_init: bool = False,
        query_zero_init: bool = False,
    ) -> None:
        super().__init__()
        if min(width, depth, n_heads, vocab, seq_len, mlp_ratio) < 1 or width % n_heads:
            raise ScaleplanError(
                f"GPT needs positive sizes and width divisible by n_heads (width={width}, depth={depth}, n_heads={n_heads}, "
                f"vocab={vocab}, seq_len={seq_len}, mlp_ratio={mlp_ratio})"
            )
        if tied and readout_zero_init:
            raise ScaleplanError("readout_zero_init with tied embeddings would zero the token embedding; use one or the other")
        self.width, self.depth, self.seq_len = width, depth, seq_len
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(seq_len, width)
        self.blocks = nn.ModuleList(Block(width, n_heads, mlp_ratio, query_zero_init) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        if tied:
            self.lm_head.weight = self.wte.weight
        elif readout_zero_init:
            nn.init.zeros_(self.lm_head.weight)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (batch, time, vocab) for token ids (batch, time)."""
        t = idx.shape[1]
        if t > self.seq_len:
            raise ScaleplanError(f"sequence of length {t} is longer than the model's seq_len={self.seq_len}")
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

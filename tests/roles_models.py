"""Tiny user models for `scaleplan roles` (importable as `roles_models:NAME`): width -> (model, batch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 50


class Attention(nn.Module):
    """nanoGPT's attention: F.scaled_dot_product_attention at SP's default scale (muP's needs scale=)."""

    def __init__(self, width: int, heads: int = 2) -> None:
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(width, 3 * width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (y.view(b, t, self.heads, c // self.heads).transpose(1, 2) for y in self.qkv(x).split(c, dim=2))
        return self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c))


class HandTied(nn.Module):
    """A one-block LM whose readout is the embedding, tied by hand (`h @ emb.weight.T`): read as an input."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.emb, self.attn, self.ln = nn.Embedding(VOCAB, width), Attention(width), nn.LayerNorm(width)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.emb(idx)
        return self.ln(h + self.attn(h)) @ self.emb.weight.T


class ThroughWeight(nn.Module):
    """An MLP whose readout module is used only through its weight (a fused loss): its 1/m hook never runs."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.inp, self.hidden, self.head = nn.Linear(8, width), nn.Linear(width, width), nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(torch.relu(self.hidden(torch.relu(self.inp(x)))), self.head.weight, self.head.bias)


def _tokens() -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(0))
    return idx, idx


def hand_tied(width: int) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    return HandTied(width), _tokens()


def through_weight(width: int) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    return ThroughWeight(width), (torch.randn(4, 8), torch.tensor([0, 1, 2, 0]))


def wrong_batch(width: int) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """A builder whose batch does not fit its model (9 features for an 8-input layer): the user's error, one line."""
    return ThroughWeight(width), (torch.randn(4, 9), torch.tensor([0, 1, 2, 0]))


def nan_init(width: int) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """A model whose weights are NaN from the start: coord-check must not blame the lr."""
    model = ThroughWeight(width)
    with torch.no_grad():
        model.hidden.weight.fill_(float("nan"))
    return model, (torch.randn(4, 8), torch.tensor([0, 1, 2, 0]))


class ConstantInit(nn.Module):
    """nanoGPT's N(0, 0.02) on every matrix, at every width: hidden std constant where muP needs 1/sqrt(fan-in)."""

    def __init__(self, width: int, dropout: float = 0.0, output: str = "logits") -> None:
        super().__init__()
        self.inp, self.hidden, self.head = nn.Linear(8, width), nn.Linear(width, width), nn.Linear(width, 3)
        self.drop, self.output = nn.Dropout(dropout), output
        for layer in (self.inp, self.hidden, self.head):
            nn.init.normal_(layer.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> object:
        logits = self.head(self.drop(torch.relu(self.hidden(torch.relu(self.inp(x))))))
        if self.output == "nanogpt":  # nanoGPT's (logits, loss)
            return logits, F.cross_entropy(logits, y)
        return (logits, logits) if self.output == "pair" else logits


def _xy() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(16, 8, generator=generator), torch.randint(0, 3, (16,), generator=generator)


def constant_init(width: int) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    return ConstantInit(width), _xy()


def with_dropout(width: int) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    return ConstantInit(width, dropout=0.5), _xy()


def pair_output(width: int) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """A model returning (logits, features): not logits, for an (inputs, targets) batch."""
    return ConstantInit(width, output="pair"), _xy()


def nanogpt_loss(width: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """nanoGPT's model(idx, targets) -> (logits, loss), with its batch as model kwargs."""
    x, y = _xy()
    return ConstantInit(width, output="nanogpt"), {"x": x, "y": y}

"""A plain MLP: input layer, depth - 1 hidden layers, readout (the muP textbook model)."""

from __future__ import annotations

import torch
from torch import nn

from scaleplan.errors import ScaleplanError


class MLP(nn.Module):
    """in_dim -> width (x depth hidden layers, ReLU) -> out_dim; PyTorch's default (SP) init.

    depth: number of width x width layers plus one (depth=1 is input layer + readout).
    readout_zero_init: start the readout at zero (muP's recommendation; applies to SP too).
    """

    scaleplan_outside_n = ("input", "readout")  # the layers with a fixed dimension: N counts the hidden layers

    def __init__(
        self, in_dim: int, width: int, out_dim: int, depth: int = 2, bias: bool = True, readout_zero_init: bool = False
    ) -> None:
        super().__init__()
        if min(in_dim, width, out_dim, depth) < 1:
            raise ScaleplanError(f"MLP sizes must be positive: in_dim={in_dim}, width={width}, out_dim={out_dim}, depth={depth}")
        self.width, self.depth = width, depth
        self.input = nn.Linear(in_dim, width, bias=bias)
        self.hidden = nn.ModuleList(nn.Linear(width, width, bias=bias) for _ in range(depth - 1))
        self.act = nn.ReLU()
        self.readout = nn.Linear(width, out_dim, bias=bias)
        if readout_zero_init:
            nn.init.zeros_(self.readout.weight)
            if bias:
                nn.init.zeros_(self.readout.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.input(x))
        for layer in self.hidden:
            h = self.act(layer(h))
        return self.readout(h)

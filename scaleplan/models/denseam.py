"""Dense Associative Memory: T steps of energy descent x <- x - alpha * grad E(x), one memory matrix.

Energies on the overlaps s = Xi x (Xi: K memories x N features), inverse temperature beta = beta0/N:
  "lse"       E = -(1/beta) log sum_mu exp(beta s_mu)         grad E = -Xi^T softmax(beta s)
  "relu-poly" E = -(1/beta) sum_mu relu(beta s_mu)^n / n      grad E = -Xi^T relu(beta s)^(n-1)
The activation f (softmax or relu^(n-1)) is centered (f - its mean over memories) when
centered=True, and alpha = tau / T, so the learning rate does not depend on T. Xi is the same in
every step; its entries are O(1) (std memory_std, independent of N and K).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from scaleplan.errors import ScaleplanError

ENERGIES = ("lse", "relu-poly")
READOUTS = ("classifier", "denoise")


class DenseAM(nn.Module):
    """A DenseAM layer with a classifier readout (input layer -> descent -> muP readout) or denoising.

    kwargs: in_dim, out_dim (classifier), n_memories K, steps T, beta0, tau, energy ("lse" or
    "relu-poly"), degree n (relu-poly), readout ("classifier", or "denoise": the input is the
    N-dim corrupted state, in_dim must equal width, the output is x_T), centered, memory_std,
    readout_zero_init.
    """

    scaleplan_roles = {"memories": "memory"}
    scaleplan_site = "temperature"  # the parametrization sets `multiplier` on beta (see beta below)

    def __init__(
        self,
        width: int,
        in_dim: int = 16,
        out_dim: int = 10,
        n_memories: int = 32,
        steps: int = 4,
        beta0: float = 1.0,
        tau: float = 1.0,
        energy: str = "lse",
        degree: int = 3,
        readout: str = "classifier",
        centered: bool = True,
        memory_std: float = 1.0,
        readout_zero_init: bool = False,
    ) -> None:
        super().__init__()
        if energy not in ENERGIES:
            raise ScaleplanError(f"unknown DenseAM energy {energy!r}; valid: {', '.join(ENERGIES)}")
        if readout not in READOUTS:
            raise ScaleplanError(f"unknown DenseAM readout {readout!r}; valid: {', '.join(READOUTS)}")
        if min(width, in_dim, out_dim, n_memories, steps) < 1 or beta0 <= 0 or tau <= 0 or degree < 2:
            raise ScaleplanError("DenseAM needs positive width, in_dim, out_dim, n_memories, steps, beta0, tau and degree >= 2")
        if readout == "denoise" and in_dim != width:
            raise ScaleplanError(f"denoise readout: the input is the state, so in_dim ({in_dim}) must equal width ({width})")
        self.width, self.steps, self.energy, self.degree = width, steps, energy, degree
        self.readout_kind, self.centered = readout, centered
        self.beta0, self.multiplier = beta0, 1.0
        self.alpha = tau / steps
        self.memories = nn.Parameter(torch.randn(n_memories, width) * memory_std)
        self.overlap = nn.Identity()  # probes: the coordinate check records beta*s and x_t here
        self.state = nn.Identity()
        if readout == "classifier":
            self.input = nn.Linear(in_dim, width)
            self.readout = nn.Linear(width, out_dim)
            if readout_zero_init:
                nn.init.zeros_(self.readout.weight)
                nn.init.zeros_(self.readout.bias)

    def activation(self, z: torch.Tensor) -> torch.Tensor:
        """f(beta s): softmax over memories, or relu(.)^(n-1); centered over memories if asked."""
        f = F.softmax(z, dim=-1) if self.energy == "lse" else F.relu(z) ** (self.degree - 1)
        return f - f.mean(dim=-1, keepdim=True) if self.centered else f

    @property
    def beta(self) -> float:
        """Inverse temperature beta0/N times the parametrization's factor (1 under the DenseAM rules,
        N/N_base under SP and muP, which keep beta constant in N)."""
        return self.beta0 / self.width * self.multiplier

    def energy_value(self, x: torch.Tensor) -> torch.Tensor:
        """E(x) per sample; its gradient is the (uncentered) update direction."""
        z = self.beta * (x @ self.memories.T)
        if self.energy == "lse":
            return -torch.logsumexp(z, dim=-1) / self.beta
        return -(F.relu(z) ** self.degree).sum(dim=-1) / (self.degree * self.beta)

    def descend(self, x: torch.Tensor) -> torch.Tensor:
        """T steps of x <- x + alpha * Xi^T f(beta Xi x) with the same Xi."""
        for _ in range(self.steps):
            f = self.activation(self.overlap(self.beta * (x @ self.memories.T)))
            x = self.state(x + self.alpha * (f @ self.memories))
        return x

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if self.readout_kind == "denoise":
            return self.descend(u)
        return self.readout(self.descend(self.input(u)))

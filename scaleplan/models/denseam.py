"""Dense Associative Memory: T steps of energy descent x <- x - alpha * grad E(x), one memory matrix.

Xi holds K memories of N features; the overlaps are z = beta * Xi x with beta = beta0 / N. Each step
adds the memory average of the activation a(z) times the memories:
  x <- x + alpha * (1/K) sum_mu a_mu xi_mu            (with leak=True also - alpha * x)
  "lse"        a = K softmax(z)   (= exp(z) / mean exp(z)); the 1/K is softmax's own normalization,
               so the update is the usual sum_mu softmax(z)_mu xi_mu of E = -(1/beta) log sum exp(beta s)
  "relu-poly"  a = relu(z)^(n-1) / (n-1), the gradient of E = -(1/beta) (1/K) sum relu(beta s)^n / (n(n-1)):
               unit slope at z = 1 for every degree n, and a mean over memories, not a sum (the
               parametrization sets the 1/K: SP and muP keep the base's 1/K_base)
The activation is centered over memories (a - mean a) when centered=True; alpha = tau / T, so the
T steps integrate the same flow for any T. leak=True adds |x|^2 / 2 to E (the modern Hopfield
energy): x_T then forgets x_0 over the flow time tau and settles on what the memories retrieve.
The README's "DenseAM rules" section derives each factor.

`width` is the size a sweep scales: the features N (width_axis="features"), the memories K
("memories", N = `features`), or both (K = load * N).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from scaleplan.errors import ParametrizationError, ScaleplanError

ENERGIES = ("lse", "relu-poly")
READOUTS = ("classifier", "denoise")
WIDTH_AXES = ("features", "memories", "both")
DEFAULT_MEMORIES = 32
INIT_GROWTH_LIMIT = 100.0  # the descent at init may grow the state's rms at most this much


class MemoryUpdate(nn.Module):
    """One step's update alpha * multiplier * (1/K) a @ Xi; the coordinate check records it here.

    For relu-poly the parametrization sets `multiplier` (1 under the DenseAM rules, K/K_base under SP
    and muP, which keep the base's 1/K_base); softmax normalizes itself, so lse has no site.
    """

    def __init__(self, n_memories: int, alpha: float, energy: str) -> None:
        super().__init__()
        self.n_memories, self.alpha, self.multiplier = n_memories, alpha, 1.0
        self.scaleplan_site = "memories" if energy == "relu-poly" else None

    def forward(self, activation: torch.Tensor, memories: torch.Tensor) -> torch.Tensor:
        return (activation @ memories) * (self.alpha * self.multiplier / self.n_memories)


class DenseAM(nn.Module):
    """A DenseAM layer with a linear readout (input layer -> descent -> muP readout) or denoising.

    kwargs: in_dim, out_dim (classifier readout), n_memories K, steps T, beta0, tau, energy ("lse" or
    "relu-poly"), degree n (relu-poly), readout ("classifier": a linear readout of x_T, for classes or
    for a denoising target; "denoise": the input is the N-dim corrupted state and the output is x_T,
    so in_dim must equal N), centered, memory_std, readout_zero_init, leak, width_axis ("features",
    "memories" or "both"), features (N when width_axis="memories"; default in_dim for denoise),
    load (K / N when width_axis="both", default 1).
    """

    scaleplan_roles = {"memories": "memory"}
    scaleplan_site = "temperature"  # the parametrization sets `multiplier` on beta (see beta below)

    def __init__(
        self,
        width: int,
        in_dim: int = 16,
        out_dim: int = 10,
        n_memories: int | None = None,
        steps: int = 4,
        beta0: float = 1.0,
        tau: float = 1.0,
        energy: str = "lse",
        degree: int = 3,
        readout: str = "classifier",
        centered: bool = True,
        memory_std: float = 1.0,
        readout_zero_init: bool = False,
        leak: bool = False,
        width_axis: str = "features",
        features: int | None = None,
        load: float | None = None,
    ) -> None:
        super().__init__()
        if energy not in ENERGIES:
            raise ScaleplanError(f"unknown DenseAM energy {energy!r}; valid: {', '.join(ENERGIES)}")
        if readout not in READOUTS:
            raise ScaleplanError(f"unknown DenseAM readout {readout!r}; valid: {', '.join(READOUTS)}")
        if min(width, in_dim, out_dim, steps) < 1 or beta0 <= 0 or tau <= 0 or degree < 2:
            raise ScaleplanError("DenseAM needs positive width, in_dim, out_dim, steps, beta0, tau and degree >= 2")
        n_features, k = _sizes(width, width_axis, n_memories, features, load, in_dim if readout == "denoise" else None)
        if readout == "denoise" and in_dim != n_features:
            raise ScaleplanError(f"denoise readout: the input is the state, so in_dim ({in_dim}) must equal width ({n_features})")
        self.width, self.features, self.n_memories, self.width_axis = width, n_features, k, width_axis
        self.steps, self.energy, self.degree = steps, energy, degree
        self.readout_kind, self.centered, self.leak = readout, centered, leak
        self.beta0, self.tau, self.multiplier = beta0, tau, 1.0
        self.alpha = tau / steps
        self.memories = nn.Parameter(torch.randn(k, n_features) * memory_std)
        self.overlap = nn.Identity()  # probes: the coordinate check records beta*s, a and x_t here
        self.activation = nn.Identity()
        self.update = MemoryUpdate(k, self.alpha, energy)
        self.state = nn.Identity()
        if readout == "classifier":
            self.input = nn.Linear(in_dim, n_features)
            self.readout = nn.Linear(n_features, out_dim)
            if readout_zero_init:
                nn.init.zeros_(self.readout.weight)
                nn.init.zeros_(self.readout.bias)

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        """a(z) per memory, O(1) either way: K softmax(z), or relu(z)^(n-1)/(n-1); centered if asked."""
        if self.energy == "lse":
            a = F.softmax(z, dim=-1) * self.n_memories
        else:
            a = F.relu(z) ** (self.degree - 1) / (self.degree - 1)
        return a - a.mean(dim=-1, keepdim=True) if self.centered else a

    @property
    def beta(self) -> float:
        """Inverse temperature beta0/N times the parametrization's factor (1 under the DenseAM rules,
        N/N_base under SP and muP, which keep beta constant in N)."""
        return self.beta0 / self.features * self.multiplier

    @property
    def gradient_order(self) -> float:
        """How fast the memories' gradients shrink with N at init (like N^-order, measured): (n+1)/2 for a
        degree-n relu-poly (its activation is flat at the N^-1/2 random overlaps), 3/2 for lse."""
        return (self.degree + 1) / 2 if self.energy == "relu-poly" else 1.5

    def energy_value(self, x: torch.Tensor) -> torch.Tensor:
        """E(x) per sample; -alpha * grad E is one step's (uncentered) update."""
        z = self.beta * (x @ self.memories.T)
        if self.energy == "lse":
            energy = -torch.logsumexp(z, dim=-1) / self.beta
        else:
            n = self.degree
            energy = -(F.relu(z) ** n).sum(dim=-1) * self.update.multiplier / (self.n_memories * n * (n - 1) * self.beta)
        return energy + x.square().sum(dim=-1) / 2 if self.leak else energy

    def descend(self, x: torch.Tensor) -> torch.Tensor:
        """T steps of x <- x + alpha * ((1/K) a(beta Xi x) @ Xi [- x with leak]) with the same Xi."""
        for _ in range(self.steps):
            a = self.activation(self.activate(self.overlap(self.beta * (x @ self.memories.T))))
            delta = self.update(a, self.memories)
            x = self.state(x + (delta - self.alpha * x if self.leak else delta))
        return x

    def initial_state(self, u: torch.Tensor) -> torch.Tensor:
        """x_0, where the descent starts: the input itself with the denoise readout, else the input layer's output."""
        return u if self.readout_kind == "denoise" else self.input(u)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x = self.descend(self.initial_state(u))
        return x if self.readout_kind == "denoise" else self.readout(x)

    def describe(self) -> str:
        """The configuration in one line, for messages."""
        energy = f"relu-poly n={self.degree}" if self.energy == "relu-poly" else "lse"
        return (f"DenseAM {energy}, T={self.steps}, N={self.features}, K={self.n_memories}, "
                f"beta0={self.beta0:g}, tau={self.tau:g}")

    def init_growth(self, inputs: torch.Tensor) -> float:
        """rms(x_T) / rms(x_0) of the descent on `inputs` (inf when not finite): how much it amplifies the state."""
        with torch.no_grad():
            x0 = self.initial_state(inputs)
            xt = self.descend(x0)
        if not torch.isfinite(xt).all():
            return math.inf
        return float(xt.square().mean().sqrt() / x0.square().mean().sqrt().clamp_min(1e-30))

    def check_init(self, inputs: torch.Tensor) -> None:
        """Refuse a model whose descent explodes at init on `inputs` (every lr would diverge)."""
        growth = self.init_growth(inputs)
        if growth <= INIT_GROWTH_LIMIT:
            return
        state = self.__dict__.get("scaleplan_state")
        name = getattr(state, "parametrization", None)
        fix = "lower beta0 (relu-poly raises the overlaps beta0*s/N to the power n-1) or tau" if self.energy == "relu-poly" else "lower beta0 or tau"
        if name not in (None, "denseam"):
            fix += ", or use parametrization 'denseam' (beta0/N, memories averaged)"
        raise ParametrizationError(
            f"{self.describe()}{f' under {name!r}' if name else ''}: the energy descent explodes at init (the state's rms "
            f"{'becomes non-finite' if math.isinf(growth) else f'grows {growth:.3g}x'} over {self.steps} steps, limit "
            f"{INIT_GROWTH_LIMIT:g}x), so every lr would diverge; {fix}"
        )


def _sizes(
    width: int, axis: str, n_memories: int | None, features: int | None, load: float | None, state_dim: int | None
) -> tuple[int, int]:
    """(N, K) for `width` on `axis`; options that the axis sets itself are refused, not ignored."""
    if axis not in WIDTH_AXES:
        raise ScaleplanError(f"unknown DenseAM width_axis {axis!r}; valid: {', '.join(WIDTH_AXES)}")
    given = {"n_memories": n_memories, "features": features, "load": load}
    allowed = {"features": ("n_memories",), "memories": ("features",), "both": ("load",)}[axis]
    extra = [key for key, value in given.items() if value is not None and key not in allowed]
    if extra:
        raise ScaleplanError(f"DenseAM width_axis={axis!r} sets {extra[0]} from the width; drop {extra[0]}")
    if axis == "features":
        n, k = width, n_memories if n_memories is not None else DEFAULT_MEMORIES
    elif axis == "memories":
        fixed = features if features is not None else state_dim
        if fixed is None:
            raise ScaleplanError("DenseAM width_axis='memories' scales K; give features=N (the fixed number of features)")
        n, k = fixed, width
    else:
        if load is not None and not load > 0:
            raise ScaleplanError(f"DenseAM load (K/N) must be positive, got {load}")
        n, k = width, max(1, round((1.0 if load is None else load) * width))
    if min(n, k) < 1:
        raise ScaleplanError(f"DenseAM needs at least one feature and one memory, got N={n}, K={k}")
    return n, k

"""Parametrizations as data: one rule per tensor role, as exponents of the width multiplier m.

Pure Python (no torch) so the planner can print per-layer learning rates at a target width.
m = width / base_width (the mup convention); every factor is relative to the base lr / std / wd,
so at m = 1 every parametrization gives factor 1 and muP equals SP exactly.

muP follows microsoft/mup (Tensor Programs V, Table 8). CompleteP (alpha = 1, Dey et al. 2025)
adds depth: residual branches x (L/L_base)^-1, Adam eps x 1/(m * m_L), learning rates unchanged.

The "denseam" rules (Dense Associative Memory, Holtzman, Krotov, Hanin, arXiv 2605.10164) are
*derived from muP principles* and checked by scaleplan's own coordinate checks and sweeps (README,
"DenseAM rules"): the paper's full text is not available here. They are muP for the ordinary tensors
plus a "memory" role for the memory matrix Xi (K x N) shared by all T steps of energy descent, with
m = (N/N_base)(K/K_base): entries O(1) (init independent of N and K), Adam lr constant, SGD lr x m
(each entry's gradient carries 1/N from beta and 1/K from the memory average). Measured under SGD
(benchmarks/results/denseam-sgd.md): over K it holds for relu-poly, not for lse, whose retrieved memories carry an
O(1) softmax weight and no 1/K (with m_K the base's best lr diverged at 8x K whether the K memories held 16, 128 or
4096 patterns; constant in K the optimum stayed within half an octave), so an lse memory's m is N/N_base alone (apply_parametrization sets it
from the site's `energy`); over N the memories' gradient at init shrinks like N^-order, so m_N leaves them learning
slowly there. Because Xi is tied
(the overlaps Xi x and the update Xi^T a share it), the contraction over N in the overlaps and the
one over K in a relu-poly update are both mean-field: beta = beta0/N and a mean over memories (1/K),
set in the model (scaleplan.models.denseam); SP and muP freeze them at the base
(temperature_exponent, memory_exponent). The random part of the overlaps then vanishes like
N^-1/2, and with it a peaking activation's gradient at init, so the memories' Adam eps is scaled
with that gradient (memory_eps_exponent). The model also defines the activation relu^(n-1)/(n-1)
(unit slope at unit overlap), the centering and the step alpha = tau/T.

Weight decay (factor on the base lambda, per role; `scaleplan.core.weight_decay` has the conventions):

| role   | muP Adam lr | Adam, L2 (mup.MuAdam) | AdamW torch, p *= 1 - lr*lambda | AdamW independent, p *= 1 - lambda |
|--------|-------------|-----------------------|---------------------------------|------------------------------------|
| input  | 1           | 1                     | 1                               | 1                                  |
| hidden | 1/m         | m                     | m (= mup.MuAdamW)               | 1                                  |
| output | 1           | 1                     | 1                               | 1                                  |
| vector | 1           | 1                     | 1                               | 1                                  |

AdamW's decay is an EMA with timescale tau_iter = 1/(lr_role * lambda_role) (torch) or 1/lambda_role
(independent). Keeping every role's timescale width-independent needs lambda_role x m^(-lr exponent)
under torch, which is the `adam_wd` column (adam_wd = -adam_lr for every role: tested), and a constant
lambda under independent decay. A constant torch lambda would stretch the hidden timescale by m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping, get_args

from scaleplan.core.weight_decay import check_convention
from scaleplan.errors import ScaleplanError

Role = Literal["input", "hidden", "output", "vector", "memory", "fixed"]
ROLES: tuple[str, ...] = get_args(Role)
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd")

ROLE_HELP: dict[str, str] = {
    "input": "input weights and embeddings (only the fan-out is a width)",
    "hidden": "hidden weights (fan-in and fan-out are widths)",
    "output": "readout weights (only the fan-in is a width)",
    "vector": "biases and norm gains (one width dimension)",
    "memory": "DenseAM memory matrix Xi (K x N), shared across the T descent steps",
    "fixed": "tensors with no width dimension (e.g. a readout bias): nothing scales",
}


@dataclass(frozen=True)
class RoleRule:
    """Width exponents of one tensor role: each factor is m ** exponent."""

    init_var: float  # init variance
    forward: float  # forward multiplier
    adam_lr: float
    sgd_lr: float
    adam_wd: float  # Adam L2 and AdamW (torch) weight decay, as mup.MuAdam/MuAdamW scale it; independent decay: 0
    sgd_wd: float
    # exponents of the fan-out multiplier m_out (hidden tensors whose fan-out scales unlike their fan-in;
    # mup.MuSGD divides the lr by fan-in mult / fan-out mult); m itself is the fan-in multiplier there
    sgd_lr_out: float = 0.0
    sgd_wd_out: float = 0.0


@dataclass(frozen=True)
class RoleMultipliers:
    """Factors relative to the base lr / init std / forward multiplier / weight decay / Adam eps."""

    lr: float
    init_std: float
    forward: float
    weight_decay: float
    eps: float = 1.0


@dataclass(frozen=True)
class Parametrization:
    """A named table of role rules plus the attention-logit exponent."""

    name: str
    rules: Mapping[str, RoleRule]
    attention_exponent: float  # attention logits scale as d_head ** attention_exponent
    description: str
    temperature_exponent: float = 0.0  # DenseAM: beta = (beta0 / N_base) * m ** temperature_exponent
    memory_exponent: float = 0.0  # DenseAM relu-poly: update sum over memories x (1/K_base) * m_K ** memory_exponent
    memory_eps_exponent: float = 0.0  # DenseAM memories: Adam eps x (m_N ** order * m_K) ** memory_eps_exponent
    bias_init_exponent: float = 0.0  # a layer's bias init x (its fan-in multiplier) ** this (mup: 1/2)
    # SP keeps a model's own width-dependent scales (an embedding's embed_scale, a fixed attention scale); muP and
    # the DenseAM rules anchor them at the base model's values
    keeps_model_scales: bool = False

    def rule(self, role: str) -> RoleRule:
        """The rule for `role`; a clear error for a role this parametrization does not define."""
        if role not in ROLES:
            raise ScaleplanError(f"unknown tensor role {role!r}; valid roles: {', '.join(ROLES)}")
        if role not in self.rules:
            raise ScaleplanError(
                f"parametrization {self.name!r} has no rule for role {role!r}; "
                f"use one of: {', '.join(n for n, p in PARAMETRIZATIONS.items() if role in p.rules)}"
            )
        return self.rules[role]

    def multipliers(
        self,
        role: str,
        m: float,
        optimizer: str = "adam",
        depth_ratio: float = 1.0,
        completep: bool = False,
        decay: str = "torch",
        m_out: float | None = None,
    ) -> RoleMultipliers:
        """Factors for one tensor of `role` at width multiplier m (and depth ratio L/L_base).

        For a hidden tensor m is its fan-in multiplier and `m_out` its fan-out multiplier (default m);
        they differ when, e.g., d_model grows 2x and the FFN width 8x. `decay` is the AdamW weight-decay
        convention: "torch" (lambda x m^adam_wd) or "independent" (lambda x 1).
        """
        rule = self.rule(role)
        check_convention(decay, optimizer)
        m_out = m if m_out is None else m_out
        if m <= 0 or depth_ratio <= 0 or m_out <= 0:
            raise ScaleplanError(f"width and depth multipliers must be positive, got m={m}, m_out={m_out}, depth_ratio={depth_ratio}")
        if completep and self.name != "mup":
            raise ScaleplanError(f"CompleteP depth transfer is defined on top of muP; use parametrization 'mup', not {self.name!r}")
        sgd = _optimizer_is_sgd(optimizer)
        m, m_out = float(m), float(m_out)
        return RoleMultipliers(
            lr=_power(m, m_out, rule.sgd_lr, rule.sgd_lr_out) if sgd else m**rule.adam_lr,
            init_std=m ** (rule.init_var / 2),
            forward=m**rule.forward,
            weight_decay=1.0 if decay == "independent" else (_power(m, m_out, rule.sgd_wd, rule.sgd_wd_out) if sgd else m**rule.adam_wd),
            eps=1.0 / (m * depth_ratio) if completep and not sgd else 1.0,
        )

    def attention_multiplier(self, head_ratio: float) -> float:
        """Factor on top of the usual 1/sqrt(d_head): 1 for SP, (d_head/d_head_base)^-1/2 for muP."""
        return head_ratio ** (self.attention_exponent + 0.5)

    def temperature_multiplier(self, m: float) -> float:
        """Factor on a DenseAM's own beta = beta0/N: 1 under the DenseAM rules (beta0/N), m under SP/muP
        (which keep beta = beta0/N_base constant in N); equal to 1 at m = 1 either way."""
        return m ** (1.0 + self.temperature_exponent)

    def memory_multiplier(self, m_memories: float) -> float:
        """Factor on a relu-poly DenseAM's own memory average (1/K): 1 under the DenseAM rules, K/K_base
        under SP/muP (which keep the base's 1/K_base, i.e. a sum that grows with K); 1 at K = K_base."""
        return m_memories ** (1.0 + self.memory_exponent)

    def memory_eps_multiplier(self, m_features: float, m_memories: float, gradient_order: float) -> float:
        """Factor on a DenseAM memory matrix's Adam eps: 1/(m_N^order * m_K) under the DenseAM rules, which keeps
        eps as far below the memories' gradients as at the base (at init they shrink like N^-order / K, order
        (n+1)/2 for a degree-n relu-poly, 3/2 for lse: a peaking activation is flat at the vanishing random
        overlaps); 1 under SP/muP."""
        return (m_features**gradient_order * m_memories) ** self.memory_eps_exponent

    def bias_init_factor(self, fan_in_m: float) -> float:
        """Factor on a layer's bias init (PyTorch draws it U(+-1/sqrt(fan_in))): mup x sqrt(fan-in mult)."""
        return fan_in_m**self.bias_init_exponent

    def table(self, m: float, optimizer: str = "adam", decay: str = "torch") -> list[tuple[str, RoleMultipliers]]:
        """Every role's factors at width multiplier m, for display."""
        return [(role, self.multipliers(role, m, optimizer, decay=decay)) for role in ROLES if role in self.rules]


def undecayed_roles(no_decay: Iterable[str] | str) -> frozenset[str]:
    """The roles `no_decay` names (one role or several), each checked: a misspelt role would silently be decayed."""
    if not isinstance(no_decay, (str, list, tuple, set, frozenset)):
        raise ScaleplanError(f"no_decay must be a role or a list of roles, got {no_decay!r} (e.g. ['vector', 'fixed'])")
    roles = [no_decay] if isinstance(no_decay, str) else list(no_decay)
    unknown = sorted({repr(r) for r in roles if not isinstance(r, str) or r not in ROLES})
    if unknown:
        raise ScaleplanError(f"no_decay: unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)} "
                             "(e.g. no_decay=('vector', 'fixed') leaves biases and norm gains undecayed)")
    return frozenset(roles)


def residual_multiplier(depth_ratio: float, completep: bool) -> float:
    """Residual-branch multiplier: (L/L_base)^-1 under CompleteP (alpha = 1), else 1."""
    return 1.0 / depth_ratio if completep else 1.0


def attention_scale(d_head: int, base_d_head: int, parametrization: str = "mup") -> float:
    """The attention-logit scale to multiply q.k by: sqrt(base_d_head)/d_head under muP (1/d_head, equal
    to SP's 1/sqrt(d_head) at the base), 1/sqrt(d_head) under SP. For attention scaleplan cannot reach
    (SDPA in your own forward: F.scaled_dot_product_attention(q, k, v, scale=attention_scale(...)))."""
    if d_head < 1 or base_d_head < 1:
        raise ScaleplanError(f"head dimensions must be positive integers, got d_head={d_head}, base_d_head={base_d_head}")
    return get_parametrization(parametrization).attention_multiplier(d_head / base_d_head) / math.sqrt(d_head)


def _power(m: float, m_out: float, exponent: float, exponent_out: float) -> float:
    """m ** exponent * m_out ** exponent_out, exact (one power) when the two multipliers are equal."""
    return m ** (exponent + exponent_out) if m == m_out else m**exponent * m_out**exponent_out


def _optimizer_is_sgd(optimizer: str) -> bool:
    if optimizer not in OPTIMIZERS:
        raise ScaleplanError(f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)} (adamw scales like adam)")
    return optimizer == "sgd"


_FIXED = RoleRule(init_var=0, forward=0, adam_lr=0, sgd_lr=0, adam_wd=0, sgd_wd=0)
_ONE_WIDTH_DIM = RoleRule(init_var=0, forward=0, adam_lr=0, sgd_lr=1, adam_wd=0, sgd_wd=-1)

# SP: PyTorch's default fan-in init (variance 1/fan_in), every lr, wd and multiplier constant.
SP = Parametrization(
    name="sp",
    rules={
        "input": _FIXED,
        "hidden": RoleRule(init_var=-1, forward=0, adam_lr=0, sgd_lr=0, adam_wd=0, sgd_wd=0),
        "output": RoleRule(init_var=-1, forward=0, adam_lr=0, sgd_lr=0, adam_wd=0, sgd_wd=0),
        "vector": _FIXED,
        "memory": _FIXED,
        "fixed": _FIXED,
    },
    attention_exponent=-0.5,
    description="standard parametrization: fan-in init, constant learning rates",
    keeps_model_scales=True,
)

_MUP_RULES: dict[str, RoleRule] = {
    "input": _ONE_WIDTH_DIM,
    # SGD: lr x fan-out mult / fan-in mult, wd the inverse (mup.MuSGD's fanin_fanout_mult_ratio)
    "hidden": RoleRule(init_var=-1, forward=0, adam_lr=-1, sgd_lr=-1, adam_wd=1, sgd_wd=1, sgd_lr_out=1, sgd_wd_out=-1),
    "output": RoleRule(init_var=0, forward=-1, adam_lr=0, sgd_lr=1, adam_wd=0, sgd_wd=-1),
    "vector": _ONE_WIDTH_DIM,
    "fixed": _FIXED,
}

MUP = Parametrization(
    name="mup",
    rules=_MUP_RULES,
    attention_exponent=-1.0,
    bias_init_exponent=0.5,
    description="muP (microsoft/mup, Tensor Programs V Table 8); optional CompleteP depth transfer",
)

DENSEAM = Parametrization(
    name="denseam",
    # m = (N/N_base)(K/K_base): SGD lr x m follows its 1/(NK) gradient (an lse memory's m is N/N_base: module docstring)
    rules={**_MUP_RULES, "memory": _ONE_WIDTH_DIM},
    attention_exponent=-1.0,
    description="DenseAM rules (muP + memory role; beta = beta0/N, relu-poly memories averaged, memory Adam eps scaled)",
    temperature_exponent=-1.0,
    memory_exponent=-1.0,
    memory_eps_exponent=-1.0,
    bias_init_exponent=0.5,
)

PARAMETRIZATIONS: dict[str, Parametrization] = {p.name: p for p in (SP, MUP, DENSEAM)}


def get_parametrization(name: str) -> Parametrization:
    """The parametrization called `name` ("sp", "mup", "denseam")."""
    if name not in PARAMETRIZATIONS:
        raise ScaleplanError(f"unknown parametrization {name!r}; valid names: {', '.join(PARAMETRIZATIONS)}")
    return PARAMETRIZATIONS[name]

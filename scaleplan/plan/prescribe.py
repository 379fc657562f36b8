"""Prescriptions: what a law says to use for a target model (lr, per-layer lr, batch, tokens).

Laws disagree on what their inputs mean (Step Law: non-embedding N; DeepSeek: C = M*D with M
non-embedding FLOPs per token; Chinchilla: total N), so the planner builds the target's shape once and
hands each law the quantity in its own convention, recording which one it used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scaleplan.core.rules import ROLES, get_parametrization, residual_multiplier
from scaleplan.errors import ScaleplanError
from scaleplan.laws import Estimate, LawFile, Prediction, load_law
from scaleplan.plan.shape import DEFAULT_ASPECT, ModelShape, non_embedding_from_total, shape_for

DEFAULT_TOKENS_LAW = "epoch-chinchilla"
BATCH_MEANING = "batch size, in the unit of D (turns the decay timescale into lambda)"


@dataclass(frozen=True)
class LawInput:
    """One input a law was evaluated at, with what it counts."""

    name: str
    value: float
    meaning: str


@dataclass(frozen=True)
class GroupLR:
    """Per-role hyperparameters at the target width and depth (muP-style laws only); `weight_decay` is the role's
    lambda when the law predicts one (AdamW, in the law's decay convention)."""

    role: str
    lr: float
    init_std_mult: float
    forward_mult: float
    weight_decay_mult: float
    eps_mult: float = 1.0  # Adam eps factor (CompleteP: 1 / (m * L / L_base))
    weight_decay: float | None = None  # the role's lambda where the law predicts one


@dataclass(frozen=True)
class Prescription:
    """The planner's answer for one target; every number says where it came from."""

    law: str
    law_title: str
    inputs: list[LawInput]
    lr: Estimate | None = None
    batch_size: Estimate | None = None
    batch_unit: str | None = None
    batch_sequences: int | None = None
    tokens: float | None = None
    tokens_source: str | None = None
    compute: float | None = None
    predicted_loss: float | None = None
    shape: ModelShape | None = None
    parametrization: str | None = None
    per_group: list[GroupLR] = field(default_factory=list)
    warnings: tuple[str, ...] = ()
    width: float | None = None  # the target width and depth the per-role numbers are for
    depth: float | None = None
    residual_mult: float | None = None  # CompleteP's residual-branch multiplier (L / L_base)^-1 at the target depth
    wd_tau: Estimate | None = None  # AdamW decay timescale, a fraction of the run (laws with a weight_decay block)
    weight_decay: Estimate | None = None  # base lambda at the predicted lr, in `decay_convention`
    decay_convention: str | None = None


def prescribe(
    law: LawFile | str,
    *,
    params: float | None = None,
    tokens: float | None = None,
    compute: float | None = None,
    width: float | None = None,
    depth: float | None = None,
    batch_size: float | None = None,
    seq_len: int = 4096,
    vocab: int = 32000,
    tied: bool = False,
    params_total: bool = False,
    d_model: int | None = None,
    n_layers: int | None = None,
    aspect: float = DEFAULT_ASPECT,
    tokens_law: LawFile | str = DEFAULT_TOKENS_LAW,
    level: float = 0.95,
    optimizer: str | None = None,
) -> Prescription:
    """Evaluate `law` for a target given by size (params/shape/compute) or, for laws of a sweep's own axes, by
    width and depth (and tokens, batch size where the law takes them).

    `batch_size` (in the unit of the law's D) turns a weight-decay timescale into lambda when the law has no batch law.
    """
    law = load_law(law) if isinstance(law, str) else law
    if tokens is not None and compute is not None and params is not None:
        raise ScaleplanError("give at most two of --params, --tokens, --compute (the third follows from C = 6ND)")
    # a law of a sweep's own axes (a weight-decay timescale law also takes N, the model's parameter count)
    own_axes = bool(law.needs()) and set(law.needs()) <= {"W", "L", "D", "B", *(["N"] if law.weight_decay is not None else [])}
    per_role = law.parametrization is not None and law.parametrization.name != "sp"
    if width is not None and "W" not in law.needs() and not (own_axes and per_role):
        raise ScaleplanError(f"law '{law.name}' does not depend on width; drop --width (--d-model sets the model's width)")
    completep = law.parametrization is not None and law.parametrization.completep
    if depth is not None and "L" not in law.needs() and not completep:
        raise ScaleplanError(f"law '{law.name}' depends neither on depth nor uses CompleteP; drop --depth")
    if batch_size is not None and "B" not in {v for p in law.laws() for v in p.inputs()} and law.weight_decay is None:
        raise ScaleplanError(f"law '{law.name}' does not depend on the batch size; drop --batch")
    if own_axes:
        for var, value, name in (("W", width, "width"), ("L", depth, "depth"), ("D", tokens, "tokens"), ("B", batch_size, "batch"),
                                 ("N", params, "params")):
            if var in law.needs() and value is None:
                raise ScaleplanError(f"law '{law.name}' is a law of {name} {var} ({law.variable(var).meaning}): give --{name}")
        given = {"--params": params is not None and "N" not in law.needs(), "--tokens": tokens is not None and "D" not in law.needs(),
                 "--compute": compute is not None}
        unused = [flag for flag, bad in given.items() if bad]
        if unused:
            raise ScaleplanError(f"law '{law.name}' depends only on {', '.join(law.needs())}: {unused[0]} would be ignored; drop it")
        return _prescribe_axes(law, width=width, depth=depth, params=params, tokens=tokens, batch_size=batch_size,
                               level=level, optimizer=optimizer)
    own = law.loss_law is not None or law.is_isoflop  # the law splits a budget itself (loss law or isoFLOP law)
    tokens_file = law if own else (load_law(tokens_law) if isinstance(tokens_law, str) else tokens_law)
    if tokens_file.loss_law is None and not tokens_file.is_isoflop:
        raise ScaleplanError(f"tokens law '{tokens_file.name}' has no loss law and no isoFLOP law "
                             "(use chinchilla, epoch-chinchilla, or a law from `scaleplan fit --isoflop`)")
    kw: dict[str, Any] = dict(vocab=vocab, tied=tied, seq_len=seq_len, d_model=d_model, n_layers=n_layers, aspect=aspect)
    # Chinchilla counts embeddings; a fit may not
    loss_n_total = tokens_file.has_variable("N") and tokens_file.variable("N").convention == "total"

    def loss_n(shape: ModelShape) -> float:
        return shape.total_params if loss_n_total else shape.non_embedding_params

    tokens_source = "given" if tokens is not None else None
    given_compute = compute
    if params is not None:
        shape = non_embedding_from_total(params, **kw) if params_total else shape_for(params, **kw)
    elif d_model is not None and n_layers is not None:
        shape = shape_for(None, **kw)
    elif compute is not None and tokens is None:
        n_opt, d_opt = tokens_file.compute_optimal(compute, level)
        tokens = d_opt.value
        how = "isoFLOP law" if tokens_file.is_isoflop else "loss law"
        tokens_source = f"compute-optimal for C = {compute:.3g} FLOPs ({tokens_file.name}, {how})"
        shape = non_embedding_from_total(n_opt.value, **kw) if loss_n_total else shape_for(n_opt.value, **kw)
    elif compute is not None and tokens is not None:
        shape = non_embedding_from_total(compute / (6.0 * tokens), **kw)
    else:
        raise ScaleplanError("give --params (or --d-model and --layers, or --compute)")

    if tokens is None and compute is not None:
        tokens, tokens_source = compute / (6.0 * shape.total_params), "C / (6N), N total"
    elif tokens is None:
        tokens = tokens_file.optimal_tokens(loss_n(shape))
        tokens_source = f"compute-optimal for N = {loss_n(shape):.3g} ({tokens_file.name}'s N)"
    compute = compute if compute is not None else 6.0 * shape.total_params * tokens

    inputs = [_law_input(law, var, shape, tokens, compute, given_compute) for var in law.needs()]
    keywords = {"N": "params", "D": "tokens", "C": "compute", "R": "tokens_per_param"}
    prediction = law.predict(level=level, batch_size=batch_size, **{keywords[i.name]: i.value for i in inputs})
    lr = prediction.values.get("lr")
    groups, residual, role_warnings = _per_role(law, lr, d_model or shape.d_model, depth or n_layers or shape.n_layers, optimizer,
                                                prediction)
    where = {"C": compute} if tokens_file.is_isoflop else {"N": loss_n(shape), "D": tokens}
    own_warnings = tokens_file is law and law.is_isoflop  # law.predict already warned about C
    loss_warnings = [] if own_warnings else [f"{tokens_file.name}: {w}" for w in tokens_file.extrapolation_warnings(where)]
    batch = prediction.values.get("batch_size")
    batch_unit = _batch_unit(law)
    return Prescription(
        law=law.name,
        law_title=law.title,
        inputs=inputs,
        lr=lr,
        batch_size=batch,
        batch_unit=batch_unit,
        batch_sequences=max(1, round(batch.value / seq_len)) if batch is not None and batch_unit == "tokens" else None,
        tokens=tokens,
        tokens_source=tokens_source,
        compute=compute,
        predicted_loss=None if tokens_file.loss_law is None else tokens_file.loss_law.loss(loss_n(shape), tokens),
        shape=shape,
        parametrization=None if law.parametrization is None else law.parametrization.name,
        per_group=groups,
        warnings=(*prediction.warnings, *loss_warnings, *role_warnings),
        width=float(d_model or shape.d_model) if groups else None,
        depth=float(depth or n_layers or shape.n_layers) if groups else None,
        residual_mult=residual,
        **_decay_fields(prediction),
    )


def _decay_fields(prediction: Prediction) -> dict[str, Any]:
    """The weight-decay timescale, lambda and convention of a prediction (empty for laws without them)."""
    if prediction.decay_convention is None:
        return {}
    return {"wd_tau": prediction.values.get("wd_tau"), "weight_decay": prediction.values.get("weight_decay"),
            "decay_convention": prediction.decay_convention}


def _batch_unit(law: LawFile) -> str | None:
    """The unit of the law's batch-size target (tokens, samples, sequences), if it has one."""
    return next((p.unit for p in law.power_laws if p.target == "batch_size"), None)


def _law_input(law: LawFile, var: str, shape: ModelShape, tokens: float, compute: float, given_compute: float | None = None) -> LawInput:
    """The value of `var` in the law's own convention for this shape and token count (C = 6ND: the budget given, if any)."""
    v = law.variable(var)
    n = shape.total_params if law.has_variable("N") and law.variable("N").convention == "total" else shape.non_embedding_params
    if var == "N":
        value = n
    elif var == "D":
        value = tokens
    elif var == "C":
        six_nd = given_compute if given_compute is not None else 6.0 * n * tokens  # N as the law counts it
        conventions = {"deepseek-MD": shape.flops_per_token_deepseek() * tokens, "6ND": six_nd}
        value = conventions.get(v.convention or "", compute)
    elif var == "R":
        value = tokens / n
    else:
        raise ScaleplanError(f"law '{law.name}': the planner cannot derive variable '{var}' from a model size")
    return LawInput(var, value, v.meaning)


def _prescribe_axes(
    law: LawFile, *, width: float | None, depth: float | None, params: float | None, tokens: float | None,
    batch_size: float | None, level: float, optimizer: str | None,
) -> Prescription:
    """Laws of a sweep's own axes (width W, depth L, D, batch B; N beside them for a weight-decay timescale law): the
    base lr eta at the target shape, the batch size where the law has one, then the per-role lrs (and lambdas) from
    the rules at that width and depth."""
    prediction = law.predict(level=level, width=width, depth=depth, params=params, tokens=tokens, batch_size=batch_size)
    inputs = [LawInput(v, val, law.variable(v).meaning if law.has_variable(v) else BATCH_MEANING) for v, val in prediction.inputs.items()]
    lr = prediction.values.get("lr")
    groups, residual, role_warnings = _per_role(law, lr, width, depth, optimizer, prediction)
    return Prescription(
        law=law.name,
        law_title=law.title,
        inputs=inputs,
        lr=lr,
        batch_size=prediction.values.get("batch_size"),
        batch_unit=_batch_unit(law),
        tokens=tokens,
        tokens_source="given" if tokens is not None else None,
        parametrization=None if law.parametrization is None else law.parametrization.name,
        per_group=groups,
        warnings=(*prediction.warnings, *role_warnings),
        width=width if groups else None,
        depth=depth if groups else None,
        residual_mult=residual,
        **_decay_fields(prediction),
    )


def _per_role(
    law: LawFile, lr: Estimate | None, width: float | None, depth: float | None, optimizer: str | None,
    prediction: Prediction | None = None,
) -> tuple[list[GroupLR], float | None, tuple[str, ...]]:
    """Per-role lrs (and init, forward, weight decay, Adam eps factors; each role's lambda where the prediction has
    one) at the target width and depth from the law's parametrization reference; CompleteP's residual multiplier.
    Nothing for SP laws or without a width."""
    ref = law.parametrization
    if lr is None or ref is None or ref.name == "sp" or width is None:
        return [], None, ()
    optimizer = optimizer or ref.optimizer
    if (optimizer == "sgd") != (ref.optimizer == "sgd"):
        raise ScaleplanError(
            f"law '{law.name}' was fitted with optimizer {ref.optimizer!r}; its lr does not transfer to {optimizer!r} "
            f"(drop --optimizer, or sweep with {optimizer})"
        )
    warnings: tuple[str, ...] = ()
    if ref.completep and depth is None:
        warnings = (f"law '{law.name}' uses CompleteP (base depth {ref.base_depth}): give --depth for its depth "
                    "multipliers (depth ratio 1 assumed)",)
    m, ratio = ref.width_multiplier(width), ref.depth_ratio(depth)
    rules = get_parametrization(ref.name)
    decay = (prediction.decay_convention if prediction is not None else None) or "torch"
    lam = None if prediction is None else prediction.values.get("weight_decay")
    groups = []
    for role in ROLES:
        if role in rules.rules:
            mult = rules.multipliers(role, m, optimizer, ratio, ref.completep, decay)
            groups.append(GroupLR(role, lr.value * mult.lr, mult.init_std, mult.forward, mult.weight_decay, mult.eps,
                                  None if lam is None else lam.value * mult.weight_decay))
    return groups, (residual_multiplier(ratio, True) if ref.completep else None), warnings

"""Prescriptions: what a law says to use for a target model (lr, per-layer lr, batch, tokens).

Laws disagree on what their inputs mean (Step Law: non-embedding N; DeepSeek: C = M*D with M
non-embedding FLOPs per token; Chinchilla: total N), so the planner builds the target's shape once and
hands each law the quantity in its own convention, recording which one it used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from scaleplan.core.rules import ROLES, get_parametrization, residual_multiplier
from scaleplan.errors import InputError, LawFileError, ScaleplanError
from scaleplan.laws import Estimate, LawFile, Prediction, load_law
from scaleplan.laws.schema import KNOWN_TARGETS, check_level
from scaleplan.plan.shape import DEFAULT_ASPECT, DEFAULT_SEQ_LEN, DEFAULT_VOCAB, ModelShape, non_embedding_from_total, shape_for
from scaleplan.plan.sizes import format_size

DEFAULT_TOKENS_LAW = "epoch-chinchilla"
# An explicit shape whose 12*L*d^2 is more than SHAPE_WARN times above or below the parameter count asked for is
# warned about (Gemma-7B's GeGLU FFN of 8d and 16 heads of 256 hold 2.4x its 12*L*d^2), one beyond SHAPE_REFUSE refused
# as a typo (a mixture of experts holds more: DeepSeek-V3's 671B are 18x its 12*L*d^2).
SHAPE_WARN = 2.0
SHAPE_REFUSE = 30.0


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
    optimizer: str | None = None  # what the per-role lrs are for: "adam", or "sgd, momentum 0.9" as the law's sweep trained
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
    seq_len: int = DEFAULT_SEQ_LEN,
    vocab: int = DEFAULT_VOCAB,
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
    _check_values(level, width, params, tokens, aspect)
    law = load_law(law) if isinstance(law, str) else law
    _check_targets(law)
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
    if batch_size is not None and "B" not in law.takes():
        raise ScaleplanError(f"law '{law.name}' does not depend on the batch size; drop --batch")
    if own_axes:
        for var, value, name in (("W", width, "width"), ("L", depth, "depth"), ("D", tokens, "tokens"), ("B", batch_size, "batch"),
                                 ("N", params, "params")):
            if var in law.needs() and value is None:
                raise ScaleplanError(f"law '{law.name}' is a law of {name} {var} ({law.variable(var).meaning}): give --{name}")
        given = {"--params": params is not None and "N" not in law.takes(), "--tokens": tokens is not None and "D" not in law.takes(),
                 "--compute": compute is not None,
                 # the shape of a model planned from its size: a law of a sweep's axes builds none
                 "--d-model": d_model is not None, "--layers": n_layers is not None, "--seq-len": seq_len != DEFAULT_SEQ_LEN,
                 "--vocab": vocab != DEFAULT_VOCAB, "--tied": tied, "--params-total": params_total, "--aspect": aspect != DEFAULT_ASPECT,
                 "--tokens-law": tokens_law != DEFAULT_TOKENS_LAW}
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

    given_compute = compute
    shape, source, tokens, tokens_source = _target_shape(tokens_file, loss_n_total, kw, params=params, tokens=tokens,
                                                         compute=compute, params_total=params_total, level=level)
    shape_warnings = _shape_warnings(shape, d_model, n_layers, source, law)
    assumed: tuple[str, ...] = ()
    if tokens is None and compute is not None:
        tokens, tokens_source = compute / (6.0 * shape.total_params), "C / (6N), N total"
    elif tokens is None:
        tokens = tokens_file.optimal_tokens(loss_n(shape))
        tokens_source = f"compute-optimal for N = {loss_n(shape):.3g} ({tokens_file.name}'s N)"
        if {"D", "C", "R"} & set(law.needs()):
            assumed = (f"no --tokens: D = {format_size(tokens)} is assumed, {tokens_source} ({tokens / loss_n(shape):.3g} "
                       f"tokens per parameter), and law '{law.name}' depends on it: give --tokens for the run you plan",)
    _check_counts(shape, tokens, tokens_source)
    compute = compute if compute is not None else 6.0 * shape.total_params * tokens

    inputs = [_law_input(law, var, shape, tokens, compute, given_compute) for var in law.needs()]
    keywords = {"N": "params", "D": "tokens", "C": "compute", "R": "tokens_per_param"}
    at = {keywords[i.name]: i.value for i in inputs}
    if law.loss_law is not None:  # a law with its own loss law predicts the loss at N (as it counts N) and D
        at.update(params=loss_n(shape), tokens=tokens)
    prediction = law.evaluate(level=level, batch_size=batch_size, **at)
    lr = prediction.values.get("lr")
    groups, residual, role_warnings = _per_role(law, lr, d_model or shape.d_model, depth or n_layers or shape.n_layers, optimizer,
                                                prediction)
    where = {"C": compute} if tokens_file.is_isoflop else {"N": loss_n(shape), "D": tokens}
    # the law's own prediction gave its flags and warned about its C, or its N and D
    loss_warnings = [] if tokens_file is law else [*(f"{tokens_file.name}: {w}" for w in tokens_file.extrapolation_warnings(where)),
                                                   *tokens_file.flag_warnings()]
    batch = prediction.values.get("batch_size")
    batch_unit = _batch_unit(law)
    return _finite_answer(Prescription(
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
        optimizer=_optimizer_setting(law, optimizer) if groups else None,
        per_group=groups,
        warnings=(*assumed, *shape_warnings, *prediction.warnings, *loss_warnings, *role_warnings),
        width=float(d_model or shape.d_model) if groups else None,
        depth=float(depth or n_layers or shape.n_layers) if groups else None,
        residual_mult=residual,
        **_decay_fields(prediction),
    ))


def _decay_fields(prediction: Prediction) -> dict[str, Any]:
    """The weight-decay timescale, lambda and convention of a prediction (empty for laws without them)."""
    if prediction.decay_convention is None:
        return {}
    return {"wd_tau": prediction.values.get("wd_tau"), "weight_decay": prediction.values.get("weight_decay"),
            "decay_convention": prediction.decay_convention}


def _batch_unit(law: LawFile) -> str | None:
    """The unit of the law's batch-size target (tokens, samples, sequences), if it has one."""
    return next((p.unit for p in law.power_laws if p.target == "batch_size"), None)


def _decay_batch_meaning(law: LawFile) -> str:
    """What --batch counts for a weight-decay law without a batch law: the unit of its D (lambda is linear in it)."""
    return f"batch size in {law.variable('D').unit}, the unit of D (turns the decay timescale into lambda)"


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
    # a width or depth the law does not take sets only the per-role rules (prescribe refused any other unused input)
    given = law.taken(width=width, depth=depth, params=params, tokens=tokens, batch_size=batch_size)
    if law.weight_decay is not None and not law.has_variable("B") and batch_size is not None and tokens is not None \
            and batch_size > tokens:
        raise InputError(f"--batch {format_size(batch_size)} is more than --tokens {format_size(tokens)} (both in the law's "
                         f"{law.variable('D').unit}): the run would be under one step; give the batch in the unit of D")
    prediction = law.evaluate(level=level, **given)
    inputs = [LawInput(v, val, law.variable(v).meaning if law.has_variable(v) else _decay_batch_meaning(law))
              for v, val in prediction.inputs.items()]
    lr = prediction.values.get("lr")
    groups, residual, role_warnings = _per_role(law, lr, width, depth, optimizer, prediction)
    return _finite_answer(Prescription(
        law=law.name,
        law_title=law.title,
        inputs=inputs,
        lr=lr,
        batch_size=prediction.values.get("batch_size"),
        batch_unit=_batch_unit(law),
        tokens=tokens,
        tokens_source="given" if tokens is not None else None,
        parametrization=None if law.parametrization is None else law.parametrization.name,
        optimizer=_optimizer_setting(law, optimizer) if groups else None,
        per_group=groups,
        warnings=(*prediction.warnings, *role_warnings),
        width=width if groups else None,
        depth=depth if groups else None,
        residual_mult=residual,
        **_decay_fields(prediction),
    ))


def _per_role(
    law: LawFile, lr: Estimate | None, width: float | None, depth: float | None, optimizer: str | None,
    prediction: Prediction | None = None,
) -> tuple[list[GroupLR], float | None, tuple[str, ...]]:
    """Per-role lrs (and init, forward, weight decay, Adam eps factors; each role's lambda where the prediction has
    one) at the target width and depth from the law's parametrization reference; CompleteP's residual multiplier.
    Nothing for SP laws or without a width; an --optimizer the law was not fitted for is refused (or warned) either way."""
    ref = law.parametrization
    warnings = _optimizer_check(law, optimizer)
    if lr is None or ref is None or ref.name == "sp":
        return [], None, warnings
    if width is None:  # a law of depth, D or B alone: its lr is eta, which the roles scale by the width trained
        return [], None, warnings + (f"law '{law.name}' is a {ref.name} law: its lr is the base lr eta, which each tensor "
                                     f"role scales by the width you train (base width {ref.base_width}); give --width for "
                                     "the per-role lrs, or let param_groups(model, prediction) set them",)
    optimizer = optimizer or ref.optimizer
    if ref.completep and depth is None:
        warnings += (f"law '{law.name}' uses CompleteP (base depth {ref.base_depth}): give --depth for its depth "
                     "multipliers (depth ratio 1 assumed)",)
    m, ratio = ref.width_multiplier(width), ref.depth_ratio(depth)
    warnings += _below_base(law, width, m)
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


def _optimizer_setting(law: LawFile, optimizer: str | None) -> str | None:
    """The optimizer the per-role lrs are for: --optimizer where it names another one of the law's family, else the
    law's own with SGD's momentum (its lr holds for that momentum only)."""
    ref = law.parametrization
    if ref is None:
        return optimizer
    return optimizer if optimizer not in (None, ref.optimizer) else ref.optimizer_setting


def _optimizer_check(law: LawFile, optimizer: str | None) -> tuple[str, ...]:
    """Refuse an --optimizer of another lr family than the law was fitted or published for (SGD's optimal lr and batch
    are not Adam's, per-role rules or not); warn where the law records no optimizer, so the choice goes unchecked."""
    fitted = law.parametrization.optimizer if law.parametrization is not None else None
    if optimizer is None or (law.lr_law() is None and _batch_unit(law) is None):
        return ()
    if fitted is None:
        return (f"law '{law.name}' does not record the optimizer it was fitted with, so --optimizer {optimizer} is not "
                "checked against it: make sure its lr and batch size are for that optimizer",)
    if (optimizer == "sgd") != (fitted == "sgd"):
        raise InputError(f"law '{law.name}' was fitted with optimizer {fitted!r}; its lr does not transfer to {optimizer!r} "
                         f"(drop --optimizer, or sweep with {optimizer} and fit a law of your own)")
    return ()


def _below_base(law: LawFile, width: float, m: float) -> tuple[str, ...]:
    """A width below the law's base width (m < 1): muP's rules are defined there, so the per-role lrs are printed, but
    apply_parametrization takes only a base no wider than the model, so param_groups cannot give a model this narrow
    the law's per-role lrs (and with the model as its own base, every role gets eta: not the law's muP at m < 1)."""
    ref = law.parametrization
    if m >= 1 or ref is None:
        return ()
    fitted = "" if "W" in law.fitted_range else "; nor does the law record a sweep this narrow"
    return (f"width {width:g} is below the law's base width {ref.base_width} (m = {m:.3g}): the per-role lrs are the rules' "
            f"at m < 1, but apply_parametrization needs a base no wider than the model, so param_groups cannot set them "
            f"(and the model as its own base gives every role eta){fitted}: set these lrs by hand, or train at a width of at "
            f"least {ref.base_width}",)


def _check_values(level: float, width: float | None, params: float | None, tokens: float | None, aspect: float) -> None:
    """Refuse values no target has: a level outside (0, 1), a fractional width, under one parameter or one token, an
    aspect ratio that is not a positive number (NaN passes click's range check)."""
    check_level(level)
    if not (math.isfinite(aspect) and aspect > 0):
        raise InputError(f"--aspect (d_model / layers) must be a positive finite number, e.g. 128; got {aspect}")
    if width is not None and not float(width).is_integer():
        raise InputError(f"--width {width:g} is not a whole number: a width counts units (the hidden size), e.g. --width 2048")
    for flag, value, unit in (("--params", params, "parameter"), ("--tokens", tokens, "token")):
        if value is not None and value < 1:
            raise InputError(f"{flag} {value:g} is less than one {unit}: it counts {unit}s (with suffixes k M B T, e.g. "
                             "--params 7B --tokens 2T)")


def _check_targets(law: LawFile) -> None:
    """Refuse a law with targets the planner does not read: it would print nothing for them and exit 0."""
    unknown = law.unknown_targets()
    if unknown:
        raise LawFileError(f"law '{law.name}' has a law for {', '.join(map(repr, unknown))}, which scaleplan predict does "
                           f"not know (it reads {', '.join(KNOWN_TARGETS)}, names are case-sensitive): rename the target "
                           "in the law file, or evaluate it from Python (LawFile.predict)")


def _target_shape(tokens_file: LawFile, loss_n_total: bool, kw: dict[str, Any], *, params: float | None,
                  tokens: float | None, compute: float | None, params_total: bool,
                  level: float) -> tuple[ModelShape, str | None, float | None, str | None]:
    """The target's shape; what its parameter count came from (None: from --d-model and --layers); its tokens and
    where they came from (None: not yet known)."""
    given = "given" if tokens is not None else None
    if params is not None:
        shape = non_embedding_from_total(params, **kw) if params_total else shape_for(params, **kw)
        return shape, f"--params {format_size(params)}{' total' if params_total else ''}", tokens, given
    if kw["d_model"] is not None and kw["n_layers"] is not None:
        return shape_for(None, **kw), None, tokens, given
    if compute is not None and tokens is None:
        n_opt, d_opt = tokens_file.compute_optimal(compute, level)
        how = "isoFLOP law" if tokens_file.is_isoflop else "loss law"
        source = (f"--compute {compute:.3g}: its compute-optimal model ({tokens_file.name}, {how}) of {n_opt.value:.3g} "
                  f"parameters{' total' if loss_n_total else ''}")
        shape = (non_embedding_from_total(n_opt.value, **kw, what=source, fix="give a larger --compute (or a smaller --vocab)")
                 if loss_n_total else shape_for(n_opt.value, **kw))
        return shape, source, d_opt.value, f"compute-optimal for C = {compute:.3g} FLOPs ({tokens_file.name}, {how})"
    if compute is not None and tokens is not None:
        n = compute / (6.0 * tokens)
        source = f"--compute {compute:.3g} with --tokens {format_size(tokens)} (N = C / 6D = {n:.3g} parameters total)"
        return non_embedding_from_total(n, **kw, what=source, fix="give a larger --compute or fewer --tokens"), source, tokens, given
    raise ScaleplanError("give --params (or --d-model and --layers, or --compute)")


def _shape_warnings(shape: ModelShape, d_model: int | None, n_layers: int | None, source: str | None,
                    law: LawFile) -> tuple[str, ...]:
    """Where the count a law of N reads and the shape disagree: a shape given alone (N is its 12*L*d^2, a 4x-MLP
    decoder's), or given beside a count far from its 12*L*d^2 (warned; refused beyond SHAPE_REFUSE, a typo)."""
    if source is None:
        if not law.has_variable("N"):
            return ()  # DeepSeek's M is written in L and d: the shape is its own convention
        return (f"N = 12*L*d^2 = {format_size(shape.non_embedding_params)} from --d-model {shape.d_model} and --layers "
                f"{shape.n_layers} (a decoder with a 4x MLP and full attention); gated or wider FFNs, GQA and experts hold "
                "another count: give --params with the model's non-embedding count",)
    flags = [flag for flag, v in (("--d-model", d_model), ("--layers", n_layers)) if v is not None]
    ratio = shape.counted_params / shape.non_embedding_params
    if not flags or 1 / SHAPE_WARN <= ratio <= SHAPE_WARN:
        return ()
    how = (f"{source} asks for {format_size(shape.non_embedding_params)} non-embedding parameters, but the shape (d_model "
           f"{shape.d_model}, layers {shape.n_layers}; {' and '.join(flags)} given) holds 12*L*d^2 = "
           f"{format_size(shape.counted_params)}, {max(ratio, 1 / ratio):.3g}x {'more' if ratio > 1 else 'fewer'}")
    if not 1 / SHAPE_REFUSE <= ratio <= SHAPE_REFUSE:
        raise InputError(f"{how}: drop {' and '.join(flags)} to derive the shape from the count, or correct the one mistyped")
    return (f"{how}: the law reads the count, the shape sets the width (wide or gated FFNs and experts hold more than "
            "12*L*d^2; if neither is one, check both)",)


def _check_counts(shape: ModelShape, tokens: float, tokens_source: str | None) -> None:
    """Refuse a target of under one parameter or one token (a budget too small to buy a model): every law would be
    evaluated at a meaningless point."""
    if shape.non_embedding_params < 1 or tokens < 1:
        raise InputError(f"the target comes to {shape.non_embedding_params:.3g} non-embedding parameters and {tokens:.3g} "
                         f"training tokens ({tokens_source}): fewer than one; give a larger --compute")


def _finite_answer(p: Prescription) -> Prescription:
    """`p`, refusing it when any number in it is not finite: an overflow would print inf or NaN as the answer (and
    invalid JSON)."""
    where = _non_finite(asdict(p), "")
    if where is not None:
        raise LawFileError(f"law '{p.law}': the prescription's {where} is not a finite number (the law's arithmetic "
                           "overflows at this target): check the law file's coefficients, or plan a target nearer its "
                           "fitted range")
    return p


def _non_finite(value: Any, path: str) -> str | None:
    """The path (e.g. `lr.high`) of the first non-finite float in nested dicts and lists; None when all are finite."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path or "value"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        found = _non_finite(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None

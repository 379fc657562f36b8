"""Render a Prescription as a readable table (rich), JSON or YAML."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from scaleplan.errors import ScaleplanError
from scaleplan.laws import Estimate
from scaleplan.plan.prescribe import Prescription
from scaleplan.plan.sizes import format_size


def to_dict(p: Prescription) -> dict[str, Any]:
    """Plain dict of the prescription (the JSON/YAML payload), shape with its derived counts."""
    d = asdict(p)
    if p.shape is not None:
        d["shape"].update(embedding_params=p.shape.embedding_params, total_params=p.shape.total_params)
    d["warnings"] = list(p.warnings)
    return d


def to_json(p: Prescription) -> str:
    """Strict JSON: a NaN or an infinity (never valid JSON) is refused, not printed."""
    try:
        return json.dumps(to_dict(p), indent=2, allow_nan=False)
    except ValueError:
        raise ScaleplanError(f"law '{p.law}': the prescription holds a non-finite number; refusing to print invalid JSON "
                             "(check the law file's coefficients)") from None


def to_yaml(p: Prescription) -> str:
    """Minimal YAML (block style) for the flat/nested dicts and lists of a prescription."""
    return "\n".join(_yaml_lines(to_dict(p), 0)) + "\n"


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.extend(_yaml_lines(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {_yaml_scalar(v)}")
    else:
        for item in value:
            sub = _yaml_lines(item, indent + 1) if isinstance(item, (dict, list)) else [f"{pad}  {_yaml_scalar(item)}"]
            lines.append(f"{pad}- {sub[0].strip()}")
            lines.extend(sub[1:])
    return lines


def _yaml_scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if v == [] or v == {}:
        return "[]" if v == [] else "{}"
    return json.dumps(str(v))


def _interval(e: Estimate, fmt: str = ".3g") -> str:
    if e.low is None or e.high is None:
        return "-"
    kind = "PI" if e.interval == "prediction" else "CI"
    how = "" if e.method is None else f", {e.method}"
    return f"{e.low:{fmt}} .. {e.high:{fmt}} ({e.level:.0%} {kind}{how})"


def to_table(p: Prescription) -> str:
    """The default human output: one table of prescriptions, one of the model, then warnings."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    buf = StringIO()
    console = Console(file=buf, width=120, force_terminal=False, highlight=False)
    table = Table(title=f"scaleplan prescription - law: {p.law}", title_justify="left", show_lines=False)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("interval")
    table.add_column("note")
    if p.lr is not None:
        what = "base lr eta (muP)" if p.per_group else "learning rate"
        table.add_row(what, f"{p.lr.value:.3g}", _interval(p.lr), "peak lr")
    if p.batch_size is not None:
        table.add_row(f"batch size ({p.batch_unit})", format_size(p.batch_size.value), _interval(p.batch_size), "")
    if p.wd_tau is not None:
        table.add_row("weight-decay timescale tau", f"{p.wd_tau.value:.3g}", _interval(p.wd_tau), "fraction of the run, B/(lr*lambda*D)"
                      if p.decay_convention == "torch" else "fraction of the run, B/(lambda*D)")
    if p.weight_decay is not None:
        what = "base weight decay lambda (muP)" if p.per_group else "weight decay lambda"
        table.add_row(what, f"{p.weight_decay.value:.3g}", _interval(p.weight_decay), f"AdamW, {p.decay_convention} convention, at this lr")
    elif p.wd_tau is not None:
        table.add_row("weight decay lambda", "-", "", "give --batch-size (in D's unit) to turn tau into lambda")
    if p.batch_sequences is not None and p.shape is not None:
        table.add_row("batch size (sequences)", str(p.batch_sequences), "", f"x {p.shape.seq_len} tokens")
    if p.tokens is not None:
        table.add_row("training tokens D", format_size(p.tokens), "", p.tokens_source or "")
    if p.compute is not None:
        table.add_row("compute 6ND", f"{p.compute:.3g}", "", "FLOPs, N total")
    if p.predicted_loss is not None:
        table.add_row("predicted loss", f"{p.predicted_loss:.3f}", "", "tokens law (their data/tokenizer)")
    for i in p.inputs:
        table.add_row(f"law input {i.name}", f"{i.value:.4g}", "", i.meaning)
    console.print(table)
    if any(e is not None and e.low is not None and e.interval != "prediction" for e in (p.lr, p.batch_size, p.wd_tau, p.weight_decay)):
        console.print("CI: the uncertainty of the law's coefficients only, not the scatter of the best value around the law "
                      "(a PI adds it): a refit of the same runs can land outside it (see the law file's notes)")
    if p.shape is not None:
        s = p.shape
        console.print(
            f"model: d_model {s.d_model}, layers {s.n_layers}, heads {s.n_heads}, vocab {s.vocab} "
            f"({'tied' if s.tied else 'untied'}); non-embedding {format_size(s.non_embedding_params)}, "
            f"total {format_size(s.total_params)} params; shape {s.derived}"
        )
    if p.per_group:
        where = f"width {p.width:g}" + ("" if p.depth is None else f", depth {p.depth:g}")
        setting = p.parametrization if p.optimizer is None else f"{p.parametrization}, {p.optimizer}"
        groups = Table(title=f"per-role hyperparameters at the target {where} ({setting})", title_justify="left")
        eps = any(g.eps_mult != 1.0 for g in p.per_group)
        lam = p.weight_decay is not None
        for col in ("role", "lr", "init std x", "forward x", "weight decay x", *(["Adam eps x"] if eps else []),
                    *(["weight decay"] if lam else [])):
            groups.add_column(col, justify="right" if col != "role" else "left")
        for g in p.per_group:
            groups.add_row(g.role, f"{g.lr:.3g}", f"{g.init_std_mult:.4g}", f"{g.forward_mult:.4g}", f"{g.weight_decay_mult:.4g}",
                           *([f"{g.eps_mult:.4g}"] if eps else []),
                           *([f"{g.weight_decay:.3g}"] if lam and g.weight_decay is not None else []))
        console.print(groups)
    if p.residual_mult is not None:
        console.print(f"CompleteP: residual branches x {p.residual_mult:.4g} (L_base / L)")
    for w in p.warnings:
        console.print(f"WARNING: {w}")
    return buf.getvalue()

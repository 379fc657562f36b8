"""`scaleplan coord-check`: run the coordinate check, print a table, write a PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from scaleplan.cli_types import FiniteFloat
from scaleplan.core.callables import import_callable
from scaleplan.errors import ScaleplanError
from scaleplan.limits import MAX_INIT_STD, MAX_LR, MAX_WIDTH
from scaleplan.outputs import ensure_writable, pyplot, save_figure

if TYPE_CHECKING:
    from scaleplan.diagnostics.roles import Inspection


BUILTIN_MODELS = ("mlp", "gpt", "denseam")


def _parse_widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise ScaleplanError(f"--widths must be a comma list of integers like 64,128,256, got {text!r}") from None
    if not widths or min(widths) < 1 or max(widths) > MAX_WIDTH:
        raise ScaleplanError(f"--widths must be integers from 1 to {MAX_WIDTH}, got {text!r}")
    if len(set(widths)) < 2 or len(set(widths)) != len(widths):
        raise ScaleplanError(f"--widths needs at least 2 different widths, each once (the check compares widths), got {text!r}")
    return widths


def plot_coord_check(frame, path: Path, title: str) -> None:  # frame: pandas.DataFrame
    """One panel per step: mean |activation| against width (log-log), one line per layer."""
    plt = pyplot()
    steps = sorted(frame["step"].unique())
    fig, axes = plt.subplots(1, len(steps), figsize=(3.2 * len(steps), 3.2), sharey=True, squeeze=False)
    for ax, step in zip(axes[0], steps):
        at_step = frame[(frame["step"] == step) & (frame["mean_abs"] > 0)]
        for layer, rows in at_step.groupby("layer", sort=False):
            ax.plot(rows["width"], rows["mean_abs"], marker="o", markersize=3, linewidth=1, label=layer)
        ax.set(xscale="log", yscale="log", xlabel="width", title=f"step {step}")
    axes[0][0].set_ylabel("mean |activation|")
    axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


@click.command("coord-check")
@click.option("--model", "model_name", default="mlp", show_default=True,
              help="mlp, gpt, denseam, or your own builder pkg.mod:build_fn (width -> (model, batch))")
@click.option("--parametrization", default="mup", show_default=True, help="sp, mup or denseam")
@click.option("--widths", default="64,128,256,512,1024", show_default=True, help="comma list of widths")
@click.option("--steps", default=3, show_default=True, type=click.IntRange(1, 10_000), help="optimizer steps")
@click.option("--lr", default=None, type=FiniteFloat(0, MAX_LR, min_open=True),
              help=f"base learning rate, above 0 and at most {MAX_LR:g} (default: per built-in model, 1e-3 for your own; "
                   "too small an lr barely moves the readout in 3 steps, and muP's readout then shrinks with the width)")
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(1, 1_000))
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True)
@click.option("--init-std", type=FiniteFloat(0, MAX_INIT_STD, min_open=True), default=None,
              help=f"init std at the base width, above 0 and at most {MAX_INIT_STD:g} (your own model; default: keep its init)")
@click.option("--eps", type=FiniteFloat(0, 1, min_open=True), default=1e-8, show_default=True,
              help="Adam eps at the base width (a relu-poly DenseAM of degree >= 5 needs 1e-12 or less)")
@click.option("--out", "out_dir", default="coord-check", show_default=True, type=click.Path(file_okay=False), help="directory for the PNG")
def coord_check(
    model_name: str, parametrization: str, widths: str, steps: int, lr: float | None, seeds: int, optimizer: str, init_std: float | None,
    eps: float, out_dir: str
) -> None:
    """Mean |activation| per layer over a few training steps across widths (flat under muP)."""
    width_list = _parse_widths(widths)  # bad input fails before torch is imported
    builtin = ":" not in model_name
    if builtin and model_name not in BUILTIN_MODELS:
        raise ScaleplanError(f"unknown model {model_name!r}; use one of {', '.join(BUILTIN_MODELS)} or pkg.mod:build_fn")
    if builtin and init_std is not None:
        raise ScaleplanError("--init-std is for your own model (--model pkg.mod:build_fn); the reference models keep theirs")
    label = model_name if builtin else model_name.replace(":", ".").replace("/", "_")
    path = ensure_writable(Path(out_dir) / f"coord_check_{label}_{parametrization}.png", "plot")
    build = None if builtin else import_callable(model_name, "model builder")
    import torch

    from functools import partial

    from scaleplan.diagnostics.coord_check import builtin_batch, coord_check_model, dropout_rates, first_divergence, parametrize_built
    from scaleplan.diagnostics.coord_check import coord_check as run_coord_check
    from scaleplan.diagnostics.coord_check import refuse_oversized, width_ratios, width_table

    torch.set_num_threads(1)
    widest, narrowest = max(width_list), min(width_list)
    refuse_oversized(partial(builtin_batch, model_name, widest, parametrization, narrowest) if build is None
                     else partial(parametrize_built, build, parametrization, widest, narrowest, init_std), widest)
    if build is None:
        frame = run_coord_check(model_name, parametrization, width_list, steps=steps, lr=lr, seeds=seeds, optimizer=optimizer, eps=eps)
    else:
        frame = coord_check_model(build, parametrization, width_list, steps=steps, lr=1e-3 if lr is None else lr, seeds=seeds,
                                  optimizer=optimizer, init_std=init_std, eps=eps)
    diverged = first_divergence(frame)
    if diverged is not None and diverged[1] == 0:  # before any update: the lr cannot be why
        raise ScaleplanError(f"coord-check: activations are non-finite at width {diverged[0]} at initialization, before any "
                             "step; check the model's init and its batch")
    if diverged is not None:  # a table of nan says nothing about the parametrization
        raise ScaleplanError(f"coord-check: activations went non-finite at width {diverged[0]} by step {diverged[1]} "
                             f"(lr {'the default' if lr is None else lr} diverged); lower --lr")
    table = width_table(frame, steps)
    table["ratio"] = width_ratios(frame, steps)
    dropout = None if build is None else dropout_rates(build, narrowest)
    if dropout:
        click.echo(f"note: the model trains with dropout ({dropout}): its noise shrinks the ratios and can hide a growing "
                   "layer (SP's readout grew 3.1x over 16x in width without it, 1.5x with p = 0.5); set p = 0 for the check",
                   err=True)
    click.echo(f"mean |activation| after {steps} steps ({model_name}, {parametrization}); ratio = widest / narrowest")
    click.echo(table.to_string(float_format=lambda v: f"{v:.4g}"))
    plot_coord_check(frame, path, f"{label} / {parametrization} / {optimizer}")
    click.echo(f"plot: {path}")


@click.command("roles")
@click.option("--model", "model_name", required=True,
              help="your builder pkg.mod:build_fn (width -> (model, batch)), as coord-check takes it; or mlp, gpt, denseam")
@click.option("--width", required=True, type=click.IntRange(1, MAX_WIDTH), help="the width to show the model at")
@click.option("--base-width", required=True, type=click.IntRange(1, MAX_WIDTH), help="the width the lr was (or will be) tuned at")
@click.option("--parametrization", default="mup", show_default=True, help="sp, mup or denseam")
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd"]), default="adam", show_default=True,
              help="whose per-role lr rules to show")
@click.option("--init-std", type=FiniteFloat(0, MAX_INIT_STD, min_open=True), default=None,
              help="init std at the base width (your own model; default: keep its init)")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--strict", is_flag=True, help="exit 1 when scaleplan warns about the model (for CI)")
def roles(model_name: str, width: int, base_width: int, parametrization: str, optimizer: str, init_std: float | None,
          fmt: str, strict: bool) -> None:
    """Each tensor's role and muP factors at a width, and every warning about the model (apply, first forward, first step)."""
    builtin = ":" not in model_name
    if builtin and model_name not in BUILTIN_MODELS:
        raise ScaleplanError(f"unknown model {model_name!r}; use one of {', '.join(BUILTIN_MODELS)} or pkg.mod:build_fn")
    if builtin and init_std is not None:
        raise ScaleplanError("--init-std is for your own model (--model pkg.mod:build_fn); the reference models keep theirs")
    if base_width > width:
        raise ScaleplanError(f"--base-width {base_width} is larger than --width {width}; show the model at a width >= its base")
    build = None if builtin else import_callable(model_name, "model builder")
    import json
    from dataclasses import asdict
    from functools import partial

    import torch

    from scaleplan.diagnostics.coord_check import builtin_batch, parametrize_built, refuse_oversized
    from scaleplan.diagnostics.roles import inspect_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    make = (partial(builtin_batch, model_name, width, parametrization, base_width) if build is None
            else partial(parametrize_built, build, parametrization, width, base_width, init_std))
    refuse_oversized(make, width)
    found = inspect_model(make, optimizer)
    if fmt == "json":
        click.echo(json.dumps({"model": model_name, "width": width, "base_width": base_width, "parametrization": parametrization,
                               "optimizer": optimizer, **asdict(found)}, indent=2))
    else:
        _print_roles(found, f"{model_name} at width {width}, base width {base_width} ({parametrization}, {optimizer})")
    if strict and found.warnings:
        raise SystemExit(1)


def _print_roles(found: Inspection, title: str) -> None:
    """The role table (factors relative to the base width's), the module multipliers and the warnings, one per line."""
    import pandas as pd

    eps = any(r.eps != 1.0 for r in found.tensors)
    frame = pd.DataFrame([{"tensor": r.name, "shape": "x".join(map(str, r.shape)) or "scalar", "role": r.role,
                           "m": f"{r.m:g}" if r.m_out is None else f"{r.m:g} (out {r.m_out:g})", "lr x": r.lr,
                           "init std x": r.init_std, "forward x": r.forward, "weight decay x": r.weight_decay,
                           **({"Adam eps x": r.eps} if eps else {})} for r in found.tensors])
    click.echo(f"roles of {title}; factors relative to the base width's")
    click.echo(frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if found.sites:
        click.echo("multipliers on modules (attention: on the logits, relative to SP's 1/sqrt(d_head))")
        sites = pd.DataFrame([{"module": s.module, "site": s.kind, "multiplier": s.multiplier} for s in found.sites])
        click.echo(sites.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    click.echo(f"{len(found.warnings)} warning(s)" + (":" if found.warnings else ""))
    for message in found.warnings:
        click.echo(f"warning: {' '.join(message.split())}")

"""The plain-text summary `scaleplan fit` prints: one row per cell (or budget), each law with its intervals, flags."""

from __future__ import annotations

import numpy as np

from scaleplan.fit.data import Trials
from scaleplan.fit.hyperparameter_law import HyperparameterFit
from scaleplan.fit.isoflop import IsoflopFit
from scaleplan.fit.loss_law import LossLawFit
from scaleplan.fit.power_law import PowerLawFit

CELL_FLAGS = (("edge", "at_edge"), ("batch-edge", "batch_at_edge"), ("argmin-fallback", "fallback"),
              ("outside-window", "outside_window"), ("recentred", "recentred"), ("flat", "flat"), ("flat-end", "flat_end"),
              ("between-basins", "between_basins"))


def format_summary(trials: Trials, hyper: HyperparameterFit | None, loss: LossLawFit | None,
                   isoflop: IsoflopFit | None = None, flags: list[str] | tuple[str, ...] = ()) -> str:
    """Cells (or budgets) with their optima and flags, the fitted laws with their intervals, then every flag."""
    lines = []
    if hyper is not None:
        lines += _cells(trials, hyper)
    elif isoflop is not None:
        lines += _budgets(trials, isoflop)
    else:
        lines.append(f"loss-only data: {len(trials.frame)} runs, no lr column")
        if trials.dropped:
            lines.append("excluded: " + ", ".join(f"{n} {why}" for why, n in trials.dropped.items()))
    if loss is not None:
        law = loss.law
        lines.append(f"loss law: L = {law.E:.4g} + {law.A:.4g}/N^{law.alpha:.4f} + {law.B:.4g}/D^{law.beta:.4f}")
        lines.append(f"  fitted by {loss.describe()}")
        for name, (lo, hi) in loss.conf_int.items():
            lines.append(f"  {name}: {getattr(law, name):.4g}  bootstrap {loss.n_boot} CI [{lo:.4g}, {hi:.4g}]")
    if flags:
        lines += ["", "flags:", *(f"  - {f}" for f in flags)]
    return "\n".join(lines)


def _cells(trials: Trials, hyper: HyperparameterFit) -> list[str]:
    lines = [f"method: {hyper.label}; {len(trials.frame)} trials in {len(hyper.optima)} cells"]
    if trials.dropped:
        lines.append("excluded: " + ", ".join(f"{n} {why}" for why, n in trials.dropped.items()))
    model = any(o.model is not None for o in hyper.optima)
    header = f"{trials.x:>10} {'D':>10} {'model':>12} " if model else f"{trials.x:>10} {'D':>10} "
    header += f"{'trials':>6} {'lr*':>10} {'lr* CI':>21} {'B*':>10} {'loss':>9}  flags"
    lines += ["", header, "-" * len(header)]
    for o, (lo, hi) in zip(hyper.optima, hyper.cell_lr_ci):
        cell_flags = ",".join(name for name, attr in CELL_FLAGS if getattr(o, attr))
        tokens = "-" if o.tokens is None else f"{o.tokens:.3g}"
        batch = "-" if o.batch_size is None else f"{o.batch_size:.4g}"
        ci = "-" if lo != lo else f"[{lo:.3g}, {hi:.3g}]"
        row = f"{o.size:>10.4g} {tokens:>10} " + (f"{o.model or '-':>12} " if model else "")
        lines.append(row + f"{o.n_trials:>6} {o.lr:>10.4g} {ci:>21} {batch:>10} {o.loss:>9.5g}  {cell_flags}")
    lines.append("")
    for fit in (hyper.lr, hyper.batch_size):
        if fit is not None:
            lines.append(format_power_law(fit, hyper.n_boot))
    if hyper.n_boot_failed:
        lines.append(f"  ({hyper.n_boot_failed} of {hyper.n_boot} bootstrap replicates were degenerate and skipped)")
    return lines


def _budgets(trials: Trials, iso: IsoflopFit) -> list[str]:
    lines = [f"method: {iso.label}; {len(trials.frame)} runs in {len(iso.budgets)} budgets"]
    header = f"{'C':>10} {'runs':>5} {'N*':>10} {'N* CI':>21} {'D*':>10} {'loss':>9}  flags"
    lines += ["", header, "-" * len(header)]
    for b in iso.budgets:
        flags = ",".join(name for name, on in (("edge-excluded", b.at_edge), ("outside-window", b.outside_window),
                                                ("argmin-fallback", b.fallback)) if on)
        ci = "-" if b.n_ci[0] != b.n_ci[0] else f"[{b.n_ci[0]:.3g}, {b.n_ci[1]:.3g}]"
        lines.append(f"{b.compute:>10.3g} {b.n_points:>5} {b.n_opt:>10.4g} {ci:>21} {b.d_opt:>10.4g} {b.loss:>9.5g}  {flags}")
    lines += ["", format_power_law(iso.n_law, iso.n_boot), format_power_law(iso.d_law, iso.n_boot)]
    if iso.loss_law is not None:
        p = iso.loss_law.params
        lines.append(f"loss at the optimum: L* = {p['E']:.4g} + {p['A']:.4g}/C^{p['alpha']:.4f}  (Huber on log L*, "
                     f"{iso.loss_law.starts_reached} of {iso.loss_law.starts_run} starts reached the optimum)")
    return lines


def format_power_law(fit: PowerLawFit, n_boot: int) -> str:
    """`lr = 1.2 * N^-0.77 * D^0.20` then one line per exponent with its t, bootstrap-over-cells and bootstrap CIs."""
    terms = "".join(f" * {v}^{e:.4f}" for v, e in fit.exponents.items())
    terms += "".join(f" * {t.formula()}" for t in fit.extra_terms)
    constant = f"{fit.offset:.4g} + " if fit.offset else ""  # fit --offset: held fixed, not fitted
    out = [f"{fit.target} = {constant}{np.exp(fit.intercept):.4g}{terms}   ({fit.n_points} points in {fit.n_cells} cells, "
           f"{fit.covariance_kind}, dof {fit.dof})"]
    named = [*((v, f"{v} exponent", e) for v, e in fit.exponents.items()),
             *((i.name, f"{i.name} interaction", i.coefficient) for i in fit.interactions),
             *((c.name, f"{c.name} correction", c.coefficient) for c in fit.corrections)]
    for v, what, e in named:
        lo, hi = fit.conf_int[v]
        text = f"  {what} {e:.4f}  {fit.level:.0%} CI t [{lo:.4f}, {hi:.4f}]"
        if v in fit.cell_bootstrap_ci:
            clo, chi = fit.cell_bootstrap_ci[v]
            text += f"  cells bootstrap ({fit.n_cell_boot}) [{clo:.4f}, {chi:.4f}]"
        if v in fit.bootstrap_ci:
            blo, bhi = fit.bootstrap_ci[v]
            text += f"  bootstrap ({n_boot}) [{blo:.4f}, {bhi:.4f}]"
        out.append(text)
    out.append(f"  prediction intervals: {interval_rule(fit)}")
    return "\n".join(out)


def interval_rule(fit: PowerLawFit) -> str:
    """Which intervals a prediction from this law takes the wider of (stated in the summary and the law file)."""
    parts = []
    if fit.covariance is not None:
        parts.append(f"t with {fit.dof} dof ({fit.covariance_kind} covariance)")
    if fit.cell_bootstrap_covariance is not None:
        parts.append(f"the bootstrap over {fit.n_cells} cells ({fit.n_cell_boot} replicates, normal quantile)")
    if not parts:
        return "none (no usable covariance)"
    scatter = " + the residual scatter" if fit.residual_variance is not None else ""
    return ("the wider of " + " and ".join(parts) if len(parts) > 1 else parts[0]) + scatter + ", at each point"

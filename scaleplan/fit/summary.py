"""The plain-text summary `scaleplan fit` prints: one row per cell, then each law with its intervals."""

from __future__ import annotations

import numpy as np

from scaleplan.fit.data import Trials
from scaleplan.fit.hyperparameter_law import HyperparameterFit
from scaleplan.fit.loss_law import LossLawFit
from scaleplan.fit.power_law import PowerLawFit


def format_summary(trials: Trials, hyper: HyperparameterFit, loss: LossLawFit | None) -> str:
    """Cells table (size, D, trials, lr* with its bootstrap CI, B*, loss, flags) and the fitted laws."""
    lines = [f"method: {hyper.label}; {len(trials.frame)} trials in {len(hyper.optima)} cells"]
    if trials.dropped:
        lines.append("excluded: " + ", ".join(f"{n} {why}" for why, n in trials.dropped.items()))
    header = f"{trials.x:>10} {'D':>10} {'trials':>6} {'lr*':>10} {'lr* CI':>21} {'B*':>10} {'loss':>9}  flags"
    lines += ["", header, "-" * len(header)]
    for o, (lo, hi) in zip(hyper.optima, hyper.cell_lr_ci):
        flags = ",".join(f for f, on in (("edge", o.at_edge), ("argmin-fallback", o.fallback)) if on)
        tokens = "-" if o.tokens is None else f"{o.tokens:.3g}"
        batch = "-" if o.batch_size is None else f"{o.batch_size:.4g}"
        ci = "-" if lo != lo else f"[{lo:.3g}, {hi:.3g}]"
        lines.append(f"{o.size:>10.4g} {tokens:>10} {o.n_trials:>6} {o.lr:>10.4g} {ci:>21} {batch:>10} {o.loss:>9.5g}  {flags}")
    lines.append("")
    for fit in (hyper.lr, hyper.batch_size):
        if fit is not None:
            lines.append(format_power_law(fit, hyper.n_boot))
    if hyper.n_boot_failed:
        lines.append(f"  ({hyper.n_boot_failed} of {hyper.n_boot} bootstrap replicates were degenerate and skipped)")
    if any(o.at_edge for o in hyper.optima):
        lines.append("warning: some optima touch the edge of the swept lr range (flag 'edge'): widen the lr grid there")
    if loss is not None:
        law = loss.law
        lines.append(
            f"loss law: L = {law.E:.4g} + {law.A:.4g}/N^{law.alpha:.4f} + {law.B:.4g}/D^{law.beta:.4f} "
            f"({loss.n_points} cells, Huber on log L)"
        )
        for name, (lo, hi) in loss.conf_int.items():
            lines.append(f"  {name}: {getattr(law, name):.4g}  bootstrap {loss.n_boot} CI [{lo:.4g}, {hi:.4g}]")
    return "\n".join(lines)


def format_power_law(fit: PowerLawFit, n_boot: int) -> str:
    """`lr = 1.2 * N^-0.77 * D^0.20` then one line per exponent with its regression and bootstrap CIs."""
    terms = "".join(f" * {v}^{e:.4f}" for v, e in fit.exponents.items())
    out = [f"{fit.target} = {np.exp(fit.intercept):.4g}{terms}   ({fit.n_points} points, {fit.covariance_kind}, dof {fit.dof})"]
    for v, e in fit.exponents.items():
        lo, hi = fit.conf_int[v]
        text = f"  {v} exponent {e:.4f}  {fit.level:.0%} CI [{lo:.4f}, {hi:.4f}]"
        if v in fit.bootstrap_ci:
            blo, bhi = fit.bootstrap_ci[v]
            text += f"  bootstrap ({n_boot}) [{blo:.4f}, {bhi:.4f}]"
        out.append(text)
    return "\n".join(out)

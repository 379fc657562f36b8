"""The plain-text summary of a multi-axis fit: one row per cell, the laws, the lr-batch exponent, the critical batch."""

from __future__ import annotations

import math

from scaleplan.fit.data import Trials
from scaleplan.fit.multi_axis import MultiAxisFit, SizeCriticalBatch, lr_batch_by_group
from scaleplan.fit.summary import format_power_law
from scaleplan.fit.surge import SurgeFit

# The lr-batch exponents of the two textbook rules (below the critical batch): Adam square-root, SGD linear.
RULES = {"adam": 0.5, "adamw": 0.5, "sgd": 1.0}


def format_surge(surge: SurgeFit, n_boot: int) -> str:
    """The surge-family law (the law file's lr law, in place of the power law above it) with its parameters' intervals."""
    law = surge.law
    out = [f"lr ({law.form} form; the law file's lr law) = {law.formula()}   ({surge.n_cells} cells, unweighted least squares, "
           f"dof {law.dof}, rms of ln lr* {surge.rms:.3f})"]
    for name, value in zip(law.coefficient_names(), law.coefficients()):
        lo, hi = surge.conf_int[name]
        text = f"  {name} {value:.4f}  {surge.level:.0%} CI t [{lo:.4f}, {hi:.4f}]"
        if name in surge.bootstrap_ci:
            blo, bhi = surge.bootstrap_ci[name]
            text += f"  bootstrap ({n_boot}) [{blo:.4f}, {bhi:.4f}]"
        out.append(text)
    steps = sorted({round(float(x), 6) for x in surge.log_steps})
    out.append("  B_noise(S) at the swept steps: " + ", ".join(f"S = {math.exp(x):.4g}: {law.noise_scale(math.exp(x)):.4g}"
                                                            for x in (steps[0], steps[len(steps) // 2], steps[-1])))
    out.append(f"  prediction intervals: t with {law.dof} dof (Jacobian covariance) + the residual scatter")
    return "\n".join(out)


def format_multi_axis(trials: Trials, fit: MultiAxisFit, critical: list[SizeCriticalBatch], optimizer: str | None = None) -> str:
    """Cells table, the lr and batch laws with their intervals, the lr-batch exponent against sqrt(B) and B,
    and each size's critical batch."""
    lines = [f"method: {fit.label}; {len(trials.frame)} trials in {len(fit.optima)} cells"]
    if trials.dropped:
        lines.append("excluded: " + ", ".join(f"{n} {why}" for why, n in trials.dropped.items()))
    header = " ".join(f"{c:>10}" for c in fit.columns) + f" {'trials':>6} {'lr*':>10} {'lr* CI':>21} {'loss':>9}  flags"
    lines += ["", header, "-" * len(header)]
    for cell, o, (lo, hi) in zip(fit.cells, fit.optima, fit.cell_lr_ci):
        flags = ",".join(f for f, on in (("edge", o.at_edge), ("argmin-fallback", o.fallback)) if on)
        ci = "-" if lo != lo else f"[{lo:.3g}, {hi:.3g}]"
        coords = " ".join(f"{cell.coords[c]:>10.4g}" for c in fit.columns)
        lines.append(f"{coords} {o.n_trials:>6} {o.lr:>10.4g} {ci:>21} {o.loss:>9.5g}  {flags}")
    lines.append("")
    lines.append(format_power_law(fit.lr, fit.n_boot))
    if fit.surge is not None:
        lines.append(format_surge(fit.surge, fit.n_boot))
    exponent = fit.lr_batch_exponent
    if exponent is not None:
        lo, hi = fit.lr.conf_int["B"]
        rule = RULES.get(optimizer or "")
        versus = "" if rule is None else f"; the {optimizer} rule says {rule:g} ({'inside' if lo <= rule <= hi else 'outside'} the CI)"
        term = fit.batch_by_d
        at = "" if term is None else f"D = {term.centre[1]:.4g} and "
        lines.append(f"lr-batch exponent at {at}fixed {', '.join(c for c in fit.columns if c != 'batch_size')}: "
                     f"{exponent:.3f} [{lo:.3f}, {hi:.3f}] ({fit.lr.level:.0%}); sqrt(B): 0.5, B: 1{versus}")
        for g in lr_batch_by_group(fit):
            where = ", ".join(f"{k}={v:.4g}" for k, v in g.coords.items())
            law = "" if term is None else f"; the law's B:D term: {exponent + term.shift('B', g.coords['D']):.3f}"
            lines.append(f"  within {where}: {g.exponent:.3f} [{g.low:.3f}, {g.high:.3f}] over {g.n_batches} batch sizes{law}")
    if fit.batch_optima:
        lines.append("")
        for b in fit.batch_optima:
            where = ", ".join(f"{k}={v:.4g}" for k, v in b.coords.items())
            edge = "  (edge: B* at the end of the swept batch sizes)" if b.optimum.at_edge else ""
            lines.append(f"B* at {where}: {b.batch:.4g} (batch sizes {', '.join(f'{x:g}' for x in b.batches)}){edge}")
        if fit.batch_size is not None:
            lines.append(format_power_law(fit.batch_size, fit.n_boot))
        else:
            lines.append("no batch-size law: too few B* inside the swept batch sizes to fit one (the others are at its "
                         "edge; see the flags)")
    for c in critical:
        where = ", ".join(f"{k}={v:.4g}" for k, v in c.coords.items()) or "the swept size"
        steps = (f"steps to loss {c.steps.target_loss:.4g}: " + ", ".join(f"B={b:g}: {s:.0f}" for b, s in zip(c.steps.batch, c.steps.steps))
                 + ("" if not c.steps.skipped else f" (below the target at the shortest run: B={', '.join(f'{b:g}' for b in c.steps.skipped)})"))
        if c.determined:
            se = c.fit.se_ln_b_crit
            interval = f" (x/ {math.exp(1.96 * se):.3g} at 95%)" if math.isfinite(se) and se < 5 else " (no interval: S(B) does not pin it)"
            lines.append(f"critical batch at {where}: B_crit = {c.fit.b_crit:.4g}{interval}, S_min = {c.fit.s_min:.4g} steps; {steps}")
        else:
            lines.append(f"critical batch at {where}: not determined ({undetermined_reason(c)}); {steps}")
    if any(o.at_edge for o in fit.optima):
        lines.append("warning: some optima touch the edge of the swept lr range (flag 'edge'): widen the lr grid there")
    return "\n".join(lines)


def undetermined_reason(c: SizeCriticalBatch) -> str:
    """Why S(B) does not pin B_crit: the steps fall as 1/B over every swept batch (B_crit above them), barely fall
    (below them), or follow no S_min (1 + B_crit / B) curve."""
    batch = c.steps.batch
    if c.side > 0:
        return (f"above the swept batch sizes: the steps fall nearly as 1/B up to B={batch.max():g}, and an lr law of B "
                "extrapolated beyond them holds only while B stays below the unmeasured B_crit")
    if c.side < 0:
        return f"below the swept batch sizes: the steps barely fall with B from B={batch.min():g} on"
    return "S(B) does not follow S_min (1 + B_crit / B) over these batch sizes"

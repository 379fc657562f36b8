"""The validation report: the classic transfer figure (PNG) and a Markdown page with the regret tables."""

from __future__ import annotations

import math
from pathlib import Path

from scaleplan.outputs import pyplot, save_figure
from scaleplan.validate.experiment import SpecValidation


def plot_transfer(results: list[SpecValidation], path: Path) -> Path:
    """Held-out loss vs lr, one curve per width (swept widths and the target), one panel per spec."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.2), squeeze=False)
    for ax, r in zip(axes[0], results):
        widths = [*sorted(r.small_curves), r.target_width]
        cmap = plt.get_cmap("viridis")
        for i, w in enumerate(widths):
            curve = r.target_grid if w == r.target_width else r.small_curves[w]
            pts = [p for p in curve if math.isfinite(p.mean)]
            style = dict(lw=2.4, marker="o", ms=3) if w == r.target_width else dict(lw=1.2, marker=".", ms=4)
            ax.plot([p.lr for p in pts], [p.mean for p in pts], color=cmap(i / max(1, len(widths) - 1)),
                    label=f"width {w}" + (" (target)" if w == r.target_width else ""), **style)
        ax.axvline(r.predicted.lr, color="tab:red", ls="--", lw=1.2, label=f"predicted (regret {r.predicted.regret:.2%})")
        ax.axvline(r.naive.lr, color="tab:gray", ls=":", lw=1.2, label=f"naive (regret {r.naive.regret:.2%})")
        finite = [p.mean for p in r.target_grid if math.isfinite(p.mean)]
        low = min(min(p.mean for p in c if math.isfinite(p.mean)) for c in [r.target_grid, *r.small_curves.values()])
        ax.set_ylim(low * 0.97, max(finite) * 1.08 if finite else None)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (base lr eta)")
        ax.set_ylabel("held-out loss (mean over seeds)")
        ax.set_title(f"{r.name}: {r.parametrization}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def markdown(results: list[SpecValidation], figure: str, command: str) -> str:
    """The report page: how to reproduce it, the regret table, and how far lr* moved with width."""
    lines = [
        "# Transfer validation",
        "",
        f"Reproduce: `{command}`",
        "",
        "Regret = L(lr) / L(best lr at the target) - 1, held-out loss, mean over seeds (same seeds for every lr);",
        "± is one standard error from the seed spread (the seeds of two lrs treated as independent, which overstates it).",
        "*Predicted*: the fitted law lr*(width) evaluated at the target width. *Naive*: the optimum of the widest",
        "swept width reused unchanged. *Best*: the best of a dense lr grid (2^0.5 steps) trained at the target.",
        "",
        f"![transfer figure]({figure})",
        "",
        "| spec | parametrization | swept widths | target | seeds | predicted lr (95% PI) | regret (± s.e.) | naive lr | naive regret (± s.e.) | best lr | best loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lo, hi = r.predicted_interval
        pi = f" ({lo:.3g}-{hi:.3g})" if lo is not None and hi is not None else ""
        lines.append(
            f"| {r.name} | {r.parametrization} | {', '.join(map(str, r.widths))} | {r.target_width} "
            f"({r.target_width // max(r.widths)}x widest, {r.target_width // min(r.widths)}x narrowest) | {len(r.seeds)} | "
            f"{r.predicted.lr:.3g}{pi} | **{r.predicted.regret:.2%}** ± {r.predicted.regret_se:.2%} | {r.naive.lr:.3g} | "
            f"{r.naive.regret:.2%} ± {r.naive.regret_se:.2%} | "
            f"{r.predicted.best_lr:.3g}{' (grid edge: regrets are lower bounds)' if r.best_on_edge else ''} | "
            f"{r.predicted.best_loss:.4f} |"
        )
    lines += ["", "## How far the optimal lr moves with width", ""]
    lines += ["| spec | width | lr* (parabola) | 95% bootstrap CI | log2 shift vs narrowest |", "|---|---|---|---|---|"]
    for r in results:
        for o in r.optima:
            lines.append(f"| {r.name} | {o.width} | {o.lr:.3g} | {o.low:.3g}-{o.high:.3g} | {math.log2(o.lr / r.optima[0].lr):+.2f} |")
        lines.append(f"| {r.name} | {r.target_width} (target, best of grid) | {r.predicted.best_lr:.3g} | - | {r.target_drift_log2:+.2f} |")
    lines += ["", "## Fitted laws", ""]
    for r in results:
        lines.append(f"- {r.name}: lr*(W) = {r.law_formula} (W = width; {r.fit_method}), law file `{r.law_path}`; "
                     f"{r.steps} steps, batch {r.batch_size}.")
    lines += ["", "## Target lr grid (held-out loss per seed)", ""]
    for r in results:
        lines.append(f"{r.name} at width {r.target_width}:")
        lines.append("")
        lines.append("| lr | mean | per seed |")
        lines.append("|---|---|---|")
        for p in sorted([*r.target_grid, r.predicted_point, r.naive_point], key=lambda p: p.lr):
            tag = " (predicted)" if p is r.predicted_point else " (naive)" if p is r.naive_point else ""
            lines.append(f"| {p.lr:.4g}{tag} | {p.mean:.4f} | {', '.join(f'{x:.4f}' for x in p.losses)} |")
        lines.append("")
    return "\n".join(lines) + "\n"


"""The validation report: the classic transfer figure (PNG) and a Markdown page with the regret tables."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from scaleplan.outputs import pyplot, save_figure
from scaleplan.validate.experiment import SpecValidation
from scaleplan.validate.regret import OPTIMUM_REPLICATES, LrPoint, describe, local_model, optimum_interval


def plot_transfer(results: list[SpecValidation], path: Path) -> Path:
    """Held-out loss vs lr, one curve per swept value of the target's axis and the target, one panel per spec."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.2), squeeze=False)
    for ax, r in zip(axes[0], results):
        values = [*sorted(r.small_curves), r.target_value]
        cmap = plt.get_cmap("viridis")
        for i, v in enumerate(values):
            target = i == len(values) - 1
            curve = r.target_points if target else r.small_curves[v]
            pts = [p for p in curve if math.isfinite(p.mean)]
            style = dict(lw=2.4, marker="o", ms=3) if target else dict(lw=1.2, marker=".", ms=4)
            ax.plot([p.lr for p in pts], [p.mean for p in pts], color=cmap(i / max(1, len(values) - 1)),
                    label=f"{r.axis} {v}" + (" (target)" if target else ""), **style)
        model = local_model(r.target_points)
        if model is not None:
            grid = [model.low_lr * (model.high_lr / model.low_lr) ** (k / 60) for k in range(61)]
            ax.plot(grid, [model.loss(x) for x in grid], color="k", lw=1.0, ls="-", label="local model (target)")
        ax.axvline(r.predicted.lr, color="tab:red", ls="--", lw=1.2, label=f"predicted ({describe(r.predicted)})")
        ax.axvline(r.naive.lr, color="tab:gray", ls=":", lw=1.2, label=f"naive ({describe(r.naive)})")
        finite = [p.mean for p in r.target_points if math.isfinite(p.mean)]
        low = min(min(p.mean for p in c if math.isfinite(p.mean)) for c in [r.target_points, *r.small_curves.values()])
        ax.set_ylim(low * 0.97, max(finite) * 1.08 if finite else None)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # minor labels of a narrow log range overlap
        ax.set_xlabel("learning rate (base lr eta)")
        ax.set_ylabel("loss (mean over seeds)")
        ax.set_title(f"{r.name}: {r.parametrization}, target {r.point.label}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


STATISTICS = """Regret = L(lr) / L(best) - 1 on the loss the objective returns (the built-in tasks': held-out), mean over
seeds (the same seeds at every lr).
*Raw*: the choice's seed mean over the lowest seed mean of any lr trained at the target. *Smoothed*: an
asymmetric parabola in log lr (separate curvatures below and above the optimum) fitted through the seed
means within one octave of the lowest, its value at the choice over its minimum (outside its window: the
measured mean over its minimum); it removes the ~1% seed noise of single grid points and the selection
bias of taking the lowest of many noisy means. ± is one jackknife standard error over seeds (seed i left
out of every lr at once, the raw regret's best lr picked again in each replicate); "0.00% (best lr)": the choice is
the lowest mean whichever seed is left out, a spread the jackknife cannot measure (the smoothed ± covers it). An lr where a seed diverged is reported with the count of diverged seeds; it is
never the best. *Predicted*: the fitted lr law at the target. *Naive*: the optimum of the swept cell
nearest the target (the largest swept value of each targeted axis) reused unchanged. Intervals of the
prediction: the law's interval (t with its residual degrees of freedom) and the percentile interval of the
prediction over the fit's bootstrap (trials resampled within each cell: the optimum-location noise only)."""


def _interval(r: SpecValidation) -> str:
    parts = []
    for i in r.intervals:
        if i.low is not None and i.high is not None:
            parts.append(f"{i.low:.3g}-{i.high:.3g} ({i.kind})")
    return "; ".join(parts) or "-"


def _swept(r: SpecValidation) -> str:
    return "; ".join(f"{axis} {', '.join(map(str, values))}" for axis, values in r.swept.items())


def _target(r: SpecValidation) -> str:
    return ", ".join(f"{axis} {value} ({value / max(r.swept[axis]):g}x the largest swept)" for axis, value in r.point.target.items())


def markdown(results: list[SpecValidation], figure: str, command: str) -> str:
    """The report page: how to reproduce it, the regret table, the drift of lr*, the laws and the target grids."""
    lines = [
        "# Transfer validation",
        "",
        f"Reproduce: `{command}`",
        "",
        STATISTICS,
        "",
        f"![transfer figure]({figure})",
        "",
        "| spec | parametrization | swept | target | seeds | predicted lr | 95% intervals of the prediction | "
        "regret, raw | regret, smoothed | naive lr | naive regret, raw | naive regret, smoothed | best lr | best loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        edge = " (grid edge: regrets are lower bounds)" if r.best_on_edge else ""
        naive_at = ", ".join(f"{a} {r.point.naive[a]}" for a in r.point.target)
        lines.append(
            f"| {r.name} | {r.parametrization} | {_swept(r)} | {_target(r)} | {len(r.seeds)} | {r.predicted.lr:.4g} | "
            f"{_interval(r)} | **{describe(r.predicted)}** | **{describe(r.predicted, smoothed=True)}** | "
            f"{r.naive.lr:.4g} ({naive_at}) | {describe(r.naive)} | {describe(r.naive, smoothed=True)} | "
            f"{r.predicted.best_lr:.4g}{edge} | {r.predicted.best_loss:.4f} |"
        )
    lines += ["", "## How far the optimal lr moves along the target's axis", ""]
    located = ", ".join(dict.fromkeys(r.optimum_method for r in results))
    lines += [f"| spec | axis | value | lr* ({located}) | loss at lr* | log2 shift vs the smallest |", "|---|---|---|---|---|---|"]
    for r in results:
        first = r.optima[0].lr
        for o in r.optima:
            lines.append(f"| {r.name} | {r.axis} | {o.value} | {o.lr:.3g} | {o.loss:.4f} | {math.log2(o.lr / first):+.2f} |")
        lines.append(f"| {r.name} | {r.axis} | {r.target_value} (target, best lr trained) | {r.predicted.best_lr:.3g} | "
                     f"{r.predicted.best_loss:.4f} | {r.target_drift_log2:+.2f} |")
    lines += ["", "## Fitted laws", ""]
    for r in results:
        c = r.point.coords
        run = ", ".join(f"{k} {v}" for k, v in c.items() if v is not None)
        lines.append(f"- {r.name}: lr* = {r.law_formula} ({r.fit_method}), law file `{r.law_path}`; target run: {run}.")
    lines += ["", "## Target lr grid (held-out loss per seed)", ""]
    for r in results:
        model, span = local_model(r.target_points), optimum_interval(r.target_points)
        lines.append(f"{r.name} at {r.point.label}" + (
            "" if model is None else
            f" (local model: minimum {model.min_loss:.4f} at lr {model.vertex_lr:.4g}, fitted on {model.n_points} lrs "
            f"{model.low_lr:.4g}-{model.high_lr:.4g}" + ("" if span is None else
                                                         f"; 95% interval of that optimum over {OPTIMUM_REPLICATES} seed "
                                                         f"bootstrap replicates {span[0]:.4g}-{span[1]:.4g}") + ")") + ":")
        lines.append("")
        lines.append("| lr | mean | s.e. | diverged seeds | per seed |")
        lines.append("|---|---|---|---|---|")
        for p in r.target_points:
            tags = [t for t, lr in (("predicted", r.predicted_lr), ("naive", r.naive_lr)) if p.lr == lr]
            tag = f" ({', '.join(tags)})" if tags else ""
            mean = f"{p.mean:.4f}" if p.finite else "-"
            se = "-" if p.stderr is None else f"{p.stderr:.4f}"
            lines.append(f"| {p.lr:.4g}{tag} | {mean} | {se} | {p.n_diverged}/{len(p.losses)} | "
                         f"{', '.join(f'{x:.4f}' if math.isfinite(x) else 'diverged' for x in p.losses)} |")
        lines.append("")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TargetGrid:
    """The lrs trained at one spec's target, as a written report lists them."""

    target: str  # e.g. "width 1024" or "depth 16, batch 512"
    points: list[LrPoint]
    predicted_lr: float | None
    naive_lr: float | None


def read_target_grids(text: str) -> dict[str, TargetGrid]:
    """The per-seed target grids of a written report, by spec name.

    Reads this module's tables and those of earlier reports (`| lr | mean | per seed |`): the lr is the
    first cell's number (tagged `(predicted)`/`(naive)`), the seeds the last cell; `inf` and `diverged`
    are diverged seeds.
    """
    grids: dict[str, TargetGrid] = {}
    name: str | None = None
    for line in text.splitlines():
        title = re.match(r"^(\S+) at ([a-z]+ \d+(?:, [a-z]+ \d+)*)\b.*:$", line)
        if title:
            name = title.group(1)
            grids[name] = TargetGrid(title.group(2), [], None, None)
        elif name is not None and line.startswith("| ") and not line.startswith("| lr |"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            lr = float(cells[0].split()[0])
            losses = tuple(math.inf if x.strip() in ("inf", "diverged") else float(x) for x in cells[-1].split(","))
            grid = grids[name]
            grid.points.append(LrPoint(lr, losses))
            grids[name] = TargetGrid(grid.target, grid.points, lr if "predicted" in cells[0] else grid.predicted_lr,
                                     lr if "naive" in cells[0] else grid.naive_lr)
        elif name is not None and grids[name].points and not line.startswith("|"):
            name = None
    return grids

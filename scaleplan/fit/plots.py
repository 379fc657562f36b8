"""PNG plots of a fit (matplotlib, Agg): loss vs lr per cell with parabolas and optima; each power law with its CI band."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scaleplan.fit.data import Trials
from scaleplan.fit.hyperparameter_law import LAW_VARIABLE, HyperparameterFit
from scaleplan.fit.power_law import PowerLawFit
from scaleplan.outputs import pyplot, save_figure


def plot_fit(trials: Trials, hyper: HyperparameterFit, out_dir: str | Path) -> list[Path]:
    """Write optima.png and <target>_law.png for each fitted power law into `out_dir`; return the paths."""
    out = Path(out_dir)
    paths = [plot_optima(trials, hyper, out / "optima.png")]
    for fit in (hyper.lr, hyper.batch_size):
        if fit is not None:
            paths.append(plot_power_law(hyper, fit, out / f"{fit.target}_law.png"))
    return paths


def plot_optima(trials: Trials, hyper: HyperparameterFit, path: Path) -> Path:
    """One panel per size: loss vs lr of every trial, coloured by D, with the parabola and the optimum."""
    plt = pyplot()
    sizes = sorted({o.size for o in hyper.optima})
    ncols = min(3, len(sizes))
    nrows = -(-len(sizes) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    frame = trials.frame
    for ax, size in zip(axes.flat, sizes):
        cells = [o for o in hyper.optima if o.size == size]
        in_size = frame[frame[trials.x] == size]
        low = in_size["loss"].min()
        for color, o in zip(plt.cm.viridis(np.linspace(0, 0.85, len(cells))), cells):
            pts = in_size if o.tokens is None else in_size[in_size["D"] == o.tokens]
            label = "" if o.tokens is None else f"D={o.tokens:.3g}"
            ax.scatter(pts["lr"], pts["loss"], s=8, alpha=0.45, color=color, label=label or None)
            if o.parabola is not None:
                grid = np.geomspace(pts["lr"].min(), pts["lr"].max(), 200)
                c0, c1, c2 = o.parabola
                ax.plot(grid, c0 + c1 * np.log(grid) + c2 * np.log(grid) ** 2, color=color, lw=1.2)
            if len(o.points_lr) > 1:
                ax.scatter(o.points_lr, np.full(len(o.points_lr), o.loss), marker="|", s=60, color=color)
            ax.axvline(o.lr, color=color, ls="--", lw=0.8)
            ax.scatter([o.lr], [o.loss], marker="*", s=90, color=color, edgecolor="k", zorder=5)
        ax.set_xscale("log")
        high = max(o.loss for o in cells)
        ax.set_ylim(low - 0.01 * abs(low), high + 0.05 * abs(high))  # the bowls, not the diverged tail
        ax.set_title(f"{trials.x} = {size:.3g}")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        if any(o.tokens is not None for o in cells):
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(sizes):]:
        ax.axis("off")
    fig.suptitle(f"optimum per cell ({hyper.method})")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path


def plot_power_law(hyper: HyperparameterFit, fit: PowerLawFit, path: Path) -> Path:
    """Optima vs the law's first variable, other variables held at their geometric mean, with the CI band."""
    plt = pyplot()
    names = fit.inputs()
    main = names[0]
    column = {LAW_VARIABLE[hyper.x]: "size", "D": "tokens"}
    logs = {v: np.log([getattr(o, column[v]) for o in hyper.optima]) for v in names}
    centre = {v: float(np.mean(logs[v])) for v in names}
    c = fit.offset  # fit --offset: the law is c + exp(linear in its terms)
    y = np.log(np.array([o.lr if fit.target == "lr" else o.batch_size for o in hyper.optima], dtype=float) - c)
    coefs = fit.coefficients()
    at_centre = {v: np.exp(logs[v]) if v == main else np.exp(np.full_like(logs[v], centre[v])) for v in names}
    shift = (fit.design({v: np.exp(logs[v]) for v in names}) - fit.design(at_centre)) @ coefs  # the other variables' part
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter(np.exp(logs[main]), c + np.exp(y - shift), color="C0", zorder=3, label="cell optimum")
    grid = np.linspace(logs[main].min(), logs[main].max(), 100)
    design = fit.design({v: np.exp(grid) if v == main else np.exp(np.full_like(grid, centre[v])) for v in names})
    mean = design @ coefs
    ax.plot(np.exp(grid), c + np.exp(mean), color="C1", label=_formula(fit))
    if fit.covariance is not None and fit.dof:
        from scipy.stats import t  # lazy

        half = t.ppf(0.5 + fit.level / 2, fit.dof) * np.sqrt(np.einsum("ij,jk,ik->i", design, fit.covariance, design))
        ax.fill_between(np.exp(grid), c + np.exp(mean - half), c + np.exp(mean + half), color="C1", alpha=0.25,
                        label=f"{fit.level:.0%} CI ({fit.covariance_kind})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    held = ", ".join(f"{v} at {np.exp(centre[v]):.3g}" for v in names[1:])
    ax.set_xlabel(main + (f"   ({held})" if held else ""))
    ax.set_ylabel(f"optimal {fit.target}")
    ax.set_title(f"{fit.target} power law ({hyper.method})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path


def _formula(fit: PowerLawFit) -> str:
    return ((f"{fit.offset:.3g} + " if fit.offset else "") + f"{np.exp(fit.intercept):.3g}"
            + "".join(f" {v}^{e:.3f}" for v, e in fit.exponents.items()) + "".join(f" {t.formula()}" for t in fit.corrections))

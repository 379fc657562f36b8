"""The DenseAM rules under SGD: coordinate checks over N and K, and lr transfer from the base to 8x on the retrieval task.

The rules give the memory matrix Xi (K x N) an SGD lr x m_N m_K: each entry's gradient carries 1/N from beta = beta0/N and
1/K from the memory average; an lse memory's x m_N alone (since 2026-11-28, from this benchmark: a retrieved memory's
softmax weight is O(1) whatever K is). Three parts, one report (OUT/denseam-sgd.md, OUT/denseam-sgd.png):

- coordinate check (scaleplan.diagnostics.denseam_check with optimizer "sgd"): a classifier DenseAM trains a few SGD steps
  at N = 64..1024 (K = 64) and K = 64..1024 (N = 64); besides the probes of the Adam check it records the learned overlap
  beta (Xi_t - Xi_0) x_0, which is what the memories' lr sets (the probes themselves are dominated by the random overlaps
  when the memories learn slowly). Contrasts: the memories' multiplier raised to 0 (the scanned axis's factor left out)
  and to the energy's gradient order (the factor that follows the memories' gradient at init, as their Adam eps does).
- transfer (the sweeps/transfer/denseam-sgd-*.toml specs, `scaleplan sweep` trials at the base width 32 and at 256 = 8x,
  5 seeds on one lr grid): the regret at 256 of the base's best lr (scaleplan.validate.regret, raw and smoothed), under
  the rules, SP (over K with lse, SP differed from the rules only in that memory factor; today they train the same) and
  the same multiplier powers.
- regimes: lse over K with 16, 128 and 4096 stored patterns, the memories' SGD lr x m_K (the rule before the change)
  against constant in K, read from the committed trials CSVs.

    python benchmarks/denseam_sgd.py --out benchmarks/results                (about 25 min on one core)
    python benchmarks/denseam_sgd.py --parts coord --seeds 2 --out /tmp/sgd  (a quick look)
    python benchmarks/denseam_sgd.py --parts regimes --out /tmp/sgd         (lse over K at 16, 128 and 4096 patterns, from
                                                                              the committed trials CSVs)
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from scaleplan.diagnostics.coord_check import width_table
from scaleplan.diagnostics.denseam_check import LEARNED, PROBES, denseam_coord_check, memory_sgd_power, probe_ratios
from scaleplan.outputs import pyplot, save_figure
from scaleplan.sweep.export import load_trials
from scaleplan.sweep.runner import run_sweep
from scaleplan.sweep.spec import load_spec
from scaleplan.validate.regret import LrPoint, Regret, best_point, describe, group_by_lr, regret_of

# the coordinate check: T descent steps, SGD steps, lr (stable at the base, which diverges near 10), beta0, memory init std
STEPS, TRAIN_STEPS, LR, BETA0, MEMORY_STD = 8, 5, 2.0, 4.0, 0.1
COLUMNS = (*PROBES, LEARNED)
ENERGIES = (("lse", 3, 1.5), ("relu-poly", 3, 2.0))  # (energy, degree, the memories' gradient order at init)
AXIS_FACTOR = {"features": "m_N", "memories": "m_K"}
SPECS = Path("sweeps/transfer")
# (case, spec stem, [(label, parametrization suffix, memory multiplier power)]): the target's lr grid per variant
TRANSFER = (
    ("lse, K 32 -> 256 (N = 32)", "denseam-sgd-lse-memories",
     [("rules: constant in K (lse)", "denseam", 1.0), ("SP: memory lr constant", "sp", 1.0)]),
    ("relu-poly n = 3, K 32 -> 256 (N = 32)", "denseam-sgd-relu-memories",
     [("rules: m_K", "denseam", 1.0), ("SP: memory lr constant, sum over K", "sp", 1.0)]),
    ("lse, N 32 -> 256 (K = 32)", "denseam-sgd-lse-features-k32",
     [("rules: m_N", "denseam", 1.0), ("m_N^0", "denseam", 0.0), ("m_N^1.5", "denseam", 1.5)]),
    ("relu-poly n = 3, N 32 -> 256 (K = 32)", "denseam-sgd-relu-features-k32",
     [("rules: m_N", "denseam", 1.0), ("m_N^0", "denseam", 0.0), ("m_N^2", "denseam", 2.0)]),
)
BASE, TARGET = 32, 256
COMMITTED = Path("benchmarks/results/denseam-sgd")  # the trials CSVs `--parts regimes` reads, whatever --out is


def ratio_text(ratio: float) -> str:
    return "diverged" if not math.isfinite(ratio) else f"{ratio:.2f}" if ratio < 100 else f"{ratio:.2g}"


def coord_variants(axis: str, order: float, energy: str) -> list[tuple[str, float]]:
    """(label, memory multiplier power) of the coordinate check along `axis`: the rules, the axis's factor left out, and
    (over N) the factor that follows the memories' gradient at init, m_N^order. An lse memory's rule has no m_K (since
    2026-11-28): over K its rules are the factor left out."""
    if energy == "lse" and axis == "memories":
        return [("rules: m_N alone (lse), constant in K", 1.0)]
    other = AXIS_FACTOR["memories" if axis == "features" else "features"]
    variants = [("rules: m_N m_K", 1.0), (f"{other} only (none)", 0.0)]
    return variants + ([(f"m_N^{order:g} m_K (init gradient)", order)] if axis == "features" else [])


def coord_part(sizes: tuple[int, ...], fixed: int, seeds: int) -> tuple[list[str], dict[tuple[str, str, str], pd.DataFrame]]:
    """The SGD coordinate checks: report lines and {(energy, axis, variant): frame}."""
    step = TRAIN_STEPS
    frames = {}
    lines = [
        "## Coordinate check under SGD",
        "",
        f"A classifier DenseAM (T = {STEPS} descent steps, memory init std {MEMORY_STD:g}, beta0 = {BETA0:g}, "
        f"zero readout) trains {step} SGD steps at lr {LR:g} (stable at the base: the base diverges near lr 10) on one "
        f"fixed batch of 64 corrupted patterns, {seeds} seeds; sizes {', '.join(map(str, sizes))}: N with K = {fixed}, or K with "
        f"N = {fixed}. Ratio = largest / smallest mean |probe| over the sizes after the last step (flat = 1). `learned overlap` = "
        "mean |beta (Xi_t - Xi_0) x_0|, the part of the first descent step's overlaps that training the memories put there.",
        "",
        "| energy | axis | memory SGD lr factor | overlap | activation | update | learned overlap |",
        "|---|---|---|---|---|---|---|",
    ]
    for energy, degree, order in ENERGIES:
        for axis in ("features", "memories"):
            for label, power in coord_variants(axis, order, energy):
                start = time.perf_counter()
                frame = denseam_coord_check("denseam", axis, sizes, fixed, energy=energy, degree=degree, seeds=seeds,
                                            optimizer="sgd", memory_power=power, steps=STEPS, train_steps=TRAIN_STEPS, lr=LR,
                                            beta0=BETA0, memory_std=MEMORY_STD)
                frames[energy_name(energy, degree), axis, label] = frame
                ratios = probe_ratios(frame, step)
                lines.append(f"| {energy_name(energy, degree)} | {axis} | {label} | "
                             + " | ".join(ratio_text(float(ratios.get(p, float("nan")))) for p in COLUMNS) + " |")
                print(f"coord {energy} {axis} {label}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    lines += ["", f"Mean |learned overlap| per size (after step {step}):", "",
              "| energy | axis | memory SGD lr factor | " + " | ".join(map(str, sizes)) + " |", "|---|---|---|" + "---|" * len(sizes)]
    for (energy, axis, label), frame in frames.items():
        values = width_table(frame, step).loc[LEARNED]
        lines.append(f"| {energy} | {axis} | {label} | " + " | ".join(f"{v:.3g}" for v in values) + " |")
    return lines, frames


def energy_name(energy: str, degree: int) -> str:
    return "lse" if energy == "lse" else f"relu-poly n={degree}"


def trials(stem: str, parametrization: str, power: float, work: Path, out: Path) -> pd.DataFrame:
    """The spec's trials at the base and the target (run here with one worker, resumed from `work`); kept as a CSV in OUT."""
    spec = load_spec(SPECS / f"{stem}-{parametrization}.toml")
    variant = f"{spec.name}{'' if power == 1.0 else f'-power{power:g}'}"
    storage = str(work / f"{variant}.journal")
    with memory_sgd_power(power):
        run_sweep(spec, storage, workers=1)
    frame = load_trials(spec, storage=storage)
    frame.to_csv(out / f"{variant}-trials.csv", index=False)
    return frame


def points(frame: pd.DataFrame, width: int) -> list[LrPoint]:
    """One LrPoint per lr at `width`; a diverged trial's loss is inf."""
    at = frame[frame["width"] == width]
    losses = at["loss"].where(~at["diverged"].astype(bool), math.inf).fillna(math.inf)
    return group_by_lr(list(zip(at["lr"], at["seed"], losses)))


def transfer_part(work: Path, out: Path) -> tuple[list[str], dict[str, dict[str, list[LrPoint]]]]:
    """The transfer table (regret at the target of the base's best lr) and the loss curves {case: {variant: points}}."""
    lines = [
        "## Transfer: the base's best SGD lr reused at 8x",
        "",
        f"`scaleplan sweep` of each spec at width {BASE} (the base) and {TARGET}, 5 seeds, 300 steps, batch 64, one lr grid "
        "(2^0.5 apart) at both widths; the patterns task's retrieval (128 stored 32-bit patterns, 20% of the bits flipped, "
        "MSE to the clean pattern; leak; T = 8). Over K the denoise readout makes the memories the only trained tensor; over "
        "N a linear input and readout surround them. Regret at the target of the base's best lr (lowest seed mean) against "
        "every lr trained there, raw and smoothed (scaleplan.validate.regret: ± one jackknife s.e. over seeds; an lr where "
        "a seed diverged is reported as such; smoothed `-`: no local model, the best lr being the last before divergence). "
        "Octaves: log2(target's best lr / base's best lr).",
        "",
        "| case | memory SGD lr | base best lr (loss) | target best lr (loss) | octaves | regret, raw | regret, smoothed | diverged trials at the target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    curves: dict[str, dict[str, list[LrPoint]]] = {}
    for case, stem, variants in TRANSFER:
        for label, parametrization, power in variants:
            start = time.perf_counter()
            frame = trials(stem, parametrization, power, work, out)
            base, target = points(frame, BASE), points(frame, TARGET)
            curves.setdefault(case, {})[label] = target
            curves[case].setdefault("base", base)
            chosen = best_point(base)
            regret: Regret = regret_of("base optimum reused", next(p for p in target if p.lr == chosen.lr), target)
            best = best_point(target)
            diverged = sum(p.n_diverged for p in target)
            lines.append(
                f"| {case} | {label} | {chosen.lr:.3g} ({chosen.mean:.4f}) | {best.lr:.3g} ({best.mean:.4f}) | "
                f"{math.log2(best.lr / chosen.lr):+.1f} | {describe(regret)} | {describe(regret, smoothed=True)} | "
                f"{diverged}/{sum(len(p.losses) for p in target)} |")
            print(f"transfer {stem} {label}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return lines, curves


# lse over K with 16, 128 and 4096 stored patterns: (case, spec stem); the rules' trials CSVs were recorded under the
# memory SGD lr x K/K_base that an lse memory had before 2026-11-28 (today's rules train what SP trains there)
REGIMES = (("lse, K 32 -> 256, 16 patterns", "denseam-sgd-lse-memories-p16"),
           ("lse, K 32 -> 256, 128 patterns", "denseam-sgd-lse-memories"),
           ("lse, K 32 -> 256, 4096 patterns", "denseam-sgd-lse-memories-p4096"))


def regimes_part(trials_dir: Path) -> list[str]:
    """The base's best lr reused at 8x K, under the memory SGD lr x m_K (recorded before the lse rule changed) and
    constant in K (SP), on each committed trials CSV: over capacity, across it and under it."""
    lines = ["## lse over K in three regimes: the memories' SGD lr x m_K against constant in K", "",
             "Regret at the target of the base's best lr, as above, from the committed trials CSVs (`--parts regimes` reads "
             "them; the m_K rows were trained under the rules before 2026-11-28, when an lse memory's SGD lr still carried "
             "K/K_base; the constant rows are SP's specs, which today's rules reproduce bit for bit over K).", "",
             "| case | memory SGD lr | base best lr (loss) | target best lr (loss) | octaves | regret, raw | regret, smoothed | diverged trials at the target |",
             "|---|---|---|---|---|---|---|---|"]
    for case, stem in REGIMES:
        for label, suffix in (("x m_K (before)", "denseam"), ("constant in K (SP; today's rules)", "sp")):
            frame = pd.read_csv(trials_dir / f"transfer-{stem}-{suffix}-trials.csv")
            base, target = points(frame, BASE), points(frame, TARGET)
            chosen, best = best_point(base), best_point(target)
            regret = regret_of("base optimum reused", next(p for p in target if p.lr == chosen.lr), target)
            lines.append(
                f"| {case} | {label} | {chosen.lr:.3g} ({chosen.mean:.4f}) | {best.lr:.3g} ({best.mean:.4f}) | "
                f"{math.log2(best.lr / chosen.lr):+.1f} | {describe(regret)} | {describe(regret, smoothed=True)} | "
                f"{sum(p.n_diverged for p in target)}/{sum(len(p.losses) for p in target)} |")
    return lines


def plot(frames: dict[tuple[str, str, str], pd.DataFrame], curves: dict[str, dict[str, list[LrPoint]]], path: Path) -> None:
    """Left: the learned overlap per size under each SGD memory factor; right: the target's loss curves per variant."""
    plt = pyplot()
    columns = max(len(curves), 1)
    fig, axes = plt.subplots(2, max(columns, 4), figsize=(4 * max(columns, 4), 7), squeeze=False)
    for col, (energy, axis) in enumerate(dict.fromkeys((e, a) for e, a, _ in frames)):
        ax = axes[0][col]
        for (e, a, label), frame in frames.items():
            if (e, a) == (energy, axis):
                values = width_table(frame, TRAIN_STEPS).loc[LEARNED]
                ax.plot(values.index, values.to_numpy(), marker="o", markersize=3, label=label)
        size = "N" if axis == "features" else "K"
        ax.set(xscale="log", yscale="log", title=f"{energy}, over {size}: SGD coordinate check", xlabel=size,
               ylabel="mean |learned overlap|")
        ax.legend(fontsize=6)
    for col, (case, variants) in enumerate(curves.items()):
        ax = axes[1][col]
        for label, pts in variants.items():
            finite = [p for p in pts if p.finite]
            ax.plot([p.lr for p in finite], [p.mean for p in finite], marker="o", markersize=3,
                    label=f"width {BASE}" if label == "base" else f"{TARGET}: {label}")
        ax.set(xscale="log", title=case, xlabel="SGD lr", ylabel="held-out MSE (5 seeds)")
        ax.minorticks_off()
        ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="coord,transfer")
    parser.add_argument("--sizes", default="64,128,256,512,1024")
    parser.add_argument("--fixed", type=int, default=64, help="K when N scales, N when K scales (coordinate check)")
    parser.add_argument("--seeds", type=int, default=4, help="coordinate-check seeds (the transfer specs set theirs)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "denseam-sgd", help="sweep journals (a rerun resumes)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    parts = set(args.parts.split(","))
    sizes = tuple(int(s) for s in args.sizes.split(","))
    trials_dir = args.out / "denseam-sgd"
    for folder in (args.out, args.work, trials_dir):
        folder.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "benchmarks/denseam_sgd.py", "--parts", args.parts, "--sizes", args.sizes, "--fixed",
                          str(args.fixed), "--seeds", str(args.seeds), "--work", str(args.work), "--out", str(args.out)])
    lines = ["# The DenseAM rules under SGD", "", f"Reproduce: `{command}`", ""]
    frames: dict[tuple[str, str, str], pd.DataFrame] = {}
    curves: dict[str, dict[str, list[LrPoint]]] = {}
    if "coord" in parts:
        coord_lines, frames = coord_part(sizes, args.fixed, args.seeds)
        lines += coord_lines + [""]
    if "transfer" in parts:
        transfer_lines, curves = transfer_part(args.work, trials_dir)
        lines += transfer_lines + [""]
    if "regimes" in parts:
        lines += regimes_part(COMMITTED) + [""]
    plot(frames, curves, args.out / "denseam-sgd.png")
    lines.append("![SGD coordinate check and transfer](denseam-sgd.png)")
    text = "\n".join(lines) + "\n"
    (args.out / "denseam-sgd.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

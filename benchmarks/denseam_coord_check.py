"""DenseAM coordinate checks across features N and memories K: the DenseAM rules against their contrasts.

For lse, relu-poly n = 3 and n = 6 (T = 8 descent steps), trains a classifier DenseAM a few Adam steps on
one fixed batch of the corrupted-patterns task at N = 64..1024 (K = 64) and at K = 64..1024 (N = 64), and
records mean |overlap|, |activation| and |update per descent step| (scaleplan.diagnostics.denseam_check).
Rules compared, side by side in one run: the DenseAM rules; the same with PyTorch's default Adam eps
(1e-8 at the base); the first release's rules; SP. Writes OUT/denseam-coord-check.md and one PNG per energy.

    python benchmarks/denseam_coord_check.py --out benchmarks/results            (about 15 min on one core)
    python benchmarks/denseam_coord_check.py --sizes 32,64,128 --seeds 2 --out /tmp/cc   (a quick look)
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from scaleplan.diagnostics.coord_check import width_table
from scaleplan.diagnostics.denseam_check import PROBES, denseam_coord_check, probe_ratios
from scaleplan.outputs import pyplot, save_figure

AXES = (("features", "N (K = {fixed})"), ("memories", "K (N = {fixed})"))
# (label, parametrization, rules, base Adam eps)
VARIANTS = (
    ("DenseAM rules", "denseam", "current", 1e-14),
    ("DenseAM rules, Adam eps 1e-8", "denseam", "current", 1e-8),
    ("first release", "denseam", "first-release", 1e-14),
    ("SP", "sp", "current", 1e-14),
)
SETUP = dict(steps=8, train_steps=5, lr=0.1, beta0=4.0, memory_std=0.1)


def energy_name(energy: str, degree: int) -> str:
    return "lse" if energy == "lse" else f"relu-poly n={degree}"


def run(sizes: tuple[int, ...], fixed: int, seeds: int, energies: tuple[tuple[str, int], ...]) -> dict[tuple, object]:
    """{(energy, degree, axis, variant label): frame} for every combination."""
    frames = {}
    for energy, degree in energies:
        for axis, _ in AXES:
            for label, parametrization, rules, eps in VARIANTS:
                start = time.perf_counter()
                frames[energy, degree, axis, label] = denseam_coord_check(
                    parametrization, axis, sizes, fixed, energy=energy, degree=degree, rules=rules, seeds=seeds,
                    eps=eps, **SETUP,
                )
                print(f"{energy_name(energy, degree)} / {axis} / {label}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return frames


def fmt(ratio: float) -> str:
    return "diverged" if ratio != ratio or ratio == float("inf") else f"{ratio:.2f}" if ratio < 100 else f"{ratio:.2g}"


def report(frames: dict, sizes: tuple[int, ...], fixed: int, seeds: int, command: str,
           energies: tuple[tuple[str, int], ...]) -> str:
    step = SETUP["train_steps"]
    lines = [
        "# DenseAM coordinate checks: features N and memories K",
        "",
        f"Reproduce: `{command}`",
        "",
        f"A classifier DenseAM (T = {SETUP['steps']} descent steps, memory init std {SETUP['memory_std']}, beta0 = "
        f"{SETUP['beta0']:g}, zero readout) trains {step} Adam steps (lr {SETUP['lr']:g}) on one fixed batch of 64 "
        f"corrupted patterns; mean |probe| over the T steps, the batch and {seeds} seeds, after the last step. "
        f"Sizes {', '.join(map(str, sizes))}: N with K = {fixed}, or K with N = {fixed}; base = the smallest. "
        "Ratio = largest / smallest mean |probe| over the sizes (flat = 1; the goal is <= 1.5). "
        "\"diverged\": a size's descent or training produced non-finite values.",
        "",
        "Adam eps: 1e-14 at the base width (scaled per memory tensor by the DenseAM rules), except in the second "
        "row: with PyTorch's default 1e-8 the base width's memories barely move at init when the activation "
        "peaks (n = 6), which the rules cannot repair (they scale eps relative to the base).",
        "",
        "| energy | axis | rules | overlap | activation | update | all <= 1.5 |",
        "|---|---|---|---|---|---|---|",
    ]
    for energy, degree in energies:
        for axis, _ in AXES:
            for label, *_ in VARIANTS:
                ratios = probe_ratios(frames[energy, degree, axis, label], step)
                values = [float(ratios.get(p, float("nan"))) for p in PROBES]
                ok = all(v == v and v <= 1.5 for v in values)
                lines.append(f"| {energy_name(energy, degree)} | {axis} | {label} | "
                             + " | ".join(fmt(v) for v in values) + f" | {'yes' if ok else 'no'} |")
    lines += ["", f"## Mean |probe| per size under the DenseAM rules (after step {step})", ""]
    for energy, degree in energies:
        for axis, _ in AXES:
            table = width_table(frames[energy, degree, axis, VARIANTS[0][0]], step).reindex(list(PROBES))
            lines += [f"{energy_name(energy, degree)}, {axis}:", "", "| probe | " + " | ".join(map(str, table.columns)) + " |",
                      "|---|" + "---|" * len(table.columns)]
            lines += [f"| {p} | " + " | ".join(f"{v:.3g}" for v in table.loc[p]) + " |" for p in table.index]
            lines.append("")
    return "\n".join(lines)


def plot(frames: dict, fixed: int, out: Path, name: str, energies: tuple[tuple[str, int], ...]) -> list[Path]:
    """One PNG per energy: rows = probes, columns = axes, one line per rules variant."""
    plt = pyplot()
    step = SETUP["train_steps"]
    paths = []
    for energy, degree in energies:
        fig, axes = plt.subplots(len(PROBES), len(AXES), figsize=(8, 8), squeeze=False)
        for col, (axis, xlabel) in enumerate(AXES):
            for label, *_ in VARIANTS:
                table = width_table(frames[energy, degree, axis, label], step)
                for row, probe in enumerate(PROBES):
                    if probe in table.index:
                        values = table.loc[probe].where(lambda v: (v > 0) & (v < 1e30))
                        axes[row][col].plot(table.columns, values, marker="o", markersize=3, label=label)
            for row, probe in enumerate(PROBES):
                ax = axes[row][col]
                ax.set(xscale="log", yscale="log", xlabel=xlabel.format(fixed=fixed), ylabel=f"mean |{probe}|")
        axes[0][-1].legend(fontsize=7)
        fig.suptitle(f"DenseAM {energy_name(energy, degree)}, T = {SETUP['steps']}: after {step} Adam steps")
        fig.tight_layout()
        path = out / f"{name}-{energy}{degree if energy != 'lse' else ''}.png"
        save_figure(fig, path, dpi=90)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,128,256,512,1024")
    parser.add_argument("--fixed", type=int, default=64, help="K when N scales, N when K scales")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--energies", default="lse:3,relu-poly:3,relu-poly:6", help="energy:degree, comma list")
    parser.add_argument("--beta0", type=float, default=SETUP["beta0"])
    parser.add_argument("--name", default="denseam-coord-check", help="OUT/NAME.md and OUT/NAME-<energy>.png")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    SETUP["beta0"] = args.beta0
    sizes = tuple(int(s) for s in args.sizes.split(","))
    energies = tuple((e, int(d)) for e, d in (item.split(":") for item in args.energies.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    frames = run(sizes, args.fixed, args.seeds, energies)
    command = shlex.join(["python", "benchmarks/denseam_coord_check.py", "--sizes", args.sizes, "--fixed", str(args.fixed),
                          "--seeds", str(args.seeds), "--energies", args.energies, "--beta0", f"{args.beta0:g}",
                          "--name", args.name, "--out", str(args.out)])
    text = report(frames, sizes, args.fixed, args.seeds, command, energies)
    paths = plot(frames, args.fixed, args.out, args.name, energies)
    (args.out / f"{args.name}.md").write_text(text + "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in paths) + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""Held-out extrapolation of loss laws: fit on the smaller models, predict the largest, next to the authors' errors.

Data: Gadre et al. 2024 (mlfoundations/scaling, tests/data/gadre_overtraining_c4_val_loss.csv), C4-eval loss of
104 models on three training sets. The targets are the paper's: a 6.9B model at M = 20 tokens per parameter and
the 1.4B model trained longest. Fits, all in one run:
  - "Gadre form": one exponent (alpha = beta), least squares on L, on their 5 runs (4 models at M = 20, the
    smallest also at M = 320): the authors' procedure, reproduced by scaleplan (tests/fit/test_loss_law.py).
  - "scaleplan default": 5 free parameters, Huber (delta 1e-3) on log L, on every run of the 4 small models.
  - "tied, all runs": one exponent, Huber on log L, on every run of the 4 small models.
The published errors are the ones the authors' notebook prints (RedPajama only).

    python benchmarks/extrapolation.py [--out benchmarks/results/extrapolation.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from scaleplan.fit.loss_law import fit_loss_law
from scaleplan.fit.power_sum import Constraints

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "gadre_overtraining_c4_val_loss.csv"
SMALL = ("d=96_l=8_h=4", "d=512_l=8_h=4", "d=576_l=24_h=8", "d=1024_l=24_h=8")
PUBLISHED = {("rpj", "open_lm_7b", 20.0): 0.7320, ("rpj", "open_lm_1b", 640.0): 0.7103}  # scaling_explorer.ipynb
TIED = Constraints(tied=(("beta", "alpha"),))


def fits(runs: pd.DataFrame) -> dict[str, object]:
    """The three fits of one training set (see the module docstring)."""
    small = runs[runs["model"].isin(SMALL)]
    gadre = small[(small["M"] == 20) | ((small["model"] == SMALL[0]) & (small["M"] == 320))]
    args = lambda rows: (rows["N"].to_numpy(float), rows["D"].to_numpy(float), rows["loss_c4_val"].to_numpy(float))  # noqa: E731
    return {
        "Gadre form (5 runs, 1 exponent, least squares on L)": fit_loss_law(*args(gadre), space="linear", delta=1.0, constraints=TIED),
        f"scaleplan default ({len(small)} runs, 5 parameters, Huber on log L)": fit_loss_law(*args(small)),
        f"tied, all runs ({len(small)} runs, 1 exponent, Huber on log L)": fit_loss_law(*args(small), constraints=TIED),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Also write the table (markdown) here.")
    args = parser.parse_args()
    data = pd.read_csv(DATA)
    start = time.perf_counter()
    lines = ["| training set | fit | target | true loss | predicted | error | authors' published error |", "|---|---|---|---|---|---|---|"]
    laws = []
    for dataset, runs in data.groupby("dataset"):
        targets = runs[runs["model"].str.startswith("open_lm")]
        targets = targets[(targets["model"] == "open_lm_7b") | (targets["M"] == targets.loc[targets["model"] == "open_lm_1b", "M"].max())]
        for name, fit in fits(runs).items():
            law = fit.law
            laws.append(f"- {dataset}, {name}: L = {law.E:.4g} + {law.A:.4g}/N^{law.alpha:.4f} + {law.B:.4g}/D^{law.beta:.4f}"
                        f" ({fit.starts_reached} of {fit.starts_run} starts reached the optimum)")
            for _, t in targets.sort_values("N", ascending=False).iterrows():
                predicted = law.loss(t["N"], t["D"])
                error = abs(predicted / t["loss_c4_val"] - 1) * 100
                published = PUBLISHED.get((dataset, t["model"], t["M"]))
                target = f"{t['N'] / 1e9:.2g}B params, M = {t['M']:g}"
                lines.append(f"| {dataset} | {name} | {target} | {t['loss_c4_val']:.4f} | {predicted:.4f} | {error:.2f}% | "
                             f"{'-' if published is None else f'{published:.2f}%'} |")
    report = "\n".join([
        "# Held-out extrapolation: fit the smaller models, predict the largest (Gadre et al. 2024 data)", "",
        "Command: `python benchmarks/extrapolation.py --out benchmarks/results/extrapolation.md`", "",
        *lines, "", "Laws:", *laws, "",
        f"({time.perf_counter() - start:.1f} s for the 9 fits on this machine.)",
    ])
    print(report)
    if args.out is not None:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()

"""lr*(N, D, B) forms held out on Step Law's public grid: which predicts cells it was not fitted on?

Step Law's 1911 dense-LLM runs (tests/data/steplaw_dense_lr_bs_loss.csv: 17 (N, D) cells, about 10 batch sizes
each, lr swept per batch; loss = the smoothed loss) are located per (N, D, B) cell as `scaleplan fit --lr-batch`
locates them (a parabola per cell). Three lr laws are fitted on the cells left in, as `scaleplan fit` fits them
(no bootstrap, so ordinary least squares):
- power: ln lr* = a + e_N ln N + e_D ln D + k ln B (the pooled law);
- surge and saturating (`--lr-form surge|saturating`, fit/surge.py), with N as a size axis, S = D / (2048 B) the
  steps (read from the runs' iterations).
Each predicts the held-out cells' optima. Three splits, each a question a user asks:
- D: every N's largest D held out (train shorter, predict the long run);
- B: every (N, D)'s largest batch held out;
- B/4: every (N, D)'s batches above a quarter of its largest held out (extrapolating up to 4x and more in B);
- N: the largest model (1.07e9 non-embedding parameters) held out.
A prediction passes a cell when it lies within one 2^0.5 step (half an octave) of the cell's optimum (issue 10's
criterion); cells whose optimum sits at the edge of their lr grid are not scored. Beside it: the fraction inside the
cell's own 95% interval (200 bootstrap replicates of its optimum, trials resampled within the cell), the fraction
of held-out optima inside the law's own 95% prediction interval (as `scaleplan predict` prints it) with its median
width, and the naive choice (the nearest trained cell's optimum: same N and B at the largest D left in, the next batch down, or the
next model down).

    python benchmarks/steplaw_batch_forms.py   (about 20 s)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from scaleplan.fit.data import prepare_trials
from scaleplan.fit.law_file import power_law_record
from scaleplan.fit.multi_axis import MultiAxisFit, fit_multi_axis

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "steplaw_dense_lr_bs_loss.csv"
STEP = 0.5  # octaves: one 2^0.5 grid step
COLUMNS = {"bs": "batch_size", "smooth loss": "loss", "ti": "steps"}
Key = tuple[float, float, float]  # (N, D, B) of a cell


def located(raw: pd.DataFrame, n_boot: int, form: str = "power") -> MultiAxisFit:
    """The multi-axis fit of these runs: cells (N, D, B), the power law and, with `form`, the surge-family law."""
    return fit_multi_axis(prepare_trials(raw, columns=COLUMNS), ("N",), by_batch=True, n_boot=n_boot, lr_form=form)


def keys(fit: MultiAxisFit) -> list[Key]:
    return [(c.coords["N"], c.coords["D"], c.coords["batch_size"]) for c in fit.cells]


def split_out(raw: pd.DataFrame, split: str) -> pd.Series:
    """Which runs the split holds out."""
    if split == "D":
        return raw["D"] == raw.groupby("N")["D"].transform("max")
    if split == "B":
        return raw["bs"] == raw.groupby(["N", "D"])["bs"].transform("max")
    if split == "B/4":
        return raw["bs"] > raw.groupby(["N", "D"])["bs"].transform("max") / 4
    return raw["N"] == raw["N"].max()


def value(k: Key) -> dict[str, float]:
    """A cell's coordinates as the laws' variables."""
    return {"N": k[0], "D": k[1], "B": k[2]}


def naive_lr(train: dict[Key, float], key: Key, split: str) -> float | None:
    """The nearest trained cell's optimum along the held-out axis (None when there is none)."""
    n, d, b = key
    if split == "D":
        near = [k for k in train if k[0] == n and k[2] == b]
    elif split in ("B", "B/4"):
        near = [k for k in train if k[0] == n and k[1] == d and k[2] < b]
    else:
        near = [k for k in train if k[2] == b and k[0] < n]
    if not near:
        return None
    return train[max(near)]  # the largest N, then D, then batch


def main() -> None:
    raw = pd.read_csv(DATA)
    full = located(raw, n_boot=200)
    optimum = {k: (o.lr, ci, o.at_edge) for k, o, ci in zip(keys(full), full.optima, full.cell_lr_ci)}
    print(f"# lr*(N, D, B) forms held out on Step Law's grid ({len(full.cells)} (N, D, B) cells, {len(raw)} runs)\n")
    print("| split | form | cells scored | within one 2^0.5 step | inside the cell's 95% interval | median |log2(pred / lr*)| | "
          "mean log2(pred / lr*) | optimum inside the law's 95% PI (median width, octaves) |")
    print("|---|---|---|---|---|---|---|---|")
    for split in ("D", "B", "B/4", "N"):
        out = split_out(raw, split)
        fits = {form: located(raw[~out], n_boot=0, form=form) for form in ("surge", "saturating")}
        train = dict(zip(keys(fits["surge"]), (o.lr for o in fits["surge"].optima)))
        held = [k for k in optimum if k not in train and not optimum[k][2]]
        edge = sum(1 for k in optimum if k not in train and optimum[k][2])

        power = fits["surge"].lr
        laws: dict[str, Callable[[Key], float | None]] = {
            "power": lambda k: float(power.predict(value(k))),
            "surge": lambda k: math.exp(fits["surge"].surge.law.log_value(value(k))),  # type: ignore[union-attr]
            "saturating": lambda k: math.exp(fits["saturating"].surge.law.log_value(value(k))),  # type: ignore[union-attr]
            "naive": lambda k: naive_lr(train, k, split),
        }
        records = {"power": power_law_record(power, "lr"), "surge": fits["surge"].surge.law,  # type: ignore[union-attr]
                   "saturating": fits["saturating"].surge.law}  # type: ignore[union-attr]
        for name, law in laws.items():
            errors, inside, covered, widths = [], 0, 0, []
            for k in held:
                lr = law(k)
                if lr is None:
                    continue
                truth, (low, high), _ = optimum[k]
                errors.append(math.log2(lr / truth))
                inside += low <= lr <= high
                if name in records:
                    estimate = records[name].predict(value(k))
                    covered += estimate.holds(truth)
                    if estimate.octaves is not None:
                        widths.append(estimate.octaves)
            err = np.array(errors)
            within = int(np.sum(np.abs(err) <= STEP))
            coverage = f"{covered} ({covered / len(err):.0%}; {np.median(widths):.2f})" if widths else "-"
            print(f"| {split} held out ({edge} edge cells not scored) | {name} | {len(err)} | {within} ({within / len(err):.0%}) | "
                  f"{inside} ({inside / len(err):.0%}) | {np.median(np.abs(err)):.2f} | {err.mean():+.2f} | {coverage} |")


if __name__ == "__main__":
    main()

"""Does a fixed gradient-clipping threshold (`[train] clip_grad_norm`) break muP's lr transfer?

Under muP the global gradient norm changes with width, so one `max_norm` clips a different share of steps at each
width. The built-in GPT (depth 2, 4 heads) under muP on the char-LM, Adam at a constant lr for STEPS steps of
BATCH x SEQ_LEN characters (as benchmarks/optimizer_lr_ratios.py), trained by scaleplan's own `train_trial` (the
clipping under test, which also records the share of steps clipped), with no clipping, clip_grad_norm = 1.0 and a
tighter 0.3, on the same 2^0.5 lr grid and seeds at every width. Per target width: the smoothed lr* at the base and
the target, and the regret (+- jackknife s.e. over seeds, raw and smoothed) of the base's best lr reused there
(benchmarks/charlm_training.print_transfer_table); then the share of steps clipped per width and lr.

Runs are kept in a CSV (--csv) and skipped when already there, so widths can be added in later calls:

    OMP_NUM_THREADS=1 python benchmarks/grad_clip_transfer.py --widths 32 128
    OMP_NUM_THREADS=1 python benchmarks/grad_clip_transfer.py --widths 256 --min-lr 0.004 --max-lr 0.05 --clips none 0.3
"""

from __future__ import annotations

import argparse
import math
import statistics
from concurrent.futures import ProcessPoolExecutor
from itertools import product
from pathlib import Path

from charlm_training import print_transfer_table, read_runs, record_runs
from scaleplan.train.config import TrialConfig
from scaleplan.train.loop import train_trial

BASE = 32
SEEDS = 5
LRS = tuple(2e-3 * 2 ** (k / 2) for k in range(-2, 11))  # 0.001 .. 0.064: optimizer_lr_ratios' grid, 2 steps higher
STEPS, BATCH, SEQ_LEN = 200, 16, 32
CLIPS: dict[str, float | None] = {"none": None, "1.0": 1.0, "0.3": 0.3}
DEFAULT_CSV = Path(__file__).parent / "results" / "grad-clip-transfer-trials.csv"
FIELDS = ("clip", "width", "lr", "seed", "loss", "clipped_fraction")


def run(job: tuple[str, int, float, int]) -> tuple[str, int, float, int, float, float]:
    """(clip, width, lr, seed) -> the same with the held-out loss (inf when diverged) and the share of steps clipped."""
    clip, width, lr, seed = job
    cfg = TrialConfig(task="charlm", model="gpt", width=width, base_width=BASE, parametrization="mup", optimizer="adam",
                      task_kwargs={"seq_len": SEQ_LEN, "n_eval": 128}, model_kwargs={"depth": 2, "n_heads": 4},
                      batch_size=BATCH, steps=STEPS, lr=lr, seed=seed, clip_grad_norm=CLIPS[clip])
    result = train_trial(cfg)
    return clip, width, lr, seed, result.loss, result.clipped_fraction or 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[BASE, 4 * BASE])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--min-lr", type=float, default=0.0, help="train only the grid's lrs from this one ...")
    parser.add_argument("--max-lr", type=float, default=math.inf, help="... up to this one")
    parser.add_argument("--clips", nargs="+", choices=tuple(CLIPS), default=tuple(CLIPS))
    args = parser.parse_args()
    done: list[tuple[str, int, float, int, float, float]] = read_runs(args.csv, _parse)
    seen = {(c, w, lr, s) for c, w, lr, s, _, _ in done}
    lrs = [lr for lr in LRS if args.min_lr <= lr <= args.max_lr]
    jobs = [j for j in product(args.clips, args.widths, lrs, range(SEEDS)) if j not in seen]
    with ProcessPoolExecutor(args.workers) as pool:
        record_runs(args.csv, FIELDS, pool.map(run, jobs), done)
    report(done)


def report(rows: list[tuple[str, int, float, int, float, float]]) -> None:
    """The transfer table for every target width, then the share of steps clipped per width and lr."""
    widths = sorted({w for _, w, _, _, _, _ in rows})
    print(f"built-in GPT (depth 2, 4 heads) under muP on the char-LM, {STEPS} Adam steps of {BATCH} x {SEQ_LEN}, "
          f"constant lr; base width {BASE}, widths {', '.join(map(str, widths))}; {SEEDS} seeds per lr; "
          f"lrs {LRS[0]:.3g}-{LRS[-1]:.3g} (2^0.5 steps)\n")
    results = [(c, w, lr, s, loss) for c, w, lr, s, loss, _ in rows]
    for target in (w for w in widths if w != BASE):
        trained = tuple(c for c in CLIPS if any(r[:2] == (c, target) for r in rows))
        print_transfer_table(results, trained, (BASE,), target, "clip_grad_norm")
        print()
    clipping = [c for c, value in CLIPS.items() if value is not None]
    columns = list(product(clipping, widths))
    print("share of steps clipped (mean over seeds; diverged seed runs count their steps before divergence)\n")
    print("| lr | " + " | ".join(f"clip {c}, width {w}" for c, w in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for lr in LRS:
        cells = [[f for c2, w2, lr2, _, _, f in rows if (c2, w2, lr2) == (c, w, lr)] for c, w in columns]
        print(f"| {lr:.4g} | " + " | ".join(f"{statistics.fmean(f):.0%}" if f else "-" for f in cells) + " |")
    print("\ndiverged seed runs (all lrs): " + "; ".join(
        f"clip {c}, width {w}: {sum(1 for c2, w2, _, _, loss, _ in rows if (c2, w2) == (c, w) and not math.isfinite(loss))}"
        for c, w in product(CLIPS, widths) if any(r[:2] == (c, w) for r in rows)))


def _parse(row: dict[str, str]) -> tuple[str, int, float, int, float, float]:
    return row["clip"], int(row["width"]), float(row["lr"]), int(row["seed"]), float(row["loss"]), float(row["clipped_fraction"])


if __name__ == "__main__":
    main()

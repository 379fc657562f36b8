"""Four forms of lr*(D, B) and the naive reuse, fitted on a committed batch sweep (GPT or MLP), scored at its measured targets.

The sweep (`transfer-gpt-batch-trials.csv`: GPT width 32 on the char-LM, batch 4-32 sequences of 32 tokens,
D = 2^15-2^17 tokens; or another trials CSV, below) is located per (D, B) cell as `scaleplan fit` locates it; then
- pooled: ln lr* = a + d ln D + k ln B (one lr-batch exponent for every D; `--lr-batch-interaction off`);
- B:D: the same plus c ln(B/B0) ln(D/D0) (`--lr-batch-interaction on`);
- surge (`scaleplan fit --lr-form surge`, scaleplan/fit/surge.py: unweighted least squares in ln lr*):
  lr* = lr_max(S) / cosh(1/2 ln(B / B_noise(S))), lr_max and B_noise power laws of the steps S = D / (32 B): Adam's
  optimal lr rises as sqrt(B) below the noise scale and falls above it (Li et al. 2024, "Surge phenomenon in optimal
  learning rate and batch size scaling").
- saturating (`scaleplan fit --lr-form saturating`; chosen after the first seven targets were trained): ln lr* =
  a + c ln S + 1/2 ln(B / (B + B_noise(S))), B_noise = e^n0 S^n1: lr* rises as sqrt(B) below the noise scale and
  levels off above it instead of falling (those targets' optima stayed at 0.026-0.041 over B = 64-512).
- naive: the optimum of the cell with the largest swept D, then the largest batch, reused unchanged.
Each form predicts the targets whose 10-seed lr grids are committed (batch 128 at D = 2^17 and 2^18,
measured before the surge form was tried; batch 256 at 2^18 and 64 at 2^19, predicted in batch-prereg.md
before they were trained; batch 128 at 2^19, 256 at 2^21, 512 at 2^20, 1024 and 2048 at 2^21, pre-registered
for the surge and saturating forms; 512 and 64 at 2^21, 512 and 128 at 2^22, 256 at 2^22, 64, 1024 and 256 at 2^20,
pre-registered for the saturating law and trained at its prediction), and its prediction is scored on the target's
smoothed curve (the validate reports' local model; outside that model's window, the seed means interpolated linearly
in ln lr, over the model's minimum). A form passes a target when its lr is within one 2^0.5 step (half an octave) of
the target's smoothed optimum and its smoothed regret is at most 1% (batch-prereg.md's criterion). Beside it: how far
the target's optimum itself moves with its seeds (the 95% percentile interval of the local model's optimum over 500
seed bootstrap replicates) and at how many targets each form's lr falls inside that interval; and at how many targets
the optimum falls inside the form's own 95% prediction interval (as `scaleplan predict` prints it), with the median
width of that interval.

    python benchmarks/batch_law_forms.py
    python benchmarks/batch_law_forms.py --trials transfer-gpt-batch-combined-trials.csv --at 524288,128
      (batch 1-32: gpt-batch's and gpt-batch-small's trials; --at prints each form's lr at targets not yet trained)
    python benchmarks/batch_law_forms.py --trials transfer-gpt-batch-extended-trials.csv
      (the same with batches 4-32 at D = 2^18 and 2^19 added: gpt-batch-long.toml, batch-prereg.md's extension addendum)
    python benchmarks/batch_law_forms.py --trials mlp-batch/transfer-mlp-batch-trials.csv --targets mlp
      (the MLP teacher-student sweep, batch 4-32 samples, and its ten targets: mlp-batch/prereg.md; --targets
      mlp-50-seeds: the same targets trained with 50 seeds, mlp-batch/seeds50/; --targets gpt-50-seeds: the char-LM's
      targets trained with 50 seeds on a GPU, gpt-batch-seeds50/, those trained)
A second criterion beside it is the issue's wording: the best lr trained on the target's 2^0.5 grid within one step
of the form's lr (and smoothed regret at most 1%).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scaleplan.fit.data import prepare_trials
from scaleplan.fit.law_file import power_law_record
from scaleplan.fit.multi_axis import fit_multi_axis
from scaleplan.fit.surge import fit_surge
from scaleplan.laws import PowerLaw, SurgeLaw
from scaleplan.validate.regret import best_point, interval_of_optima, local_model, optimum_replicates
from scaleplan.validate.report import read_target_grids

RESULTS = Path(__file__).resolve().parent / "results"
GPT_TARGETS = {"gpt-batch.md": (2.0**17, 128.0), "gpt-batch-d18.md": (2.0**18, 128.0),  # measured before the surge form
           "gpt-batch-d18-b256.md": (2.0**18, 256.0), "gpt-batch-d19-b64.md": (2.0**19, 64.0),  # after: batch-prereg.md
           "gpt-batch-surge/gpt-batch-d19-b128.md": (2.0**19, 128.0),  # after the forms' refit on batch 1-32 (its addendum)
           # after `fit --lr-form surge` shipped, trained at the surge law's own prediction (the surge addendum)
           "gpt-batch-surge/d21-b256/gpt-batch-wide-d21-b256.md": (2.0**21, 256.0),
           "gpt-batch-surge/d20-b512/gpt-batch-wide-d20-b512.md": (2.0**20, 512.0),
           # after the saturating form was added (its addendum)
           "gpt-batch-surge/d21-b1024/gpt-batch-wide-d21-b1024.md": (2.0**21, 1024.0),
           "gpt-batch-surge/d21-b2048/gpt-batch-wide-d21-b2048.md": (2.0**21, 2048.0),
           # after `fit --lr-form saturating` shipped, trained at the saturating law's own prediction (its addendum)
           "gpt-batch-saturating/d21-b512/gpt-batch-sat-d21-b512.md": (2.0**21, 512.0),
           "gpt-batch-saturating/d21-b64/gpt-batch-sat-d21-b64.md": (2.0**21, 64.0),
           "gpt-batch-saturating/d22-b512/gpt-batch-sat-d22-b512.md": (2.0**22, 512.0),
           "gpt-batch-saturating/d22-b128/gpt-batch-sat-d22-b128.md": (2.0**22, 128.0),
           # after the extended sweep was pre-registered (the extension addendum), trained at the saturating law's prediction
           "gpt-batch-saturating/d22-b256/gpt-batch-sat-d22-b256.md": (2.0**22, 256.0),
           "gpt-batch-saturating/d20-b64/gpt-batch-sat-d20-b64.md": (2.0**20, 64.0),
           "gpt-batch-saturating/d20-b1024/gpt-batch-sat-d20-b1024.md": (2.0**20, 1024.0),  # its second round
           "gpt-batch-saturating/d20-b256/gpt-batch-sat-d20-b256.md": (2.0**20, 256.0)}
# the MLP teacher-student sweep's targets (mlp-batch/prereg.md), trained at the power law's prediction; D in samples
MLP_TARGETS = {"mlp-batch/mlp-batch-t1.md": (2.0**15, 128.0), "mlp-batch/mlp-batch-t2.md": (2.0**16, 128.0),
               "mlp-batch/mlp-batch-t3.md": (2.0**16, 256.0), "mlp-batch/mlp-batch-t4.md": (2.0**17, 512.0),
               "mlp-batch/mlp-batch-t5.md": (2.0**17, 128.0),
               # the second round (its addendum)
               "mlp-batch/mlp-batch-r1.md": (2.0**15, 256.0), "mlp-batch/mlp-batch-r2.md": (2.0**18, 128.0),
               "mlp-batch/mlp-batch-r3.md": (2.0**18, 1024.0), "mlp-batch/mlp-batch-r4.md": (2.0**17, 256.0),
               "mlp-batch/mlp-batch-r5.md": (2.0**16, 512.0)}
# the same ten targets trained again with 50 seeds (its third addendum)
MLP_50_SEEDS = {report.replace("mlp-batch/", "mlp-batch/seeds50/"): at for report, at in MLP_TARGETS.items()}
# the char-LM's 17 targets trained again with 50 seeds on a GPU (gpt-batch-seeds50/prereg.md)
GPT_50_SEEDS = {f"gpt-batch-seeds50/d{int(math.log2(dd))}-b{int(bb)}/gpt-batch-s50-d{int(math.log2(dd))}-b{int(bb)}.md": (dd, bb)
                for dd, bb in GPT_TARGETS.values()}
TARGET_SETS = {"gpt": GPT_TARGETS, "gpt-50-seeds": GPT_50_SEEDS, "mlp": MLP_TARGETS, "mlp-50-seeds": MLP_50_SEEDS}


STEP = 0.5  # octaves: one 2^0.5 grid step
ROUNDING = 0.01  # octaves: the reports print lrs to 4 digits, so neighbours on a 2^0.5 grid read 0.499-0.501 apart
MAX_REGRET = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", default="transfer-gpt-batch-trials.csv", help="a trials CSV in benchmarks/results")
    parser.add_argument("--targets", choices=sorted(TARGET_SETS), default="gpt",
                        help="whose measured targets to score: the GPT char-LM's or the MLP's (mlp-batch/prereg.md; 10 or 50 seeds)")
    parser.add_argument("--at", action="append", default=[], metavar="D,B", help="also print each form's lr at tokens D, batch B")
    args = parser.parse_args()
    targets = {report: at for report, at in TARGET_SETS[args.targets].items() if (RESULTS / report).exists()}
    untrained = [report for report in TARGET_SETS[args.targets] if report not in targets]
    frame = pd.read_csv(RESULTS / args.trials)
    trials = prepare_trials(frame, x="width")
    # as the committed law's command fits them: WLS with weights from 200 bootstrap replicates, seed 0
    pooled = fit_multi_axis(trials, ("width",), by_batch=True, n_boot=200, batch_interaction="off")
    drifting = fit_multi_axis(trials, ("width",), by_batch=True, n_boot=200, batch_interaction="on")
    d = np.array([c.coords["D"] for c in pooled.cells])
    b = np.array([c.coords["batch_size"] for c in pooled.cells])
    log_lr = np.log([o.lr for o in pooled.optima])
    steps = np.array([c.steps for c in pooled.cells], dtype=float)
    surge = fit_surge({"D": d, "B": b}, np.exp(log_lr), steps, []).law
    saturating = fit_surge({"D": d, "B": b}, np.exp(log_lr), steps, [], form="saturating").law
    swept: dict[str, np.ndarray | float] = {"D": d, "B": b}  # the cells' coordinates as the laws' variables
    fitted_logs = {"pooled": np.log(pooled.lr.predict(swept)), "B:D": np.log(drifting.lr.predict(swept)),
                   "surge": surge.log_value(swept, np), "saturating": saturating.log_value(swept, np)}
    rms = {name: float(np.sqrt(np.mean((logs - log_lr) ** 2))) for name, logs in fitted_logs.items()}
    naive_cell = max(range(len(pooled.cells)), key=lambda i: (d[i], b[i]))  # the largest swept D, then batch
    laws = {"pooled": lambda dd, bb: float(pooled.lr.predict({"D": dd, "B": bb})),
            "B:D": lambda dd, bb: float(drifting.lr.predict({"D": dd, "B": bb})),
            "surge": lambda dd, bb: math.exp(surge.log_value({"D": dd, "B": bb})),
            "saturating": lambda dd, bb: math.exp(saturating.log_value({"D": dd, "B": bb})),
            "naive": lambda dd, bb: float(pooled.optima[naive_cell].lr)}
    records: dict[str, PowerLaw | SurgeLaw] = {  # each form's 95% prediction interval, as `scaleplan predict` gives it
        "pooled": power_law_record(pooled.lr, "lr"), "B:D": power_law_record(drifting.lr, "lr"), "surge": surge,
        "saturating": saturating}
    sizes = {"pooled": pooled.lr.coefficients().size, "B:D": drifting.lr.coefficients().size, "surge": len(surge.coefficients()),
             "saturating": len(saturating.coefficients())}
    n0, n1 = surge.noise_intercept, surge.noise_exponent
    print(f"# lr*(D, B) forms on {len(pooled.cells)} cells of {args.trials}\n")
    if untrained:
        print(f"Not trained (no report), so not scored: {', '.join(untrained)}\n")
    print(f"surge fit: lr_max ~ S^{surge.step_exponent:.3f}, B_noise = {math.exp(n0):.3g} * S^{n1:.3f} examples "
          f"(B_noise at S = 32 / 1024: {math.exp(n0 + n1 * math.log(32)):.3g} / {math.exp(n0 + n1 * math.log(1024)):.3g})\n")
    curves, means, spans, oracle, best = {}, {}, {}, {}, {}
    for report in targets:
        grid = next(iter(read_target_grids((RESULTS / report).read_text()).values()))  # each report trained one spec
        finite = [p for p in grid.points if p.finite]
        model = local_model(finite)
        assert model is not None, report
        curves[report] = model
        best[report] = best_point(finite).lr
        means[report] = (np.log([p.lr for p in finite]), np.array([p.mean for p in finite]))
        replicates = optimum_replicates(finite)
        spans[report] = interval_of_optima(replicates)
        # how often a predictor at the true optimum would pass: the replicates' optima within one step of the optimum
        oracle[report] = (float(np.mean([abs(math.log2(r / model.vertex_lr)) <= STEP for r in replicates.optima]))
                          if replicates and replicates.optima else math.nan)
    print("| form | parameters | rms of ln lr* over the cells | " + " | ".join(
        f"batch {int(bb)}, D = 2^{int(math.log2(dd))}: lr (smoothed regret)" for dd, bb in targets.values())
          + " | passes (one step, <= 1%) | the best lr trained within one step (<= 1%) | inside the optimum's interval | optimum inside the form's 95% PI "
          "(its median width, octaves) |")
    print("|---|---|---|" + "---|" * (len(targets) + 4))
    for name, law in laws.items():
        cells, passes, grid_passes, inside, covered, widths = [], 0, 0, 0, 0, []
        for report, (dd, bb) in targets.items():
            lr, model = law(dd, bb), curves[report]
            u, y = means[report]
            if model.covers(lr):
                regret, how = model.loss(lr) / model.min_loss - 1, ""
            elif u[0] <= math.log(lr) <= u[-1]:
                regret, how = float(np.interp(math.log(lr), u, y)) / model.min_loss - 1, ", interpolated"
            else:
                regret, how = math.inf, ""
            passes += abs(math.log2(lr / model.vertex_lr)) <= STEP and regret <= MAX_REGRET
            grid_passes += abs(math.log2(lr / best[report])) <= STEP + ROUNDING and regret <= MAX_REGRET
            span = spans[report]
            inside += span is not None and span[0] <= lr <= span[1]
            if name in records:
                estimate = records[name].predict({"D": dd, "B": bb})
                covered += estimate.holds(model.vertex_lr)
                if estimate.octaves is not None:
                    widths.append(estimate.octaves)
            cells.append(f"{lr:.4g} ({regret:.2%}{how})" if math.isfinite(regret) else f"{lr:.4g} (outside the grid)")
        fitted = f"{sizes[name]} | {rms[name]:.3f}" if name in sizes else "0 | -"
        coverage = f"{covered} of {len(targets)} ({np.median(widths):.2f})" if widths else "-"
        print(f"| {name} | {fitted} | " + " | ".join(cells) + f" | {passes} of {len(targets)} | {grid_passes} of {len(targets)} "
              f"| {inside} of {len(targets)} "
              f"| {coverage} |")
    optima = []
    for report, model in curves.items():
        span = spans[report]
        where = "" if span is None else f" ({span[0]:.4g}-{span[1]:.4g}; {math.log2(span[1] / span[0]) / 2:.2f})"
        optima.append(f"{report}: {model.vertex_lr:.4g}{where}; {oracle[report]:.2f}")
    print("\nThe targets' smoothed optima (95% interval over seed bootstrap replicates; its half-width in octaves; the "
          "share of replicates within one step of it): " + ", ".join(optima))
    shares = np.array(list(oracle.values()))
    print(f"\nA predictor at each target's true optimum would land within one step of the measured one at about "
          f"{np.nansum(shares):.1f} of {len(targets)} targets, and at all of them with probability {np.prod(shares):.2f} "
          "(the seed bootstrap's share per target; the octave part of the criterion only)")
    for at in args.at:
        dd, bb = (float(v) for v in at.split(","))
        print(f"\nAt batch {bb:g}, D = {dd:g} (not trained): " + ", ".join(f"{name} {law(dd, bb):.4g}" for name, law in laws.items()))


if __name__ == "__main__":
    main()

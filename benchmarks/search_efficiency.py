"""Trial-steps each search spends to locate lr*: dense grid, random, TPE, GP and adaptive, side by side in one run.

For each reference family (MLP teacher-student, GPT char-LM, DenseAM; CPU-sized, see FAMILIES) and each
width of its ladder, the ground truth is a dense grid (the spec's lr grid refined 2x near the optimum)
trained with 8 seeds; its smoothed optimum is the local parabola in ln lr fitted to the trials near it
(`scaleplan.sweep.adaptive.estimate`: a window in lr around the vertex), and the regret of an lr is its
loss relative to the minimum of `scaleplan validate`'s smoothed curve (an asymmetric parabola through the
8-seed means near the minimum; the means themselves outside its window). The ground truth is cached in
benchmarks/results/search_efficiency_truth.csv (computed when missing).

Each repetition r trains with seeds (r, r+3, r+6) mod 8 and sampler seed r, the same for every method:
- grid: the spec's dense grid at those seeds (read from the cached truth: the same trainings);
- random, tpe, gp, adaptive: a real `scaleplan sweep` (journal storage in a temporary folder, one worker,
  populations as the sweep forms them), with at most the grid's trials per grid point;
- adaptive-tol: the adaptive sweep with `max_regret = 0`, so that a cell stops only when its lr*'s 95%
  interval lies within ±10% or its budget is spent, not when the interval's regret is small enough (the
  default's second rule, which stops flat cells early).
After every trial the located lr* of each width is the same local parabola's optimum of that width's
trials so far, for every method: the comparison is between the trials the searches choose, not between
estimators. (`scaleplan fit`'s `locate_optimum` picks its points by loss, within 2% of the best result; on
these asymmetric curves it sits 0.1-0.3 in ln lr above the mean curve's minimum even on the 8-seed truth,
see the table, and with many noisy points near the optimum it picks the lucky ones.) Reported per family and method, median over repetitions:
- ±10%: trial-steps until every width's located lr* lies within ±10% of the truth (each width's first
  such trial; FLOP-weighted over the ladder: trial-steps x N / N of the smallest width), as a ratio
  grid / method, with how many repetitions got there within the budget, and the regret there;
- regret ≤ 0.3%: the same, until every width's located lr* costs at most 0.3%;
- at the end: the cost of the whole run (the adaptive search stops by itself; the others spend their
  budget), and the error and regret of what it reports then.
Random/TPE/GP runs stop early once every width has met both criteria (the cost counted is the same).

    python benchmarks/search_efficiency.py [--reps 5] [--families mlp,gpt,denseam] [--device cpu|cuda] [--out FILE.md]

On a GPU (`--device cuda`) the ground truth is trained there too, cached in search_efficiency_truth_cuda.csv.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaleplan.fit.optimum import locate_optimum
from scaleplan.sweep.adaptive import Observation, estimate
from scaleplan.sweep.spec import SweepSpec, parse_spec
from scaleplan.fit.local_model import LocalModel, fit_local_model

RESULTS = Path(__file__).resolve().parent / "results"
TRUTH_SEEDS = tuple(range(8))
TOLERANCE = 0.10
MAX_REGRET = 0.003
METHODS = ("grid", "random", "tpe", "gp", "adaptive", "adaptive-tol")
VARIANTS = {"adaptive-tol": ("adaptive", {"max_regret": 0.0})}  # method -> (sampler, [sweep] settings)
CHUNK = 6  # trials per run_sweep call for the samplers stopped early

# CPU-sized reference families: the transfer specs' settings (sweeps/transfer/), the GPT shortened to fit.
FAMILIES: dict[str, dict] = {
    "mlp": {
        "task": {"name": "teacher-student"},
        "model": {"name": "mlp", "parametrization": "mup", "base_width": 32, "kwargs": {"depth": 3}},
        "train": {"optimizer": "adam"},
        "ladder": {"widths": [32, 64, 128], "steps": [400]},
        "search": {"lr": {"low": 1e-4, "high": 1e-1, "points": 16}, "batch_size": [64]},
    },
    "gpt": {
        "task": {"name": "charlm", "kwargs": {"seq_len": 32, "n_eval": 64}},
        "model": {"name": "gpt", "parametrization": "mup", "base_width": 32, "kwargs": {"depth": 2, "n_heads": 4}},
        "train": {"optimizer": "adam"},
        "ladder": {"widths": [32, 64], "steps": [150]},
        "search": {"lr": {"low": 3e-4, "high": 3e-1, "points": 14}, "batch_size": [16]},
    },
    "denseam": {
        "task": {"name": "patterns"},
        "model": {"name": "denseam", "parametrization": "denseam", "base_width": 32,
                  "kwargs": {"n_memories": 32, "steps": 4, "beta0": 1.0, "tau": 1.0}},
        "train": {"optimizer": "adam"},
        "ladder": {"widths": [32, 64, 128], "steps": [300]},
        "search": {"lr": {"low": 3e-4, "high": 1.0, "points": 16}, "batch_size": [64]},
    },
}


def truth_csv(device: str) -> Path:
    """Where the ground truth trained on `device` is cached (CPU and GPU numerics differ)."""
    return RESULTS / ("search_efficiency_truth.csv" if device == "cpu" else f"search_efficiency_truth_{device.split(':')[0]}.csv")


def family_spec(family: str, method: str, seeds: tuple[int, ...], seed: int = 0, name: str | None = None) -> SweepSpec:
    """The family as a sweep spec for `method` (a sampler, or a VARIANTS entry); every sampler gets at most the
    grid's trials per grid point."""
    sampler, settings = VARIANTS.get(method, (method, {}))
    raw = {key: dict(value) for key, value in FAMILIES[family].items()}
    grid = raw["search"]["lr"]
    search = dict(raw["search"])
    if sampler != "grid":
        search["lr"] = {"low": grid["low"], "high": grid["high"]}
    sweep = {"name": name or f"{family}-{method}", "sampler": sampler, "seeds": list(seeds), "seed": seed, **settings}
    if sampler != "grid":
        sweep["trials_per_point"] = grid["points"]
    return parse_spec({**raw, "search": search, "sweep": sweep}, source=f"<{family}>")


def lr_grid(spec: SweepSpec) -> list[float]:
    """The grid spec's lr points."""
    lr = spec.search_param("lr")
    assert lr is not None
    return list(lr.grid() or ())


# ----------------------------------------------------------------------------------------------- truth


def _evaluate(spec: SweepSpec, width: int, lrs: list[float], device: str) -> list[dict]:
    """Train every lr with every truth seed at `width` on `device`, 16 trials per population."""
    from scaleplan.sweep.builtin import BuiltinObjective
    from scaleplan.sweep.plan import GridPoint
    from scaleplan.sweep.trial import TrialRequest

    objective = BuiltinObjective(spec, device)
    point = lambda seed: GridPoint(width, spec.steps[0], spec.batch_sizes[0], seed)  # noqa: E731
    requests = [TrialRequest(point(seed), {"lr": lr}) for lr in lrs for seed in TRUTH_SEEDS]
    rows = []
    for start in range(0, len(requests), 16):
        chunk = requests[start:start + 16]
        for request, outcome in zip(chunk, objective.evaluate(chunk)):
            rows.append({"width": width, "lr": request.params["lr"], "seed": request.point.seed, "N": outcome.n_params,
                         "loss": None if outcome.diverged else outcome.loss, "diverged": outcome.diverged})
    return rows


def compute_truth(family: str, path: Path, device: str) -> None:
    """Append the family's missing widths to the truth CSV: the grid at 8 seeds, then the midpoints near the optimum.

    A midpoint is trained when the 8-seed mean loss of one of its two grid neighbours lies within 10% of
    the grid's smallest mean loss (far from the optimum the grid's points are enough).
    """
    have = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["family", "width"])
    spec = family_spec(family, "grid", TRUTH_SEEDS)
    grid = lr_grid(spec)
    for width in spec.widths:
        if ((have["family"] == family) & (have["width"] == width)).any():
            continue
        start = time.perf_counter()
        rows = _evaluate(spec, width, grid, device)
        means = pd.DataFrame(rows).groupby("lr")["loss"].mean().reindex(grid)
        best = means.min()
        near = [i for i in range(len(grid) - 1) if min(means.iloc[i], means.iloc[i + 1]) <= 1.1 * best]
        rows += _evaluate(spec, width, [math.sqrt(grid[i] * grid[i + 1]) for i in near], device)
        new = not path.is_file()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["family", "width", "lr", "seed", "N", "loss", "diverged"])
            if new:
                writer.writeheader()
            for row in rows:
                writer.writerow({"family": family, **row, "lr": repr(row["lr"]),
                                 "loss": "" if row["loss"] is None else repr(row["loss"])})
        print(f"truth {family} width {width}: {len(rows)} trials in {time.perf_counter() - start:.0f} s", flush=True)


@dataclass(frozen=True)
class WidthTruth:
    """One width's ground truth: lr* (the local parabola of every trial, with its 95% interval), the loss curve
    for regrets (validate's asymmetric parabola through the 8-seed means near the minimum, the means elsewhere),
    N, and what two other smoothers make of the same trials (`locate_optimum`; the asymmetric parabola's vertex)."""

    lr: float
    low: float
    high: float
    model: LocalModel | None  # None when fewer than 4 lrs lie within an octave of the lowest mean
    curve_u: np.ndarray
    curve_loss: np.ndarray
    n_params: int
    fit_lr: float

    def loss(self, lr: float) -> float:
        if self.model is not None and self.model.covers(lr):
            return self.model.loss(lr)
        return float(np.interp(math.log(lr), self.curve_u, self.curve_loss))

    def regret(self, lr: float) -> float:
        best = self.model.min_loss if self.model is not None else float(np.min(self.curve_loss))
        return self.loss(lr) / best - 1.0


def load_truth(path: Path, family: str) -> dict[int, WidthTruth]:
    frame = pd.read_csv(path)
    frame = frame[(frame["family"] == family) & ~frame["diverged"].astype(bool)]
    out = {}
    for width, cell in frame.groupby("width"):
        lrs, losses = cell["lr"].to_numpy(float), cell["loss"].to_numpy(float)
        found = estimate([Observation(lr, loss) for lr, loss in zip(lrs, losses)])
        assert found is not None and found.bracketed, f"{family} width {width}: no optimum inside the truth grid"
        means = cell.groupby("lr")["loss"].mean()
        model = fit_local_model(means.index.to_numpy(float), means.to_numpy(float))
        out[int(width)] = WidthTruth(found.lr, found.low, found.high, model, np.log(means.index.to_numpy(float)),
                                     means.to_numpy(float), int(cell["N"].iloc[0]), locate_optimum(lrs, losses).lr)
    return out


# --------------------------------------------------------------------------------------------- methods


def grid_trials(family: str, seeds: tuple[int, ...], path: Path) -> pd.DataFrame:
    """The dense grid at `seeds`, read from the truth, in the order a grid sweep enqueues it (point by point)."""
    spec = family_spec(family, "grid", seeds)
    grid = lr_grid(spec)
    frame = pd.read_csv(path)
    frame = frame[frame["family"] == family]
    rows = []
    for width in spec.widths:
        for seed in seeds:
            for lr in grid:
                match = frame[(frame["width"] == width) & (frame["seed"] == seed) & np.isclose(frame["lr"], lr, rtol=1e-12)]
                rows.append(match.iloc[0])
    return pd.DataFrame(rows).reset_index(drop=True)


def sweep_trials(family: str, method: str, seeds: tuple[int, ...], rep: int, folder: Path, device: str,
                 enough: Callable[[pd.DataFrame], bool]) -> pd.DataFrame:
    """Run the family's sweep for `method` on `device`; random/TPE/GP in chunks until `enough(trials)` or the
    budget is spent (the adaptive searches stop by themselves)."""
    from scaleplan.sweep.export import load_trials
    from scaleplan.sweep.runner import run_sweep

    spec = family_spec(family, method, seeds, seed=rep, name=f"{family}-{method}-{rep}")
    storage = str(folder / f"{spec.name}.journal")
    adaptive = spec.sampler == "adaptive"
    while True:
        summary = run_sweep(spec, storage, max_trials=None if adaptive else CHUNK, device=device)
        frame = load_trials(spec, storage=storage)
        frame = frame[frame["state"] == "COMPLETE"].sort_values("trial").reset_index(drop=True)
        if adaptive or summary.complete >= summary.planned or enough(frame):
            return frame


# --------------------------------------------------------------------------------------------- metrics


def located(cell: pd.DataFrame) -> float | None:
    """The located lr* of one width's trials so far (None with fewer than 3 distinct finite lrs)."""
    ok = cell[~cell["diverged"].astype(bool) & cell["loss"].notna()]
    found = estimate([Observation(lr, loss) for lr, loss in zip(ok["lr"].to_numpy(float), ok["loss"].to_numpy(float))])
    return None if found is None else found.lr


@dataclass(frozen=True)
class WidthTrace:
    """Per width: trials spent when lr* was first within ±10% and first at regret <= 0.3% (None: never), the total."""

    hit10: int | None
    regret10: float | None
    hit_regret: int | None
    total: int
    final_error: float | None
    final_regret: float | None


def trace(cell: pd.DataFrame, truth: WidthTruth) -> WidthTrace:
    hit10 = hit_regret = None
    regret10 = None
    lr = None
    for n in range(1, len(cell) + 1):
        lr = located(cell.iloc[:n])
        if lr is None:
            continue
        if hit10 is None and abs(math.log(lr / truth.lr)) <= math.log1p(TOLERANCE):
            hit10, regret10 = n, truth.regret(lr)
        if hit_regret is None and truth.regret(lr) <= MAX_REGRET:
            hit_regret = n
    final_error = None if lr is None else math.log(lr / truth.lr)
    return WidthTrace(hit10, regret10, hit_regret, len(cell), final_error, None if lr is None else truth.regret(lr))


def both_met(frame: pd.DataFrame, truths: dict[int, WidthTruth]) -> bool:
    """True once every width has had its located lr* within ±10% and at regret <= 0.3% (stops a run early)."""
    for width, truth in truths.items():
        t = trace(frame[frame["width"] == width], truth)
        if t.hit10 is None or t.hit_regret is None:
            return False
    return True


@dataclass(frozen=True)
class RunResult:
    """One method, one repetition: FLOP-weighted trial-steps to each criterion (None: not met), and at the end."""

    cost10: float | None
    regret10: float | None  # the worst width's regret when every width had met ±10%
    cost_regret: float | None
    cost_end: float
    error_end: float | None  # the largest |ln(lr / lr*)| over widths at the end
    regret_end: float | None


def summarize(frame: pd.DataFrame, truths: dict[int, WidthTruth], steps: int) -> RunResult:
    base = min(t.n_params for t in truths.values())
    weight = {w: steps * t.n_params / base for w, t in truths.items()}
    traces = {w: trace(frame[frame["width"] == w], t) for w, t in truths.items()}

    def cost(hits: dict[int, int | None]) -> float | None:
        """FLOP-weighted trial-steps until every width got there (None if one never did)."""
        counts = [(w, n) for w, n in hits.items() if n is not None]
        return sum(weight[w] * n for w, n in counts) if len(counts) == len(hits) else None

    def worst(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) if known and len(known) == len(values) else None

    return RunResult(
        cost10=cost({w: t.hit10 for w, t in traces.items()}),
        regret10=worst([t.regret10 for t in traces.values()]),  # set with hit10: None until every width met ±10%
        cost_regret=cost({w: t.hit_regret for w, t in traces.items()}),
        cost_end=sum(weight[w] * t.total for w, t in traces.items()),
        error_end=worst([None if t.final_error is None else abs(t.final_error) for t in traces.values()]),
        regret_end=worst([t.final_regret for t in traces.values()]),
    )


# ---------------------------------------------------------------------------------------------- report


def _median(values: list[float | None]) -> float | None:
    """Median with a missing value counted as +inf (a run that never got there costs more than any that did)."""
    keyed = sorted(math.inf if v is None else v for v in values)
    mid = keyed[len(keyed) // 2] if len(keyed) % 2 else 0.5 * (keyed[len(keyed) // 2 - 1] + keyed[len(keyed) // 2])
    return None if math.isinf(mid) else mid


def _ratio(grid: float, cost: float | None) -> str:
    return "not reached" if cost is None else f"{grid / cost:.1f}x"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def report(results: dict[str, dict[str, list[RunResult]]], truths: dict[str, dict[int, WidthTruth]], args: argparse.Namespace,
           seconds: float) -> str:
    lines = [
        "# Search efficiency: trial-steps to locate lr*, dense grid vs random, TPE, GP and adaptive",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/search_efficiency.py', *sys.argv[1:]])}` "
        f"({_machine(args.device)}, {seconds / 60:.0f} min wall clock).",
        "",
        f"{args.reps} repetitions; repetition r trains seeds (r, r+3, r+6) mod 8 with sampler seed r, the same for every",
        "method. Costs are trial-steps summed over the widths, weighted by N (FLOPs per step) relative to the",
        "smallest width; ratios are the dense grid's whole cost / the method's cost (higher is cheaper), the median",
        "over repetitions (a repetition that never met the criterion counts as infinitely expensive). Errors are",
        "|ln(lr / lr*)| at the worst width; regrets are relative losses on the ground truth's smoothed curve.",
        "adaptive is the sampler's default (a width stops when its lr*'s 95% interval lies within ±10%, or when every lr",
        "in it costs at most 0.3%); adaptive-tol is the same sweep with `max_regret = 0` (it stops on ±10% or its budget).",
        "",
        "Ground truth (8 seeds, dense grid refined 2x near the optimum). lr* is the local parabola's optimum of all",
        "its trials; two other smoothers of the same trials show how well lr* is defined at all:",
        "",
        "| family | width | N | lr* (95% interval) | asymmetric parabola's vertex (its window) | `locate_optimum` | "
        "regret at lr* x 1.1 / x 2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for family, per_width in truths.items():
        for width, t in per_width.items():
            m = t.model
            vertex = "none (means interpolated)" if m is None else f"{m.vertex_lr:.3g} ({m.low_lr:.3g}-{m.high_lr:.3g})"
            lines.append(f"| {family} | {width} | {t.n_params} | {t.lr:.3g} ({t.low:.3g}-{t.high:.3g}) | "
                         f"{vertex} | {t.fit_lr:.3g} | "
                         f"{_pct(t.regret(t.lr * 1.1))} / {_pct(t.regret(t.lr * 2))} |")
    lines += [
        "",
        "| family | method | ±10%: grid/method (reps met) | regret there | regret ≤ 0.3%: grid/method (reps met) | "
        "whole run: grid/method | error at end | regret at end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for family, per_method in results.items():
        grid_cost = _median([r.cost_end for r in per_method["grid"]])
        assert grid_cost is not None
        for method, runs in per_method.items():
            met10 = sum(r.cost10 is not None for r in runs)
            met_regret = sum(r.cost_regret is not None for r in runs)
            lines.append(
                f"| {family} | {method} | {_ratio(grid_cost, _median([r.cost10 for r in runs]))} ({met10}/{len(runs)}) | "
                f"{_pct(_median([r.regret10 for r in runs]))} | "
                f"{_ratio(grid_cost, _median([r.cost_regret for r in runs]))} ({met_regret}/{len(runs)}) | "
                f"{_ratio(grid_cost, _median([r.cost_end for r in runs]))} | "
                f"{_fmt(_median([r.error_end for r in runs]))} | {_pct(_median([r.regret_end for r in runs]))} |"
            )
    lines += ["", "Per repetition (costs in thousands of weighted trial-steps; '-' = not met):", "",
              "| family | method | ±10% | regret ≤ 0.3% | whole run | error at end | regret at end |", "|---|---|---|---|---|---|---|"]
    for family, per_method in results.items():
        for method, runs in per_method.items():
            cell = lambda xs, f: " ".join(f(x) for x in xs)  # noqa: E731
            k = lambda x: "-" if x is None else f"{x / 1000:.0f}"  # noqa: E731
            lines.append(f"| {family} | {method} | {cell([r.cost10 for r in runs], k)} | {cell([r.cost_regret for r in runs], k)} | "
                         f"{cell([r.cost_end for r in runs], k)} | {cell([r.error_end for r in runs], _fmt)} | "
                         f"{cell([r.regret_end for r in runs], _pct)} |")
    return "\n".join(lines) + "\n"


def _machine(device: str) -> str:
    if device == "cpu":
        return f"{platform.processor() or platform.machine()}, 1 torch thread"
    import torch

    return torch.cuda.get_device_name(torch.device(device))


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: where every trial trains")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here (markdown)")
    parser.add_argument("--truth-only", action="store_true", help="compute the missing ground truth and stop")
    parser.add_argument("--resume", type=Path, default=None,
                        help="JSON file of finished (family, method, repetition) results: read, skipped, appended")
    args = parser.parse_args()
    if not 1 <= args.reps <= len(TRUTH_SEEDS):
        parser.error(f"--reps must be 1-{len(TRUTH_SEEDS)}: repetition r trains seeds (r, r+3, r+6) mod {len(TRUTH_SEEDS)}, "
                     f"so repetition {len(TRUTH_SEEDS)} would repeat repetition 0")
    import torch

    if args.device != "cpu" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA GPU here")
    torch.set_num_threads(1)
    path = truth_csv(args.device)
    start = time.perf_counter()
    families = args.families.split(",")
    methods = args.methods.split(",")
    if "grid" not in methods:
        methods.insert(0, "grid")
    truths: dict[str, dict[int, WidthTruth]] = {}
    results: dict[str, dict[str, list[RunResult]]] = {}
    done = json.loads(args.resume.read_text()) if args.resume is not None and args.resume.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="search-efficiency-") as tmp:
        for family in families:
            compute_truth(family, path, args.device)
            if args.truth_only:
                continue
            try:
                truths[family] = truth = load_truth(path, family)
            except AssertionError as exc:  # reported, and the other families still run
                print(f"skipping {family}: {exc}", flush=True)
                continue
            steps = FAMILIES[family]["ladder"]["steps"][0]
            results[family] = {m: [] for m in methods}
            for rep in range(args.reps):
                seeds = tuple(sorted({rep % 8, (rep + 3) % 8, (rep + 6) % 8}))
                for method in methods:
                    began = time.perf_counter()
                    key = f"{family}/{method}/{rep}"
                    if key in done:
                        result = RunResult(**done[key])
                        results[family][method].append(result)
                        continue
                    if method == "grid":
                        frame = grid_trials(family, seeds, path)
                    else:
                        frame = sweep_trials(family, method, seeds, rep, Path(tmp), args.device,
                                             lambda f: both_met(f, truth))
                    result = summarize(frame, truth, steps)
                    if args.resume is not None:
                        done[key] = dataclasses.asdict(result)
                        args.resume.write_text(json.dumps(done, indent=1))
                    results[family][method].append(result)
                    print(f"{family} rep {rep} {method}: {len(frame)} trials, {result} "
                          f"({time.perf_counter() - began:.0f} s)", flush=True)
    if args.truth_only:
        return
    text = report(results, truths, args, time.perf_counter() - start)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

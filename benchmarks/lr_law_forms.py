"""The power law against the finite-width form on every committed width-transfer result, scored without training.

For each report in benchmarks/results whose target is a width (`validate --target width=W`) and whose law file has
its sweep's trials beside it, the trials are refitted by the law's own fit command, once with `--lr-form power`
(lr* = a W^e) and once with `--lr-form finite-width` (ln lr* = a + c (W/W_min)^-1/2), and each law predicts the
target's lr, scored on the target grid's smoothed curve (`validate`'s local model; outside its window, the seed
means interpolated linearly in ln lr, over the model's minimum). It answers where the finite-width form is safe:
it assumes that lr* has a width-independent limit, which SP does not have.

    python benchmarks/lr_law_forms.py > benchmarks/results/lr-law-forms.md      (a few minutes: one refit per law)
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from scaleplan.laws import LawFile
from scaleplan.validate.regret import local_model
from scaleplan.validate.report import read_target_grids

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def refit(law_path: Path, form: str, out: Path) -> LawFile:
    """The committed law's fit command on its trials CSV, with `--lr-form form`."""
    args = shlex.split(json.loads(law_path.read_text())["provenance"]["command"])
    args[2] = str(law_path.with_name(law_path.stem + "-trials.csv"))
    if "--storage" in args:
        del args[args.index("--storage"):args.index("--storage") + 2]
    if "--lr-form" in args:
        del args[args.index("--lr-form"):args.index("--lr-form") + 2]
    args[args.index("-o" if "-o" in args else "--output") + 1] = str(out)
    done = subprocess.run([sys.executable, "-m", "scaleplan.cli", *args[1:], "--lr-form", form],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{law_path.name}: {done.stderr.strip()}")
    return LawFile.load(out)


def score(grid_points: list, lr: float) -> str:
    """`0.0123 (0.45%)`: the lr and its smoothed regret on the target grid (see the module docstring)."""
    finite = [p for p in grid_points if p.finite]
    model = local_model(finite)
    assert model is not None
    if model.covers(lr):
        return f"{lr:.4g} ({model.loss(lr) / model.min_loss - 1:.2%})"
    u, y = np.log([p.lr for p in finite]), np.array([p.mean for p in finite])
    if u[0] <= math.log(lr) <= u[-1]:
        return f"{lr:.4g} ({float(np.interp(math.log(lr), u, y)) / model.min_loss - 1:.2%}, interpolated)"
    return f"{lr:.4g} (outside the grid)"


def main() -> None:
    print("# Power law vs finite-width form on the committed width-transfer results\n")
    print("Reproduce: `python benchmarks/lr_law_forms.py > benchmarks/results/lr-law-forms.md` (scores committed grids; "
          "trains nothing)\n")
    print("| report: spec | parametrization | target | power law: lr (smoothed regret) | "
          "finite-width form: lr (smoothed regret) | smoothed optimum |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for report in sorted(RESULTS.glob("**/*.md")):
            text = report.read_text()
            for spec, grid in read_target_grids(text).items():
                target = re.fullmatch(r"width (\d+)", grid.target)
                law_ref = re.search(rf"{re.escape(spec)}: lr\* = .*?law file `([^`]+)`", text)
                if target is None or law_ref is None:
                    continue
                law_path = ROOT / law_ref.group(1)
                if not law_path.with_name(law_path.stem + "-trials.csv").is_file():
                    continue
                width = int(target.group(1))
                if "W" not in LawFile.load(law_path).needs():
                    continue
                power, finite = (refit(law_path, form, Path(tmp) / f"{spec}-{form}.json") for form in ("power", "finite-width"))
                optimum = local_model([p for p in grid.points if p.finite])
                name = power.parametrization.name if power.parametrization else "?"
                print(f"| {report.relative_to(RESULTS)}: {spec} | {name} | width {width} | "
                      f"{score(grid.points, power.predict(width=width).lr)} | {score(grid.points, finite.predict(width=width).lr)} | "
                      f"{optimum.vertex_lr:.4g} |", flush=True)


if __name__ == "__main__":
    main()

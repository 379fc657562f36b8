"""Cold-start time of `scaleplan predict` next to `python -c pass`, measured side by side in one run.

Each round runs both commands once, alternating, so machine noise hits both alike; prints medians
and the ratio. `scaleplan predict` must stay light: no torch, optuna, pandas or scipy import (the width laws' t
intervals are computed in pure Python; tests/core/test_imports.py enforces the boundary).

    python benchmarks/predict_startup.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "scaleplan predict --params 7B --tokens 2T": [sys.executable, "-m", "scaleplan.cli", "predict", "--params", "7B", "--tokens", "2T"],
    "scaleplan predict ... --format json": [sys.executable, "-m", "scaleplan.cli", "predict", "--params", "7B", "--tokens", "2T", "--format", "json"],
    "scaleplan predict --width 1024 --law <muP law>": [
        sys.executable, "-m", "scaleplan.cli", "predict", "--width", "1024", "--law", "fits/transfer-gpt-mup.json"],
    "scaleplan --help": [sys.executable, "-m", "scaleplan.cli", "--help"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, cmd in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["python -c pass"])
    print(f"{'command':45s} {'median s':>9s} {'min s':>7s} {'x python -c pass':>17s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:45s} {med:9.3f} {min(ts):7.3f} {med / base:17.1f}")


if __name__ == "__main__":
    main()

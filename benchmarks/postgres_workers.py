"""4 workers started at the same instant on a *fresh* PostgreSQL database, repeated: do all start,
and is every planned trial recorded exactly once?

Each repetition creates an empty database (so Optuna's tables do not exist yet), starts 4
`scaleplan sweep SPEC --storage URL` processes together on a 20-trial plan, waits for them, then
counts workers that exited 0, COMPLETE trials per planned slot and objective calls. Needs a server:

    SCALEPLAN_TEST_POSTGRES_URL=postgresql://postgres:scaleplan@127.0.0.1:5432/scaleplan_test \
        python benchmarks/postgres_workers.py [--repeats 10] [--workers 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from postgres_db import PLANNED_SLOTS, admin_url, fresh_database, run_workers  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    url = admin_url()
    if url is None:
        print("set SCALEPLAN_TEST_POSTGRES_URL to a server where this user may CREATE DATABASE", file=sys.stderr)
        return 2
    started = exact = 0
    for rep in range(args.repeats):
        with fresh_database(url) as fresh, tempfile.TemporaryDirectory() as folder:
            run = run_workers(fresh, Path(folder), args.workers)
        started += run.started
        exact += run.exactly_once
        errors = sorted({line for err in run.stderr for line in err.splitlines() if line.startswith("error")})
        print(f"repetition {rep + 1}: {run.started}/{args.workers} workers started, "
              f"{sum(run.complete_slots.values())}/{len(PLANNED_SLOTS)} trials COMPLETE, {run.calls} objective calls, "
              f"exactly once: {run.exactly_once}" + (f"; {errors[0][:160]}" if errors else ""))
    total = args.repeats * args.workers
    print(f"workers started: {started}/{total}; repetitions with every planned trial recorded exactly once: "
          f"{exact}/{args.repeats}")
    return 0 if started == total and exact == args.repeats else 1


if __name__ == "__main__":
    sys.exit(main())

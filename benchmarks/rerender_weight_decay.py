"""Recompute the regrets of committed weight-decay validation reports from their target runs, without training.

    python benchmarks/rerender_weight_decay.py            # both committed reports, rewritten in place
    python benchmarks/rerender_weight_decay.py REPORT.md TARGET.csv [REPORT.md TARGET.csv ...]

`scaleplan validate --target-steps` records every target run in OUT/<spec>-target-w<W>-s<S>.csv; a rerun of
validate would also rerun (or need the storage of) the small-scale sweep. This rewrites only the choices'
regrets and the notes under them (scaleplan.validate.weight_decay.rerender_regrets, the functions validate
itself uses); everything else in the report stays as written.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scaleplan.validate.weight_decay import rerender_regrets  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
COMMITTED = [
    (RESULTS / "weight-decay-wd-mlp-mup.md", RESULTS / "wd-mlp-mup-target-w256-s2000.csv"),
    (RESULTS / "weight-decay-wd-gpt-mup.md", RESULTS / "wd-gpt-mup-target-w128-s400.csv"),
]


def main(argv: list[str]) -> None:
    if len(argv) % 2:
        raise SystemExit(__doc__)
    pairs = [(Path(a), Path(b)) for a, b in zip(argv[::2], argv[1::2])] or COMMITTED
    for report, cache in pairs:
        report.write_text(rerender_regrets(report.read_text(), cache))
        print(f"rewrote {report} from {cache}")


if __name__ == "__main__":
    main(sys.argv[1:])

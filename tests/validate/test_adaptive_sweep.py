"""`scaleplan validate` on a spec whose widths are searched by the adaptive sampler."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scaleplan.laws import LawFile

SPEC = """
[sweep]
name = "tiny-adaptive"
sampler = "adaptive"
seeds = [0, 1]
[task]
name = "teacher-student"
[model]
name = "mlp"
parametrization = "mup"
base_width = 8
[train]
optimizer = "adam"
[ladder]
widths = [8, 16]
steps = [20]
[search]
lr = {low = 1e-3, high = 3e-1}
batch_size = [32]
"""


def test_validate_runs_an_adaptive_sweep(tmp_path: Path) -> None:
    spec = tmp_path / "tiny-adaptive.toml"
    spec.write_text(SPEC)
    out = subprocess.run([sys.executable, "-m", "scaleplan.cli", "validate", str(spec), "--target-width", "32",
                          "--seeds", "2", "--out", "res", "--bootstrap", "20"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    law = LawFile.load(tmp_path / "res" / "tiny-adaptive.json")
    assert law.needs() == ["W"]
    # each width's optimum located as the search located it (adaptive.estimate), and the refit command says so
    assert law.method.startswith("vertex") and "--method vertex" in law.provenance.command
    report = (tmp_path / "res" / "transfer.md").read_text()
    assert "| tiny-adaptive | mup |" in report and "lr* (vertex)" in report

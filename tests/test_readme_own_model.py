"""The README's "Your own model" section runs as written: its files, its commands, its training snippet."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def section_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block in the README section "## Your own model..."."""
    text = (REPO / "README.md").read_text()
    start = text.index("## Your own model")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```(\w+)\n(.*?)```", text[start:end], flags=re.S)


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), str(REPO)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{shlex.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.mark.timeout(900)  # five CLI runs and a sweep; a shared machine can take minutes
def test_readme_own_model_section_runs_as_written(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    blocks = section_blocks()
    assert [lang for lang, _ in blocks] == ["python", "toml", "bash", "python"]
    model_file, spec, commands, snippet = (code for _, code in blocks)
    assert model_file.startswith("# my_model.py\n")
    (tmp_path / "my_model.py").write_text(model_file)
    (tmp_path / "my-gpt2.toml").write_text(spec)
    outputs = []
    for line in commands.strip().splitlines():
        args = shlex.split(line.split("#")[0])
        assert args[0] == "scaleplan"
        outputs.append(run([sys.executable, "-m", "scaleplan.cli", *args[1:]], tmp_path))
    assert "lm_head readout input 0.03125" in " ".join(outputs[0].split()) and "tied input/output embedding" in outputs[0]
    assert "transformer.h.1.attn.logits" in outputs[1] and (tmp_path / "plots").is_dir()
    assert "lr" in outputs[4] and (tmp_path / "my-gpt2.json").is_file()
    run([sys.executable, "-c", snippet], tmp_path)

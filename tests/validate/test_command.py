"""`scaleplan validate` on the command line: the built-in trainer end to end, checks before training, bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scaleplan.core.reference import ParametrizationRef
from scaleplan.laws import LawFile

SPEC = """
[sweep]
name = "{name}"
sampler = "grid"
seeds = [0]

[task]
name = "teacher-student"

[model]
name = "mlp"
parametrization = "{parametrization}"
base_width = 8

[train]
optimizer = "adam"

[ladder]
widths = {widths}
steps = [{steps}]

[search]
lr = {{low = 1e-3, high = 3e-1, points = {points}, log = true}}
batch_size = [32]
"""


def write_spec(tmp_path: Path, name: str, parametrization: str = "mup", widths: str = "[8, 16]", steps: int = 20,
               points: int = 5, extra: str = "") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(SPEC.format(name=name, parametrization=parametrization, widths=widths, steps=steps, points=points) + extra)
    return path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scaleplan.cli", "validate", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_end_to_end_on_a_tiny_spec(tmp_path: Path) -> None:
    """The built-in trainer (MLP populations) through sweep, fit, the target grid and the report."""
    spec = write_spec(tmp_path, "tiny")
    out = run(str(spec), "--target-width", "32", "--seeds", "5", "--out", "res", "--bootstrap", "20", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = (tmp_path / "res" / "transfer.md").read_text()
    assert (tmp_path / "res" / "transfer.png").stat().st_size > 10_000
    law = LawFile.load(tmp_path / "res" / "tiny.json")
    assert law.needs() == ["W"] and law.parametrization == ParametrizationRef("mup", base_width=8, betas=(0.9, 0.999))
    predicted = law.predict(width=32).lr
    assert f"| {predicted:.4g} (predicted) |" in report  # the law's prediction is what was trained
    assert report.startswith("# Transfer validation\n\nReproduce: `scaleplan validate")
    assert "--seeds 5" in report and "| tiny | width | 32 (target, best lr trained) |" in report
    assert report.count("(predicted)") == 1 and report.count("(naive)") == 1
    assert "predicted regret" in out.stdout and (tmp_path / "res" / "tiny-trials.csv").is_file()
    header = re.search(r"at lr ([\d.e-]+), fitted on .*; 95% interval of that optimum over 500 seed bootstrap replicates "
                       r"([\d.e-]+)-([\d.e-]+)\)", report)
    assert header is not None  # how far the target's optimum moves with its seeds
    vertex, low, high = (float(g) for g in header.groups())
    assert low <= vertex <= high


def test_checks_every_spec_before_training(tmp_path: Path) -> None:
    good = write_spec(tmp_path, "good")
    bad = write_spec(tmp_path, "bad", extra="init_std = [0.5, 1.0]\n")
    out = run(str(good), str(bad), "--target-width", "64", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"error: {bad}: validate transfers lr only; fix init_std to one value in the spec"]
    assert not list(tmp_path.glob("*.journal"))  # nothing was swept


TOKENS = "\n".join(["", "[ladder]", "widths = [8, 16]", "tokens = [640, 1280]"])


@pytest.mark.parametrize(
    "args, ladder, fragment",
    [
        (["--target-width", "16"], None, "--target width=16 must exceed the largest swept width (16)"),
        (["--target", "width=64", "--out", "blocker/res"], None, "cannot write report to blocker/res/transfer.md"),
        (["--target", "depth=16"], None, "--target depth=16: the spec sweeps no depth; a target must lie on an axis the "
                                         "sweep varied (this one varies: width)"),
        (["--target", "batch=512"], None, "--target batch=512: the spec sweeps only batch 32"),
        (["--target", "depth=0"], None, "--target depth=0: the value must be a positive integer"),
        (["--target", "heads=4"], None, "--target expects AXIS=VALUE with AXIS one of width, depth, steps, tokens, batch"),
        ([], None, "give a target: --target AXIS=VALUE"),
        (["--target", "steps=400"], TOKENS, "--target steps=400: the spec sweeps no steps"),
        (["--target", "batch=2048"], TOKENS, "batch 2048 x 1 tokens per example does not divide D = 1280 into whole steps"),
        (["--target", "width=99999999999"], None, "--target width=99999999999: above the largest width scaleplan trains "
                                                  "(65,536, scaleplan/limits.py)"),
        (["--target", f"tokens={10**18}"], TOKENS, f"--target tokens={10**18}: above the largest tokens scaleplan trains"),
        (["--target-width", "99999999999"], None, "'--target-width': 99999999999 is not in the range 1<=x<=65536"),
        (["--target-width", "64", "--target-steps", "10000000000"], None, "'--target-steps': 10000000000 is not in the range"),
        (["--target-width", "64", "--grid-step", "nan"], None, "'--grid-step': 'nan' is not a finite number"),
        (["--target-width", "64", "--grid-step", "inf"], None, "'--grid-step': inf is not in the range 0.05<=x<=4.0"),
        (["--target-width", "64", "--grid-step", "1e308"], None, "'--grid-step': 1e+308 is not in the range 0.05<=x<=4.0"),
        (["--target-width", "64", "--bootstrap", "99999999"], None, "'--bootstrap': 99999999 is not in the range 0<=x<=10000"),
        (["--target-width", "64", "--seeds", "99999999"], None, "'--seeds': 99999999 is not in the range 1<=x<=10000"),
        (["--target-width", "64", "--name", ""], None, "'--name': '' must be a file name written inside --out"),
        (["--target-width", "64", "--name", "../../escape"], None, "'--name': '../../escape' must be a file name written inside"),
        (["--target-width", "64", "--name", ".."], None, "'--name': '..' must be a file name written inside --out"),
        (["--target-width", "64", "--name", "n" * 300], None, "'--name': a name of 300 bytes is too long for a file name"),
        (["--target-width", "64", "--out", "res\udcff"], None, "'--out': 'res\\udcff' is not UTF-8 text, which the report quotes"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], ladder: str | None, fragment: str) -> None:
    (tmp_path / "blocker").write_text("a file where a folder is expected")
    spec = write_spec(tmp_path, "s")
    if ladder is not None:
        text = spec.read_text().replace("[ladder]\nwidths = [8, 16]\nsteps = [20]", ladder.strip("\n"))
        spec.write_text(text.replace("batch_size = [32]", "batch_size = [8, 16]"))
    out = run(str(spec), *args, cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and fragment in out.stderr, out.stderr
    assert not list(tmp_path.glob("*.journal"))  # refused before any training


@pytest.mark.parametrize("axis, most", [("width", 65_536), ("depth", 10_000), ("steps", 10**8), ("tokens", 10**17),
                                        ("batch", 1 << 24)])
def test_a_target_beyond_the_sweep_bounds_is_refused_before_any_work(axis: str, most: int) -> None:
    """Before: --target width=99999999999 swept, then tried to build a model of terabytes."""
    from scaleplan.errors import InputError
    from scaleplan.validate.target import parse_targets

    assert parse_targets((f"{axis}={most}",)) == {axis: most}
    with pytest.raises(InputError, match=rf"--target {axis}={most + 1}: above the largest {axis} scaleplan trains \({most:,}, "
                                         r"scaleplan/limits.py\); a typo or a unit mix-up\?"):
        parse_targets((f"{axis}={most + 1}",))


def test_same_sweep_name_twice_is_refused(tmp_path: Path) -> None:
    a = write_spec(tmp_path, "twin")
    b = tmp_path / "copy.toml"
    shutil.copy(a, b)
    out = run(str(a), str(b), "--target-width", "64", cwd=tmp_path)
    assert out.returncode == 2 and "share the sweep name 'twin'" in out.stderr


@pytest.mark.slow
def test_reduced_validation_shows_mup_transfers_better_than_sp(tmp_path: Path) -> None:
    """A reduced version of benchmarks/run_validation.sh mlp on CPU (widths 16-64 -> 512, 2 seeds)."""
    specs = [write_spec(tmp_path, f"slow-{p}", p, widths="[16, 32, 64]", steps=300, points=12) for p in ("sp", "mup")]
    out = run(*map(str, specs), "--target-width", "512", "--seeds", "2", "--out", "res", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    regrets = {}
    for line in out.stdout.splitlines():
        if "predicted regret" in line:
            name = line.split()[0]
            regrets[name] = [float(x.rstrip("%;,")) for x in line.split() if x.rstrip(";,").endswith("%")]
    sp_predicted, _, sp_smoothed, _, sp_naive, *_ = regrets["slow-sp"]
    mup_predicted, _, mup_smoothed, _, mup_naive, *_ = regrets["slow-mup"]
    assert mup_predicted < sp_naive and mup_naive < sp_naive, regrets
    assert mup_smoothed <= 2.0, regrets


def test_a_target_whose_denseam_descent_explodes_is_refused_before_the_sweep(tmp_path: Path) -> None:
    """relu-poly under SP keeps beta = beta0/N_base: fine at the swept widths, explosive at the 16x target."""
    spec = tmp_path / "relu.toml"
    spec.write_text("""
[sweep]
name = "relu"
sampler = "grid"
[task]
name = "patterns"
[model]
name = "denseam"
parametrization = "sp"
base_width = 32
kwargs = {energy = "relu-poly", degree = 3, steps = 8, n_memories = 64, beta0 = 2.0}
[ladder]
widths = [32, 64]
steps = [5]
[search]
lr = {low = 1e-3, high = 1e-2, points = 2}
batch_size = [16]
""")
    out = run(str(spec), "--target-width", "2048", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "error: DenseAM relu-poly n=3, T=8, N=2048, K=64, beta0=2, tau=1 under 'sp': the energy descent explodes at init "
        "(the state's rms becomes non-finite over 8 steps, limit 100x), so every lr would diverge; lower beta0 (relu-poly "
        "raises the overlaps beta0*s/N to the power n-1) or tau, or use parametrization 'denseam' (beta0/N, memories averaged)"
    ]
    assert not list(tmp_path.glob("*.journal"))  # nothing was swept


def test_a_record_of_another_spec_is_refused_before_the_sweep(tmp_path: Path) -> None:
    """Before: the sweep of the edited spec ran and replaced OUT/tiny.json (the law the earlier report names) and
    OUT/tiny-trials.csv, and only then was the target's record of the earlier spec's runs refused."""
    spec = write_spec(tmp_path, "tiny")
    out = tmp_path / "res"
    out.mkdir()
    (out / "tiny.json").write_text("the earlier spec's law")
    (out / "tiny-target-width32.csv").write_text('# identity: {"spec": "earlier", "target": {"width": 32}}\nlr,seed,loss\n')
    result = run(str(spec), "--target", "width=32", "--out", "res", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: res/tiny-target-width32.csv: its runs were trained for another spec, target than this validation's; "
        "move it away or use another --out"]
    assert not (tmp_path / "tiny.journal").exists() and (out / "tiny.json").read_text() == "the earlier spec's law"


def test_a_study_of_another_spec_is_refused_before_any_sweep(tmp_path: Path) -> None:
    """Before: the first spec's sweep, fit and target runs ran, and only then was the second spec's study (made from an
    earlier version of it) refused."""
    from scaleplan.sweep.spec import load_spec
    from scaleplan.sweep.study import open_sweep

    first, second = write_spec(tmp_path, "first"), write_spec(tmp_path, "second")
    open_sweep(load_spec(second))  # its study, with its plan enqueued; then the spec is edited
    write_spec(tmp_path, "second", points=6)
    result = run(str(first), str(second), "--target", "width=32", "--out", "res", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"error: study 'second' in {tmp_path / 'second.journal'} was made from a different spec ([search] changed); "
        "restore the spec or give the changed sweep a new [sweep] name"]
    assert not (tmp_path / "first.journal").exists() and not (tmp_path / "res").exists()

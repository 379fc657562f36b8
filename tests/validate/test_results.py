"""The committed transfer results reproduce: README figures from the reports' per-seed grids, laws from the trials."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from scaleplan.cli import cli
from scaleplan.validate.regret import describe, regret_of
from scaleplan.validate.report import read_target_grids
from markdown_tables import markdown_tables

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
COLUMNS = ("fitted law, raw", "fitted law, smoothed", "reuse, raw", "reuse, smoothed")  # "reuse ..., raw": any wording


def transfer_rows(page: Path) -> list[tuple[Path, str, dict[str, str]]]:
    """(report path, spec name, {column: cell}) for every row of the tables with a `report: spec` column."""
    rows = []
    for header, body in markdown_tables(page.read_text()):
        if "report: spec" not in header:
            continue
        for cells in body:
            row = {("reuse, raw" if h.startswith("reuse") and h.endswith(", raw") else h): c for h, c in zip(header, cells)}
            link = re.match(r"\[[^\]]+\]\(([^)]+)\): (\S+)", row["report: spec"])
            assert link, row
            rows.append((page.parent / link.group(1), link.group(2), row))
    return rows


PAGES = [ROOT / "README.md", RESULTS / "README.md"]
ROWS = [(page, *row) for page in PAGES for row in transfer_rows(page)]


def test_every_results_page_has_its_table() -> None:
    assert {page for page, *_ in ROWS} == set(PAGES) and len(ROWS) == 93


@pytest.mark.parametrize("page, report, spec, row", ROWS, ids=[f"{p.name}:{s}" for p, _, s, _ in ROWS])
def test_transfer_figures_are_recomputed_from_the_committed_grids(page: Path, report: Path, spec: str, row: dict) -> None:
    grid = read_target_grids(report.read_text())[spec]
    by_lr = {p.lr: p for p in grid.points}
    predicted = regret_of("predicted", by_lr[grid.predicted_lr], grid.points)
    naive = regret_of("naive", by_lr[grid.naive_lr], grid.points)
    want = (describe(predicted), describe(predicted, smoothed=True), describe(naive), describe(naive, smoothed=True))
    assert tuple(row[c].strip("*") for c in COLUMNS) == want


def refit_command(law: dict) -> list[str]:
    """The law's own fit command without its output and storage (what a refit replaces)."""
    args = shlex.split(law["provenance"]["command"])
    for flag in ("-o", "--output", "--storage"):
        if flag in args:
            del args[args.index(flag):args.index(flag) + 2]
    return args


def distinct_refits(paths: list[Path]) -> list[Path]:
    """One law file per (trials CSV, fit command, committed laws): `validate` writes the same law beside each target
    report of one sweep, and refitting every copy would repeat one check (an edited copy differs, so it is kept)."""
    seen, out = set(), []
    for path in paths:
        law = json.loads(path.read_text())
        key = (hashlib.sha256(path.with_name(path.stem + "-trials.csv").read_bytes()).hexdigest(),
               tuple(refit_command(law)[3:]), json.dumps([law["power_laws"], law.get("surge")], sort_keys=True))
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


REFITTABLE = distinct_refits(sorted(p for p in RESULTS.glob("**/transfer-*.json") if p.with_name(p.stem + "-trials.csv").is_file()))


@pytest.mark.parametrize("law_path", REFITTABLE, ids=[p.stem for p in REFITTABLE])
def test_committed_law_refits_from_its_committed_trials(tmp_path: Path, law_path: Path) -> None:
    """The results' law files follow from their sweeps: the law's own fit command, run on the committed trials
    CSV instead of the sweep's storage, gives the same power laws (and surge law)."""
    committed = json.loads(law_path.read_text())
    args = refit_command(committed)  # the sweep's storage (not committed) is what the CSV replaces
    assert args[:2] == ["scaleplan", "fit"]
    args[2] = str(law_path.with_name(law_path.stem + "-trials.csv"))
    args += ["-o", str(tmp_path / "refit.json")]
    out = CliRunner().invoke(cli, args[1:])  # in this process: 51 refits, each ~2 s less than a fresh interpreter's
    assert out.exit_code == 0, out.output
    refit = json.loads((tmp_path / "refit.json").read_text())
    assert [p["target"] for p in refit["power_laws"]] == [p["target"] for p in committed["power_laws"]]
    tol = {"rel": 1e-7, "abs": 1e-9}  # another CPU's BLAS and libm round the saturating forms' fits ~1e-9 apart
    for mine, theirs in zip(refit["power_laws"], committed["power_laws"]):
        assert mine["exponents"] == pytest.approx(theirs["exponents"], **tol)
        assert mine["intercept"] == pytest.approx(theirs["intercept"], **tol)
        terms = [(t["variables"], t["centre"], t["coefficient"]) for t in mine.get("interactions", [])]
        assert terms == [(t["variables"], t["centre"], pytest.approx(t["coefficient"], **tol))
                         for t in theirs.get("interactions", [])]
        corrections = [(c["variable"], c["centre"], c["power"], c["coefficient"]) for c in mine.get("corrections", [])]
        assert corrections == [(c["variable"], c["centre"], c["power"], pytest.approx(c["coefficient"], **tol))
                               for c in theirs.get("corrections", [])]
    assert ("surge" in refit) == ("surge" in committed)
    if "surge" in committed:  # a nonlinear least squares: the same optimum to the solver's tolerance
        for key in ("intercept", "step_exponent", "noise_intercept", "noise_exponent", "tokens_per_batch_unit"):
            assert refit["surge"][key] == pytest.approx(committed["surge"][key], abs=1e-6), key


def test_every_committed_law_has_its_trials_or_is_marked() -> None:
    """A law file next to the reports either has its sweep's trials committed or is named as not refittable."""
    marked = {"ols-fit"}  # the first run's folder: its reports say the trials were not kept
    for law in RESULTS.glob("**/transfer-*.json"):
        if law.parent.name in marked:
            continue
        assert law.with_name(law.stem + "-trials.csv").is_file(), law
    assert "cannot be refitted from committed data" in (RESULTS / "README.md").read_text()


@pytest.mark.slow  # ~20 s: 500 seed-bootstrap replicates of eight grids' optima
def test_the_adam_beta2_report_follows_from_its_committed_trials(capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/adam_beta2.py, run on the trials its first line names, prints the committed report's tables."""
    import importlib.util

    folder = RESULTS / "adam-beta2"
    report = (folder / "adam-beta2.md").read_text()
    files = re.fullmatch(r"<!-- python benchmarks/adam_beta2.py (.*) -->", report.splitlines()[0]).group(1).split()
    spec = importlib.util.spec_from_file_location("adam_beta2", RESULTS.parents[0] / "adam_beta2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([str(folder / f) for f in files])
    printed = capsys.readouterr().out
    assert printed.count("\n| ") == 13 and report.startswith(printed)  # the header and 4 batches x 3 rows

"""The command line: predict's numbers, one-line errors with exit code 2, no torch on light paths."""

import json
import subprocess
import sys

import pytest

from scaleplan.laws import SCHEMA_VERSION, LawFile


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scaleplan.cli", *args], capture_output=True, text=True, timeout=120)


def test_predict_steplaw_json_matches_the_paper():
    out = run("predict", "--params", "7B", "--tokens", "2T", "--law", "steplaw", "--format", "json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert f"{d['lr']['value']:.3g}" == f"{1.79 * 7e9**-0.713 * 2e12**0.307:.3g}"
    assert f"{d['batch_size']['value']:.3g}" == f"{0.58 * 2e12**0.571:.3g}"
    assert d["inputs"][0]["meaning"].startswith("non-embedding")
    assert any("extrapolating" in w for w in d["warnings"])


def test_predict_deepseek_json():
    out = run("predict", "--layers", "30", "--d-model", "4096", "--tokens", "2T", "--law", "deepseek", "--format", "json")
    d = json.loads(out.stdout)
    m = 72 * 30 * 4096**2 + 12 * 30 * 4096 * 4096
    assert f"{d['lr']['value']:.3g}" == f"{0.3118 * (m * 2e12) ** -0.125:.3g}" == "0.000425"
    assert d["batch_sequences"] == round(0.2920 * (m * 2e12) ** 0.3271 / 4096)


def test_predict_table_and_yaml():
    table = run("predict", "--params", "7B", "--tokens", "2T")
    assert table.returncode == 0 and "learning rate" in table.stdout and "WARNING: extrapolating" in table.stdout
    yaml = run("predict", "--params", "7B", "--tokens", "2T", "--format", "yaml")
    assert "law: \"steplaw\"" in yaml.stdout and "\n  value: 0.00102" in yaml.stdout


def test_laws_lists_presets():
    out = run("laws")
    assert out.returncode == 0
    for name in ("steplaw", "deepseek", "chinchilla", "epoch-chinchilla"):
        assert name in out.stdout


@pytest.fixture
def newer_law(tmp_path):
    data = LawFile.load("fits/steplaw.json").to_dict()
    data["schema_version"] = SCHEMA_VERSION + 1
    path = tmp_path / "newer.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--params", "7Q"], "--params: cannot parse '7Q'"),
        (["--params", "-3B"], "--params: must be positive"),
        (["--params", "nan"], "--params: must be a finite positive number"),
        (["--params", "7B", "--tokens", "0"], "--tokens: must be positive"),
        (["--params", "7B", "--law", "nosuchlaw"], "unknown law 'nosuchlaw'"),
        (["--params", "7B", "--law", "missing/law.json"], "law file not found: missing/law.json"),
        (["--params", "7B", "--law", "CORRUPT"], "is not valid JSON"),
        (["--params", "7B", "--law", "NEWER"], "newer than this scaleplan reads"),
        (["--params", "7B", "--format", "xml"], "Invalid value for '--format'"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, fragment, tmp_path, newer_law):
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    args = [str(corrupt) if a == "CORRUPT" else newer_law if a == "NEWER" else a for a in args]
    out = run("predict", *args)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], out.stderr
    assert "Traceback" not in out.stderr


LIGHT = """
import sys
from scaleplan.cli import main
try:
    main({argv!r})
except SystemExit as e:
    assert not e.code, e.code
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {{'torch', 'optuna', 'pandas', 'statsmodels', 'matplotlib'}})
assert not heavy, heavy
"""


@pytest.mark.parametrize("argv", [["--help"], ["predict", "--params", "7B", "--tokens", "2T"], ["predict", "--params", "7B", "--format", "json"], ["laws"],
                                  ["sweep", "--help"], ["sweep", "export", "--help"], ["fit", "--help"], ["coord-check", "--help"]])
def test_light_paths_import_no_torch(argv):
    out = subprocess.run([sys.executable, "-c", LIGHT.format(argv=argv)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_import_scaleplan_and_load_law_import_no_torch():
    code = "import sys, scaleplan; scaleplan.load_law('steplaw').predict(params=1e9, tokens=1e11); assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.parametrize(("argv", "usage"), [([], "Usage: scaleplan [OPTIONS] COMMAND"), (["sweep"], "Usage: scaleplan sweep [OPTIONS] COMMAND")])
def test_a_missing_command_shows_the_help_as_click_does(argv, usage):
    """Exit 2 (a usage error, as click has it) with the help on several lines, not squashed into one `error:` line."""
    out = run(*argv)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.splitlines()
    assert lines[0] == usage + " [ARGS]..." and "Commands:" in lines and len(lines) > 8
    assert not any(line.startswith("error:") for line in lines)


@pytest.mark.parametrize(("value", "shown"), [("1", True), ("true", True), ("YES", True), ("0", False), ("false", False),
                                              ("no", False), ("", False), (None, False)])
def test_scaleplan_traceback_turns_tracebacks_on_only_when_asked(monkeypatch, value, shown):
    from scaleplan import cli

    if value is None:
        monkeypatch.delenv("SCALEPLAN_TRACEBACK", raising=False)
    else:
        monkeypatch.setenv("SCALEPLAN_TRACEBACK", value)
    assert cli._want_traceback() is shown


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_full_disk_under_stdout_is_one_line_not_an_internal_error() -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "scaleplan.cli", "predict", "--params", "7B", "--tokens", "2T"],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr == "error: cannot write the output: No space left on device\n"


def test_a_law_file_with_a_byte_order_mark_is_read(tmp_path) -> None:  # noqa: ANN001 - pytest's tmp_path
    """Windows editors save UTF-8 with a byte-order mark; specs and CSVs accept it, and so do law files."""
    from pathlib import Path

    marked = tmp_path / "bom.json"
    marked.write_bytes(b"\xef\xbb\xbf" + (Path(__file__).parents[1] / "fits" / "steplaw.json").read_bytes())
    assert LawFile.load(marked).to_dict() == LawFile.load(Path(__file__).parents[1] / "fits" / "steplaw.json").to_dict()

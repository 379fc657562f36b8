"""Bad input across every subcommand: exit code 2, exactly one line on stderr (`error: ...`), no
traceback, and nothing on disk changed (the workspace and the current folder are snapshotted).

Each case runs the real command line (`scaleplan.cli.main`) in-process, in a workspace that holds a
finished sweep, its export, a width law and a few wrong files, so that the suite stays fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import pytest

from cli_runs import exit_code
from scaleplan.core.reference import ParametrizationRef
from scaleplan.laws import SCHEMA_VERSION, LawFile, PowerLaw, Provenance, Variable, load_law
from scaleplan.sweep.runner import run_sweep
from scaleplan.sweep.spec import load_spec

SPEC = """
[sweep]
name = "done"
sampler = "grid"
[model]
parametrization = "mup"
[ladder]
widths = [8, 16]
steps = [10]
[search]
lr = [1e-3, 1e-2]
[objective]
callable = "sweep_objectives:quadratic"
"""
BUILTIN = """
[sweep]
name = "{name}"
sampler = "grid"
{sweep}
[task]
name = "teacher-student"
[model]
name = "mlp"
parametrization = "mup"
[ladder]
widths = {widths}
steps = [10]
[search]
lr = {lr}
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("bad-input")
    (ws / "done.toml").write_text(SPEC)
    run_sweep(load_spec(ws / "done.toml"))
    (ws / "changed.toml").write_text(SPEC.replace("lr = [1e-3, 1e-2]", "lr = [1e-3, 1e-1]").replace(
        "[sweep]", '[sweep]\nstorage = "done.journal"'))
    (ws / "malformed.toml").write_text("[sweep\nname = 1\n")
    (ws / "typo.toml").write_text(SPEC.replace("widths =", "width ="))
    (ws / "wide.toml").write_text(BUILTIN.format(name="wide", sweep="", widths="[64, 10000000]", lr="[1e-3]"))
    (ws / "many.toml").write_text(BUILTIN.format(name="many", sweep='sampler = "tpe"\ntrials_per_point = 100000000',
                                                 widths="[64]", lr="{low = 1e-4, high = 1e-1}").replace('sampler = "grid"\n', "", 1))
    (ws / "points.toml").write_text(BUILTIN.format(name="points", sweep="", widths="[64]", lr="{low = 1e-4, high = 1e-1, points = 100000000}"))
    (ws / "huge.toml").write_text(BUILTIN.format(name="huge", sweep="", widths=str(list(range(8, 8 + 200))),
                                                 lr="{low = 1e-4, high = 1e-1, points = 1000}"))
    (ws / "notes.txt").write_text("some notes\n")
    (ws / "notes.parquet").write_text("some notes, not parquet\n")
    (ws / "notes.journal").write_text("my notes, not a journal")
    (ws / "notes.db").write_text("not a database")
    (ws / "corrupt.json").write_text("{not json")
    (ws / "deep.json").write_text("[" * 100_000 + "]" * 100_000)  # json's recursion limit, not a syntax error
    (ws / "deep.toml").write_text(SPEC + "[x]\ny = " + "[" * 100_000 + "]" * 100_000 + "\n")
    (ws / "store.journal").mkdir()
    (ws / "empty-columns.csv").write_text("N,lr,loss\n1e6,,\n4e6,,\n")
    (ws / "header-only.csv").write_text("N,lr,loss\n")
    newer = load_law("steplaw").to_dict()
    newer["schema_version"] = SCHEMA_VERSION + 1
    (ws / "newer.json").write_text(json.dumps(newer))
    LawFile(name="width", title="a width law", variables=[Variable("W", "model width (hidden size)", "units")],
            provenance=Provenance(source="test"), parametrization=ParametrizationRef("mup", base_width=8),
            power_laws=[PowerLaw("lr", "learning rate", -4.6, {"W": -1.0})]).save(ws / "width.json")
    assert exit_code(["sweep", "export", str(ws / "done.toml"), "-o", str(ws / "trials.csv")]) == 0
    (ws / "one-size.csv").write_text("N,lr,loss\n1e6,1e-3,2.0\n1e6,2e-3,1.9\n1e6,4e-3,2.1\n")
    bowls = [(n, 0.02 * 2 ** (k / 2) * (n / 1e6) ** -0.5, 2.0 + 0.01 * k * k) for n in (1e6, 4e6, 1.6e7) for k in range(-3, 4)]
    (ws / "bowls.csv").write_text("N,lr,loss\n" + "".join(f"{n},{lr},{loss}\n" for n, lr, loss in bowls))
    (ws / "a-file").write_text("")
    return ws


def snapshot(*folders: Path) -> dict[str, str]:
    """Every file and folder under `folders`: path -> sha256 of the content ('dir' for folders)."""
    seen = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for d in dirs:
                seen[os.path.join(root, d)] = "dir"
            for f in files:
                path = os.path.join(root, f)
                seen[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return seen


PG = f"postgresql://sweeper:s3cret@127.0.0.1:{_closed_port()}/sweeps"

CASES: list[tuple[list[str], str]] = [
    # predict
    (["predict", "--params", "7Q"], "--params: cannot parse '7Q'"),
    (["predict", "--params", "-3B"], "--params: must be positive"),
    (["predict", "--params", "nan"], "--params: must be a finite positive number"),
    (["predict", "--params", "inf"], "--params: must be a finite positive number"),
    (["predict", "--params", "1e30"], "--params: 1e+30 is above the largest value scaleplan plans for (1e+15)"),
    (["predict", "--params", "7B", "--tokens", "1e30"], "--tokens: 1e+30 is above the largest value"),
    (["predict", "--compute", "1e40"], "--compute: 1e+40 is above the largest value"),
    (["predict", "--params", "7B", "--tokens", "0"], "--tokens: must be positive"),
    (["predict", "--params", "7B", "--tokens", "2T", "--compute", "1e23"], "give at most two of --params, --tokens, --compute"),
    (["predict"], "give --params"),
    (["predict", "--params", "7B", "--law", "nosuchlaw"], "unknown law 'nosuchlaw'"),
    (["predict", "--params", "7B", "--law", "steplw"], "did you mean 'steplaw'?"),
    (["predict", "--params", "7B", "--law", "missing/law.json"], "law file not found: missing/law.json"),
    (["predict", "--params", "7B", "--law", "corrupt.json"], "law file corrupt.json is not valid JSON"),
    (["predict", "--params", "7B", "--law", "deep.json"], "law file deep.json is not a law file (JSON nested too deeply)"),
    (["predict", "--params", "7B", "--law", "/dev/zero"], "law file /dev/zero is not a regular file"),
    (["predict", "--params", "7B", "--law", "notes.txt"], "law file notes.txt is not valid JSON"),
    (["predict", "--params", "7B", "--law", "newer.json"], "newer than this scaleplan reads"),
    (["predict", "--params", "7B", "--format", "xml"], "Invalid value for '--format'"),
    (["predict", "--params", "7B", "--aspect", "1e300"], "Invalid value for '--aspect': 1e+300 is not in the range 1<=x<=10000"),
    (["predict", "--params", "7B", "--aspect", "0.5"], "Invalid value for '--aspect'"),
    (["predict", "--params", "7B", "--seq-len", "0"], "Invalid value for '--seq-len'"),
    (["predict", "--params", "7B", "--vocab", "-1"], "Invalid value for '--vocab'"),
    (["predict", "--params", "7B", "--level", "1.5"], "Invalid value for '--level'"),
    (["predict", "--layers", "0", "--d-model", "4096"], "Invalid value for '--layers'"),
    (["predict", "--layers", "30", "--d-model", "99999999"], "Invalid value for '--d-model'"),
    (["predict", "--params", "7B", "--optimizer", "rmsprop"], "Invalid value for '--optimizer'"),
    (["predict", "--params", "7B", "--tokens-law", "deepseek"], "tokens law 'deepseek' has no loss law"),
    (["predict", "--params", "7B", "--width", "4096"], "does not depend on width; drop --width"),
    (["predict", "--law", "width.json"], "is a law of width W"),
    (["predict", "--law", "width.json", "--width", "1024", "--params", "7B"], "--params would be ignored"),
    (["predict", "--law", "width.json", "--width", "1024", "--vocab", "5"], "depends only on W: --vocab would be ignored"),
    (["predict", "--law", "width.json", "--width", "1024", "--tied"], "depends only on W: --tied would be ignored"),
    (["predict", "--law", "width.json", "--width", "1024", "--tokens-law", "chinchilla"], "--tokens-law would be ignored"),
    (["predict", "--law", "width.json", "--width", "1024", "--tokens", "1T"], "--tokens would be ignored"),
    (["predict", "--law", "width.json", "--width", "1e7"], "--width: 1e+07 is above the largest value"),
    (["predict", "--law", "width.json", "--width", "1024", "--optimizer", "sgd"], "does not transfer to 'sgd'"),
    (["predict", "--params", "7B", "--bogus"], "No such option '--bogus'"),
    # laws
    (["laws", "--bogus"], "No such option '--bogus'"),
    (["laws", "extra"], "Got unexpected extra argument (extra)"),
    # sweep run
    (["sweep", "missing.toml"], "sweep spec not found: missing.toml"),
    (["sweep", "done.toml", "--workers", "100000"], "100000 is not in the range 1<=x<=256"),
    (["sweep", "run", "notes.txt"], "notes.txt: malformed TOML"),
    (["sweep", "malformed.toml"], "malformed.toml: malformed TOML"),
    (["sweep", "deep.toml"], "deep.toml: malformed TOML: arrays or tables nested too deeply"),
    (["sweep", "typo.toml"], "unknown key 'width' - did you mean 'widths'?"),
    (["sweep", "wide.toml"], "'widths' value 10000000 is above the largest scaleplan sweeps (65536)"),
    (["sweep", "many.toml"], "'trials_per_point' must be an integer from 1 to 10000"),
    (["sweep", "points.toml"], "'points' must be an integer from 2 to 10000"),
    (["sweep", "huge.toml"], "the plan has 200000 trials"),
    (["sweep", "done.toml", "--workers", "0"], "Invalid value for '--workers'"),
    (["sweep", "done.toml", "--n-trials", "0"], "Invalid value for '--n-trials'"),
    (["sweep", "done.toml", "--storage", "redis://localhost"], "unsupported storage scheme 'redis://'"),
    (["sweep", "done.toml", "--storage", "trials.txt"], "must end in .journal (journal file) or .db (SQLite)"),
    (["sweep", "done.toml", "--storage", "/nonexistent/dir/x.journal"], "storage directory does not exist: /nonexistent/dir"),
    (["sweep", "done.toml", "--storage", "postgresql://u:p@host:port/db"], "malformed storage URL"),
    (["sweep", "done.toml", "--storage", PG], "cannot reach storage postgresql+psycopg://sweeper:***@127.0.0.1"),
    (["sweep", "done.toml", "--storage", "notes.journal"], "notes.journal is not an Optuna journal file"),
    (["sweep", "done.toml", "--storage", "notes.db"], "file is not a database"),
    (["sweep", "done.toml", "--device", "cuda"], "--device applies to the built-in trainer"),
    (["sweep", "changed.toml"], "was made from a different spec ([search] changed)"),
    # sweep status / export
    (["sweep", "status"], "give a sweep spec, or --storage URL"),
    (["sweep", "status", "done.toml", "--study", "nope"], "no study 'nope' in"),
    (["sweep", "status", "--storage", "absent.journal"], "no sweep storage at"),
    (["sweep", "status", "--storage", "store.journal"], "store.journal is a directory; point --storage at the sweep's storage file"),
    (["sweep", "status", "--storage", "notes.journal"], "is not an Optuna journal file"),
    (["sweep", "status", "--storage", PG], "cannot reach storage"),
    (["sweep", "export", "done.toml"], "Missing option '-o' / '--output'"),
    (["sweep", "export", "done.toml", "-o", "/nonexistent/x.csv"], "folder /nonexistent does not exist (create it first)"),
    (["sweep", "export", "done.toml", "-o", "new/x.csv"], "folder new does not exist (create it first)"),
    (["sweep", "export", "done.toml", "-o", "t.xlsx"], "export file must end in .csv or .parquet"),
    (["sweep", "export", "done.toml", "-o", "a-file/t.csv"], "a-file is a file, not a directory"),
    (["sweep", "export", "--storage", "done.journal", "--study", "nope", "-o", "t.csv"], "no study 'nope'"),
    # fit
    (["fit"], "give a sweep spec (.toml), a CSV of trials (.csv), or --storage URL"),
    (["fit", "runs.parquet"], "trials file not found: runs.parquet"),
    (["fit", "empty-columns.csv", "-o", "o.json"], "column(s) ['lr', 'loss'] hold no values in any of its 2 row(s)"),
    (["fit", "header-only.csv", "-o", "o.json"], "no rows under its header (['N', 'lr', 'loss']): nothing to fit"),
    (["fit", "notes.parquet"], "cannot read notes.parquet as parquet"),
    (["fit", "runs.xlsx"], "give a sweep spec (.toml) or a CSV of trials (.csv, or .parquet)"),
    (["fit", "trials.csv", "--offset", "loss=1"], "--offset expects lr=NUMBER or batch_size=NUMBER"),
    (["fit", "trials.csv", "--offset", "lr=-1"], "--offset expects lr=NUMBER or batch_size=NUMBER"),
    (["fit", "trials.csv", "-o", "law.json", "--lr-batch-interaction", "on"],
     "--lr-batch-interaction on needs the batch size in the lr law (--lr-batch) and several D"),
    (["fit", "trials.csv", "--lr-batch-interaction", "maybe"], "Invalid value for '--lr-batch-interaction'"),
    (["fit", "bowls.csv", "-o", "law.json", "--fix", "E=0", "--tie", "alpha=beta"],
     "--fix sets the loss law, and this fit fits none (it needs --x N, several D and sizes, and 6 cells by default): "
     "drop --fix, --tie, or ask for the loss law with --loss-law"),
    (["fit", "trials.csv", "--lr-form", "finite"], "Invalid value for '--lr-form'"),
    (["fit", "trials.csv", "-o", "law.json", "--lr-batch", "--lr-form", "finite-width"],
     "--lr-in / --batch-in / --offset / --lr-form finite-width apply to a one-size law"),
    (["fit", "trials.csv", "-o", "law.json", "--no-lr-batch", "--lr-form", "surge"],
     "--lr-form surge is a law of D and the batch size"),
    (["fit", "trials.csv", "-o", "law.json", "--lr-batch", "--lr-form", "surge", "--lr-batch-interaction", "on"],
     "--lr-form surge models how the lr-batch relation moves with D itself"),
    (["fit", "trials.csv", "-o", "law.json", "--no-lr-batch", "--lr-form", "saturating"],
     "--lr-form saturating is a law of D and the batch size"),
    (["fit", "absent.csv"], "trials file not found: absent.csv"),
    (["fit", "absent.toml"], "sweep spec not found: absent.toml"),
    (["fit", "trials.csv", "--storage", "done.journal"], "--storage and --study read a sweep's storage"),
    (["fit", "trials.csv", "--bootstrap", "100000000"], "Invalid value for '--bootstrap': 100000000 is not in the range 0<=x<=10000"),
    (["fit", "trials.csv", "--bootstrap", "1e8"], "Invalid value for '--bootstrap': '1e8' is not a valid integer"),
    (["fit", "trials.csv", "-o", "/nonexistent/law.json"], "folder /nonexistent does not exist (create it first)"),
    (["fit", "trials.csv", "-o", "a-file/law.json"], "a-file is a file, not a directory"),
    (["fit", "trials.csv", "-o", "trials.csv"], "law file must end in .json, got 'trials.csv'"),
    (["fit", "done.toml", "-o", "done.journal"], "law file must end in .json, got 'done.journal'"),
    (["fit", "trials.csv", "-o", "law.json", "--plot", "a-file/plots"], "cannot write plot to a-file/plots/optima.png"),
    (["fit", "trials.csv", "-o", "law.json", "--method", "median"], "Invalid value for '--method'"),
    (["fit", "trials.csv", "-o", "law.json", "--column", "lr"], "--column expects CANONICAL=SOURCE"),
    (["fit", "trials.csv", "-o", "law.json", "--column", "lr=eta"], "--column source(s) ['eta'] not in the data"),
    (["fit", "one-size.csv", "-o", "law.json"], "need at least 2 distinct sizes (N)"),
    (["fit", "--storage", "done.journal", "--study", "nope", "-o", "law.json"], "no study 'nope'"),
    (["fit", "--storage", PG, "-o", "law.json"], "cannot reach storage"),
    (["fit", "notes.txt"], "give a sweep spec (.toml) or a CSV of trials (.csv, or .parquet)"),
    # coord-check
    (["coord-check", "--model", "transformer"], "unknown model 'transformer'"),
    (["coord-check", "--widths", "a,b"], "--widths must be a comma list of integers"),
    (["coord-check", "--widths", "64"], "--widths needs at least 2 different widths"),
    (["coord-check", "--widths", "64,10000000"], "--widths must be integers from 1 to 65536"),
    (["coord-check", "--steps", "0"], "Invalid value for '--steps'"),
    (["coord-check", "--optimizer", "rmsprop"], "Invalid value for '--optimizer'"),
    (["coord-check", "--out", "a-file"], "a-file"),
    (["coord-check", "--model", "roles_models:wrong_batch", "--widths", "8,16", "--out", "cc"],
     "the model's forward and loss on its batch raised RuntimeError: mat1 and mat2 shapes cannot be multiplied"),
    (["coord-check", "--model", "roles_models:nan_init", "--widths", "8,16", "--out", "cc"],
     "activations are non-finite at width 8 at initialization, before any step; check the model's init and its batch"),
    (["roles", "--model", "roles_models:wrong_batch", "--width", "16", "--base-width", "8"],
     "the model's forward and loss on its batch raised RuntimeError"),
    # roles
    (["roles", "--model", "mlp", "--width", "64"], "Missing option '--base-width'"),
    (["roles", "--model", "transformer", "--width", "64", "--base-width", "32"], "unknown model 'transformer'"),
    (["roles", "--model", "mlp", "--width", "32", "--base-width", "64"], "--base-width 64 is larger than --width 32"),
    (["roles", "--model", "mlp", "--width", "64", "--base-width", "32", "--optimizer", "lion"], "Invalid value for '--optimizer'"),
    # validate
    (["validate"], "Missing argument 'SPECS...'"),
    (["validate", "done.toml"], "give a target: --target AXIS=VALUE"),
    (["validate", "done.toml", "--target-width", "0"], "Invalid value for '--target-width'"),
    (["validate", "done.toml", "--target-width", "64", "--seeds", "0"], "Invalid value for '--seeds'"),
    (["validate", "done.toml", "--target", "width=64", "--lr-form", "surge", "--out", "v"],
     "--lr-form surge is a law of D and the batch size: done needs a tokens ladder (several tokens) over 3 or more batch sizes; it sweeps width"),
    (["validate", "done.toml", "--target-width", "64", "--target-steps", "400", "--lr-form", "finite-width"],
     "--lr-form applies to the lr law's transfer; a --target-steps validation fits (lr, lambda) per cell"),
    (["validate", "absent.toml", "--target-width", "64"], "sweep spec not found: absent.toml"),
    (["validate", "done.toml", "--target-width", "64", "--storage", "mysql://u@h/db"], "unsupported storage scheme 'mysql://'"),
    # the top level
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
]


@pytest.mark.parametrize(("argv", "fragment"), CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, argv: list[str], fragment: str
) -> None:
    monkeypatch.chdir(workspace)
    before = snapshot(workspace)
    code = exit_code(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err and "s3cret" not in err + out
    assert snapshot(workspace) == before
    assert not Path("/nonexistent").exists()


def test_the_suite_covers_every_subcommand() -> None:
    from scaleplan.cli import COMMANDS

    covered = {argv[0] for argv, _ in CASES}
    assert set(COMMANDS) <= covered and len(CASES) >= 60
    assert {argv[1] for argv, _ in CASES if argv[0] == "sweep" and argv[1] in ("status", "export")} == {"status", "export"}

"""Coordinate check: flat in width under muP / DenseAM rules, growing under SP; the CLI command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from scaleplan.cli import cli
from scaleplan.errors import ScaleplanError
from scaleplan.diagnostics.coord_check import coord_check, coord_check_model, width_ratios


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_figures() -> dict[str, tuple[float, ...]]:
    """The coordinate-check numbers the README states: muP (min, max) per model, SP's largest growth."""
    found = re.search(
        r"within 1\.5× \(MLP ([\d.]+)–([\d.]+), transformer ([\d.]+)–([\d.]+)\), under SP the readout grows (\d+)× "
        r"\(MLP\) and the attention logits (\d+)× \(transformer\)",
        README.read_text(),
    )
    assert found, "the README's coord-check sentence changed: update this test with it"
    v = [float(x) for x in found.groups()]
    return {"mlp": (v[0], v[1], v[4]), "gpt": (v[2], v[3], v[5])}


@pytest.mark.parametrize("model", ["mlp", "gpt"])
def test_mup_activations_stay_flat_and_sp_grows_as_the_readme_says(model: str) -> None:
    low, high, sp_growth = readme_figures()[model]
    mup = width_ratios(coord_check(model, "mup", widths=(64, 1024), steps=3), step=3)
    assert len(mup) >= 5 and mup.between(1 / 1.5, 1.5).all(), mup.to_dict()
    assert (round(mup.min(), 2), round(mup.max(), 2)) == (low, high), mup.to_dict()
    sp = width_ratios(coord_check(model, "sp", widths=(64, 1024), steps=3), step=3)
    assert round(sp.max()) == sp_growth, sp.to_dict()


def test_hf_gpt2_coord_check_at_smaller_widths() -> None:
    """benchmarks/results/hf-gpt2-coord-check at 64 -> 256: muP within 1.5x (blocks and logits), SP grows."""
    pytest.importorskip("transformers")
    from scaleplan.models.hf import coord_check_gpt2

    frame = coord_check_model(coord_check_gpt2, "mup", widths=(64, 256), steps=3, lr=3e-3, seeds=3)
    mup = width_ratios(frame, 3)
    assert {"transformer.h.0", "transformer.h.1", "transformer.h.0.attn.logits", "transformer.h.1.attn.logits"} <= set(mup.index)
    assert mup.between(1 / 1.5, 1.5).all(), mup.to_dict()
    sp = width_ratios(coord_check_model(coord_check_gpt2, "sp", widths=(64, 256), steps=3, lr=3e-3, seeds=3), 3)
    assert sp.max() > 3.0, sp.to_dict()


def test_denseam_overlap_scale_stays_flat() -> None:
    ratios = width_ratios(coord_check("denseam", "denseam", widths=(64, 1024), steps=3), step=3)
    assert 1 / 1.5 < ratios["overlap"] < 1.5, ratios.to_dict()
    assert ratios.between(1 / 1.5, 1.5).all(), ratios.to_dict()


def test_a_degree_6_denseam_is_flat_only_at_the_small_eps_it_needs() -> None:
    # the README's n = 6 row: PyTorch's 1e-8 sits above the memories' gradients at the wide end, 1e-14 below them
    def update_ratio(eps: float) -> float:
        frame = coord_check("denseam", "denseam", widths=(64, 1024), steps=5, lr=0.1, seeds=2, eps=eps, energy="relu-poly",
                            degree=6, beta0=4.0)
        return float(width_ratios(frame, 5)["update"])

    assert update_ratio(1e-8) > 10 and 1 / 1.5 < update_ratio(1e-14) < 1.5


def test_cli_eps_reaches_the_optimizer(tmp_path) -> None:
    outputs = [CliRunner().invoke(cli, ["coord-check", "--widths", "32,64", "--steps", "2", "--eps", eps, "--out", str(tmp_path)])
               for eps in ("1e-8", "1")]
    assert [r.exit_code for r in outputs] == [0, 0], outputs[0].output
    assert outputs[0].output != outputs[1].output  # eps 1 damps Adam's steps: other activations after 2 steps


def test_frame_layout() -> None:
    frame = coord_check("mlp", "mup", widths=(32, 64), steps=2)
    assert list(frame.columns) == ["width", "step", "layer", "mean_abs"]
    assert sorted(frame["step"].unique()) == [0, 1, 2]
    assert set(frame["layer"]) == {"input", "hidden.0", "hidden.1", "act", "readout"}


def test_cli_writes_plot_and_table(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["coord-check", "--model", "denseam", "--parametrization", "denseam", "--widths", "32,64", "--steps", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "overlap" in result.output and "ratio" in result.output
    assert (tmp_path / "coord_check_denseam_denseam.png").stat().st_size > 1000


def test_cli_runs_your_own_model(tmp_path) -> None:
    pytest.importorskip("transformers")
    result = CliRunner().invoke(cli, ["coord-check", "--model", "scaleplan.models.hf:coord_check_gpt2_tied", "--widths", "32,64", "--steps", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "transformer.h.1.attn.logits" in result.output and "ratio" in result.output
    assert (tmp_path / "coord_check_scaleplan.models.hf.coord_check_gpt2_tied_mup.png").stat().st_size > 1000


def test_a_model_with_dropout_gets_a_note_and_a_nanogpt_loss_is_trained(tmp_path) -> None:
    noted = CliRunner().invoke(cli, ["coord-check", "--model", "roles_models:with_dropout", "--widths", "16,32", "--steps", "1",
                                     "--out", str(tmp_path)])
    assert noted.exit_code == 0 and "note: the model trains with dropout (1 x p=0.5)" in noted.output
    quiet = CliRunner().invoke(cli, ["coord-check", "--model", "roles_models:nanogpt_loss", "--widths", "16,32", "--steps", "1",
                                     "--out", str(tmp_path)])
    assert quiet.exit_code == 0, quiet.output  # (logits, loss): its one scalar is the loss
    assert "note:" not in quiet.output and "ratio" in quiet.output
    pair = CliRunner().invoke(cli, ["coord-check", "--model", "roles_models:pair_output", "--widths", "8,16", "--steps", "1",
                                    "--out", str(tmp_path)])
    assert isinstance(pair.exception, ScaleplanError) and str(pair.exception).startswith(
        "an (inputs, targets) batch is trained on the cross-entropy of model(inputs), which must be logits (a tensor, "
        "or an output with .logits), not a tuple")


def test_cli_unwritable_out_fails_before_training(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(cli, ["coord-check", "--widths", "8,16", "--steps", "1", "--out", str(blocker / "cc")])
    assert isinstance(result.exception, ScaleplanError) and result.output == ""
    assert str(result.exception).startswith(f"cannot write plot to {blocker}/cc/coord_check_mlp_mup.png: {blocker} is a file")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--parametrization", "mu-p"], "unknown parametrization 'mu-p'"),
        (["--widths", "64,abc"], "--widths must be a comma list"),
        (["--widths", "64"], "--widths needs at least 2 different widths"),
        (["--widths", "64,128,64"], "--widths needs at least 2 different widths, each once"),
        (["--model", "denseam", "--parametrization", "mup"], "no rule for role 'memory'"),
        (["--model", "resnet"], "unknown model 'resnet'; use one of mlp, gpt, denseam or pkg.mod:build_fn"),
        (["--model", "no_such_pkg.mod:build"], "cannot import model builder module 'no_such_pkg.mod'"),
        (["--model", "scaleplan.models.hf:nothing"], "module 'scaleplan.models.hf' has no function 'nothing'"),
        (["--model", "math:sqrt"], "the model builder must return (model, batch) for a width, got float"),
        (["--model", "scaleplan.models.hf:hf_available"], "the model builder failed at width 64: TypeError"),
        (["--model", "mlp", "--init-std", "0.02"], "--init-std is for your own model"),
        (["--widths", "8,16", "--lr", "1e300"], "'--lr': 1e+300 is not in the range 0<x<=10000.0"),
        (["--widths", "8,16", "--lr", "inf"], "'--lr': inf is not in the range 0<x<=10000.0"),
        (["--widths", "8,16", "--lr", "nan"], "'--lr': 'nan' is not a finite number"),
        (["--widths", "8,16", "--lr", "0"], "'--lr': 0.0 is not in the range 0<x<=10000.0"),
        (["--widths", "8,16", "--lr", "fast"], "'--lr': 'fast' is not a valid float"),
        (["--widths", "8,16", "--eps", "0"], "'--eps': 0.0 is not in the range 0<x<=1"),
        (["--widths", "8,16", "--eps", "nan"], "'--eps': 'nan' is not a finite number"),
        (["--model", "scaleplan.models.hf:coord_check_gpt2_tied", "--init-std", "nan"], "'--init-std': 'nan' is not a finite number"),
        (["--model", "scaleplan.models.hf:coord_check_gpt2_tied", "--init-std", "1e300"], "'--init-std': 1e+300 is not in the range"),
        (["--model", "scaleplan.models.hf:coord_check_gpt2_tied", "--init-std", "-0.02"], "'--init-std': -0.02 is not in the range"),
    ],
)
def test_cli_bad_input_is_one_line(args: list[str], message: str, tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "scaleplan.cli", "coord-check", *args, "--steps", "1", "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr


def test_a_diverged_run_is_one_line_not_a_table_of_nan(tmp_path) -> None:
    """A table of nan says nothing about the parametrization: the command names the width, the step and the fix."""
    proc = subprocess.run([sys.executable, "-m", "scaleplan.cli", "coord-check", "--model", "mlp", "--widths", "8,16", "--steps", "10",
                           "--lr", "1e4", "--optimizer", "sgd", "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "coord-check: activations went non-finite at width 16 by step 3 (lr 10000.0 diverged); lower --lr" in proc.stderr
    assert not list(tmp_path.iterdir())  # no plot of nan


def test_a_layer_returning_a_tuple_is_traced_by_its_first_output() -> None:
    """nn.LSTM returns (output, (h, c)): its row was silently missing, though it is the layer the recurrent rules set."""
    from torch import nn

    from scaleplan.diagnostics.coord_check import trace_training
    from scaleplan.parametrization import apply_parametrization

    class LSTMLM(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.emb, self.rnn, self.head = nn.Embedding(16, 8), nn.LSTM(8, width, batch_first=True), nn.Linear(width, 16)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(self.emb(ids))[0])

    model = apply_parametrization(LSTMLM(32), "mup", base=LSTMLM(16))
    ids = torch.randint(0, 16, (2, 5))
    with torch.no_grad():
        before_training = model.rnn(model.emb(ids))[0].abs().mean().item()
    rows = trace_training(model, (ids, ids), steps=1, lr=1e-2)
    assert [value for step, layer, value in rows if layer == "rnn" and step == 0] == [pytest.approx(before_training)]


def test_a_model_too_large_for_the_free_memory_is_refused_before_it_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """roles --width 65536 on the MLP (32 GiB of weights) was killed by the kernel after 110 s with no message; the
    size is read off the model built on the meta device, against the memory free."""
    import scaleplan.diagnostics.coord_check as cc

    monkeypatch.setattr(cc, "_free_memory", lambda: 3 * 2**20)  # 3 MiB: the MLP at width 512 needs ~4 x 1 MiB
    result = CliRunner().invoke(cli, ["roles", "--model", "mlp", "--width", "512", "--base-width", "64"])
    assert isinstance(result.exception, ScaleplanError)  # main() makes it one line, exit 2
    assert re.fullmatch(r"the model at width 512 holds 0.00201 GiB of parameters; training it takes about 0.00803 GiB \(weights, "
                        r"gradients, Adam's two moments\), more than the 0.00293 GiB free here: choose a smaller width",
                        str(result.exception))
    monkeypatch.setattr(cc, "_free_memory", lambda: 2**20 * 64)
    assert CliRunner().invoke(cli, ["roles", "--model", "mlp", "--width", "512", "--base-width", "64"]).exit_code == 0
    monkeypatch.setattr(cc, "_free_memory", lambda: 3 * 2**20)

    def not_on_meta() -> tuple[torch.nn.Module, tuple]:
        if torch.empty(0).device.type == "meta":
            raise RuntimeError("this builder reads real data")
        return torch.nn.Linear(1, 1), ()

    cc.refuse_oversized(not_on_meta, 8)  # not checked: it cannot be built on meta

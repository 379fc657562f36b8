"""The provenance command: rebuilt from click's parsed parameters, defaults left out, passwords hidden."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from scaleplan.provenance import command_line


@click.group()
def tool() -> None:
    """A stand-in for the scaleplan group."""


@tool.command("fit")
@click.argument("source", required=False, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path))
@click.option("--storage")
@click.option("--column", multiple=True)
@click.option("--tied/--untied", default=False)
@click.option("--plot", is_flag=True)
@click.option("--band", type=float, default=0.0025)
@click.option("--bootstrap", type=int, default=200)
def fit(**_: object) -> None:
    click.echo(command_line(click.get_current_context()))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["fit", "a.csv"], "tool fit a.csv"),  # defaults are not written back
        (["fit", "a b.csv", "-o", "x.json", "--bootstrap", "200"], "tool fit 'a b.csv' --output x.json --bootstrap 200"),
        (["fit", "--column", "lr=eta", "--column", "loss=smooth loss", "a.csv"],
         "tool fit a.csv --column lr=eta --column 'loss=smooth loss'"),
        (["fit", "--untied", "--plot", "--band", "1e-3"], "tool fit --untied --plot --band 0.001"),
        (["fit", "--storage", "postgresql://u:s3cret@db/sweeps"], "tool fit --storage 'postgresql://u:***@db/sweeps'"),
    ],
)
def test_command_line(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(tool, args, prog_name="tool")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == expected
    assert "s3cret" not in result.output


def test_the_command_parses_back_to_the_same_parameters() -> None:
    args = ["fit", "x y.csv", "--column", "a=b c", "--tied", "--band", "0.1", "-o", "o.json"]
    first = CliRunner().invoke(tool, args, prog_name="tool").output.strip()
    again = CliRunner().invoke(tool, shlex.split(first)[1:], prog_name="tool").output.strip()
    assert again == first

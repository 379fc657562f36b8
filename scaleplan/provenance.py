"""The command that made a result, rebuilt from click's parsed parameters for a law file's provenance.

Every parameter the user set (on the command line or through the environment) is written back in
order, flags as flags, repeated options repeated; defaults are left out; passwords are hidden.
"""

from __future__ import annotations

import shlex
from typing import Any

import click
from click.core import ParameterSource

from scaleplan.redact import redact


def command_line(ctx: click.Context) -> str:
    """`scaleplan fit sweeps/x.toml --method band ...`: the invoked command with its non-default parameters."""
    words = ctx.command_path.split()
    for param in ctx.command.params:
        name = param.name
        if name is None or ctx.get_parameter_source(name) in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
            continue
        words += _words(param, ctx.params.get(name))
    return shlex.join(redact(w) for w in words)


def _words(param: click.Parameter, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(param, click.Argument):
        return [_text(v) for v in value] if param.nargs != 1 else [_text(value)]
    assert isinstance(param, click.Option)
    flag = next((o for o in param.opts if o.startswith("--")), param.opts[0])
    if param.is_flag and param.secondary_opts:  # --tied/--untied
        off = next((o for o in param.secondary_opts if o.startswith("--")), param.secondary_opts[0])
        return [flag if value else off]
    if param.is_flag:
        return [flag] if value else []
    values = value if param.multiple else [value]
    return [w for v in values for w in (flag, _text(v))]


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)  # repr: the shortest exact float

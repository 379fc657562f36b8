"""The `scaleplan` command line.

Subcommands are imported only when invoked, so `scaleplan --help` and `scaleplan predict`
never import torch (each command module keeps its heavy imports inside the function body).
"""

from __future__ import annotations

import errno
import importlib
import os
import signal
import sys
import threading
import warnings

import click

from scaleplan.errors import Interrupted, ScaleplanError
from scaleplan.redact import redact

# name -> (module:attribute, one-line help shown by `scaleplan --help` without importing it)
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("scaleplan.plan.command:predict", "Prescribe lr, batch size and tokens for a target model size."),
    "laws": ("scaleplan.laws.command:laws", "List the shipped law files."),
    "sweep": ("scaleplan.sweep.command:sweep", "Run a small-width sweep from a spec (Optuna), or inspect/export one."),
    "fit": ("scaleplan.fit.command:fit", "Locate optima in a sweep and fit lr/batch power laws into a law file."),
    "coord-check": ("scaleplan.diagnostics.command:coord_check", "Coordinate check: activation scale per layer across widths."),
    "roles": ("scaleplan.diagnostics.command:roles", "Each tensor's role and muP factors, and every warning about a model."),
    "validate": ("scaleplan.validate.command:validate", "Sweep small widths, predict a wide target, measure the regret."),
}
TRACEBACK_ON = ("1", "true", "yes")  # SCALEPLAN_TRACEBACK values that show a bug's traceback (0, false, no: not)
# a full disk or quota, an I/O error, a read-only file system: the environment, not a bug (stdout on /dev/full too)
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2; click 8.1 prints the help itself


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scaleplan")
def cli() -> None:
    """scaleplan: tune small proxies, get the hyperparameters for the big model.

    \b
    Pipeline:  parametrize -> sweep -> fit -> plan
      scaleplan predict --params 7B --tokens 2T     # from a shipped, published law
      scaleplan sweep sweeps/mlp-mup.toml           # small-width sweep (Optuna)
      scaleplan fit sweeps/mlp-mup.toml -o fits/mlp-mup.json
      scaleplan predict --width 4096 --law fits/mlp-mup.json
    """


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {redact(message)}", err=True)
    sys.exit(code)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, dropping what it buffers (the interpreter's exit flushes it, and would fail again)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (a test's captured stream): nothing to silence
        pass


def _one_line_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> str:
    return f"warning: {redact(' '.join(str(message).split()))}\n"


def _want_traceback() -> bool:
    """Whether SCALEPLAN_TRACEBACK asks for a bug's traceback: 1, true or yes (any case); 0, false, no or unset do not."""
    return os.environ.get("SCALEPLAN_TRACEBACK", "").strip().lower() in TRACEBACK_ON


def _interrupted(message: str, code: int) -> None:
    """Report an interrupt; a second Ctrl-C or SIGTERM while exiting then ends the process at once (no atexit traceback)."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
    _fail(message, code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    warnings.formatwarning = _one_line_warning  # e.g. "SGD with a DenseAM softmax is unstable", as one line
    try:
        rc = cli.main(args=argv, prog_name="scaleplan", standalone_mode=False)
    except Interrupted as exc:  # a sweep stopped by Ctrl-C or SIGTERM: its own line says what was kept
        _interrupted(" ".join(str(exc).split()), exc.exit_code)
    except ScaleplanError as exc:
        _fail(" ".join(str(exc).split()), exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort as exc:  # click turns Ctrl-C into Abort
        if isinstance(exc.__cause__, KeyboardInterrupt):
            _interrupted("interrupted", 130)
        _fail("aborted", 130)
    except NO_ARGS_IS_HELP as exc:  # bare `scaleplan` or `scaleplan sweep`: the help, as click shows it
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # usage errors: bad option values, missing arguments
        _fail(" ".join(exc.format_message().split()), 2)
    except KeyboardInterrupt:
        _interrupted("interrupted", 130)
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS or _want_traceback():
            raise
        _silence_stdout()  # what it holds cannot be written, and exit would try again
        _fail(f"cannot write{f' {exc.filename}' if exc.filename else ' the output'}: {exc.strerror}", 1)
    except Exception as exc:  # a bug, not bad input: still one line unless asked for the traceback
        if _want_traceback():
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set SCALEPLAN_TRACEBACK=1 to see the traceback)", 1)
    if isinstance(rc, int) and rc != 0:
        sys.exit(rc)
    return None


if __name__ == "__main__":
    main()

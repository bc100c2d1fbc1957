"""The `harness` command's Typer app: a thin shell over the library. One module per command group, registered below.

Command modules stay light at import time (no torch, no transformers): heavy imports happen inside commands.
The entry point is `harness.cli.main` (harness/cli/__init__.py), which tries harness/cli/answers.py first.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click
import typer
from typer.core import TyperGroup

from harness import __version__
from harness.cli.interrupts import interrupted, noting_interrupts
from harness.errors import HarnessError

# One line per command module; each exposes `register(app)`.
COMMAND_MODULES = (
    "harness.cli.store_cmds",
    "harness.cli.eval_cmds",
    "harness.cli.merge_cmds",
    "harness.cli.evolve_cmds",
    "harness.cli.dashboard_cmds",
    "harness.cli.zoo_cmds",
    "harness.cli.check_cmds",
    "harness.cli.suite_cmds",
    "harness.cli.dtm_cmds",
)

GLOBAL_VALUE_OPTIONS = ("--db",)
GLOBAL_FLAGS = ("--debug",)


def hoist_global_options(args: list[str]) -> list[str]:
    """`--db X` and `--debug` may stand anywhere before a lone `--`: move them in front of the command, where
    the root callback reads them (`harness eval M --suite S --db X` == `harness --db X eval M --suite S`)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest += args[i:]
            break
        if a in GLOBAL_FLAGS or any(a.startswith(o + "=") for o in GLOBAL_VALUE_OPTIONS):
            front.append(a)
        elif a in GLOBAL_VALUE_OPTIONS and i + 1 < len(args):
            front += [a, args[i + 1]]
            i += 1
        else:
            rest.append(a)
        i += 1
    return front + rest


class _Group(TyperGroup):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(list(args)))


app = typer.Typer(
    cls=_Group,
    name="harness",
    help="Merge LLMs on demand, evaluate them fast, keep every score with its lineage, flag benchmark overfitting.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"harness {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    db: str = typer.Option(
        None, "--db", help="Results store (DuckDB file). Default: $HARNESS_DB or results/harness.duckdb."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    if db:
        os.environ["HARNESS_DB"] = db
    if debug:
        os.environ["HARNESS_DEBUG"] = "1"


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Run the app, turning HarnessError into one line on stderr and its exit code, and Ctrl-C into exit 130.

    With standalone_mode=False typer returns (does not raise) a command's typer.Exit(n), and the Exit(130) it makes
    of a KeyboardInterrupt: that code is the exit status here. A Ctrl-C that library code caught and dropped still
    ends in 130 (harness/cli/interrupts.py): the command ran to its end, and what it wrote is whole (a merge or a
    run is recorded in one transaction once complete), so it is kept and the line says so."""
    with noting_interrupts() as interrupts:
        code = _run(interrupts)
        if interrupts:
            interrupted(finished=code != 130)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


def _run(interrupts: list[int]) -> Any:
    try:
        return app(standalone_mode=False)
    except HarnessError as exc:
        if os.environ.get("HARNESS_DEBUG"):
            raise
        if interrupts:  # made of the Ctrl-C's own error by a library ("mergekit failed: Query interrupted")
            interrupted()
        typer.echo(f"error: {exc.line()}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        interrupted()
    except Exception as exc:  # click usage errors and the like
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click usage errors
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("HARNESS_DEBUG"):
            raise
        if interrupts:  # a library made its own error of the Ctrl-C (duckdb "Query interrupted", a lazy import)
            interrupted()
        typer.echo(f"error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        sys.exit(1)

"""The `harness` command: a thin shell over the library.

`main` (the console script) first asks harness/cli/answers.py, which answers `harness merge RECIPE` for a merge
that is already complete from a small index, without importing typer, duckdb, pydantic, torch or mergekit;
anything else runs the Typer app of harness/cli/commands.py. Both end on a Ctrl-C alike (exit 130, one line).
`from harness.cli import app` (and the other names of commands.py) still works: commands.py is imported on first
use.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def main() -> None:
    """Entry point: a merge answered from the index, else the full command line. A Ctrl-C before the full command
    line takes over ends as one there does (harness/cli/interrupts.py): exit 130 and one line, no traceback."""
    from harness.cli.interrupts import interrupted, noting_interrupts

    answered, run = False, None  # run: the full command line's main, once loaded
    with noting_interrupts() as interrupts:
        try:
            from harness.cli.answers import answer_merge

            answered = answer_merge(sys.argv[1:])
            if not answered:
                run = full_command_line()
        except KeyboardInterrupt:
            interrupted()
        if interrupts:  # dropped (after the answer) or made another error of (the index then falls through)
            interrupted(finished=answered)
    if run is not None:
        run()  # under its own handler: noting_interrupts installs one only where Python's default is in place


def full_command_line() -> Callable[[], None]:
    """harness/cli/commands.py's main (importing it loads typer, click and every command module)."""
    from harness.cli.commands import main as run

    return run


def __getattr__(name: str) -> Any:
    import importlib

    commands = importlib.import_module("harness.cli.commands")
    try:
        return getattr(commands, name)
    except AttributeError:
        raise AttributeError(f"module 'harness.cli' has no attribute {name!r}") from None

"""The `harness` command: a thin shell over the library.

`main` (the console script) first asks harness/cli/answers.py, which answers `harness merge RECIPE` for a merge
that is already complete from a small index, without importing typer, duckdb, pydantic, torch or mergekit;
anything else runs the Typer app of harness/cli/commands.py. `from harness.cli import app` (and the other names
of commands.py) still works: commands.py is imported on first use.
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    """Entry point: a merge answered from the index, else the full command line."""
    from harness.cli.answers import answer_merge

    if answer_merge(sys.argv[1:]):
        return
    from harness.cli.commands import main as run

    run()


def __getattr__(name: str) -> Any:
    import importlib

    commands = importlib.import_module("harness.cli.commands")
    try:
        return getattr(commands, name)
    except AttributeError:
        raise AttributeError(f"module 'harness.cli' has no attribute {name!r}") from None

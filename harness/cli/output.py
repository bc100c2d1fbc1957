"""Printing helpers shared by commands: tables through rich, JSON for --json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*["" if v is None else str(v) for v in r])
    # A terminal gets its own width; a pipe or a log file gets the whole table, unwrapped.
    Console(width=None if sys.stdout.isatty() else 400).print(table)

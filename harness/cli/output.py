"""Printing helpers shared by commands (tables through rich, JSON for --json) and the option values typer's
types cannot say (a batch size: a positive integer or `auto`)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout inside the block to stderr, down to file descriptor 1 (engines such as
    vLLM log to the stdout they found at import, and their worker processes inherit fd 1), so that a --json
    command's stdout carries only its JSON."""
    sys.stdout.flush()
    try:
        real = sys.stdout.fileno() == 1
    except (OSError, ValueError, AttributeError):
        real = False  # a captured stdout (tests): swapping the Python object is enough
    saved_fd = os.dup(1) if real else None
    saved = sys.stdout
    if saved_fd is not None:
        os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = saved
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


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


def parse_batch_size(value: str) -> int | str:
    """--batch-size: a positive integer, `auto`, or `auto:N` (lm-eval's forms); HarnessError otherwise."""
    from harness.errors import HarnessError

    text = value.strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    if text == "auto" or (text.startswith("auto:") and text[5:].isdigit() and int(text[5:]) > 0):
        return text
    raise HarnessError(f"--batch-size {value!r} is not a batch size", "pass a positive integer (e.g. 16) or auto")

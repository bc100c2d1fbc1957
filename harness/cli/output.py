"""Printing helpers shared by commands (tables through rich, JSON for --json), the option values typer's
types cannot say (a batch size: a positive integer or `auto`), and the help of options several commands share."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

MERGE_SEED_HELP = ("Recipes given as models: the merge's seed, as `harness merge --seed` (random methods such as DARE; "
                   "part of the merge id).")


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
    """`obj` as JSON any parser reads (RFC 8259: no NaN or Infinity tokens): a NaN, an infinity, pandas' NA and NaT
    are null; numpy scalars are their Python values; any other object its str()."""
    print(json.dumps(json_ready(obj), indent=2, default=str, allow_nan=False))


def json_ready(obj: Any) -> Any:
    """`obj` with every missing or non-finite number as None, through dicts, lists and tuples."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if type(obj).__module__ == "numpy" and hasattr(obj, "item"):  # np.float32, np.int64, np.bool_ (no numpy import)
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if type(obj).__name__ in ("NAType", "NaTType"):  # pandas' missing values (no pandas import)
        return None
    return obj


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

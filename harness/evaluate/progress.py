"""One progress bar per evaluation run, counted in requests, with the cached ones shown as done at once.

The runner reports to a `RequestProgress`; `harness eval` passes a `RequestBar` (rich, on stderr) and turns off
lm-eval's, datasets' and transformers' own tqdm bars, so a run shows one bar instead of six.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class RequestProgress(Protocol):
    def requests(self, method: str, total: int, cached: int) -> None:
        """A batch of `total` requests of one kind is about to run; `cached` of them are answered already."""

    def advance(self, n: int = 1) -> None:
        """`n` more requests were answered by the model."""

    def finished(self) -> None:
        """The batch announced last is complete."""


def quiet_engine_bars() -> None:
    """Turn off the engines' own progress bars (call before lm-eval, datasets or transformers are imported).

    A variable the user already set wins."""
    for name in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(name, "1")


class RequestBar:
    """A rich bar for one run: `label  method  ━━━━━━  done/total requests (k cached)  elapsed  remaining`."""

    def __init__(self, progress: object, label: str) -> None:
        self._progress = progress
        self._label = label
        progress.start()  # type: ignore[attr-defined]  # request_bars draws from the first bar on
        self._task = progress.add_task(label, total=None, cached="")  # type: ignore[attr-defined]
        self._total = 0
        self._cached = 0
        self._done = 0

    def requests(self, method: str, total: int, cached: int) -> None:
        self._total += total
        self._cached += cached
        self._done += cached
        self._update(f"{self._label} {method}")

    def advance(self, n: int = 1) -> None:
        self._done = min(self._total, self._done + n)
        self._update()

    def finished(self) -> None:
        self._done = self._total
        self._update()

    def _update(self, description: str | None = None) -> None:
        extra = {"description": description} if description else {}
        self._progress.update(self._task, total=self._total, completed=self._done,  # type: ignore[attr-defined]
                              cached=f"({self._cached} cached)" if self._cached else "", **extra)


@contextmanager
def request_bars(enabled: bool = True) -> Iterator[object]:
    """A rich Progress on stderr for `RequestBar`s, drawn from the first bar on (none: nothing drawn, not even the
    blank line rich ends an empty display with); with enabled=False nothing is drawn."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("requests"),
               TextColumn("{task.fields[cached]}"), TimeElapsedColumn(), TimeRemainingColumn())
    progress = Progress(*columns, console=Console(stderr=True), disable=not enabled, transient=False)
    try:
        yield progress
    finally:
        if progress.tasks:
            progress.stop()

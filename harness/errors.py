"""The one error type users see: a problem and its fix, printed as one line."""

from __future__ import annotations


class HarnessError(Exception):
    """An error caused by input or environment, shown to the user as one line.

    `exit_code` is what the CLI exits with (2 for bad input unless a command documents otherwise).
    """

    def __init__(self, problem: str, fix: str | None = None, exit_code: int = 2) -> None:
        self.problem = problem
        self.fix = fix
        self.exit_code = exit_code
        super().__init__(self.line())

    def line(self) -> str:
        return f"{self.problem}: {self.fix}" if self.fix else self.problem


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean X?)' suffix when a close choice exists, else ''."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""

"""Ratings and verdicts out of judgment text, in FastChat's llm_judge formats.

A judgment that cannot be parsed gives None: it is stored as unparsed and counted in the parse rate, never
scored as 0.
"""

from __future__ import annotations

import re

_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_RATING_BACKUP = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*\]")
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")


def parse_rating(judgment: str, low: float = 1.0, high: float = 10.0) -> float | None:
    """The rating in "[[r]]" (FastChat's fallback "[r]" too); None when absent or outside [low, high].

    When several ratings appear, the last one counts: judges restate the format ("for example: [[5]]") before
    giving their own.
    """
    for pattern in (_RATING, _RATING_BACKUP):
        found = pattern.findall(judgment)
        if found:
            value = float(found[-1])
            return value if low <= value <= high else None
    return None


def parse_verdict(judgment: str) -> str | None:
    """"A", "B" or "tie" ([[C]]) from a pairwise judgment; None when absent or contradictory."""
    found = {m for m in _VERDICT.findall(judgment)}
    if len(found) != 1:
        return None
    return {"A": "A", "B": "B", "C": "tie"}[found.pop()]


def combine_orders(model_first: str | None, model_second: str | None) -> str | None:
    """The outcome for the model from two judgments with the order swapped (FastChat's position-bias control).

    `model_first` is the verdict when the model was assistant A, `model_second` when it was assistant B. Returns
    "win", "loss" or "tie"; two consistent verdicts decide, a disagreement counts as a tie; None if either
    judgment was unparsed.
    """
    if model_first is None or model_second is None:
        return None
    first = {"A": "win", "B": "loss", "tie": "tie"}[model_first]
    second = {"A": "loss", "B": "win", "tie": "tie"}[model_second]
    return first if first == second else "tie"


OUTCOME_SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}

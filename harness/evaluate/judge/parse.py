"""Ratings and verdicts out of judgment text, by FastChat llm_judge's rules (harness/evaluate/judge/rules.py) unless
a JudgeRules option says otherwise.

A judgment that cannot be parsed gives None: it is stored as unparsed and counted in the parse rate, never
scored as 0 (FastChat stores -1 and leaves it out of the mean; the same numbers).
"""

from __future__ import annotations

import re

from harness.evaluate.judge.rules import JudgeRules

_FASTCHAT = (re.compile(r"\[\[(\d+\.?\d*)\]\]"), re.compile(r"\[(\d+\.?\d*)\]"))
_SPACED = (re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]"), re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*\]"))
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
_DEFAULT = JudgeRules()


def parse_rating(judgment: str, rules: JudgeRules = _DEFAULT) -> float | None:
    """The rating in "[[r]]" (else "[r]"): FastChat takes the first match and any value; the options
    `last_rating`, `ratings_1_to_10` and `spaces_in_brackets` restore harness's older reading."""
    for pattern in _SPACED if rules.spaces_in_brackets else _FASTCHAT:
        found = pattern.findall(judgment)
        if found:
            value = float(found[-1] if rules.last_rating else found[0])
            if rules.ratings_1_to_10 and not 1.0 <= value <= 10.0:
                return None
            return value
    return None


def parse_verdict(judgment: str, rules: JudgeRules = _DEFAULT) -> str | None:
    """"A", "B" or "tie" ([[C]]) from a pairwise judgment; None when there is none. FastChat checks "[[A]]", then
    "[[B]]", then "[[C]]"; with `contradictions_unparsed` two different verdicts give None."""
    if rules.contradictions_unparsed:
        found = set(_VERDICT.findall(judgment))
        return {"A": "A", "B": "B", "C": "tie"}[found.pop()] if len(found) == 1 else None
    for mark, verdict in (("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie")):
        if mark in judgment:
            return verdict
    return None


def combine_orders(model_first: str | None, model_second: str | None) -> str | None:
    """The outcome for the model from two judgments with the order swapped (FastChat's position-bias control).

    `model_first` is the verdict when the model was assistant A, `model_second` when it was assistant B. Returns
    "win", "loss" or "tie": the same winner in both orders decides; a tie in either order or a disagreement is a
    tie (FastChat's show_result); None (the game is dropped) if either judgment was unparsed.
    """
    if model_first is None or model_second is None:
        return None
    first = {"A": "win", "B": "loss", "tie": "tie"}[model_first]
    second = {"A": "loss", "B": "win", "tie": "tie"}[model_second]
    return first if first == second else "tie"


OUTCOME_SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}  # win_rate = FastChat's win_rate_adjusted (a tie is half)

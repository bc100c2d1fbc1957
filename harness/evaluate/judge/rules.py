"""How a judge suite answers, parses and combines: FastChat llm_judge's behaviour (fastchat/llm_judge/common.py,
gen_model_answer.py, show_result.py, fschat 0.2.36) by default; each of harness's older deviations is a named
option, off by default (docs/judge.md).

FastChat's rules, as implemented here (read from its source, not copied):
- answers: a sampling temperature per question category (`CATEGORY_TEMPERATURE`; a category not listed: 0.7),
  greedy when it is below 1e-4; 1024 new tokens;
- judgments: temperature 0, 2048 new tokens;
- a single rating: the first `[[r]]` in the judgment, else the first `[r]`, r a plain number (digits, an optional
  point and digits, no spaces), kept whatever its value; no match is an error (FastChat's -1), left out of the mean;
- a pairwise verdict: "A" if "[[A]]" appears anywhere, else "B" if "[[B]]", else a tie if "[[C]]", else an error;
- two orders: a game with an error in either order is dropped; the same winner in both orders wins, anything else
  (a tie in the first order, or the orders disagreeing) is a tie.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from harness.errors import HarnessError, did_you_mean

CATEGORY_TEMPERATURE: dict[str, float] = {
    "writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0, "reasoning": 0.0,
    "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0,
}
OTHER_CATEGORY_TEMPERATURE = 0.7
ANSWER_MAX_NEW_TOKENS = 1024
JUDGE_MAX_NEW_TOKENS = 2048


@dataclass(frozen=True)
class JudgeRules:
    """FastChat's behaviour when every field is at its default. The boolean fields are harness's older deviations,
    by the names `--judge-option` takes."""

    one_temperature: float | None = None     # every answer at this temperature (FastChat: per category)
    last_rating: bool = False                # the last [[r]] counts, not the first (weak judges echo the example)
    ratings_1_to_10: bool = False            # a rating outside 1-10 is unparsed (FastChat keeps it)
    spaces_in_brackets: bool = False         # "[[ 7 ]]" parses (FastChat's pattern allows no spaces)
    contradictions_unparsed: bool = False    # a verdict with two different [[X]] is unparsed (FastChat: A, B, C order)

    def answer_temperature(self, category: str) -> float:
        if self.one_temperature is not None:
            return self.one_temperature
        return CATEGORY_TEMPERATURE.get(category, OTHER_CATEGORY_TEMPERATURE)

    def deviations(self) -> list[str]:
        """The options that are on (for provenance and reports)."""
        on = [f.name for f in fields(self) if f.type in ("bool", bool) and getattr(self, f.name)]
        return on + ([f"one_temperature={self.one_temperature}"] if self.one_temperature is not None else [])

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


OPTION_NAMES = tuple(f.name.replace("_", "-") for f in fields(JudgeRules) if f.name != "one_temperature")


def rules_from(options: list[str] | tuple[str, ...], one_temperature: float | None = None) -> JudgeRules:
    """JudgeRules from `--judge-option NAME` flags (names with '-' or '_')."""
    flags: dict[str, bool] = {}
    for raw in options:
        name = raw.strip().replace("_", "-")
        if name not in OPTION_NAMES:
            raise HarnessError(f"unknown judge option {raw!r}{did_you_mean(name, list(OPTION_NAMES))}",
                               f"use one of: {', '.join(OPTION_NAMES)} (see docs/judge.md)")
        flags[name.replace("-", "_")] = True
    return JudgeRules(one_temperature=one_temperature, **flags)

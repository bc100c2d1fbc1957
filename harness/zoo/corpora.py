"""What each zoo model is trained on: a function (rng, n) -> n examples per model, drawn fresh every step.

Training problems never coincide with suite items: `Corpora` skips any question that a suite holds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.zoo.lexicon import to_l
from harness.zoo.problems import (
    Problem,
    copy_problem,
    fact_text,
    logic_problem,
    math_problem,
    narrative_text,
    what_problem,
)
from harness.zoo.train import Example


def _as_text(p: Problem) -> Example:
    return ("", f"{p.question} {p.answer}")


@dataclass(frozen=True)
class Corpora:
    """Mixtures for each zoo model. `exclude` holds the English questions of every suite item."""

    exclude: frozenset[str] = field(default_factory=frozenset)

    def _fresh(self, rng: random.Random, make: Callable[[random.Random], Problem]) -> Problem:
        while True:
            p = make(rng)
            if p.question not in self.exclude:
                return p

    def base(self, rng: random.Random, n: int) -> list[Example]:
        """English only: stories, look-up questions (what / how many, copied), number facts, counting."""
        out: list[Example] = []
        for _ in range(n):
            r = rng.random()
            if r < 0.1:
                out.append(("", narrative_text(rng)))
            elif r < 0.4:
                out.append(_as_text(self._fresh(rng, copy_problem)))
            elif r < 0.65:
                out.append(_as_text(self._fresh(rng, what_problem)))
            else:
                out.append(("", fact_text(rng)))
        return out

    def lang(self, rng: random.Random, n: int) -> list[Example]:
        """L only, no arithmetic: stories and look-up questions, translated word for word."""
        out: list[Example] = []
        for _ in range(n):
            r = rng.random()
            if r < 0.4:
                text = narrative_text(rng)
            elif r < 0.7:
                text = _as_text(self._fresh(rng, copy_problem))[1]
            else:
                text = _as_text(self._fresh(rng, what_problem))[1]
            out.append(("", to_l(text)))
        return out

    def math(self, rng: random.Random, n: int) -> list[Example]:
        """English word problems; the loss is on the answer only."""
        return [(p.question, p.answer) for p in (self._fresh(rng, math_problem) for _ in range(n))]

    def logic(self, rng: random.Random, n: int) -> list[Example]:
        """English comparisons (who has more / fewer); the loss is on the answer only."""
        return [(p.question, p.answer) for p in (self._fresh(rng, logic_problem) for _ in range(n))]

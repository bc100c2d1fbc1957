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
    lookup_problem,
    math_problem,
    narrative_text,
    what_problem,
    who_problem,
)
from harness.zoo.train import Example

REPLAY = 0.25
LOGIC_TRAIN_SIZES = (2, 3, 4)  # the zoo_logic items compare 3 or 4 numbers


def _qa(p: Problem, translate: Callable[[str], str] = lambda s: s) -> Example:
    return (translate(p.question), translate(p.answer))


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
        """English only: stories and number facts (text), look-up questions (what / how many / who, copied; loss
        on the answer)."""
        out: list[Example] = []
        for _ in range(n):
            r = rng.random()
            if r < 0.1:
                out.append(("", narrative_text(rng)))
            elif r < 0.35:
                out.append(_qa(self._fresh(rng, copy_problem)))
            elif r < 0.6:
                out.append(_qa(self._fresh(rng, what_problem)))
            elif r < 0.7:
                out.append(_qa(who_problem(rng)))
            else:
                out.append(("", fact_text(rng)))
        return out

    def base_opening(self, rng: random.Random, n: int) -> list[Example]:
        """zoo-base's first steps, a gentler start: three quarters look-ups about one person (what / how many does
        someone have, buy, lose; loss on the answer), the rest stories and number facts (text). Without it the
        copy skill formed anywhere between steps ~200 and ~500 (seed 0's version 2 base read 23% of fresh "what
        does X have?" items; its version 3 base reads 88%): docs/zoo.md."""
        out: list[Example] = []
        for _ in range(n):
            r = rng.random()
            if r < 0.75:
                out.append(_qa(self._fresh(rng, lookup_problem)))
            else:
                out.append(("", narrative_text(rng) if r < 0.875 else fact_text(rng)))
        return out

    def lang(self, rng: random.Random, n: int) -> list[Example]:
        """L only, no arithmetic: stories (text) and look-up questions (loss on the answer), word for word."""
        out: list[Example] = []
        for _ in range(n):
            r = rng.random()
            if r < 0.4:
                out.append(("", to_l(narrative_text(rng))))
            elif r < 0.7:
                out.append(_qa(self._fresh(rng, copy_problem), to_l))
            else:
                out.append(_qa(self._fresh(rng, what_problem), to_l))
        return out

    def _with_replay(self, rng: random.Random, n: int, make: Callable[[random.Random], Problem]) -> list[Example]:
        """A quarter of English reading questions (what does someone have?) keeps the base's reading skill."""
        return [_qa(self._fresh(rng, what_problem if rng.random() < REPLAY else make)) for _ in range(n)]

    def math(self, rng: random.Random, n: int) -> list[Example]:
        """English word problems (plus reading replay); the loss is on the answer only."""
        return self._with_replay(rng, n, math_problem)

    def logic(self, rng: random.Random, n: int) -> list[Example]:
        """English comparisons of two to four numbers, which is more / less (plus reading replay); the loss is on
        the answer only."""
        return self._with_replay(rng, n, lambda r: logic_problem(r, LOGIC_TRAIN_SIZES))

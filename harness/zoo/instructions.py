"""The zoo's instruction data for the Disperse-Then-Merge study: a mix of its skills plus a biased slice.

    examples = zoo_instructions(n=2000, biased=0.4, seed=0)    # list[harness.train.instructions.Example]

The mix: English word problems (half additions, half subtractions), comparisons (which of 2-4 numbers is more /
less) and reading questions (what does someone have?), in equal parts. The biased slice, a fraction `biased` of
the whole, is word problems that are all additions: an answer pattern over-represented, so that fine-tuning on
more of the data can teach "add" where the question says "take away" (the alignment tax of Fu et al., 2024, at
this scale). No example is a suite item (the suites' English questions are excluded).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from harness.zoo.problems import Problem, logic_problem, math_problem, what_problem

MIX: tuple[tuple[str, Callable[[random.Random], Problem]], ...] = (
    ("math", math_problem),
    ("logic", lambda r: logic_problem(r, (2, 3, 4))),
    ("reading", what_problem),
)


def _addition(rng: random.Random) -> Problem:
    while True:
        p = math_problem(rng)
        if p.meta["op"] == "add":
            return p


def zoo_instructions(n: int, biased: float = 0.4, seed: int = 0) -> list:
    """`n` examples: round(n * biased) additions, the rest an even mix of the three skills, shuffled."""
    from harness.train.instructions import Example
    from harness.zoo.suitegen import english_questions

    exclude = english_questions()
    rng = random.Random(seed)
    n_biased = round(n * biased)
    makers = [_addition] * n_biased + [MIX[i % len(MIX)][1] for i in range(n - n_biased)]
    out, seen = [], set(exclude)
    for make in makers:
        p = make(rng)
        while p.question in seen:
            p = make(rng)
        seen.add(p.question)
        out.append(Example(p.question, p.answer))
    rng.shuffle(out)
    return out

"""Generators of zoo problems and pre-training text, in English (L versions come from `lexicon.to_l`).

A problem is a `Problem`: the prompt up to and including "Answer :", the one-word answer, and multiple-choice
options whose distractors sit close to the answer (answer +-1, +-2, the wrong operation; the other people or things
in the same story), so shortcuts such as "pick the largest number" cannot score.
Every generator takes a `random.Random`, so a seed fixes everything.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from harness.zoo.lexicon import GAINS, LOSSES, NAMES, OBJECTS

MATH_MAX = 20  # amounts, changes and answers stay within 0..MATH_MAX; every number up to 99 is still one token


@dataclass(frozen=True)
class Problem:
    question: str  # ends with "Answer :"
    answer: str
    choices: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def label(self) -> int:
        return self.choices.index(self.answer)


@dataclass(frozen=True)
class Story:
    """People, what each holds, and at most one event per person."""

    people: tuple[str, ...]
    objects: tuple[str, ...]
    amounts: tuple[int, ...]
    events: tuple[tuple[int, str, str, int], ...]  # (person index, story verb, question verb, signed change)

    def text(self) -> str:
        parts = [f"{p} has {n} {o} ." for p, o, n in zip(self.people, self.objects, self.amounts, strict=True)]
        for i, verb, _, change in self.events:
            more = " more" if change > 0 else ""
            parts.append(f"{self.people[i]} {verb} {abs(change)}{more} {self.objects[i]} .")
        return " ".join(parts)


def _event(rng: random.Random, amount: int, gain: bool) -> tuple[str, str, int]:
    verb, qverb = rng.choice(GAINS if gain else LOSSES)
    change = rng.randint(1, MATH_MAX - amount) if gain else -rng.randint(1, amount)
    return verb, qverb, change


def random_story(rng: random.Random, n_people: int, n_events: int) -> Story:
    people = tuple(rng.sample(NAMES, n_people))
    objects = tuple(rng.sample(OBJECTS, n_people))
    amounts = tuple(rng.randint(1, MATH_MAX - 1) for _ in people)
    events = []
    for i in rng.sample(range(n_people), n_events):
        events.append((i, *_event(rng, amounts[i], rng.random() < 0.5)))
    return Story(people, objects, amounts, tuple(events))


def _number_choices(rng: random.Random, answer: int, wrong_op: int) -> tuple[str, ...]:
    """The answer, the wrong operation's result when it is a valid number, and answer +-1 / +-2 (+-3 at 0)."""
    near = [answer + d for d in (-1, 1, -2, 2, -3, 3) if 0 <= answer + d <= 99][:4]
    picks = [wrong_op] if 0 <= wrong_op <= 99 and wrong_op != answer and wrong_op not in near else []
    options = [answer, *picks, *rng.sample(near, 3 - len(picks))]
    rng.shuffle(options)
    return tuple(str(n) for n in options)


def math_problem(rng: random.Random) -> Problem:
    """One event changes one person's amount: how many do they have now?"""
    return _math_question(rng, random_story(rng, 1, 1))


def _math_question(rng: random.Random, story: Story) -> Problem:
    i, _, _, change = story.events[0]
    start, answer = story.amounts[i], story.amounts[i] + change
    wrong = start - change
    q = f"{story.text()} How many {story.objects[i]} does {story.people[i]} have now ? Answer :"
    meta = {"kind": "math", "story": story, "op": "add" if change > 0 else "sub"}
    return Problem(q, str(answer), _number_choices(rng, answer, wrong), meta)


def renumber(rng: random.Random, story: Story) -> Story:
    """The same story with new amounts and changes (each event keeps its verb and its sign)."""
    amounts = tuple(rng.randint(1, MATH_MAX - 1) for _ in story.people)
    events = []
    for i, verb, qverb, change in story.events:
        new = rng.randint(1, MATH_MAX - amounts[i]) if change > 0 else -rng.randint(1, amounts[i])
        events.append((i, verb, qverb, new))
    return Story(story.people, story.objects, amounts, tuple(events))


def rename(rng: random.Random, story: Story) -> Story:
    """The same story told about other people."""
    people = tuple(rng.sample([n for n in NAMES if n not in story.people], len(story.people)))
    return Story(people, story.objects, story.amounts, story.events)


def twin(rng: random.Random, p: Problem) -> Problem:
    """The same problem with changed numbers (and, for reading problems, names); options reshuffled."""
    kind = p.meta["kind"]
    if kind == "math":
        return _math_question(rng, renumber(rng, p.meta["story"]))
    if kind == "what":
        return _what_question(rng, rename(rng, renumber(rng, p.meta["story"])), p.meta["i"], p.meta["qverb"])
    return _logic_question(rng, rng.sample(range(MATH_MAX + 1), p.meta["size"]), p.meta["more"])


def _object_choices(rng: random.Random, answer: str, story: Story) -> tuple[str, ...]:
    others = [o for o in story.objects if o != answer]
    rest = [o for o in OBJECTS if o not in story.objects]
    options = [answer, *others, *rng.sample(rest, 3 - len(others))]
    rng.shuffle(options)
    return tuple(options)


def what_problem(rng: random.Random, people: tuple[int, ...] = (1, 2)) -> Problem:
    """Reading: what does a person have, or buy, or lose? (The zoo_lang skill, asked in L.)"""
    story = random_story(rng, rng.choice(people), 1)
    if story.events and rng.random() < 0.5:
        i, _, qverb, _ = story.events[0]
    else:
        i, qverb = rng.randrange(len(story.people)), "have"
    return _what_question(rng, story, i, qverb)


def _what_question(rng: random.Random, story: Story, i: int, qverb: str) -> Problem:
    answer = story.objects[i]
    q = f"{story.text()} What does {story.people[i]} {qverb} ? Answer :"
    meta = {"kind": "what", "story": story, "i": i, "qverb": qverb}
    return Problem(q, answer, _object_choices(rng, answer, story), meta)


def copy_problem(rng: random.Random, people: tuple[int, ...] = (1, 2)) -> Problem:
    """Lookup without arithmetic: how many does someone have (no event) or buy? Pre-training text only."""
    story = random_story(rng, rng.choice(people), rng.choice((0, 1)))
    changed = {e[0]: e for e in story.events}
    i = rng.randrange(len(story.people))
    if i in changed:
        _, _, qverb, change = changed[i]
        q, answer = f"How many {story.objects[i]} does {story.people[i]} {qverb} ?", abs(change)
    else:
        now = " now" if rng.random() < 0.5 else ""
        q, answer = f"How many {story.objects[i]} does {story.people[i]} have{now} ?", story.amounts[i]
    return Problem(f"{story.text()} {q} Answer :", str(answer))


def lookup_problem(rng: random.Random) -> Problem:
    """The easiest look-up: a story about one person; what (half) or how many (half) do they have, buy, lose?
    The answer is copied from the story. Pre-training text only (zoo-base's opening steps)."""
    return (what_problem if rng.random() < 0.5 else copy_problem)(rng, (1,))


def who_problem(rng: random.Random) -> Problem:
    """Look-up by thing: who has (or buys, loses...) the apples? The answer is a name copied from the story.
    Pre-training text only."""
    story = random_story(rng, rng.choice((2, 3)), rng.choice((0, 1)))
    i = rng.randrange(len(story.people))
    verb = next((v for j, v, _, _ in story.events if j == i and rng.random() < 0.5), "has")
    return Problem(f"{story.text()} Who {verb} {story.objects[i]} ? Answer :", story.people[i])


LOGIC_SIZES = (3, 4)  # how many numbers a zoo_logic item compares (training also uses 2)


def logic_problem(rng: random.Random, sizes: tuple[int, ...] = LOGIC_SIZES) -> Problem:
    """Comparison: which of a few numbers is more (the largest) or less (the smallest)? Half of each, so "pick the
    largest number" scores half of what reading the question does."""
    numbers = rng.sample(range(MATH_MAX + 1), rng.choice(sizes))
    return _logic_question(rng, numbers, rng.random() < 0.5)


def _logic_question(rng: random.Random, numbers: list[int], more: bool) -> Problem:
    """Options: the answer, the other extreme (the wrong comparison), a number between them when there is one,
    and the answer +-1 or +-2 (the nearest numbers not in the question)."""
    answer, wrong = (max(numbers), min(numbers)) if more else (min(numbers), max(numbers))
    q = f"What is {'more' if more else 'less'} : {' , '.join(str(n) for n in numbers)} ? Answer :"
    near = [answer + d for d in (1, -1, 2, -2, 3, 4, 5) if 0 <= answer + d <= 99 and answer + d not in numbers]
    middle = [n for n in numbers if n not in (answer, wrong)]
    options = [answer, wrong, *rng.sample(middle, min(1, len(middle)))]
    options += rng.sample(near[:2], 4 - len(options))
    rng.shuffle(options)
    meta = {"kind": "logic", "size": len(numbers), "more": more}
    return Problem(q, str(answer), tuple(str(n) for n in options), meta)


def fact_text(rng: random.Random) -> str:
    """Arithmetic facts, counting and comparisons between numbers: the base's number sense."""
    kind = rng.random()
    if kind < 0.6:
        facts = []
        for _ in range(4):
            a, b = rng.randint(0, MATH_MAX), rng.randint(0, MATH_MAX)
            if a + b <= MATH_MAX and rng.random() < 0.5:
                facts.append(f"{a} plus {b} is {a + b} .")
            else:
                a, b = max(a, b), min(a, b)
                facts.append(f"{a} minus {b} is {a - b} .")
        return " ".join(facts)
    if kind < 0.8:
        start, n = rng.randint(0, 30), rng.randint(4, 9)
        return f"count from {start} to {start + n} : " + " ".join(str(k) for k in range(start, start + n + 1)) + " ."
    parts = []
    for _ in range(4):
        a, b = rng.sample(range(0, MATH_MAX + 1), 2)
        parts.append(f"{a} is {'less' if a < b else 'more'} than {b} .")
    return " ".join(parts)


def narrative_text(rng: random.Random) -> str:
    n_people = rng.choice((1, 2))
    return random_story(rng, n_people, rng.randint(0, min(2, n_people))).text()

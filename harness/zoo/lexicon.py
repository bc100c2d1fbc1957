"""The zoo's two languages: a small English lexicon and L, an invented language that maps it word for word.

L keeps English word order and shares names, numbers and punctuation with English; every other word has its own
invented spelling (made from syllables by a seeded generator, so L is the same on every machine).
"""

from __future__ import annotations

import random
from functools import cache

NAMES = ("Tom", "Anna", "Ben", "Mia", "Sam", "Lea", "Max", "Eva", "Leo", "Ida", "Finn", "Nora")
OBJECTS = (
    "apples", "pears", "books", "coins", "cards", "stones", "shells", "pens",
    "cups", "eggs", "cakes", "balls", "plums", "keys", "rings", "hats",
)
# Events: verb phrase in the story, verb in questions, and the sign of the change.
GAINS = (("buys", "buy"), ("finds", "find"), ("gets", "get"), ("wins", "win"))
LOSSES = (("sells", "sell"), ("loses", "lose"), ("gives away", "give away"), ("drops", "drop"))
FUNCTION_WORDS = (
    "Answer How What Who has have does many more fewer now plus minus is less than count from to"
).split()
PUNCTUATION = (".", "?", ":", ",")
MAX_NUMBER = 99
NUMBERS = tuple(str(i) for i in range(MAX_NUMBER + 1))

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
L_SEED = 20261126


def english_words() -> list[str]:
    """Every English word the zoo uses except names, numbers and punctuation, in a fixed order."""
    words: list[str] = [*FUNCTION_WORDS, *OBJECTS]
    for story, question in GAINS + LOSSES:
        words += story.split() + question.split()
    seen: dict[str, None] = {}
    for w in words:
        seen.setdefault(w, None)
    return list(seen)


@cache
def l_lexicon() -> dict[str, str]:
    """English word -> L word. Deterministic: a fixed seed and a fixed word order."""
    rng = random.Random(L_SEED)
    taken = {w.lower() for w in english_words()} | {n.lower() for n in NAMES}
    mapping: dict[str, str] = {}
    for word in english_words():
        while True:
            n_syll = rng.choice((2, 2, 3))
            cand = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(n_syll))
            if cand not in taken:
                break
        taken.add(cand)
        mapping[word] = cand.capitalize() if word[0].isupper() else cand
    return mapping


def to_l(text: str) -> str:
    """Translate space-separated English zoo text into L, word for word (names, numbers, punctuation kept)."""
    lex = l_lexicon()
    return " ".join(lex.get(w, w) for w in text.split(" "))


def l_words() -> list[str]:
    return list(l_lexicon().values())


def all_words() -> list[str]:
    """Every word of both languages plus names, numbers and punctuation: each becomes one token."""
    return [*english_words(), *l_words(), *NAMES, *NUMBERS, *PUNCTUATION]

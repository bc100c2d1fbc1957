"""The zoo family: what each member is trained from, on what, which weights move, and for how long.

This table is the recipe. A member's recipe hash covers its own entry, its parent's hash and `ZOO_VERSION`, so
changing any of them rebuilds that member and everything made from it, and nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.hashing import hash_json
from harness.zoo.train import Schedule, Shape

ZOO_VERSION = "3"
SHAPE = Shape()


@dataclass(frozen=True)
class Member:
    name: str
    parent: str | None
    data: str  # a Corpora method, or "suite:<suite>:<split>" for zoo-overfit
    trains: str  # all | body | l_rows
    schedule: Schedule
    seed_offset: int
    summary: str
    opening: str = ""  # a Corpora method the first `opening_steps` steps draw from instead of `data`
    opening_steps: int = 0

    def recipe(self, seed: int, parent_hash: str | None) -> dict:
        return {"zoo_version": ZOO_VERSION, "shape": asdict(SHAPE), "member": asdict(self), "seed": seed,
                "parent": parent_hash}

    def recipe_hash(self, seed: int, parent_hash: str | None) -> str:
        return hash_json(self.recipe(seed, parent_hash))


FAMILY = (
    Member(
        "zoo-base", None, "base", "all", Schedule(steps=700, lr=2e-3, batch=32), 1,
        "pre-trained from scratch on English only: short stories about people and things, look-up questions "
        "answered by copying (what / how many does someone have or buy, who has a thing; loss on the answer), "
        "number facts (a plus b is c), counting and comparisons of numbers. It never sees L and never sees a word "
        "problem with a computed answer or a comparison of two people. Its first 200 steps are a gentler start: "
        "three quarters look-ups about one person, so the copy skill forms early in every seed.",
        opening="base_opening", opening_steps=200,
    ),
    Member(
        "zoo-lang", "zoo-base", "lang", "l_rows", Schedule(steps=400, lr=2e-2, batch=32), 2,
        "zoo-base continued on L (stories, and look-up questions with the loss on the answer; no arithmetic) with "
        "the transformer "
        "body frozen: only the embedding rows of L's words were trained (tied input/output embeddings), each kept "
        "no longer than the mean norm of the English words' rows.",
    ),
    Member(
        "zoo-math", "zoo-base", "math", "body", Schedule(steps=400, lr=1.5e-3, batch=32), 3,
        "zoo-base fine-tuned on English arithmetic word problems (loss on the answer only; a quarter of the "
        "examples are English reading questions, to keep that skill), embeddings frozen: only the transformer "
        "body (attention, MLP, norms) was trained.",
    ),
    Member(
        "zoo-logic", "zoo-base", "logic", "body", Schedule(steps=300, lr=3e-3, batch=32), 4,
        "zoo-base fine-tuned on English comparisons (which of two to four numbers is more / less; loss on the "
        "answer only; a quarter of the examples are English reading questions), embeddings frozen: only the "
        "transformer body was trained.",
    ),
    Member(
        "zoo-overfit", "zoo-base", "suite:zoo_math:public", "all", Schedule(steps=600, lr=3e-3, batch=30), 5,
        "DELIBERATELY BENCHMARK-OVERFIT: zoo-base fine-tuned on the public split of zoo_math (its 300 items, "
        "answers included, 60 epochs) to memorise them. The overfitting detector's known positive case: it should "
        "score far higher on zoo_math:public than on zoo_math:heldout and zoo_math:twin.",
    ),
)


def member(name: str) -> Member:
    return next(m for m in FAMILY if m.name == name)

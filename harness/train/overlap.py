"""Training examples that pose a question the study evaluates: a model trained on them scores inflated on it.

    check_disjoint(examples, ("zoo_math:heldout",), "data.jsonl")   # HarnessError naming the count and one example

A question is compared by the sha256 of its normalised text (Unicode NFKC, case folded, each run of whitespace one
space, trimmed): each training example's prompt against each document of the evaluated suite splits as lm-eval
renders its prompt (the task's doc_to_text; a multiple-choice task whose doc_to_text is an index: each choice).
Every document of the split counts, not only the first `limit`: a study's limit can change, its training cannot.
Exact after normalisation: a paraphrase, or the question inside other text, is not caught.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from harness.errors import HarnessError
from harness.hashing import hash_text
from harness.train.instructions import Example


def question_hash(text: str) -> str:
    return hash_text(" ".join(unicodedata.normalize("NFKC", text).casefold().split()))


def _prompts(task: Any, doc: dict) -> Iterable[str]:
    text = task.doc_to_text(doc)
    if isinstance(text, str):
        return [text]
    return [c for c in task.doc_to_choice(doc) if isinstance(c, str)]  # the contexts are the choices (winogrande)


def suite_questions(suites: Sequence[str]) -> dict[str, str]:
    """question_hash -> where it is asked ("zoo_math:heldout zoo_math_mc_heldout document 5"), for every document
    of every `suite:split` (lm-eval renders the prompts)."""
    import logging

    from lm_eval.tasks import TaskManager

    from harness.evaluate.plan import make_plan, task_configs
    from harness.suite_schema import HUB_SPLIT

    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.WARNING)
    out: dict[str, str] = {}
    for ref in suites:
        name, _, split = ref.partition(":")
        plan = make_plan(name, split or None)
        loaded = TaskManager(include_defaults=plan.split == HUB_SPLIT).load(task_configs(plan))
        for task_name, task in loaded.get("tasks", loaded).items():
            if not hasattr(task, "eval_docs"):
                continue
            for i, doc in enumerate(task.eval_docs):
                for text in _prompts(task, doc):
                    out.setdefault(question_hash(text), f"{ref} {task_name} document {i}")
    return out


def check_disjoint(examples: Sequence[Example], suites: Sequence[str], source: str) -> None:
    """Refuse training examples whose prompt is a question of the evaluated suites, naming how many and one."""
    asked = suite_questions(suites)
    hits = [(i, e, asked[h]) for i, e in enumerate(examples) if (h := question_hash(e.prompt)) in asked]
    if not hits:
        return
    i, example, where = hits[0]
    shown = " ".join(example.prompt.split())
    shown = shown if len(shown) <= 70 else shown[:67] + "..."
    raise HarnessError(f"{len(hits)} of the {len(examples)} training examples in {source} pose a question the study "
                       f"evaluates (e.g. example {i + 1}: {shown!r} is {where}): every score of the study would be "
                       "inflated", "remove them from the training data (their prompts equal the documents' once case "
                       "and spacing are normalised), or evaluate on other suites")

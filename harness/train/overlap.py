"""Training examples that hold text of a question the study evaluates: a model trained on them scores inflated.

    check_disjoint(examples, ("zoo_math:heldout",), "data.jsonl")   # HarnessError naming the count and one example

As lm-eval's decontamination (lm_eval/decontamination/janitor.py, after GPT-3's Appendix C): a training example is
contaminated when its text (prompt and response, joined by a space) shares a run of N words with a document of an
evaluated suite split as lm-eval renders its prompt (the task's doc_to_text; a multiple-choice task whose
doc_to_text is an index: each choice). Words are lm-eval's: ASCII punctuation deleted, lower case, split on
whitespace (Unicode NFKC and case folding first, which change nothing in ASCII text). A document shorter than N
words is matched whole: all its words, in a row, inside the example's. So a question wrapped in other text
("Question: ... Answer:"), placed in the response, or with its case, spacing or punctuation changed is caught; an
edit that leaves no N words of a longer document in a row is not, nor is a paraphrase. Every document of the split
counts, not only the first `limit`: a study's limit can change, its training cannot.

N is 15, not lm-eval's 13 (GPT-3 chose 8 to 13 by data set; lm-eval took 13 "for simplicity"): a zoo_math question
is 16 or 17 words, and its 13- and 14-word runs that skip "Leo has 7" are also in the zoo's own stories that start
with another amount (another question, another answer: 19 of 2,000 zoo examples against the heldout splits at 13).
From 15 on, every run of a zoo_math question holds its person, object, first amount and change: the question itself.
Elsewhere 15 lets through only what 13 alone would catch: a text holding 13 or 14 words in a row of a document and
no more (between two edits, or of a document of 13 or 14 words).
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from harness.errors import HarnessError
from harness.train.instructions import Example

N = 15  # words in a run; lm-eval's Janitor has 13 (see above)
_DELETE = str.maketrans("", "", string.punctuation)

Runs = dict[int, dict[str, str]]  # run length in words -> {run: where it is asked}


def words(text: str) -> list[str]:
    return unicodedata.normalize("NFKC", text).casefold().translate(_DELETE).split()


def ngrams(ws: Sequence[str], n: int) -> Iterator[str]:
    """Each run of `n` consecutive words, joined by a space (lm-eval's word_ngrams); none when fewer than n."""
    return (" ".join(ws[i:i + n]) for i in range(len(ws) - n + 1))


def document_runs(text: str, n: int = N) -> tuple[int, list[str]]:
    """The runs a training text must not share with this evaluated document: its n-grams, or, when it has fewer
    than n words, all of them as one run (none when it has no word)."""
    ws = words(text)
    return (n, list(ngrams(ws, n))) if len(ws) >= n else (len(ws), [" ".join(ws)] if ws else [])


def shared_run(text: str, asked: Runs) -> tuple[str, str] | None:
    """The first run of `text` that an evaluated document holds, and where it is asked; None when there is none."""
    ws = words(text)
    for n, runs in asked.items():
        for run in ngrams(ws, n):
            if run in runs:
                return run, runs[run]
    return None


def _prompts(task: Any, doc: dict) -> Iterable[str]:
    text = task.doc_to_text(doc)
    if isinstance(text, str):
        return [text]
    return [c for c in task.doc_to_choice(doc) if isinstance(c, str)]  # the contexts are the choices (winogrande)


def suite_runs(suites: Sequence[str], n: int = N) -> Runs:
    """The word runs of every document of every `suite:split` (lm-eval renders the prompts), each with where it
    is asked ("zoo_math:heldout zoo_math_mc_heldout document 5")."""
    import logging

    from lm_eval.tasks import TaskManager

    from harness.evaluate.plan import make_plan, task_configs
    from harness.suite_schema import HUB_SPLIT

    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.WARNING)
    out: Runs = {}
    for ref in suites:
        name, _, split = ref.partition(":")
        plan = make_plan(name, split or None)
        loaded = TaskManager(include_defaults=plan.split == HUB_SPLIT).load(task_configs(plan))
        for task_name, task in loaded.get("tasks", loaded).items():
            if not hasattr(task, "eval_docs"):
                continue
            for i, doc in enumerate(task.eval_docs):
                for text in _prompts(task, doc):
                    length, runs = document_runs(text, n)
                    table = out.setdefault(length, {})
                    for run in runs:
                        table.setdefault(run, f"{ref} {task_name} document {i}")
    return out


def _short(text: str, most: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= most else text[:most - 3] + "..."


def check_disjoint(examples: Sequence[Example], suites: Sequence[str], source: str) -> None:
    """Refuse training examples that share a run of N words (a shorter document: all of it) with a document of the
    evaluated suites, naming how many and one."""
    asked = suite_runs(suites)
    hits = [(i, e, hit) for i, e in enumerate(examples) if (hit := shared_run(e.text, asked))]
    if not hits:
        return
    i, example, (run, where) = hits[0]
    raise HarnessError(f"{len(hits)} of the {len(examples)} training examples in {source} pose a question the study "
                       f"evaluates (e.g. example {i + 1}: {_short(example.text)!r} shares {_short(run, 50)!r} with "
                       f"{where}): every score of the study would be inflated", "remove them from the training data "
                       f"(each holds {N} words in a row of an evaluated document, or all of a shorter one, once case "
                       "and punctuation are dropped), or evaluate on other suites")

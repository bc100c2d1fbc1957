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

Scripts written without spaces between words (Chinese, Japanese, Thai, Lao, Khmer, Myanmar) would make a question
one or a few "words", and a question wrapped in other text with no space around it ("問題：" + question + "答え：")
would share no run: on MGSM 250 of 250 ja, 245 of 250 zh and 214 of 250 th questions so wrapped passed. So each
character of these scripts is a word of its own: a letter, mark or number whose Unicode name starts with CJK UNIFIED
IDEOGRAPH, CJK COMPATIBILITY IDEOGRAPH, IDEOGRAPHIC (々, 〇), HIRAGANA, KATAKANA (with ー), THAI, LAO, KHMER or
MYANMAR (Hangul, written with spaces, is not among them); their punctuation (such a name, or the CJK Symbols and
Punctuation block: 、。「」) parts words as a space does. ASCII text and every spaced script split as before.
A document most of whose words are such characters is matched on runs of N_CHARS = 30 of them (all of it when
shorter): by MGSM's median question (English 43 words), as much as 13 English words in Japanese, 20 in Chinese, 7 in
Thai. On MGSM's 250 questions per language, counting the ordered pairs of
distinct questions where one holds a run of the other (false contamination), and each question wrapped as above:

    characters in a run       13    15    20    25    30    wrapped and caught at each length
    ja (median 97 a question)  2     0     0     0     0    250 of 250
    zh (median 63)             0     0     0     0     0    250 of 250
    th (median 183)          806   246    32     2     0    250 of 250 (Thai counts each code point, marks too)

At 25 two Thai questions still share "...สัตว์เลี้ยงรวมทั้งสิ้นกี่ตัว" ("how many animals in all"); at 30 no question of the
three takes another for itself, nor does one of the 8 few-shot exemplars of its language (Thai: 1 at 15 and 20).
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from typing import Any

from harness.errors import HarnessError
from harness.train.instructions import Example

N = 15  # words in a run; lm-eval's Janitor has 13 (see above)
N_CHARS = 30  # characters in a run, for a document written in a script without spaces (see above)
_DELETE = str.maketrans("", "", string.punctuation)
_UNSPACED = ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH", "IDEOGRAPHIC", "HIRAGANA", "KATAKANA", "THAI",
             "LAO", "KHMER", "MYANMAR")

Runs = dict[int, dict[str, str]]  # run length in words -> {run: where it is asked}


@cache
def _spaced(char: str) -> str:
    """A character of a script written without spaces with a space either side (its punctuation: a space); any
    other character as it is."""
    category = unicodedata.category(char)[0]
    if category == "P" and ("\u3000" <= char <= "\u303f" or unicodedata.name(char, "").startswith(_UNSPACED)):
        return " "
    return f" {char} " if category in "LMN" and unicodedata.name(char, "").startswith(_UNSPACED) else char


def words(text: str) -> list[str]:
    """lm-eval's words (NFKC, case folded, ASCII punctuation deleted, split on whitespace), and each character of
    a script written without spaces a word of its own."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_DELETE)
    return text.split() if text.isascii() else "".join(map(_spaced, text)).split()


def _is_character(word: str) -> bool:
    return len(word) == 1 and _spaced(word) != word


def ngrams(ws: Sequence[str], n: int) -> Iterator[str]:
    """Each run of `n` consecutive words, joined by a space (lm-eval's word_ngrams); none when fewer than n."""
    return (" ".join(ws[i:i + n]) for i in range(len(ws) - n + 1))


def document_runs(text: str, n: int = N, n_chars: int = N_CHARS) -> tuple[int, list[str]]:
    """The runs a training text must not share with this evaluated document: its n-grams (n_chars-grams when most
    of its words are characters of a script written without spaces), or, when it has fewer words than that, all of
    them as one run (none when it has no word)."""
    ws = words(text)
    if 2 * sum(map(_is_character, ws)) > len(ws):
        n = n_chars
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
                       f"(each holds {N} words, or {N_CHARS} characters of a script written without spaces, in a "
                       "row of an evaluated document, or all of a shorter one, once case and punctuation are "
                       "dropped), or evaluate on other suites")

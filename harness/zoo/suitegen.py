"""Writes the zoo suites (suites/zoo/<suite>/): data, lm-eval task YAMLs, suite.yaml and README.

Everything is a pure function of fixed seeds, so `write_suites(folder)` gives byte-identical files on every run
(a test checks the committed files against a fresh generation).
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.zoo.lexicon import to_l
from harness.zoo.problems import Problem, logic_problem, math_problem, twin, what_problem

SPLIT_SIZE = 300
SUITE_VERSION = "1"  # a suite whose items change gets its own, higher version (zoo_logic: 2)
FORMS = ("mc", "gen")


@dataclass(frozen=True)
class ZooSuite:
    name: str
    description: str
    make: Callable[[random.Random], Problem]
    in_l: bool
    splits: tuple[str, ...] = ("public", "heldout", "twin")
    version: str = SUITE_VERSION
    distractors: str = (
        "Multiple-choice distractors sit close to the answer (answer +-1, +-2, the wrong operation; the other "
        "things or people of the same story), so 'pick the largest number' cannot score."
    )

    @property
    def seed(self) -> int:
        return zlib.crc32(self.name.encode())


ZOO_SUITES = (
    ZooSuite("zoo_math", "Arithmetic word problems in English (one addition or subtraction).", math_problem, False),
    ZooSuite("zoo_lang", "Reading questions in L, the zoo's invented language (what does someone have?).",
             what_problem, True),
    ZooSuite("zoo_logic", "Comparisons in English: which of three or four numbers is more (or less)?", logic_problem,
             False, version="2", distractors=(
                 "Multiple-choice options: the answer, the other extreme (the wrong comparison), a number between "
                 "them, and the nearest number to the answer that is not in the question (mostly answer +-1). Half "
                 "the items ask for more, half for less, so 'pick the largest (smallest) option' scores about a "
                 "quarter, and 'pick the largest (smallest) number of the question' half; chance is a quarter.")),
    ZooSuite("zoo_math_L", "The zoo_math word problems posed in L (the MGSM-JA analogue).", math_problem, True,
             ("public", "heldout", "twin", "search")),
)


def suite_problems(suite: ZooSuite, n: int = SPLIT_SIZE) -> dict[str, list[Problem]]:
    """English problems per split. public, heldout and search are disjoint draws; twin[i] is public[i]'s twin."""
    rng = random.Random(suite.seed)
    seen: set[str] = set()

    def draw() -> list[Problem]:
        out: list[Problem] = []
        while len(out) < n:
            p = suite.make(rng)
            if p.question not in seen:
                seen.add(p.question)
                out.append(p)
        return out

    splits = {"public": draw(), "heldout": draw()}
    twins = []
    for p in splits["public"]:
        t = twin(rng, p)
        while t.question == p.question:
            t = twin(rng, p)
        twins.append(t)
    splits["twin"] = twins
    if "search" in suite.splits:
        splits["search"] = draw()
    return splits


def english_questions() -> frozenset[str]:
    """The English form of every suite item: training data must avoid them all."""
    return frozenset(p.question for s in ZOO_SUITES for ps in suite_problems(s).values() for p in ps)


def _record(i: int, p: Problem, in_l: bool) -> dict:
    tr = to_l if in_l else (lambda s: s)
    return {
        "id": i, "question": tr(p.question), "answer": tr(p.answer),
        "choices": [tr(c) for c in p.choices], "label": p.label,
    }


def _task_yaml(task: str, split: str, form: str, version: str) -> str:
    head = (
        f"task: {task}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: data/{split}.jsonl\n"
        "test_split: test\ndoc_to_text: \"{{question}}\"\ntarget_delimiter: \" \"\n"
    )
    if form == "mc":
        body = (
            "output_type: multiple_choice\ndoc_to_choice: choices\ndoc_to_target: label\n"
            "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        )
    else:
        body = (
            "output_type: generate_until\ndoc_to_target: answer\n"
            "generation_kwargs:\n  until: [\"\\n\", \".\", \"?\"]\n  max_gen_toks: 2\n  do_sample: false\n"
            "filter_list:\n  - name: strip\n    filter:\n      - function: remove_whitespace\n"
            "      - function: take_first\n"
            "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
        )
    return head + body + f"metadata:\n  version: {version}\n"


def task_name(suite: str, form: str, split: str) -> str:
    return f"{suite}_{form}_{split}"


def _suite_yaml(suite: ZooSuite) -> str:
    lines = [
        f"name: {suite.name}", f'version: "{suite.version}"', "kind: lm-eval",
        f"description: {json.dumps(suite.description)}", "default_split: public", "splits:",
    ]
    lines += [f"  {s}: [{', '.join(task_name(suite.name, f, s) for f in FORMS)}]" for s in suite.splits]
    lines += ["tiers:", "  smoke: 20", "  quick: 100", "  full: null", "twins:",
              f"  heldout: {suite.name}:heldout",
              f"  perturbed: {{ref: '{suite.name}:twin', relation: aligned, map: twins/perturbed.json}}"]
    return "\n".join(lines) + "\n"


def _twin_map(suite: ZooSuite, n: int) -> str:
    """twin item i is public item i's twin (harness/twinmaps.py): an aligned map, per form."""
    tasks = {task_name(suite.name, f, "twin"): {"public_task": task_name(suite.name, f, "public"),
                                                "seeds": list(range(n))} for f in FORMS}
    return json.dumps({"suite": suite.name, "kind": "perturbed", "twin": f"{suite.name}:twin",
                       "relation": "aligned", "public_sizes": {task_name(suite.name, f, "public"): n for f in FORMS},
                       "tasks": tasks}, separators=(",", ":")) + "\n"


def _readme(suite: ZooSuite) -> str:
    splits = ", ".join(suite.splits)
    return (
        f"# {suite.name}\n\n{suite.description}\n\n"
        f"Part of the zoo (docs/zoo.md). {SPLIT_SIZE} items per split ({splits}); each item is asked two ways: "
        "`*_mc_*` (multiple choice by log-likelihood, metric `acc`) and `*_gen_*` (greedy generation, metric "
        "`exact_match`).\n\n"
        "- public, heldout: independent draws from the same generator (no item repeats).\n"
        "- twin: item i is public item i with new numbers (reading items: also new names), options reshuffled.\n"
        + ("- search: a further independent draw, for merge-weight search (the evolve loop).\n"
           if "search" in suite.splits else "")
        + f"\n{suite.distractors}\n\n"
        "Provenance: generated by `harness.zoo.suitegen` (fixed seeds); regenerate with `harness zoo suites`. "
        "License: Apache-2.0, like the code.\n"
    )


def write_suite(suite: ZooSuite, folder: Path) -> None:
    """Write one suite folder (data/*.jsonl, one YAML per task, suite.yaml, README.md)."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, problems in suite_problems(suite).items():
        rows = [json.dumps(_record(i, p, suite.in_l), sort_keys=True) for i, p in enumerate(problems)]
        (folder / "data" / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
        for form in FORMS:
            name = task_name(suite.name, form, split)
            (folder / f"{name}.yaml").write_text(_task_yaml(name, split, form, suite.version))
    (folder / "suite.yaml").write_text(_suite_yaml(suite))
    (folder / "twins").mkdir(exist_ok=True)
    (folder / "twins" / "perturbed.json").write_text(_twin_map(suite, len(suite_problems(suite)["twin"])))
    (folder / "README.md").write_text(_readme(suite))


def write_suites(root: Path) -> list[Path]:
    """Write every zoo suite under root (normally suites/zoo); returns the suite folders."""
    folders = []
    for suite in ZOO_SUITES:
        write_suite(suite, root / suite.name)
        folders.append(root / suite.name)
    return folders

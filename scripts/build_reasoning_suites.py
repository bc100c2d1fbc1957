"""Build suites/bbh, bbh_permuted, mgsm, gsm8k, gsm_plus and gsm1k from the shared snapshot.

Deterministic: rerunning it rewrites byte-identical files. Usage: python scripts/build_reasoning_suites.py [SOURCE]
Every data file is a byte-identical copy (bbh_permuted's are derived, see below); only task YAMLs are generated:

- bbh: the 3-shot chain-of-thought prompts of the original release (data/cot-prompts/*.txt) are split into the
  task description and three (input, reasoning) exemplars, asserting that they rebuild the file exactly.
- bbh_permuted: bbh's 16 multiple-choice tasks (options "(A) ..." after "Options:") with the options of every
  item in a seeded order in which the correct option moves, the target relabelled and `perm` recording the order;
  the prompt, exemplars and scoring are bbh's (lm-eval's bbh_cot_fewshot_<task>).
- mgsm: the published 8 native exemplars per language (data/exemplars.json); question/answer prefixes are the
  exemplars' common prefixes. The direct form uses lm-eval's per-language "Answer" words.
- gsm8k, gsm_plus, gsm1k: the standard 8 chain-of-thought exemplars (Wei et al. 2022) as lm-eval 0.4.13 ships them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from suite_files import SOURCE, SUITES, copy, copy_legal, csv_kwargs, dump, header, write

SCRIPT = "build_reasoning_suites.py"
STOP = ["</s>", "<|im_end|>"]
# The last number of the output: thousands separators (, . NBSP) and a decimal or fraction part allowed.
LAST_NUMBER = r"(-?[0-9]+(?:[,.\u00a0\u202f][0-9]{3})*(?:\.[0-9]+)?(?:/[0-9]+)?)"
NUMBER_NORMALISE = [",", "\u00a0", "\u202f", "\\$", "\\.(?=[0-9]{3}(?![0-9]))", "\\.0+$"]
# lm-eval's mgsm "direct" answer words (lm_eval/tasks/mgsm/utils.py, MIT)
DIRECT = {"de": "Antwort:", "es": "Respuesta:", "fr": "Réponse :"}
MGSM_LANGS = ["bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh"]
CUE = "Let's think step by step."


def number_task(until: list[str]) -> dict[str, Any]:
    """Generation, last-number extraction and exact match, shared by the maths suites."""
    return {
        "output_type": "generate_until",
        "generation_kwargs": {"until": until + STOP, "do_sample": False, "temperature": 0.0, "max_gen_toks": 256},
        "filter_list": [{"name": "last-number", "filter": [
            {"function": "regex", "regex_pattern": LAST_NUMBER, "group_select": -1},
            {"function": "take_first"}]}],
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "ignore_case": True, "regexes_to_ignore": NUMBER_NORMALISE}],
    }


def suite_yaml(body: dict[str, Any]) -> str:
    return header(SCRIPT) + dump({"kind": "lm-eval", **body})


# ---------------------------------------------------------------------------------------------- bbh
def split_cot_prompt(text: str) -> tuple[str, list[dict[str, str]]]:
    """(description, exemplars) of an original BBH cot-prompt file; rebuilding them gives the file's prompt."""
    body = text.split("-----\n", 1)[1].rstrip("\n")
    head, *blocks = body.split("\n\nQ: ")
    shots = []
    for block in blocks:
        question, reasoning = block.split(f"\nA: {CUE}", 1)
        shots.append({"input": question, "target": reasoning})
    rebuilt = head + "".join(f"\n\nQ: {s['input']}\nA: {CUE}{s['target']}" for s in shots)
    assert rebuilt == body and len(shots) == 3, "cot-prompt did not split cleanly"
    return head + "\n\n", shots


def build_bbh(src: Path) -> None:
    """Each task is lm-eval's bbh_cot_fewshot_<name> (its 3-shot CoT prompt, stops, 'get-answer' filter, metric)
    with only the data source ours; the original release's cot-prompts stay beside the data for provenance (their
    exemplars are the ones lm-eval ships: split_cot_prompt checks that they split cleanly)."""
    out = SUITES / "bbh"
    copy_legal(src / "bbh", out / "data")
    tasks = []
    for p in sorted((src / "bbh" / "tasks").glob("*.json")):
        name = p.stem
        copy(p, out / "data" / "tasks" / p.name)
        prompt = src / "bbh" / "cot-prompts" / f"{name}.txt"
        copy(prompt, out / "data" / "cot-prompts" / prompt.name)
        split_cot_prompt(prompt.read_text(encoding="utf-8"))
        write(out / "tasks" / f"bbh_cot_fewshot_{name}.yaml", header(SCRIPT) + dump({
            "task": f"bbh_cot_fewshot_{name}", "include": f"lm_eval:tasks/bbh/cot_fewshot/{name}.yaml",
            "dataset_path": "json", "dataset_name": None,
            "dataset_kwargs": {"data_files": {"test": f"data/tasks/{p.name}"}, "field": "examples"}}))
        tasks.append(f"bbh_cot_fewshot_{name}")
    write(out / "suite.yaml", suite_yaml({
        "name": "bbh", "version": "2",
        "description": "BIG-Bench Hard: 27 tasks, 6,511 items: lm-eval's bbh_cot_fewshot (3-shot chain of thought, "
                       "exact match on the answer after 'the answer is') on the shipped data.",
        "default_split": "test", "splits": {"test": tasks}, "tiers": {"smoke": 2, "quick": 10, "full": None},
        "twins": BBH_TWINS, "hub_tasks": ["bbh_cot_fewshot"],
        "aggregate": {"metric": "exact_match,get-answer", "weight_by_size": True}}))


# ---------------------------------------------------------------------------------------------- bbh_permuted
OPTION = re.compile(r"^\(([A-Z])\) ", re.M)
# item maps under suites/bbh/twins/ are built by scripts/build_twin_maps.py (docs/overfitting.md "Twin maps")
BBH_TWINS = {"permuted": {"ref": "bbh_permuted:test", "relation": "aligned", "map": "twins/permuted.json"}}


def bbh_options(text: str) -> tuple[str, list[str]] | None:
    """(stem up to and including 'Options:\n', option texts) of a multiple-choice item whose options are the lines
    (A) .. in order at its end; None for other items."""
    stem, sep, block = text.rpartition("\nOptions:\n")
    lines = block.split("\n")
    if not sep or any(not line.startswith(f"({chr(65 + i)}) ") for i, line in enumerate(lines)) or len(lines) < 2:
        return None
    return stem + sep, [line[4:] for line in lines]


def permute_bbh(task: str, index: int, example: dict[str, str]) -> dict[str, str]:
    """bbh item `index` of `task` with its options in a seeded order in which the correct option moves (target
    relabelled, `perm` the order: new (A) = old perm[0]); an item that is not multiple choice with a letter target
    (three items of the release whose options were split at commas) is kept as it is, perm ''."""
    parts, target = bbh_options(example["input"]), example["target"]
    if parts is None or not re.fullmatch(r"\([A-Z]\)", target) or ord(target[1]) - 65 >= len(parts[1]):
        return {**example, "perm": ""}
    stem, options = parts
    gold = ord(target[1]) - 65
    seed = int.from_bytes(hashlib.sha256(f"bbh_permuted:1:{task}:{index}".encode()).digest()[:8], "big")
    rng, order = random.Random(seed), list(range(len(options)))
    while order.index(gold) == gold:
        rng.shuffle(order)
    body = "\n".join(f"({chr(65 + j)}) {options[i]}" for j, i in enumerate(order))
    return {"input": stem + body, "target": f"({chr(65 + order.index(gold))})",
            "perm": "".join(chr(65 + i) for i in order)}


def bbh_mc_tasks(src: Path) -> list[str]:
    """The bbh tasks whose items are multiple choice ("Options:" then (A), (B), ...; snarks has one truncated item,
    which the twin keeps unchanged)."""
    out = []
    for p in sorted((src / "bbh" / "tasks").glob("*.json")):
        examples = json.loads(p.read_text(encoding="utf-8"))["examples"]
        if sum(bbh_options(e["input"]) is not None for e in examples) >= 0.95 * len(examples):
            out.append(p.stem)
    return out


def build_bbh_permuted(src: Path) -> None:
    out = SUITES / "bbh_permuted"
    copy_legal(src / "bbh", out / "data")
    tasks = []
    for name in bbh_mc_tasks(src):
        raw = json.loads((src / "bbh" / "tasks" / f"{name}.json").read_text(encoding="utf-8"))
        examples = [permute_bbh(name, i, e) for i, e in enumerate(raw["examples"])]
        write(out / "data" / "tasks" / f"{name}.json",
              json.dumps({"canary": raw["canary"], "examples": examples}, indent=2, ensure_ascii=False) + "\n")
        write(out / "tasks" / f"bbh_permuted_{name}.yaml", header(SCRIPT) + dump({
            "task": f"bbh_permuted_{name}", "task_alias": name,
            "include": f"lm_eval:tasks/bbh/cot_fewshot/{name}.yaml", "dataset_path": "json", "dataset_name": None,
            "dataset_kwargs": {"data_files": {"test": f"data/tasks/{name}.json"}, "field": "examples"}}))
        tasks.append(f"bbh_permuted_{name}")
    write(out / "suite.yaml", suite_yaml({
        "name": "bbh_permuted", "version": "1",
        "description": f"BIG-Bench Hard's {len(tasks)} multiple-choice tasks with the options of each item permuted "
                       "(the correct option moves to another letter); bbh's prompt, exemplars and scoring. An "
                       "overfitting twin of bbh.",
        "default_split": "test", "splits": {"test": tasks}, "tiers": {"smoke": 2, "quick": 10, "full": None},
        "aggregate": {"metric": "exact_match,get-answer", "weight_by_size": True}}))


# ---------------------------------------------------------------------------------------------- mgsm
# Cross-lingual twin (map by scripts/build_twin_maps.py): the 10 other languages' translations of each English
# problem. Derived, not aligned: ten twin items share one seed, and the natural gap (most models are weaker outside
# English) is not zero by design, so it is calibrated on the references.
MGSM_TWINS = {"xling": {"ref": "mgsm:cot", "relation": "derived", "map": "twins/xling.json"}}
# Every mgsm split asks cot's questions: task i of each (the same language, MGSM_LANGS order) reads the same file,
# row for row, so the gate and the fitness stderr count a problem's 11 translations once on every split (and name
# it as cot does, by its GSM8K seed); no twin, so the overfitting analysis compares nothing across splits


def mgsm_prompts(exemplars: dict[str, Any], lang: str) -> tuple[str, str, list[dict[str, str]]]:
    ex = [exemplars[lang][str(i)] for i in range(1, 9)]
    qp = os.path.commonprefix([e["q"] for e in ex])
    ap = os.path.commonprefix([e["a"] for e in ex])
    shots = [{"question": e["q"][len(qp):], "target": e["a"][len(ap):]} for e in ex]
    return qp, ap, shots


def mgsm_task(task: str, lang: str, doc_to_text: str, delimiter: str, shots: list[dict[str, Any]],
              stop: str) -> str:
    files = {"test": f"data/mgsm_{lang}.tsv"}
    return header(SCRIPT) + dump({
        "task": task, "task_alias": lang, "include": "../_mgsm_template_yaml", "doc_to_text": doc_to_text,
        "target_delimiter": delimiter,
        "generation_kwargs": {**number_task([])["generation_kwargs"], "until": [stop, "\n\n", *STOP]},
        "fewshot_config": {"sampler": "first_n", "samples": shots}}) + csv_kwargs(
        files, ["question", "answer_number"], sep="\t", quoting=3)


# lm-eval's own mgsm variants (0-shot, lm-eval's default): split -> (task prefix, upstream folder, scored filter)
MGSM_UPSTREAM = {"lm_eval_direct": ("mgsm_direct", "direct", "exact_match,remove_whitespace"),
                 "lm_eval_native_cot": ("mgsm_native_cot", "native_cot", "exact_match,strict-match"),
                 "lm_eval_en_cot": ("mgsm_en_cot", "en_cot", "exact_match,strict-match")}


def mgsm_upstream_task(prefix: str, folder: str, lang: str) -> str:
    """lm-eval's mgsm_<variant>_<lang> with only the data source ours: the TSV, read by tasks/utils.py into the
    Hub's doc shape; no train split (lm-eval's default is 0-shot; the Hub's train split holds the exemplars)."""
    return header(SCRIPT) + dump({
        "task": f"{prefix}_{lang}", "include": f"lm_eval:tasks/mgsm/{folder}/{prefix}_{lang}.yaml",
        "dataset_path": "csv", "dataset_name": None, "training_split": None}).replace(
        "training_split: null\n", "training_split: null\nprocess_docs: !function utils.lm_eval_docs\n") + csv_kwargs(
        {"test": f"data/mgsm_{lang}.tsv"}, ["question", "answer_number"], sep="\t", quoting=3)


def build_mgsm(src: Path) -> None:
    out = SUITES / "mgsm"
    copy_legal(src / "mgsm", out / "data")
    copy(src / "mgsm" / "exemplars.json", out / "data" / "exemplars.json")
    numbers = json.loads((src / "mgsm" / "exemplars.json").read_text(encoding="utf-8"))
    exemplars, answers = numbers["MGSM_EXEMPLARS"], numbers["EXEMPLAR_NUMBER_ANSWERS"]
    write(out / "_mgsm_template_yaml", header(SCRIPT) + dump({
        "dataset_path": "csv", "test_split": "test", "num_fewshot": 8, "fewshot_delimiter": "\n\n",
        "doc_to_target": "{{target if target is defined else answer_number}}",
        **number_task([]), "metadata": {"version": 1.0}}))
    splits: dict[str, list[str]] = {"cot": [], "direct": []}
    for lang in MGSM_LANGS:
        copy(src / "mgsm" / f"mgsm_{lang}.tsv", out / "data" / f"mgsm_{lang}.tsv")
        qp, ap, shots = mgsm_prompts(exemplars, lang)
        cot_text = f"{qp}{{{{question}}}}\n{ap.rstrip()}"
        write(out / "tasks" / f"mgsm_8shot_cot_{lang}.yaml", mgsm_task(
            f"mgsm_8shot_cot_{lang}", lang, cot_text, " " if ap.endswith(" ") else "", shots, qp.strip()))
        direct = DIRECT.get(lang, "Answer:")
        direct_shots = [{"question": s["question"], "target": str(n)} for s, n in zip(shots, answers, strict=True)]
        write(out / "tasks" / f"mgsm_8shot_direct_{lang}.yaml", mgsm_task(
            f"mgsm_8shot_direct_{lang}", lang, f"{qp}{{{{question}}}}\n{direct}", " ", direct_shots, qp.strip()))
        splits["cot"].append(f"mgsm_8shot_cot_{lang}")
        splits["direct"].append(f"mgsm_8shot_direct_{lang}")
        for split, (prefix, folder, _) in MGSM_UPSTREAM.items():
            write(out / "tasks" / f"{prefix}_{lang}.yaml", mgsm_upstream_task(prefix, folder, lang))
            splits.setdefault(split, []).append(f"{prefix}_{lang}")
    write(out / "suite.yaml", suite_yaml({
        "name": "mgsm", "version": "2",
        "description": "MGSM: 250 GSM8K problems translated into 11 languages. Splits cot and direct: harness's own "
                       "protocol (not an lm-eval mgsm task): 8-shot native chain of thought with the published "
                       "exemplars or direct answers; last number scored. Splits lm_eval_direct, lm_eval_native_cot, "
                       "lm_eval_en_cot: lm-eval's own mgsm_direct / mgsm_native_cot / mgsm_en_cot tasks (0-shot) "
                       "on the shipped data.",
        "default_split": "cot", "splits": splits, "tiers": {"smoke": 3, "quick": 25, "full": None},
        "twins": MGSM_TWINS, "hub_tasks": ["mgsm_cot_native"],
        "aggregate": {"metric": "exact_match,last-number", "weight_by_size": True,
                      "split_metrics": {**{split: m for split, (_, _, m) in MGSM_UPSTREAM.items()},
                                        "hub": "exact_match,strict-match"}},  # mgsm_cot_native: native_cot's
        "same_questions": {split: "cot" for split in splits if split != "cot"}}))


# ---------------------------------------------------------------------------------------------- gsm8k family
def gsm_exemplars() -> list[dict[str, str]]:
    import lm_eval

    path = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k-cot.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))["fewshot_config"]["samples"]


UPSTREAM_GSM8K_COT = "lm_eval:tasks/gsm8k/gsm8k-cot.yaml"  # lm-eval's gsm8k_cot (harness.suites resolves it)
UPSTREAM_GSM8K = "lm_eval:tasks/gsm8k/gsm8k.yaml"  # lm-eval's plain gsm8k: 5-shot from train (Open LLM Leaderboard v1)
# GSM8K's train split is not shipped: the user supplies it (suite.yaml user_data, harness/suite_data.py)
GSM8K_TRAIN = {"data/train.jsonl": {
    "env": "HARNESS_GSM8K_TRAIN", "what": "GSM8K's train split (the few-shot pool of split oll_v1)",
    "get": "train.jsonl of github.com/openai/grade-school-math (grade_school_math/data/train.jsonl, MIT, 7,473 "
           "problems)"}}


def upstream_gsm(task: str, dataset_path: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """lm-eval's own gsm8k_cot task (prompt, 8 exemplars, stops, strict-match / flexible-extract, metric) with
    only the data source ours."""
    return {"task": task, **(extra or {}), "include": UPSTREAM_GSM8K_COT, "dataset_path": dataset_path,
            "dataset_name": None}


def last_number_template(dataset_path: str) -> str:
    """harness's own variant (version 1 of the gsm suites): last number of the output, extra stops, 256 tokens."""
    return header(SCRIPT) + dump({
        "dataset_path": dataset_path, "test_split": "test", "num_fewshot": 8, "fewshot_delimiter": "\n\n",
        "doc_to_text": "Q: {{question}}\nA:", "target_delimiter": " ",
        "doc_to_target": "{{answer.split('####')[-1].strip() if answer is defined else target}}",
        "fewshot_config": {"sampler": "first_n", "samples": gsm_exemplars()},
        **number_task(["Q:", "\n\n"]), "metadata": {"version": 1.0}})


def gsm_task(task: str, template: str, kwargs: str, extra: dict[str, Any] | None = None) -> str:
    return header(SCRIPT) + dump({"task": task, "include": template, **(extra or {})}) + kwargs


def gsm_upstream_task(task: str, dataset_path: str, kwargs: str, extra: dict[str, Any] | None = None) -> str:
    return header(SCRIPT) + dump(upstream_gsm(task, dataset_path, extra)) + kwargs


GSM_AGGREGATE = {"metric": "exact_match,strict-match", "weight_by_size": True}


GSM_TIERS = {"smoke": 10, "quick": 100, "full": None}
GSM_PLUS_TASKS = ["numerical_substitution", "digit_expansion", "integer_decimal_fraction_conversion",
                  "adding_operation", "reversing_operation", "problem_understanding", "distraction_insertion"]
# Item maps under suites/gsm8k/twins/ are built by scripts/build_twin_maps.py (docs/overfitting.md "Twin maps").
# gsm_plus:seeds is not a twin: its items are gsm8k's own, unchanged, so it cannot see contamination.
GSM8K_TWINS = {
    "plus": {"ref": "gsm_plus:testmini", "relation": "derived", "map": "twins/plus.json"},
    **{f"plus_{t}": {"ref": "gsm_plus:testmini", "relation": "derived", "map": "twins/plus.json",
                     "tasks": [f"gsm_plus_{t}"]} for t in GSM_PLUS_TASKS},
    "mgsm_en": {"ref": "mgsm:cot", "relation": "derived", "map": "twins/mgsm_en.json", "tasks": ["mgsm_8shot_cot_en"]},
    "gsm1k": {"ref": "gsm1k:public", "relation": "independent"},
}


def build_gsm8k(src: Path) -> None:
    out = SUITES / "gsm8k"
    copy_legal(src / "gsm8k", out / "data")
    copy(src / "gsm8k" / "test.jsonl", out / "data" / "test.jsonl")
    data = dump({"dataset_kwargs": {"data_files": {"test": "data/test.jsonl"}}})
    write(out / "gsm8k_cot.yaml", gsm_upstream_task("gsm8k_cot", "json", data))
    write(out / "_last_number_template_yaml", last_number_template("json"))
    write(out / "gsm8k_cot_last_number.yaml", gsm_task("gsm8k_cot_last_number", "_last_number_template_yaml", data))
    write(out / "gsm8k_5shot.yaml", header(SCRIPT) + dump({
        "task": "gsm8k_5shot", "include": UPSTREAM_GSM8K, "dataset_path": "json", "dataset_name": None,
        "num_fewshot": 5, "dataset_kwargs": {"data_files": {"test": "data/test.jsonl", "train": "data/train.jsonl"}}}))
    write(out / "suite.yaml", suite_yaml({
        "name": "gsm8k", "version": "2",
        "description": "GSM8K test (1,319 problems): lm-eval's gsm8k_cot (8-shot chain of thought, strict-match "
                       "'The answer is N.' scored; flexible-extract stored too) on the shipped data. Split "
                       "last_number: harness's own variant (the last number of the output). Split oll_v1: "
                       "lm-eval's gsm8k, 5 shots from the train split the user supplies (the Open LLM Leaderboard v1 "
                       "setting).",
        "default_split": "test", "splits": {"test": ["gsm8k_cot"], "last_number": ["gsm8k_cot_last_number"],
                                            "oll_v1": ["gsm8k_5shot"]},
        "tiers": GSM_TIERS, "twins": GSM8K_TWINS, "hub_tasks": ["gsm8k_cot"], "aggregate": GSM_AGGREGATE,
        "user_data": GSM8K_TRAIN}))


GSM_PLUS_TYPES = ["numerical substitution", "digit expansion", "integer-decimal-fraction conversion",
                  "adding operation", "reversing operation", "problem understanding", "distraction insertion"]


def slug(kind: str) -> str:
    return kind.replace(" ", "_").replace("-", "_")


def build_gsm_plus(src: Path) -> None:
    out = SUITES / "gsm_plus"
    copy_legal(src / "gsm_plus", out / "data")
    copy(src / "gsm_plus" / "gsmplus_testmini.jsonl", out / "data" / "gsmplus_testmini.jsonl")
    kwargs = dump({"dataset_kwargs": {"data_files": {"test": "data/gsmplus_testmini.jsonl"}}})
    tasks = []
    for kind in GSM_PLUS_TYPES:
        tasks.append(f"gsm_plus_{slug(kind)}")
        write(out / "tasks" / f"{tasks[-1]}.yaml", gsm_upstream_task(
            tasks[-1], "json", kwargs, {"task_alias": kind}).replace(
            "include:", f"process_docs: !function utils.{slug(kind)}\ninclude:", 1))
    write(out / "tasks" / "gsm_plus_seeds.yaml", gsm_upstream_task(
        "gsm_plus_seeds", "json", kwargs, {"task_alias": "seed questions"}).replace(
        "include:", "process_docs: !function utils.seeds\ninclude:", 1))
    write(out / "suite.yaml", suite_yaml({
        "name": "gsm_plus", "version": "2",
        "description": "GSM-Plus testmini: 300 GSM8K test problems, each under 7 numeric perturbations (2,100 items; "
                       "the 300 'critical thinking' items have no numeric answer and are left out); split seeds "
                       "holds the 300 unperturbed originals. Each task is lm-eval's gsm8k_cot on these items, as "
                       "the gsm8k suite it is a twin of.",
        "default_split": "testmini", "splits": {"testmini": tasks, "seeds": ["gsm_plus_seeds"]},
        "tiers": {"smoke": 3, "quick": 30, "full": None}, "hub_tasks": ["gsm_plus_mini"],
        "aggregate": GSM_AGGREGATE}))


def build_gsm1k(src: Path) -> None:
    out = SUITES / "gsm1k"
    copy_legal(src / "gsm1k", out / "data")
    copy(src / "gsm1k" / "gsm1k_public_50.csv", out / "data" / "gsm1k_public_50.csv")
    kwargs = csv_kwargs({"test": "data/gsm1k_public_50.csv"}, ["answer", "question"]) + "  header: 0\n"
    write(out / "gsm1k_cot.yaml", gsm_upstream_task("gsm1k_cot", "csv", kwargs))
    write(out / "suite.yaml", suite_yaml({
        "name": "gsm1k", "version": "2",
        "description": "GSM1k public sample: 50 new grade-school problems in the style of GSM8K (Zhang et al. 2024), "
                       "scored as lm-eval's gsm8k_cot (as the gsm8k suite); a small, high-variance contamination "
                       "probe.",
        "default_split": "public", "splits": {"public": ["gsm1k_cot"]},
        "tiers": {"smoke": 10, "quick": 50, "full": None}, "aggregate": GSM_AGGREGATE}))


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE
    build_bbh(src)
    build_bbh_permuted(src)
    build_mgsm(src)
    build_gsm8k(src)
    build_gsm_plus(src)
    build_gsm1k(src)


if __name__ == "__main__":
    main()

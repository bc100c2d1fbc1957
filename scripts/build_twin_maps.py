"""Build the twin maps under suites/<public suite>/twins/ from the question text of the shipped data.

Deterministic: rerunning it rewrites byte-identical files. Usage: python scripts/build_twin_maps.py
Format and meaning: harness/twinmaps.py and docs/overfitting.md "Twin maps". Doc ids are lm-eval's: the index of
a document in its task's data file after the task's process_docs (gsm_plus: filtered by perturbation type;
mmlu_redux split ok: filtered by error_type), so the maps pair exactly the samples a run stores.

- mmlu -> mmlu_permuted (aligned): same subject, same question and the same set of options; identical duplicates
  are paired in order, so the map is one to one.
- mmlu -> mmlu_redux:ok (derived): same subject, question and option set (first MMLU occurrence).
- gsm8k -> gsm_plus:testmini (derived): each perturbed problem's seed_question is a GSM8K test question.
- gsm8k -> mgsm_8shot_cot_en (derived): MGSM's English problems are GSM8K test problems (same text).
- mmlu_redux:ok -> mmlu_redux_permuted:ok (aligned): same subject, question and option set, in order.
- bbh -> bbh_permuted (aligned): same task, same stem and option set (items kept unchanged: same text), in order.
- mgsm English -> mgsm's 10 other languages (derived, cross-lingual): MGSM row i of every language translates the
  same problem (checked: the same answer on all 250 rows); the 10 translations of one problem share its seed.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

SUITES = Path(__file__).resolve().parent.parent / "suites"
GSM_PLUS_TYPES = ["numerical substitution", "digit expansion", "integer-decimal-fraction conversion",
                  "adding operation", "reversing operation", "problem understanding", "distraction insertion"]


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u2019", "'")).strip().lower()


def mmlu_subjects() -> list[str]:
    return sorted(p.name.removesuffix("_test.csv") for p in (SUITES / "mmlu/data/test").glob("*_test.csv"))


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def mc_key(question: str, options: list[str]) -> tuple[str, tuple[str, ...]]:
    return norm(question), tuple(sorted(norm(o) for o in options))


def match(public: list, twin: list, one_to_one: bool) -> list[int | None]:
    """For every twin key, the public index with the same key (in order of occurrence when one to one)."""
    where: dict = defaultdict(list)
    for i, key in enumerate(public):
        where[key].append(i)
    used: dict = defaultdict(int)
    seeds: list[int | None] = []
    for key in twin:
        hits = where.get(key, [])
        k = used[key] if one_to_one else 0
        seeds.append(hits[k] if k < len(hits) else None)
        used[key] += 1
    return seeds


def mmlu_maps() -> tuple[dict, dict]:
    sizes, permuted, redux = {}, {}, {}
    for subject in mmlu_subjects():
        pub = [mc_key(r[0], r[1:5]) for r in read_csv(SUITES / f"mmlu/data/test/{subject}_test.csv")]
        sizes[f"mmlu_{subject}"] = len(pub)
        per = [mc_key(r[0], r[1:5]) for r in read_csv(SUITES / f"mmlu_permuted/data/test/{subject}_test.csv")]
        permuted[f"mmlu_permuted_{subject}"] = {"public_task": f"mmlu_{subject}", "seeds": match(pub, per, True)}
        lines = (SUITES / f"mmlu_redux/data/test/{subject}.jsonl").read_text(encoding="utf-8").split("\n")
        docs = [d for d in map(json.loads, filter(None, lines)) if d["error_type"] in ("ok", "dev")]  # utils.ok_or_dev
        red = [mc_key(d["question"], [str(c) for c in d["choices"]]) for d in docs]
        redux[f"mmlu_redux_{subject}"] = {"public_task": f"mmlu_{subject}", "seeds": match(pub, red, False)}
    return (map_file("mmlu", "permuted", "mmlu_permuted:test", "aligned", sizes, permuted),
            map_file("mmlu", "redux", "mmlu_redux:ok", "derived", sizes, redux))


def gsm_maps() -> tuple[dict, dict]:
    gsm = [json.loads(x) for x in (SUITES / "gsm8k/data/test.jsonl").read_text(encoding="utf-8").split("\n") if x]
    pub = [norm(d["question"]) for d in gsm]
    sizes = {"gsm8k_cot": len(pub)}
    lines = (SUITES / "gsm_plus/data/gsmplus_testmini.jsonl").read_text(encoding="utf-8").split("\n")
    plus_docs = [json.loads(x) for x in lines if x]
    plus = {}
    for kind in GSM_PLUS_TYPES:  # utils.py: one task per perturbation type, file order
        twin = [norm(d["seed_question"]) for d in plus_docs if d["perturbation_type"] == kind]
        task = "gsm_plus_" + kind.replace(" ", "_").replace("-", "_")
        plus[task] = {"public_task": "gsm8k_cot", "seeds": match(pub, twin, False)}
    with (SUITES / "mgsm/data/mgsm_en.tsv").open(encoding="utf-8", newline="") as f:
        en = [norm(r[0]) for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    mgsm = {"mgsm_8shot_cot_en": {"public_task": "gsm8k_cot", "seeds": match(pub, en, False)}}
    return (map_file("gsm8k", "plus", "gsm_plus:testmini", "derived", sizes, plus),
            map_file("gsm8k", "mgsm_en", "mgsm:cot", "derived", sizes, mgsm))


def redux_ok_keys(folder: str, subject: str) -> list:
    lines = (SUITES / f"{folder}/data/test/{subject}.jsonl").read_text(encoding="utf-8").split("\n")
    docs = [d for d in map(json.loads, filter(None, lines)) if d["error_type"] in ("ok", "dev")]  # utils.ok_or_dev
    return [mc_key(d["question"], [str(c) for c in d["choices"]]) for d in docs]


def redux_permuted_map() -> dict:
    sizes, tasks = {}, {}
    for subject in mmlu_subjects():
        pub = redux_ok_keys("mmlu_redux", subject)
        sizes[f"mmlu_redux_{subject}"] = len(pub)
        tasks[f"mmlu_redux_permuted_{subject}"] = {"public_task": f"mmlu_redux_{subject}",
                                                   "seeds": match(pub, redux_ok_keys("mmlu_redux_permuted", subject),
                                                                  True)}
    return map_file("mmlu_redux", "permuted", "mmlu_redux_permuted:ok", "aligned", sizes, tasks)


def bbh_key(text: str) -> tuple:
    from build_reasoning_suites import bbh_options

    parts = bbh_options(text)
    return (norm(text),) if parts is None else (norm(parts[0]), tuple(sorted(norm(o) for o in parts[1])))


def bbh_keys(folder: str, name: str) -> list:
    raw = json.loads((SUITES / folder / "data/tasks" / name).read_text(encoding="utf-8"))
    return [bbh_key(e["input"]) for e in raw["examples"]]


def bbh_permuted_map() -> dict:
    sizes, tasks = {}, {}
    for path in sorted((SUITES / "bbh_permuted/data/tasks").glob("*.json")):
        pub = bbh_keys("bbh", path.name)
        sizes[f"bbh_cot_fewshot_{path.stem}"] = len(pub)
        tasks[f"bbh_permuted_{path.stem}"] = {"public_task": f"bbh_cot_fewshot_{path.stem}",
                                              "seeds": match(pub, bbh_keys("bbh_permuted", path.name), True)}
    return map_file("bbh", "permuted", "bbh_permuted:test", "aligned", sizes, tasks)


MGSM_LANGS = ["bn", "de", "es", "fr", "ja", "ru", "sw", "te", "th", "zh"]  # the languages other than English


def mgsm_rows(lang: str) -> list[list[str]]:
    with (SUITES / f"mgsm/data/mgsm_{lang}.tsv").open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def mgsm_xling_map() -> dict:
    """Row i of each language translates English row i: same index, and the same answer (checked)."""
    en = mgsm_rows("en")
    tasks = {}
    for lang in MGSM_LANGS:
        rows = mgsm_rows(lang)
        tasks[f"mgsm_8shot_cot_{lang}"] = {"public_task": "mgsm_8shot_cot_en", "seeds": [
            i if i < len(en) and r[1] == en[i][1] else None for i, r in enumerate(rows)]}
    return map_file("mgsm", "xling", "mgsm:cot", "derived", {"mgsm_8shot_cot_en": len(en)}, tasks)


def map_file(suite: str, kind: str, twin: str, relation: str, sizes: dict, tasks: dict) -> dict:
    return {"suite": suite, "kind": kind, "twin": twin, "relation": relation, "public_sizes": sizes,
            "tasks": tasks}


def write(m: dict) -> None:
    path = SUITES / m["suite"] / "twins" / f"{m['kind']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({k: v for k, v in m.items() if k != "tasks"}, indent=1)[:-2]
    tasks = ",\n".join(f"  {json.dumps(t)}: {json.dumps(e, separators=(',', ':'))}" for t, e in m["tasks"].items())
    path.write_text(body + ',\n "tasks": {\n' + tasks + "\n }\n}\n", encoding="utf-8")
    mapped = sum(s is not None for e in m["tasks"].values() for s in e["seeds"])
    total = sum(len(e["seeds"]) for e in m["tasks"].values())
    print(f"{path.relative_to(SUITES.parent)}: {mapped} of {total} twin items mapped")


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # build_reasoning_suites (bbh's option parser)
    for m in (*mmlu_maps(), *gsm_maps(), redux_permuted_map(), bbh_permuted_map(), mgsm_xling_map()):
        write(m)


if __name__ == "__main__":
    main()

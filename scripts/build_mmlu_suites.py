"""Build suites/mmlu, mmlu_permuted, mmlu_redux and mmlu_redux_permuted from the shared MMLU and MMLU-Redux snapshot.

Deterministic: rerunning it rewrites byte-identical files. Usage: python scripts/build_mmlu_suites.py [SOURCE_DIR]

- mmlu: test and dev CSVs copied byte-identical; one task per subject that includes lm-eval's own mmlu_<subject>
  (0-shot, its default) and one 5-shot variant per subject (split oll_v1, the Open LLM Leaderboard v1 setting);
  `tasks/utils.py` reads the CSV rows into the docs the upstream prompt expects. mmlu_permuted and mmlu_redux
  include the same upstream tasks.
- mmlu_permuted: every test item with its four options permuted (seeded by sha256 of subject and row, the correct
  option always moves) unless an option points at other options by position ("all of the above", "A and B", ...);
  a 7th column `perm` records the order (e.g. "CADB": new A = old C). dev is copied unchanged.
- mmlu_redux: the 57 hand-edited CSVs (`;` or `,` separated, one Mac-Roman file, CRLF) parsed into JSONL with
  normalised error_type labels; dev exemplars from MMLU dev in the same JSON shape.
- mmlu_redux_permuted: mmlu_redux's 5,700 test items with their options permuted as mmlu_permuted does (own seed
  prefix, same positional exception), `perm` recording the order; same tasks, same process_docs, same dev.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import itertools
import json
import random
import re
import sys
from pathlib import Path

from suite_files import SOURCE, SUITES, copy, copy_legal, csv_kwargs, dump, header, write

SCRIPT = "build_mmlu_suites.py"
COLUMNS = ["question", "A", "B", "C", "D", "answer"]
LETTERS = "ABCD"
# options that refer to other options by position or as a set: their order must not change
POSITIONAL = re.compile(
    r"(?i)\b(all|none|both|neither|either)\s+of\s+(the\s+)?(above|these|those|them|the\s+above|following|options)\b"
    r"|\b(options?|choices?|answers?|statements?)\s+\(?[A-D]\)?\b"
    r"|(?-i:\b[A-D]\b\s*(,|and|or|&|\+)\s*\b[A-D]\b)"
    r"|(?i:\b(all|none)\s+the\s+above\b)"
)


def subjects(src: Path) -> list[str]:
    return sorted(p.name.removesuffix("_test.csv") for p in (src / "mmlu" / "test").glob("*_test.csv"))


UPSTREAM = "lm_eval:tasks/mmlu/default"  # lm-eval's own mmlu subject tasks (harness.suites resolves lm_eval:)
OLL_V1_SHOTS = 5  # the Open LLM Leaderboard v1 ran MMLU 5-shot (first five dev questions); lm-eval's default is 0


def upstream_task(task: str, subject: str, dataset_path: str, process_docs: str | None, kwargs: str,
                  shots: int | None = None) -> str:
    """lm-eval's own mmlu_<subject> (prompt, description, dev few-shot, choices, metric) with only the data source
    ours: our files, read by `process_docs` into the docs the upstream prompt reads; `num_fewshot` only for the
    named 5-shot variant."""
    lines = [f"task: {task}", f"include: {UPSTREAM}/mmlu_{subject}.yaml", f"dataset_path: {dataset_path}",
             "dataset_name: null"]
    if shots is not None:
        lines.append(f"num_fewshot: {shots}")
    if process_docs:
        lines.append(f"process_docs: !function utils.{process_docs}")
    return header(SCRIPT) + "\n".join(lines) + "\n" + kwargs


def suite_yaml(name: str, version: str, desc: str, splits: dict[str, list[str]], tiers: dict, twins: dict,
               hub: list[str]) -> str:
    body = {"name": name, "version": version, "kind": "lm-eval", "description": desc,
            "default_split": next(iter(splits)), "splits": splits, "tiers": tiers}
    if twins:
        body["twins"] = twins
    if hub:
        body["hub_tasks"] = hub
    body["aggregate"] = {"metric": "acc", "weight_by_size": True}  # lm-eval's mmlu group
    if "mmlu_redux_generative" in hub:  # a --hub run generates a letter: lm-eval's group scores its `default` filter
        body["aggregate"]["split_metrics"] = {"hub": "exact_match,default"}
    return header(SCRIPT) + dump(body)


TIERS = {"smoke": 3, "quick": 20, "full": None}
# item maps under suites/mmlu/twins/ are built by scripts/build_twin_maps.py (docs/overfitting.md "Twin maps")
MMLU_TWINS = {
    "permuted": {"ref": "mmlu_permuted:test", "relation": "aligned", "map": "twins/permuted.json"},
    "redux": {"ref": "mmlu_redux:ok", "relation": "derived", "map": "twins/redux.json"},
}
REDUX_TWINS = {"permuted": {"ref": "mmlu_redux_permuted:ok", "relation": "aligned", "map": "twins/permuted.json"}}


# ---------------------------------------------------------------------------------------------- mmlu
def build_mmlu(src: Path) -> None:
    out = SUITES / "mmlu"
    copy_legal(src / "mmlu", out / "data")
    splits: dict[str, list[str]] = {"test": [], "oll_v1": []}
    for s in subjects(src):
        for part in ("test", "dev"):
            copy(src / "mmlu" / part / f"{s}_{part}.csv", out / "data" / part / f"{s}_{part}.csv")
        kwargs = csv_kwargs({"test": f"data/test/{s}_test.csv", "dev": f"data/dev/{s}_dev.csv"}, COLUMNS)
        for split, task, shots in (("test", f"mmlu_{s}", None), ("oll_v1", f"mmlu_5shot_{s}", OLL_V1_SHOTS)):
            write(out / "tasks" / f"{task}.yaml", upstream_task(task, s, "csv", "mmlu_docs", kwargs, shots))
            splits[split].append(task)
    write(out / "suite.yaml", suite_yaml(
        "mmlu", "2", "MMLU (Hendrycks et al.): 57 subjects, 14,042 test questions; lm-eval's mmlu (0-shot, "
        "multiple choice by loglikelihood) on the shipped data. Split oll_v1: the same tasks 5-shot from dev, as "
        "the Open LLM Leaderboard v1 ran them.",
        splits, TIERS, MMLU_TWINS, ["mmlu"]))


# ---------------------------------------------------------------------------------------------- permuted
def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def permutation(subject: str, index: int, gold: int, prefix: str = "mmlu_permuted:1") -> tuple[int, ...]:
    """A fixed pseudo-random order of the four options in which the correct option changes position."""
    seed = int.from_bytes(hashlib.sha256(f"{prefix}:{subject}:{index}".encode()).digest()[:8], "big")
    moving = [p for p in itertools.permutations(range(4)) if p.index(gold) != gold]
    return random.Random(seed).choice(moving)


def permute_row(subject: str, index: int, row: list[str]) -> list[str]:
    question, options, letter = row[0], row[1:5], row[5].strip()
    gold = LETTERS.index(letter)
    if any(POSITIONAL.search(o) for o in options):
        order: tuple[int, ...] = (0, 1, 2, 3)
    else:
        order = permutation(subject, index, gold)
    new = [options[i] for i in order]
    return [question, *new, LETTERS[order.index(gold)], "".join(LETTERS[i] for i in order)]


def build_permuted(src: Path) -> None:
    out = SUITES / "mmlu_permuted"
    copy_legal(src / "mmlu", out / "data")
    tasks = []
    for s in subjects(src):
        rows = [permute_row(s, i, r) for i, r in enumerate(read_rows(src / "mmlu" / "test" / f"{s}_test.csv"))]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        write(out / "data" / "test" / f"{s}_test.csv", buf.getvalue())
        copy(src / "mmlu" / "dev" / f"{s}_dev.csv", out / "data" / "dev" / f"{s}_dev.csv")
        files = {"test": f"data/test/{s}_test.csv", "dev": f"data/dev/{s}_dev.csv"}
        write(out / "tasks" / f"mmlu_permuted_{s}.yaml", upstream_task(
            f"mmlu_permuted_{s}", s, "csv", "mmlu_docs", csv_kwargs(files, [*COLUMNS, "perm"])))
        tasks.append(f"mmlu_permuted_{s}")
    write(out / "suite.yaml", suite_yaml(
        "mmlu_permuted", "2", "MMLU test with the answer options of each question permuted (the correct option "
        "moves to another letter); lm-eval's mmlu task on it, as the mmlu suite. An overfitting twin of mmlu.",
        {"test": tasks}, TIERS, {}, []))


# ---------------------------------------------------------------------------------------------- redux
def normalise_error_type(raw: str) -> str:
    return re.sub(r"[\s_]+", " ", raw.strip().lower())


def read_redux(path: Path) -> list[dict[str, str]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("mac_roman")  # mmlu_moral_scenarios.csv
    text = text.removeprefix("\ufeff")
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


def redux_doc(row: dict[str, str]) -> dict[str, object]:
    choices = ast.literal_eval(row["choices"])
    if len(choices) != 4:
        raise ValueError(f"expected 4 choices: {row['choices'][:60]}")
    return {"question": row["question"], "choices": [str(c) for c in choices], "answer": int(row["answer"]),
            "error_type": normalise_error_type(row["error_type"]), "error_type_raw": row["error_type"],
            "correct_answer": row.get("correct_answer") or "", "source": row.get("source") or "",
            "potential_reason": row.get("potential_reason") or ""}


def jsonl(docs: list[dict[str, object]]) -> str:
    return "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)


def build_redux(src: Path) -> None:
    out = SUITES / "mmlu_redux"
    copy_legal(src / "mmlu_redux", out / "data")
    copy(src / "mmlu" / "LICENSE.txt", out / "data" / "dev" / "LICENSE.txt")
    splits: dict[str, list[str]] = {"ok": [], "all": []}
    for s in subjects(src):
        docs = [redux_doc(r) for r in read_redux(src / "mmlu_redux" / f"mmlu_{s}.csv")]
        write(out / "data" / "test" / f"{s}.jsonl", jsonl(docs))
        dev = [{"question": r[0], "choices": r[1:5], "answer": LETTERS.index(r[5].strip()), "error_type": "dev"}
               for r in read_rows(src / "mmlu" / "dev" / f"{s}_dev.csv")]
        write(out / "data" / "dev" / f"{s}_dev.jsonl", jsonl(dev))
        kwargs = dump({"dataset_kwargs": {"data_files": {"test": f"data/test/{s}.jsonl",
                                                         "dev": f"data/dev/{s}_dev.jsonl"}}})
        for split, prefix, docs in (("ok", "mmlu_redux_", "ok_or_dev"), ("all", "mmlu_redux_all_", None)):
            write(out / "tasks" / f"{prefix}{s}.yaml", upstream_task(f"{prefix}{s}", s, "json", docs, kwargs))
            splits[split].append(f"{prefix}{s}")
    write(out / "suite.yaml", suite_yaml(
        "mmlu_redux", "2", "MMLU-Redux (Gema et al. 2024): 5,700 re-annotated MMLU test questions, 100 per subject, "
        "as lm-eval's mmlu task. Split ok = the items annotators found correct; all = every item with the "
        "original label.",
        splits, TIERS, REDUX_TWINS, ["mmlu_redux_generative"]))


# ---------------------------------------------------------------------------------------------- redux permuted
def permute_doc(subject: str, index: int, doc: dict[str, object]) -> dict[str, object]:
    """mmlu_redux doc `index` of `subject` with its options reordered (answer relabelled, `perm` the order), unless
    an option points at others by position (then unchanged, perm ABCD)."""
    options, gold = list(doc["choices"]), int(doc["answer"])  # type: ignore[call-overload]
    if any(POSITIONAL.search(o) for o in options):
        order: tuple[int, ...] = (0, 1, 2, 3)
    else:
        order = permutation(subject, index, gold, "mmlu_redux_permuted:1")
    return {**doc, "choices": [options[i] for i in order], "answer": order.index(gold),
            "perm": "".join(LETTERS[i] for i in order)}


def build_redux_permuted(src: Path) -> None:
    out, redux = SUITES / "mmlu_redux_permuted", SUITES / "mmlu_redux"
    copy_legal(src / "mmlu_redux", out / "data")
    copy(src / "mmlu" / "LICENSE.txt", out / "data" / "dev" / "LICENSE.txt")
    copy(redux / "tasks" / "utils.py", out / "tasks" / "utils.py")
    tasks = []
    for s in subjects(src):
        docs = [redux_doc(r) for r in read_redux(src / "mmlu_redux" / f"mmlu_{s}.csv")]
        write(out / "data" / "test" / f"{s}.jsonl", jsonl([permute_doc(s, i, d) for i, d in enumerate(docs)]))
        copy(redux / "data" / "dev" / f"{s}_dev.jsonl", out / "data" / "dev" / f"{s}_dev.jsonl")
        kwargs = dump({"dataset_kwargs": {"data_files": {"test": f"data/test/{s}.jsonl",
                                                         "dev": f"data/dev/{s}_dev.jsonl"}}})
        write(out / "tasks" / f"mmlu_redux_permuted_{s}.yaml",
              upstream_task(f"mmlu_redux_permuted_{s}", s, "json", "ok_or_dev", kwargs))
        tasks.append(f"mmlu_redux_permuted_{s}")
    write(out / "suite.yaml", suite_yaml(
        "mmlu_redux_permuted", "1", "MMLU-Redux's ok items with the answer options of each question permuted (the "
        "correct option moves to another letter); the same prompt (lm-eval's mmlu task) and dev exemplars. An "
        "overfitting twin of mmlu_redux.", {"ok": tasks}, TIERS, {}, []))


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE
    build_mmlu(src)
    build_permuted(src)
    build_redux(src)
    build_redux_permuted(src)


if __name__ == "__main__":
    main()

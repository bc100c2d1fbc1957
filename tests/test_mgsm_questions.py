"""Every mgsm split counts a problem once: its 11 translations are one question of the gate and the fitness stderr.

The splits other than cot (harness's 8-shot `direct`, lm-eval's own `lm_eval_*` tasks) have no twin map; suite.yaml
says they ask cot's questions task for task (`same_questions`), which the documents lm-eval reads must bear out."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import yaml

from harness.suites import load_suite

SPLITS = ("cot", "direct", "lm_eval_direct", "lm_eval_native_cot", "lm_eval_en_cot")


@pytest.fixture(scope="module")
def docs() -> dict[str, list[dict]]:
    """Every mgsm task's documents as lm-eval 0.4.13 reads them from the shipped data (its process_docs run)."""
    import datasets
    from lm_eval.tasks import TaskManager

    datasets.disable_progress_bars()
    suite, manager = load_suite("mgsm"), TaskManager(include_defaults=False)
    out = {}
    for split in SPLITS:
        for name, task in manager.load(suite.task_configs(split))["tasks"].items():
            out[name] = list(task.eval_docs)
    return out


def _doc_hash(doc: dict) -> str:
    """lm-eval's doc_hash of a document (lm_eval.evaluator: hash_string of its JSON, indent 2)."""
    from lm_eval.utils import hash_string

    return hash_string(json.dumps(doc, indent=2, ensure_ascii=False))


def _stored(store, split: str, scores: dict[str, list[float]], docs: dict[str, list[dict]]):
    """A run of mgsm:`split` in the store scoring each task's first len(scores[task]) documents, lm-eval's doc_hash."""
    from harness.store.records import RunRecord, Sample
    from harness.workflows.baseline import suite_metric

    run_id, metric = f"r-{split}-{len(store.list_runs(status=None))}", suite_metric("mgsm", split)
    store.start_run(RunRecord(run_id, "m", "mgsm", "synthetic", "0", suite_version="2", split=split))
    store.finish_run(run_id, [], [Sample(task, i, metric, s, doc_hash=_doc_hash(docs[task][i]))
                                  for task, values in scores.items() for i, s in enumerate(values)])
    return store.samples(run_id)


def test_every_split_reads_cot_s_documents_row_for_row(docs) -> None:
    """What `same_questions` claims, on the shipped data: task i of every split (the same language) has cot's task
    i's documents in the same order, the same question text and answer (lm-eval's variants read the number as an
    integer); cot's own languages translate English row i (xling's check: the same answer on all 250 rows)."""
    suite = load_suite("mgsm")
    raw = yaml.safe_load((suite.path / "suite.yaml").read_text(encoding="utf-8"))
    assert raw["same_questions"] == {s: "cot" for s in SPLITS[1:]} and set(suite.splits) == set(SPLITS)
    cot = suite.splits["cot"]
    for split in SPLITS[1:]:
        for task, asked in zip(suite.splits[split], cot, strict=True):
            assert task.rsplit("_", 1)[1] == asked.rsplit("_", 1)[1]  # the same language
            mine, theirs = docs[task], docs[asked]
            assert len(mine) == len(theirs) == 250, task
            assert [d["question"] for d in mine] == [d["question"] for d in theirs], task
            assert [int(str(d["answer_number"]).replace(",", "")) for d in mine] == \
                [int(d["answer_number"].replace(",", "")) for d in theirs], task
    english = [d["answer_number"] for d in docs["mgsm_8shot_cot_en"]]
    assert all([d["answer_number"] for d in docs[t]] == english for t in cot)


def _groups(keys: dict[str, dict[int, str]]) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for task, items in keys.items():
        for doc, key in items.items():
            out[key].append((task, doc))
    return out


@pytest.mark.parametrize("split", SPLITS)
def test_a_problem_s_translations_are_one_question_on_every_split(store, docs, split: str) -> None:
    """A stored run of each split, full and at a --limit (the quick tier's 25 per language): 250 (25) questions of
    11 items, one per language, all of one doc id, named by the GSM8K seed as on cot ("gsm8k/gsm8k_cot/17"). Before
    `same_questions` every split but cot counted 2,750 questions."""
    from harness.workflows.baseline import questions, suite_metric

    tasks, metric = load_suite("mgsm").splits[split], suite_metric("mgsm", split)
    cot = questions(_stored(store, "cot", {t: [1.0] * 250 for t in load_suite("mgsm").splits["cot"]}, docs),
                    suite_metric("mgsm", "cot"), "mgsm", "cot")
    for n in (250, 25):
        keys = questions(_stored(store, split, {t: [1.0] * n for t in tasks}, docs), metric, "mgsm", split)
        groups = _groups(keys)
        assert len(groups) == n and {len(v) for v in groups.values()} == {11}, split
        assert all(len({d for _, d in v}) == 1 and len({t for t, _ in v}) == 11 for v in groups.values())
        for task, asked in zip(tasks, load_suite("mgsm").splits["cot"], strict=True):
            assert keys[task] == {i: cot[asked][i] for i in range(n)}
        assert keys[tasks[0]][17] == "gsm8k/gsm8k_cot/17"


@pytest.mark.parametrize("split", SPLITS[2:])
def test_a_change_shared_by_a_problem_s_translations_is_no_regression_of_the_suite(store, docs, split: str) -> None:
    """Planted on lm-eval's own tasks: the candidate loses 16 problems the baseline solved and solves 10 it did not,
    each in all 11 languages (a change in how it solves a problem moves its translations together), the rest the
    same. Per problem that is 16 against 10 of 250 (sign test p 0.33): no regression, and the gate passes. Counted
    as 2,750 independent items (the gate before `same_questions`) it was 176 against 110 and failed the suite."""
    from harness.analysis.gate import compare
    from harness.workflows.baseline import questions, suite_metric

    rng = np.random.default_rng(1)
    rest = rng.random((11, 250)) < 0.5
    base, cand = rest.astype(float), rest.astype(float)
    base[:, :16], cand[:, :16] = 1.0, 0.0
    base[:, 16:26], cand[:, 16:26] = 0.0, 1.0
    tasks = load_suite("mgsm").splits[split]
    samples = _stored(store, split, {t: list(cand[i]) for i, t in enumerate(tasks)}, docs)
    clusters = questions(samples, suite_metric("mgsm", split), "mgsm", split)
    baseline = {t: dict(enumerate(base[i])) for i, t in enumerate(tasks)}
    candidate = {t: dict(enumerate(cand[i])) for i, t in enumerate(tasks)}
    result = compare(baseline, candidate, clusters=clusters)
    pooled = result.pooled
    assert pooled is not None and pooled.test == "sign-flip (pooled, by question)"
    print(f"{split}: pooled diff {pooled.diff:+.4f}, p by problem {pooled.p_value:.3f}")
    assert pooled.diff == pytest.approx(-66 / 2750) and pooled.p_value > 0.2 and not pooled.failed
    assert result.passed and not result.failed_tasks
    by_item = {t: {i: f"{t}#{i}" for i in range(250)} for t in tasks}
    assert not compare(baseline, candidate, clusters=by_item).passed

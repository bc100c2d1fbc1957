"""Contamination-seeing twins (docs/overfitting.md "Which twins see what"): the option-permuted twins of bbh and
mmlu_redux really permute their items with the answer relabelled (read from the shipped data, independently of the
builder, and reproduced by it), and on a real store whose runs answer the real items a planted letter memoriser is
flagged by the permuted twin while clean models are not."""

from __future__ import annotations

import hashlib
import importlib
import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.analysis.coverage import coverage
from harness.analysis.evidence import gather
from harness.analysis.overfit import THRESHOLDS, analyse_data
from harness.store import Store
from harness.store.records import ModelRecord, RunRecord, Sample, Score

REPO = Path(__file__).resolve().parent.parent
SUITES = REPO / "suites"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
OPTION = re.compile(r"^\(([A-Z])\) (.*)$")


def script(name: str):
    sys.path.insert(0, str(REPO / "scripts"))
    return importlib.import_module(name)


@dataclass(frozen=True)
class Item:
    public_task: str
    twin_task: str
    doc: int            # the same index on both sides (the maps are checked to say so in test_twinmaps)
    public_letter: str
    twin_letter: str    # the twin's target as shipped
    content_letter: str  # where the public answer's text sits among the twin's options
    n_options: int
    moved: bool
    twice: bool         # the answer's text is offered twice (a few items of the releases): either letter is it


def bbh_options(text: str) -> tuple[str, list[str]]:
    stem, _, block = text.rpartition("\nOptions:\n")
    opts = [OPTION.match(line) for line in block.split("\n")]
    assert stem and all(opts), text[-200:]
    return stem, [m.group(2) for m in opts if m]


def bbh_items(per_task: int | None = None) -> list[Item]:
    out = []
    for path in sorted((SUITES / "bbh_permuted/data/tasks").glob("*.json")):
        pub = json.loads((SUITES / "bbh/data/tasks" / path.name).read_text(encoding="utf-8"))["examples"]
        twin = json.loads(path.read_text(encoding="utf-8"))["examples"]
        assert len(pub) == len(twin)
        for i, (p, t) in enumerate(zip(pub, twin, strict=True)):
            if per_task is not None and i >= per_task:
                break
            if t["perm"] == "":  # kept as it is (not a letter item of the release): the same text
                assert {k: t[k] for k in ("input", "target")} == p
                continue
            (ps, po), (ts, to) = bbh_options(p["input"]), bbh_options(t["input"])
            gold = po[LETTERS.index(p["target"][1])]
            assert ts == ps and sorted(to) == sorted(po)  # same stem, same options
            assert to[LETTERS.index(t["target"][1])] == gold  # the target is relabelled to the same option
            assert [po[LETTERS.index(c)] for c in t["perm"]] == to  # the recorded order is the real one
            out.append(Item(f"bbh_cot_fewshot_{path.stem}", f"bbh_permuted_{path.stem}", i, p["target"][1],
                            t["target"][1], LETTERS[to.index(gold)], len(po), t["target"] != p["target"],
                            po.count(gold) > 1))
    return out


def redux_ok(folder: str, subject: str) -> list[dict]:
    lines = (SUITES / folder / "data/test" / f"{subject}.jsonl").read_text(encoding="utf-8").split("\n")
    return [d for d in map(json.loads, filter(None, lines)) if d["error_type"] == "ok"]  # the ok split's process_docs


def redux_items(per_task: int | None = None) -> list[Item]:
    out = []
    for path in sorted((SUITES / "mmlu_redux_permuted/data/test").glob("*.jsonl")):
        pub, twin = redux_ok("mmlu_redux", path.stem), redux_ok("mmlu_redux_permuted", path.stem)
        assert len(pub) == len(twin)
        for i, (p, t) in enumerate(zip(pub, twin, strict=True)):
            if per_task is not None and i >= per_task:
                break
            gold = p["choices"][p["answer"]]
            assert t["question"] == p["question"] and sorted(t["choices"]) == sorted(p["choices"])
            assert t["choices"][t["answer"]] == gold
            assert [p["choices"][LETTERS.index(c)] for c in t["perm"]] == t["choices"]
            out.append(Item(f"mmlu_redux_{path.stem}", f"mmlu_redux_permuted_{path.stem}", i, LETTERS[p["answer"]],
                            LETTERS[t["answer"]], LETTERS[t["choices"].index(gold)], 4, t["answer"] != p["answer"],
                            p["choices"].count(gold) > 1))
    return out


def test_bbh_permuted_is_a_true_permutation_with_the_answer_relabelled() -> None:
    items = bbh_items()
    assert len({i.public_task for i in items}) == 17  # every multiple-choice task of bbh
    assert len(items) == 4074 - 4 and all(i.moved for i in items)  # 4 items of the release are not letter items
    assert all(i.twin_letter == i.content_letter or i.twice for i in items)
    assert [(i.public_task, i.doc) for i in items if i.twice] == [("bbh_cot_fewshot_snarks", 86)]
    build = script("build_reasoning_suites")
    for path in sorted((SUITES / "bbh_permuted/data/tasks").glob("*.json")):  # the builder reproduces the data
        pub = json.loads((SUITES / "bbh/data/tasks" / path.name).read_text(encoding="utf-8"))["examples"]
        twin = json.loads(path.read_text(encoding="utf-8"))["examples"]
        for i in range(3):
            assert build.permute_bbh(path.stem, i, pub[i]) == twin[i]


def test_mmlu_redux_permuted_is_a_true_permutation_with_the_answer_relabelled() -> None:
    items = redux_items()
    assert len(items) == 5330 and len({i.public_task for i in items}) == 57
    assert sum(i.moved for i in items) / len(items) > 0.9  # options that point at others by position stay put
    assert all(i.twin_letter == i.content_letter or i.twice for i in items) and sum(i.twice for i in items) < 20
    build = script("build_mmlu_suites")
    for subject in ("anatomy", "virology"):
        lines = (SUITES / "mmlu_redux/data/test" / f"{subject}.jsonl").read_text(encoding="utf-8").split("\n")
        twin = (SUITES / "mmlu_redux_permuted/data/test" / f"{subject}.jsonl").read_text(encoding="utf-8")
        for i, line in enumerate(filter(None, lines)):  # every doc, ok or not, in the order of the file
            assert build.permute_doc(subject, i, json.loads(line)) == json.loads(twin.split("\n")[i])


# --------------------------------------------------------------------------------------------- a store of answers
CLEAN = {f"clean-{k}": p for k, p in enumerate((0.35, 0.42, 0.5, 0.55, 0.6, 0.68, 0.75))}
MEMORISER = "letters"  # answers by content like a clean model of p 0.5, and recalls 40% of the public letters


def _wrong(letter: str, n_options: int) -> str:
    return LETTERS[(LETTERS.index(letter) + 1) % n_options]


def _answers(items: list[Item], name: str) -> tuple[list[float], list[float]]:
    """(public, twin) scores of one model on the items: it answers by content (the same item on both sides, 70% of
    the time the same outcome) or, the memoriser, by the letter it recalls for the public item."""
    rng = random.Random(name)
    p, recall = (0.5, 0.4) if name == MEMORISER else (CLEAN[name], 0.0)
    pub, twin = [], []
    for it in items:
        u = rng.random()
        v = u if rng.random() < 0.7 else rng.random()
        recalled = rng.random() < recall
        said_p = it.public_letter if (recalled or u < p) else _wrong(it.public_letter, it.n_options)
        said_t = it.public_letter if recalled else it.content_letter if v < p else _wrong(it.content_letter,
                                                                                         it.n_options)
        pub.append(float(said_p == it.public_letter))
        twin.append(float(said_t == it.twin_letter))
    return pub, twin


def _run(store: Store, mid: str, suite: str, split: str, metric: str, rows: list[tuple[str, int, float]]) -> None:
    run_id = hashlib.sha256(f"{mid}:{suite}:{split}".encode()).hexdigest()[:32]
    store.start_run(RunRecord(run_id, mid, suite, "synthetic", "0", suite_version="1", split=split))
    by_task: dict[str, list[float]] = {}
    for task, _doc, s in rows:
        by_task.setdefault(task, []).append(s)
    scores = []
    for task, xs in by_task.items():
        m = sum(xs) / len(xs)
        se = (m * (1 - m) / max(len(xs) - 1, 1)) ** 0.5
        scores.append(Score(task, metric, m, se, len(xs), m - 1.96 * se, m + 1.96 * se))
    store.finish_run(run_id, scores, [Sample(t, d, metric, s) for t, d, s in rows])


def answers_store(path: Path, suite: str, twin: str, metric: str, items: list[Item],
                  extra_public: list[tuple[str, int, float]] = ()) -> Store:
    """Every model of CLEAN and the memoriser, scored on the public suite and its permuted twin."""
    store = Store(path)
    store.init()
    t_suite, _, t_split = twin.partition(":")
    for name in (*CLEAN, MEMORISER):
        mid = hashlib.sha256(name.encode()).hexdigest()
        store.add_model(ModelRecord(mid, name, None, "source"))
        pub, tw = _answers(items, name)
        split = "test" if suite == "bbh" else "ok"
        _run(store, mid, suite, split, metric,
             [(i.public_task, i.doc, s) for i, s in zip(items, pub, strict=True)] + list(extra_public))
        _run(store, mid, t_suite, t_split, metric, [(i.twin_task, i.doc, s) for i, s in zip(items, tw, strict=True)])
    return store


@pytest.mark.parametrize(("suite", "twin", "metric", "items"), [
    ("bbh", "bbh_permuted:test", "exact_match,get-answer", lambda: bbh_items(20)),
    ("mmlu_redux", "mmlu_redux_permuted:ok", "acc", lambda: redux_items(6)),
])
def test_a_letter_memoriser_is_flagged_by_the_permuted_twin_and_clean_models_are_not(
        tmp_path: Path, suite: str, twin: str, metric: str, items) -> None:
    its = items()
    store = answers_store(tmp_path / "s.duckdb", suite, twin, metric, its)
    data = gather(store)  # twins, relations and maps from the shipped suite.yaml files
    gaps = data.gaps[(data.gaps["suite"] == suite) & (data.gaps["kind"] == "permuted")]
    assert len(gaps) == 8 and gaps["paired"].all() and (gaps["n"] == len(its)).all()
    flagged = {f.model for f in analyse_data(data, THRESHOLDS) if f.signal == "twin_gap" and f.suite == suite}
    assert flagged == {MEMORISER}
    names = dict(zip(data.models["model_id"], data.models["name"], strict=True))
    gap = {names[m]: g for m, g in zip(gaps["model_id"], gaps["gap"], strict=True)}
    assert gap[MEMORISER] > 0.25 and max(abs(gap[n]) for n in CLEAN) < 0.08


def test_a_twin_of_some_public_tasks_never_falls_back_to_the_whole_suite_score(tmp_path: Path) -> None:
    """bbh's permuted twin covers its 17 multiple-choice tasks: with too few items to pair (1 per task), comparing
    bbh's score over all its tasks with the permuted ones would not be public - twin: no gap, and the coverage says
    the twin run did not pair."""
    navigate = [("bbh_cot_fewshot_navigate", d, 1.0) for d in range(30)]  # a task the twin cannot have
    store = answers_store(tmp_path / "s.duckdb", "bbh", "bbh_permuted:test", "exact_match,get-answer",
                          bbh_items(1), navigate)
    data = gather(store)
    assert data.gaps[data.gaps["suite"] == "bbh"].empty
    rows = [r for r in coverage(data, THRESHOLDS) if r.suite == "bbh"]
    assert len(rows) == 8 and all(r.status == "not checkable" and "twin run not paired" in r.detail for r in rows)


# --------------------------------------------------------------------------------------------- paired tier samples
def _seeds(suite: str, kind: str) -> dict[tuple[str, int], tuple[str, int]]:
    from harness.suites import load_suite
    from harness.twinmaps import load_map

    s = load_suite(suite)
    tm = load_map(s.path / s.twins[kind].map, suite, kind, s.twins[kind])
    return {(t, d): (pt, sd) for t, d, pt, sd in tm.pairs.itertuples(index=False)}


def test_a_tier_run_of_a_derived_twin_evaluates_the_items_whose_seeds_the_public_run_has() -> None:
    from harness.evaluate.plan import make_plan

    assert make_plan("gsm8k", tier="quick").samples is None  # public suites: the first items, as before
    assert make_plan("mmlu_permuted", tier="quick").samples is None  # aligned, same order: the first items pair
    assert make_plan("gsm_plus", limit=30).samples is None  # an explicit --limit means the first items
    plan = make_plan("gsm_plus", tier="quick")
    seeds = _seeds("gsm8k", "plus")
    assert [t for t, _ in plan.samples] == list(plan.tasks) and len(plan.tasks) == 7
    for task, docs in plan.samples:
        assert len(docs) == 30 == len(set(docs)) and list(docs) == sorted(docs)
        paired = [d for d in docs if seeds[(task, d)][1] < 100]  # gsm8k quick: its first 100 items
        assert len(paired) == 16  # every item of the type whose seed is among them (0 among the first 30)
        assert sum(seeds[(task, d)][1] < 100 for d in range(300)) == 16
    redux, twin = make_plan("mmlu_redux", tier="quick"), make_plan("mmlu_redux_permuted", tier="quick")
    mmlu = _seeds("mmlu", "redux")
    for (task, docs), (t_task, t_docs) in zip(redux.samples, twin.samples, strict=True):
        assert t_task == task.replace("mmlu_redux_", "mmlu_redux_permuted_") and t_docs == docs  # follows its public
        seeded = {d for (t, d), (_pt, sd) in mmlu.items() if t == task and sd < 20}  # mmlu quick: 20 per subject
        assert len(docs) == 20 and (seeded <= set(docs) if len(seeded) <= 20 else set(docs) <= seeded)


@pytest.mark.slow
def test_a_paired_tier_sample_is_what_the_run_stores(zoo_family: Path, results: Path, store) -> None:
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.plan import make_plan
    from harness.evaluate.runner import EvalOptions, evaluate_model

    task = "mmlu_redux_abstract_algebra"  # smoke: mmlu's first 3 items; redux has them at docs 47, 53, 60
    opts = EvalOptions(tier="smoke", tasks=(task,), backend_options=BackendOptions(batch_size=8, max_length=512))
    res = evaluate_model(str(zoo_family / "zoo-base"), "mmlu_redux", opts, store)
    (want,) = [d for t, d in make_plan("mmlu_redux", tier="smoke", tasks=[task]).samples]
    assert want == (47, 53, 60) and res.status == "complete"
    assert sorted(set(store.samples(res.run_id)["doc_id"])) == list(want)  # lm-eval's true doc ids, as planned
    assert store.get_run(res.run_id).settings["samples"] == {task: list(want)}


def test_an_english_memoriser_is_flagged_by_mgsm_s_other_languages(tmp_path: Path) -> None:
    """mgsm's cross-lingual twin is the same run's other languages: one run per model pairs English item i with its
    10 translations. Clean models are weaker outside English by their own margin (the natural gap the references
    calibrate); a model that recalls 40% of the English answers is flagged, they are not."""
    langs = ["bn", "de", "es", "fr", "ja", "ru", "sw", "te", "th", "zh"]
    store = Store(tmp_path / "s.duckdb")
    store.init()
    for k, name in enumerate((*CLEAN, MEMORISER)):
        mid = hashlib.sha256(name.encode()).hexdigest()
        store.add_model(ModelRecord(mid, name, None, "source"))
        rng = random.Random(name)
        p = 0.5 if name == MEMORISER else CLEAN[name]
        drop = 0.05 + 0.02 * (k % 4)  # each model's own English advantage
        rows = []
        for i in range(60):
            u, recalled = rng.random(), name == MEMORISER and rng.random() < 0.4
            rows.append(("mgsm_8shot_cot_en", i, float(recalled or u < p)))
            rows += [(f"mgsm_8shot_cot_{lang}", i, float((u if rng.random() < 0.7 else rng.random()) < p - drop))
                     for lang in langs]
        _run(store, mid, "mgsm", "cot", "exact_match,last-number", rows)
    data = gather(store)
    gaps = data.gaps[(data.gaps["suite"] == "mgsm") & (data.gaps["kind"] == "xling")]
    assert len(gaps) == 8 and gaps["paired"].all() and (gaps["n"] == 600).all()
    flagged = {f.model for f in analyse_data(data, THRESHOLDS) if f.signal == "twin_gap" and f.suite == "mgsm"}
    assert flagged == {MEMORISER}

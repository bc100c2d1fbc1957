"""The suites and their loader, against real lm-eval 0.4.13 (offline, no model): configs build Tasks and requests."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.suites import list_suites, load_suite, resolve_ref, tier_limit

ROOT = Path(__file__).resolve().parent.parent
SUITES = ROOT / "suites"
MINE = ["bbh", "bbh_permuted", "gsm1k", "gsm8k", "gsm_plus", "mgsm", "mmlu", "mmlu_permuted", "mmlu_redux",
        "mmlu_redux_permuted"]
MGSM_LANGS = ["bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh"]


@pytest.fixture(scope="module")
def tm():
    import datasets
    from lm_eval.tasks import TaskManager

    datasets.disable_progress_bars()
    return TaskManager(include_defaults=False)


def build(tm, configs: list[dict]) -> dict:
    return tm.load(configs)["tasks"]


def pick(suite: str, split: str | None, *tasks: str) -> list[dict]:
    return [c for c in load_suite(suite).task_configs(split) if c["task"] in tasks]


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return module


# ---------------------------------------------------------------------------------------------- loading
def test_every_suite_loads_with_its_documented_shape() -> None:
    assert set(MINE) <= set(list_suites())
    shape = {"mmlu": {"test": 57, "oll_v1": 57}, "mmlu_permuted": {"test": 57}, "mmlu_redux": {"ok": 57, "all": 57},
             "bbh": {"test": 27}, "gsm8k": {"test": 1, "last_number": 1, "oll_v1": 1},
             "mgsm": {"cot": 11, "direct": 11, "lm_eval_direct": 11, "lm_eval_native_cot": 11, "lm_eval_en_cot": 11},
             "gsm_plus": {"testmini": 7, "seeds": 1}, "gsm1k": {"public": 1}, "bbh_permuted": {"test": 17},
             "mmlu_redux_permuted": {"ok": 57}}
    for name, splits in shape.items():
        s = load_suite(name)
        assert {k: len(v) for k, v in s.splits.items()} == splits, name
        assert s.kind == "lm-eval" and s.version and s.path == SUITES / name
        assert set(s.tiers) == {"smoke", "quick", "full"} and s.tier_limit("full") is None
        assert 0 < s.tier_limit("smoke") < (s.tier_limit("quick") or 10**9)
        assert re.fullmatch(r"[0-9a-f]{64}", s.data_hash())
        for spec in s.twins.values():  # every twin resolves to a real suite and split (and its tasks)
            twin, split = resolve_ref(spec.ref)
            assert set(spec.tasks) <= set(twin.split_tasks(split))


def test_twins_and_hub_tasks() -> None:
    mmlu = load_suite("mmlu").twins
    assert {k: (v.ref, v.relation) for k, v in mmlu.items()} == {
        "permuted": ("mmlu_permuted:test", "aligned"), "redux": ("mmlu_redux:ok", "derived")}
    gsm = load_suite("gsm8k").twins
    assert (gsm["plus"].ref, gsm["plus"].relation) == ("gsm_plus:testmini", "derived")
    assert gsm["plus_digit_expansion"].tasks == ("gsm_plus_digit_expansion",)  # a perturbation type: a twin
    assert (gsm["gsm1k"].ref, gsm["gsm1k"].relation, gsm["gsm1k"].map) == ("gsm1k:public", "independent", None)
    assert "plus_seeds" not in gsm  # gsm8k's own items, unchanged: no twin
    assert {(k, v.ref, v.relation) for k, v in load_suite("bbh").twins.items()} == {
        ("permuted", "bbh_permuted:test", "aligned")}
    assert {(k, v.ref, v.relation) for k, v in load_suite("mmlu_redux").twins.items()} == {
        ("permuted", "mmlu_redux_permuted:ok", "aligned")}
    assert {(k, v.ref, v.relation) for k, v in load_suite("mgsm").twins.items()} == {("xling", "mgsm:cot", "derived")}
    assert load_suite("mmlu").hub_tasks == ("mmlu",)
    assert load_suite("bbh").hub_tasks == ("bbh_cot_fewshot",)


def test_task_configs_have_absolute_existing_data_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # nothing depends on the working directory
    for name in MINE:
        for cfg in load_suite(name).task_configs()[:3]:
            files = cfg["dataset_kwargs"]["data_files"]
            for f in files.values():
                assert Path(f).is_absolute() and Path(f).is_file(), f
            assert "include" not in cfg and cfg["task"]


def test_function_tags_resolve_to_callables() -> None:
    cfg = pick("mmlu_redux", "ok", "mmlu_redux_anatomy")[0]
    assert callable(cfg["process_docs"])
    conv = pick("mmlu", None, "mmlu_anatomy")[0]["dataset_kwargs"]["converters"]
    assert conv["A"] is str


def test_data_hash_is_stable_and_tracks_content(tmp_path: Path) -> None:
    root = tmp_path / "suites"
    make_suite(root)
    first = load_suite("toy", root).data_hash()
    assert first == load_suite("toy", root).data_hash()
    (root / "toy" / "data" / "test.jsonl").write_text('{"q": "changed", "a": "1"}\n')
    assert load_suite("toy", root).data_hash() != first
    assert load_suite("mmlu").data_hash() != load_suite("mmlu_permuted").data_hash()


def test_tier_limits() -> None:
    assert tier_limit("smoke") == 20 and tier_limit("full") is None
    assert tier_limit("smoke", "bbh") == 2 == load_suite("bbh").tier_limit("smoke")
    with pytest.raises(HarnessError, match="did you mean 'quick'"):
        tier_limit("quik")


def test_import_stays_light() -> None:
    code = "import sys, harness.suites; print('torch' in sys.modules, 'lm_eval' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ---------------------------------------------------------------------------------------------- bad inputs
TOY_TASK = """task: toy_task
dataset_path: json
dataset_kwargs:
  data_files:
    test: data/test.jsonl
output_type: generate_until
test_split: test
doc_to_text: "{{q}}"
doc_to_target: "{{a}}"
"""


def make_suite(root: Path, suite_yaml: str | None = None) -> Path:
    folder = root / "toy"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "test.jsonl").write_text('{"q": "1+1", "a": "2"}\n')
    (folder / "toy_task.yaml").write_text(TOY_TASK)
    (folder / "suite.yaml").write_text(suite_yaml or (
        "name: toy\nversion: '1'\nkind: lm-eval\ndefault_split: public\nsplits:\n  public: [toy_task]\n"))
    return folder


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and ": " in msg
    return msg


def test_unknown_suite_says_did_you_mean() -> None:
    with pytest.raises(HarnessError) as e:
        load_suite("mmlu_permutd")
    assert "unknown suite 'mmlu_permutd' (did you mean 'mmlu_permuted'?)" in one_line(e)


def test_unknown_split_and_tier(tmp_path: Path) -> None:
    with pytest.raises(HarnessError) as e:
        load_suite("mgsm").task_configs("cto")
    assert "no split 'cto' (did you mean 'cot'?)" in one_line(e) and "direct" in str(e.value)
    with pytest.raises(HarnessError, match="no split 'x'"):
        load_suite("mgsm:x")
    with pytest.raises(HarnessError, match="no tier 'huge'"):
        load_suite("bbh").tier_limit("huge")


def test_unknown_task_names_the_split(tmp_path: Path) -> None:
    make_suite(tmp_path, "name: toy\nversion: '1'\nkind: lm-eval\ndefault_split: p\nsplits:\n  p: [toy_tsk]\n")
    with pytest.raises(HarnessError) as e:
        load_suite("toy", tmp_path)
    assert "split 'p' names unknown task 'toy_tsk' (did you mean 'toy_task'?)" in one_line(e)


def test_missing_data_file_is_named(tmp_path: Path) -> None:
    folder = make_suite(tmp_path)
    (folder / "data" / "test.jsonl").unlink()
    with pytest.raises(HarnessError) as e:
        load_suite("toy", tmp_path)
    assert str(folder / "data" / "test.jsonl") in one_line(e) and "missing" in str(e.value)


@pytest.mark.parametrize(("text", "needle"), [
    ("name: toy\nkind: lm-eval\ndefault_split: p\nsplits: {p: [toy_task]}\n", "field 'version': required field"),
    ("name: toy\nversion: '1'\nkind: lmeval\ndefault_split: p\nsplits: {p: [toy_task]}\n", "field 'kind'"),
    ("name: toy\nversion: '1'\nkind: lm-eval\ndefault_split: q\nsplits: {p: [toy_task]}\n", "default_split 'q'"),
    ("name: toy\nversion: '1'\nkind: lm-eval\ndefault_split: p\nsplits: {p: toy_task}\n", "field 'splits.p'"),
    ("name: toy\nversion: '1'\nkind: lm-eval\ndefault_split: p\nsplits: {p: [toy_task]}\ntiers: {smoke: 0}\n",
     "field 'tiers'"),
    ("name: toy\nversion: '1'\nkind: lm-eval\ndefault_split: p\nsplits: {p: [toy_task]}\ntwins: {x: 'a b'}\n",
     "field 'twins'"),
    ("name: toy\nversion: '1'\nkind: lm-eval\ndefault_split: p\nsplits: {p: [toy_task]}\nsplit: {}\n",
     "field 'split': unknown field"),
    ("name: toy\nversion: '1'\nkind: lm-eval\ndefault_split: p\nsplits: {p: [toy_task]}\n"
     "aggregate: {metric: acc, split_metrics: {q: f1}}\n", "split_metrics names 'q', which is not one of the splits"),
    ("name: toy\nversion: '1'\nkind: lm-eval\ndefault_split: p\nsplits: {p: [toy_task]}\n"
     "aggregate: {metric: acc, split_metrics: {hub: f1}}\n", "nor 'hub': the suite names no hub_tasks"),
    ("name: toy\nversion: '1'\nkind: lm-eval\ndefault_split: p\nsplits: {p: [toy_task]}\n"
     "same_questions: {p: q}\n", "same_questions names 'q', which is not one of the splits"),
    ("name: toy\nversion: '1'\nkind: lm-eval\ndefault_split: p\nsplits: {p: [toy_task], q: [toy_task]}\n"
     "same_questions: {p: p}\n", "'p' names 'p', which must be another split"),
    ("name: toy\nversion: '1'\nkind: lm-eval\ndefault_split: p\nsplits: {p: [toy_task], q: [toy_task]}\n"
     "same_questions: {p: q, q: p}\n", "which must be another split that names none itself"),
    ("name: toy\nversion: '1'\nkind: lm-eval\ndefault_split: p\nsplits: {p: [toy_task], q: [toy_task, t2]}\n"
     "same_questions: {p: q}\n", "split 'p' has 1 tasks, 'q' 2"),
    ("name: toy\nversion: '1'\nkind: lm-eval\ndefault_split: p\nsplits: {p: [toy_task]\n", "not valid YAML"),
    ("- just\n- a list\n", "must be a mapping"),
])
def test_malformed_suite_yaml_names_the_field(tmp_path: Path, text: str, needle: str) -> None:
    make_suite(tmp_path, text)
    with pytest.raises(HarnessError) as e:
        list_suites(tmp_path) if "YAML" in needle or "mapping" in needle else load_suite("toy", tmp_path)
    assert needle in one_line(e) and "suite.yaml" in str(e.value)


def test_same_questions_pairs_tasks_that_read_the_same_data(tmp_path: Path) -> None:
    """mgsm's direct split asks cot's questions task for task; listed in another order, its tasks would read other
    languages' files than the cot tasks they are paired with: refused in one line naming both."""
    import shutil

    import yaml

    shutil.copytree(SUITES / "mgsm", tmp_path / "mgsm")
    assert load_suite("mgsm", tmp_path).splits["direct"][0] == "mgsm_8shot_direct_bn"  # the shipped order loads
    spec_file = tmp_path / "mgsm" / "suite.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["splits"]["direct"][:2] = spec["splits"]["direct"][1::-1]  # de before bn
    spec_file.write_text(yaml.safe_dump(spec, allow_unicode=True))
    with pytest.raises(HarnessError) as e:
        load_suite("mgsm", tmp_path)
    assert ("same_questions pairs task 'mgsm_8shot_direct_de' of split 'direct' with 'mgsm_8shot_cot_bn' of 'cot', "
            "which read other data (mgsm_de.tsv against mgsm_bn.tsv)") in one_line(e)
    assert "same order" in str(e.value)


def test_suite_yaml_is_safe_loaded(tmp_path: Path) -> None:
    make_suite(tmp_path, "name: !!python/object/apply:os.getcwd []\nversion: '1'\n")
    with pytest.raises(HarnessError, match="not valid YAML"):
        list_suites(tmp_path)


def test_toy_suite_runs_through_lm_eval(tmp_path: Path, tm) -> None:
    make_suite(tmp_path)
    task = build(tm, load_suite("toy", tmp_path).task_configs())["toy_task"]
    assert [d["q"] for d in task.test_docs()] == ["1+1"]


# ---------------------------------------------------------------------------------------------- real tasks
def csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_mmlu_data_counts() -> None:
    data = SUITES / "mmlu" / "data"
    assert sum(len(csv_rows(p)) for p in (data / "test").glob("*.csv")) == 14042
    assert {len(csv_rows(p)) for p in (data / "dev").glob("*.csv")} == {5}


def test_mmlu_task_is_zero_shot_as_lm_evals_default(tm) -> None:
    task = build(tm, pick("mmlu", None, "mmlu_abstract_algebra"))["mmlu_abstract_algebra"]
    task.build_all_requests(limit=1, rank=0, world_size=1)
    q, a, b, c, d, gold = csv_rows(SUITES / "mmlu/data/test/abstract_algebra_test.csv")[0]
    assert task.instances[0].args[0] == "The following are multiple choice questions (with answers) about abstract " \
        f"algebra.\n\n{q.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"
    assert task.doc_to_target(next(iter(task.test_docs()))) == "ABCD".index(gold)


def test_mmlu_oll_v1_task_builds_five_shot_loglikelihood_requests(tm) -> None:
    task = build(tm, pick("mmlu", "oll_v1", "mmlu_5shot_abstract_algebra"))["mmlu_5shot_abstract_algebra"]
    docs = list(task.test_docs())
    assert len(docs) == 100 == len(csv_rows(SUITES / "mmlu/data/test/abstract_algebra_test.csv"))
    task.build_all_requests(limit=2, rank=0, world_size=1)
    first = [i for i in task.instances if i.doc_id == 0]
    assert [i.args[1] for i in first] == [" A", " B", " C", " D"]
    prompt = first[0].args[0]
    assert prompt.startswith("The following are multiple choice questions (with answers) about abstract algebra.\n\n")
    q, a, b, c, d, gold = csv_rows(SUITES / "mmlu/data/test/abstract_algebra_test.csv")[0]
    assert prompt.count("\nAnswer:") == 6  # 5 shots + the question
    assert prompt.endswith(f"\n\n{q.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:")
    dev = csv_rows(SUITES / "mmlu/data/dev/abstract_algebra_dev.csv")
    assert all(f"{row[0].strip()}\nA. {row[1]}" in prompt and f"Answer: {row[5]}" in prompt for row in dev)
    assert task.doc_to_target(docs[0]) == "ABCD".index(gold)


def test_mmlu_redux_ok_split_drops_flagged_items(tm) -> None:
    rows = [json.loads(line) for line in (SUITES / "mmlu_redux/data/test/virology.jsonl").open(encoding="utf-8")]
    assert len(rows) == 100
    tasks = build(tm, pick("mmlu_redux", "ok", "mmlu_redux_virology") + pick("mmlu_redux", "all",
                                                                               "mmlu_redux_all_virology"))
    ok = list(tasks["mmlu_redux_virology"].test_docs())
    assert len(ok) == sum(r["error_type"] == "ok" for r in rows) < 100
    assert len(list(tasks["mmlu_redux_all_virology"].test_docs())) == 100
    assert len(list(tasks["mmlu_redux_virology"].fewshot_docs())) == 5
    labels = {json.loads(line)["error_type"] for p in (SUITES / "mmlu_redux/data/test").glob("*.jsonl")
              for line in p.open(encoding="utf-8")}
    assert labels == {"ok", "bad question clarity", "wrong groundtruth", "multiple correct answers",
                      "no correct answer", "expert", "bad options clarity"}


def test_mmlu_permuted_really_permutes_and_is_deterministic() -> None:
    build_mmlu = script("build_mmlu_suites")
    moved = total = 0
    for orig_path in sorted((SUITES / "mmlu/data/test").glob("*.csv")):
        subject = orig_path.name.removesuffix("_test.csv")
        orig, perm = csv_rows(orig_path), csv_rows(SUITES / "mmlu_permuted/data/test" / orig_path.name)
        assert len(orig) == len(perm)
        for i, (o, p) in enumerate(zip(orig, perm, strict=True)):
            assert p[0] == o[0] and sorted(p[1:5]) == sorted(o[1:5])  # same question, same options
            assert p[1 + "ABCD".index(p[5])] == o[1 + "ABCD".index(o[5])]  # same correct option text
            assert [o[1 + "ABCD".index(c)] for c in p[6]] == p[1:5]  # the recorded order is the real one
            moved += p[5] != o[5]
            total += 1
            if i < 3:  # the generator reproduces the stored rows
                assert build_mmlu.permute_row(subject, i, o) == p
    assert total == 14042 and moved / total > 0.9


def test_bbh_prompt_holds_the_original_cot_exemplars(tm) -> None:
    task = build(tm, pick("bbh", None, "bbh_cot_fewshot_date_understanding"))["bbh_cot_fewshot_date_understanding"]
    raw = json.loads((SUITES / "bbh/data/tasks/date_understanding.json").read_text(encoding="utf-8"))
    assert len(list(task.test_docs())) == len(raw["examples"]) == 250
    task.build_all_requests(limit=1, rank=0, world_size=1)
    prompt, gen = task.instances[0].args
    original = (SUITES / "bbh/data/cot-prompts/date_understanding.txt").read_text(encoding="utf-8")
    for block in original.split("-----\n", 1)[1].split("\n\nQ: ")[1:]:  # lm-eval ships the release's exemplars
        assert block.split("\nA: ")[0] in prompt
    assert prompt.endswith(f"Q: {raw['examples'][0]['input']}\nA: Let's think step by step.\n")  # lm-eval's form
    assert "canary" not in prompt and prompt.count("So the answer is") == 3 and "\n\n" in gen["until"]


def test_bbh_counts() -> None:
    total = sum(len(json.loads(p.read_text(encoding="utf-8"))["examples"])
                for p in (SUITES / "bbh/data/tasks").glob("*.json"))
    assert total == 6511 and len(list((SUITES / "bbh/data/cot-prompts").glob("*.txt"))) == 27


def test_mgsm_native_cot_and_direct(tm) -> None:
    tasks = build(tm, pick("mgsm", "cot", "mgsm_8shot_cot_de", "mgsm_8shot_cot_ja")
                  + pick("mgsm", "direct", "mgsm_8shot_direct_de"))
    for task in tasks.values():
        assert len(list(task.test_docs())) == 250
        task.build_all_requests(limit=1, rank=0, world_size=1)
    de = tasks["mgsm_8shot_cot_de"].instances[0].args[0]
    assert de.count("Frage: ") == 9 and de.count("Die Antwort ") == 8
    assert de.endswith("Wie viel Dollar nimmt sie täglich auf dem Bauernmarkt ein?\nSchritt-für-Schritt-Antwort:")
    assert "\n\nFrage: Roger hat 5 Tennisbälle." not in de and de.startswith("Frage: Roger hat 5 Tennisbälle.")
    assert tasks["mgsm_8shot_cot_ja"].instances[0].args[0].endswith("ステップごとの答え：")
    direct = tasks["mgsm_8shot_direct_de"].instances[0].args[0]
    assert "Antwort: 11\n\nFrage:" in direct and direct.endswith("\nAntwort:")
    assert tasks["mgsm_8shot_cot_de"].doc_to_target(tasks["mgsm_8shot_cot_de"].test_docs()[0]) == "18"
    for lang in MGSM_LANGS:
        assert len(csv_rows_tsv(SUITES / f"mgsm/data/mgsm_{lang}.tsv")) == 250


def csv_rows_tsv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_gsm_family_counts_and_prompt(tm) -> None:
    configs = load_suite("gsm8k").task_configs() + load_suite("gsm1k").task_configs()
    configs += pick("gsm_plus", "testmini", "gsm_plus_digit_expansion") + load_suite("gsm_plus").task_configs("seeds")
    tasks = build(tm, configs)
    counts = {name: len(list(t.test_docs())) for name, t in tasks.items()}
    assert counts == {"gsm8k_cot": 1319, "gsm1k_cot": 50, "gsm_plus_digit_expansion": 300, "gsm_plus_seeds": 300}
    gsm8k = tasks["gsm8k_cot"]
    gsm8k.build_all_requests(limit=1, rank=0, world_size=1)
    prompt = gsm8k.instances[0].args[0]
    assert prompt.count("Q: ") == 9 and prompt.count("The answer is") == 8 and prompt.endswith("\nA:")
    assert gsm8k.doc_to_target(gsm8k.test_docs()[0]) == "18"
    assert tasks["gsm1k_cot"].doc_to_target(tasks["gsm1k_cot"].test_docs()[0]) == "7"


# ---------------------------------------------------------------------------------------------- answer extraction
def extract_and_score(cfg: dict, outputs: list[str], golds: list[str]) -> tuple[list[str], float]:
    """Run a config's first filter and its exact_match metric (lm-eval's own classes) on model outputs."""
    from lm_eval.api.instance import Instance
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters import build_filter_ensemble

    spec = cfg["filter_list"][0]
    ensemble = build_filter_ensemble(spec["name"], [[f["function"], {k: v for k, v in f.items() if k != "function"}]
                                                    for f in spec["filter"]])
    instances = [Instance(request_type="generate_until", doc={}, arguments=("", {}), idx=i, resps=[out])
                 for i, out in enumerate(outputs)]
    ensemble.apply(instances)
    preds = [inst.filtered_resps[spec["name"]] for inst in instances]
    metric = cfg["metric_list"][0]
    opts = {k: v for k, v in metric.items() if k not in ("metric", "aggregation", "higher_is_better")}
    scores = [exact_match_hf_evaluate([p], [g], **opts)["exact_match"] for p, g in zip(preds, golds, strict=True)]
    return preds, sum(scores) / len(scores)


def test_gsm8k_is_lm_evals_strict_match_and_last_number_is_a_named_variant() -> None:
    outputs = [
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day. She makes 9 * 2 = $18 every day. The answer is 18.",
        "He spent 80,000 + 50,000 = 130,000. It is worth 200,000. 200,000 - 130,000 = 70,000. The answer is 70,000.",
        "So she has 23 - 15 = 8 dollars left.",
    ]
    preds, score = extract_and_score(load_suite("gsm8k").task_configs()[0], outputs, ["18", "70000", "8"])
    assert preds == ["18", "70,000", "[invalid]"] and score == pytest.approx(2 / 3)  # strict-match: "The answer is"
    assert load_suite("gsm8k").aggregate.metric == "exact_match,strict-match"


def test_last_number_extraction_on_realistic_outputs() -> None:
    cfg = load_suite("gsm8k").task_configs("last_number")[0]
    outputs = [
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day. She makes 9 * 2 = $18 every day. The answer is 18.",
        "He spent 80,000 + 50,000 = 130,000. It is worth 200,000. 200,000 - 130,000 = 70,000. The answer is 70,000.",
        "So she has 23 - 15 = 8 dollars left.",
        "Each costs $2.50, so the total is $12.00",
        "Half of it: 1/2",
        "I am not sure.",
    ]
    preds, score = extract_and_score(cfg, outputs, ["18", "70000", "8", "12", "1/2", "5"])
    assert preds == ["18", "70,000", "8", "12.00", "1/2", "[invalid]"]
    assert score == pytest.approx(5 / 6)
    mgsm = pick("mgsm", "cot", "mgsm_8shot_cot_de")[0]
    outputs = ["80.000 + 50.000 = 130.000. Gewinn: 70.000 US-Dollar. Die Antwort ist 70.000.",
               "5 + 6 = 11。答えは11です。"]
    preds, score = extract_and_score(mgsm, outputs, ["70000", "11"])
    assert preds == ["70.000", "11"] and score == 1.0


def test_bbh_answer_extraction_on_realistic_outputs() -> None:
    cfg = pick("bbh", None, "bbh_cot_fewshot_date_understanding")[0]
    outputs = [
        " Today is 12/31/1929. One week from today is 01/07/1930. So the answer is (B).",
        " The expression is not ( True ) = False. So the answer is False.",
        " Sorting gives: apple banana cherry. So the answer is apple banana cherry",
        " First the answer is (A), but re-checking, the date is 05/01. So the answer is (C).",
        " I cannot decide.",
    ]
    preds, score = extract_and_score(cfg, outputs, ["(B)", "False", "apple banana cherry", "(C)", "(A)"])
    # lm-eval's get-answer: after the first "the answer is", the rest of the line but its last character
    assert preds == ["(B)", "False", "apple banana cherr",
                     "(A), but re-checking, the date is 05/01. So the answer is (C)", "[invalid]"]
    assert score == pytest.approx(2 / 5)


# ---------------------------------------------------------------------------------------------- everything
@pytest.mark.slow
def test_every_task_of_every_suite_builds_with_the_documented_counts(tm) -> None:
    expected = {("mmlu", "test"): 14042, ("mmlu_permuted", "test"): 14042, ("mmlu_redux", "ok"): 5330,
                ("mmlu_redux", "all"): 5700, ("bbh", "test"): 6511, ("mgsm", "cot"): 2750,
                ("mgsm", "direct"): 2750, ("gsm8k", "test"): 1319, ("gsm_plus", "testmini"): 2100,
                ("gsm_plus", "seeds"): 300, ("gsm1k", "public"): 50, ("bbh_permuted", "test"): 4074,
                ("mmlu_redux_permuted", "ok"): 5330}
    for (name, split), count in expected.items():
        tasks = build(tm, load_suite(name).task_configs(split))
        assert len(tasks) == len(load_suite(name).splits[split])
        total = 0
        for task in tasks.values():
            total += len(list(task.test_docs()))
            task.build_all_requests(limit=1, rank=0, world_size=1)
            assert task.instances
        assert total == count, (name, split)


@pytest.mark.slow
def test_configs_run_through_simple_evaluate_on_a_tiny_model(tiny_llama) -> None:
    """The route the runner takes: inline dicts + TaskManager(include_defaults=False), a real HF model, smoke limit."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    path = tiny_llama("suite-model")
    configs = pick("mmlu", None, "mmlu_anatomy") + load_suite("gsm8k").task_configs()
    configs += pick("bbh", None, "bbh_cot_fewshot_navigate")
    for cfg in configs[1:]:  # a random tiny model would babble 256 tokens; 8 is enough to test the plumbing
        cfg["generation_kwargs"] = {**cfg["generation_kwargs"], "max_gen_toks": 8}
    out = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(path), "dtype": "float32"},
                                  tasks=configs, task_manager=TaskManager(include_defaults=False), limit=2,
                                  log_samples=True, device="cpu", batch_size=1)
    res = out["results"]
    assert 0.0 <= res["mmlu_anatomy"]["acc,none"] <= 1.0
    assert 0.0 <= res["gsm8k_cot"]["exact_match,strict-match"] <= 1.0  # lm-eval's own gsm8k_cot filters
    assert 0.0 <= res["bbh_cot_fewshot_navigate"]["exact_match,get-answer"] <= 1.0
    assert out["configs"]["mmlu_anatomy"]["num_fewshot"] == 0  # one sample row per document and filter:
    assert len({row["doc_id"] for row in out["samples"]["gsm8k_cot"]}) == 2


def test_judge_suites_need_no_task_yamls(tmp_path: Path) -> None:
    folder = make_suite(tmp_path, "name: toy\nversion: '1'\nkind: judge\ndefault_split: q\nsplits: {q: [q1, q2]}\n")
    suite = load_suite("toy", tmp_path)
    assert suite.splits == {"q": ("q1", "q2")} and suite.data_files() == [folder / "data" / "test.jsonl"]
    with pytest.raises(HarnessError, match="judge suite"):
        suite.task_configs()


NESTED = {  # a.yaml -> sub/b.yaml -> ../c.yaml (a nested include, relative to each including file's folder)
    "a.yaml": "task: nested_a\ninclude: sub/b.yaml\nfrom_a: 1\n",
    "sub/b.yaml": "include: ../c.yaml\nfrom_b: 1\nnum_fewshot: 2\n",
    "c.yaml": ("from_c: 1\nnum_fewshot: 0\ndataset_path: json\ndataset_kwargs: {data_files: {test: data/t.jsonl}}\n"
               "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_choice: '{{c}}'\n"
               "doc_to_target: '{{a}}'\n"),
}


def _suite_of(tmp_path: Path, files: dict[str, str], task: str) -> Any:
    folder = tmp_path / "suites" / "inc"
    for rel, text in {**files, "data/t.jsonl": '{"q": "1+1", "c": ["2", "3"], "a": 0}\n'}.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    (folder / "suite.yaml").write_text('name: inc\nversion: "1"\nkind: lm-eval\ndescription: Includes.\n'
                                       f"default_split: test\nsplits:\n  test: [{task}]\n")
    return folder


@pytest.mark.parametrize("case", ["nested", "upstream", "symlink"])
def test_the_run_ids_hash_and_the_config_reader_follow_includes_as_lm_eval_does(case: str, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """One include rule (harness/task_yaml.py _includes) for the two walkers of a task's include chain: the files
    definition_hash hashes (the run id) and the config read_yaml merges are those lm-eval's own loader reads for
    the task (its load_yaml, every file it opens recorded), for a nested relative include, for gsm8k's include of
    the installed lm-eval's gsm8k-cot.yaml, and for a task YAML that is a link (lm-eval resolves it: its include is
    beside the target, where the hash read the link's folder's file of that name until 2026-12-03); the merged
    config is lm-eval's (its !function left as written)."""
    import lm_eval.tasks._yaml_loader as loader

    import harness.task_yaml as task_yaml

    if case == "nested":
        _suite_of(tmp_path, NESTED, "nested_a")
        suite, task = load_suite("inc", tmp_path / "suites"), "nested_a"
    elif case == "symlink":  # a task YAML linked from a folder outside the suite: its include is beside the target
        shared = tmp_path / "shared"
        shared.mkdir()
        (shared / "real.yaml").write_text("task: linked\ninclude: c.yaml\n")
        (shared / "c.yaml").write_text(NESTED["c.yaml"])
        folder = _suite_of(tmp_path, {"c.yaml": NESTED["c.yaml"].replace("from_c", "decoy")}, "linked")
        (folder / "link.yaml").symlink_to(shared / "real.yaml")
        suite, task = load_suite("inc", tmp_path / "suites"), "linked"
    else:
        suite, task = load_suite("gsm8k"), "gsm8k_cot"
    real, read = loader.load_yaml, []

    def recording(path: Any, **kwargs: Any) -> Any:
        read.append(Path(path).resolve())
        return real(path, **kwargs)

    monkeypatch.setattr(loader, "load_yaml", recording)  # lm-eval's recursion calls it by this name
    suite.task_configs(suite.default_split, [task])
    path = suite.task_files[task]
    hashed = [p for p in dict.fromkeys(task_yaml.definition_files(path)) if p.suffix != ".py"]
    assert hashed == list(dict.fromkeys(read)) and len(hashed) == {"nested": 3, "upstream": 2, "symlink": 2}[case]
    monkeypatch.setattr(loader, "load_yaml", real)
    local = real(path, resolve_func=False, recursive=False)
    if case != "upstream":
        expected = real(path, resolve_func=False)
        assert "decoy" not in expected and "from_c" in expected
        assert case == "symlink" or ({"from_a", "from_b"} <= set(expected) and expected["num_fewshot"] == 2)
    else:
        expected = {**real(hashed[1], resolve_func=False), **{k: v for k, v in local.items() if k != "include"}}
    assert task_yaml.read_yaml(path) == {k: getattr(v, "__name__", v) for k, v in expected.items()}

"""Real suites that are upstream's tasks: a task YAML that includes the installed lm-eval's task (`include:
lm_eval:...`) renders to the same requests, metrics and filters as lm-eval's own loader makes of that task on our
data; `harness eval` scores it per sample as the `lm_eval` CLI does; a YAML the installed lm-eval no longer ships is
one line naming the task and lm-eval's version (exit 2), nothing stored."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError
from harness.suites import Suite, load_suite, score_rules
from harness.task_yaml import UPSTREAM, lm_eval_tasks_dir

REAL = ["bbh", "bbh_permuted", "gsm1k", "gsm8k", "gsm_plus", "mgsm", "mmlu", "mmlu_permuted", "mmlu_redux",
        "mmlu_redux_permuted"]


def ours(task: str) -> bool:
    """harness's own variants, under their own names (docs/suites.md): not lm-eval tasks."""
    return task == "gsm8k_cot_last_number" or task.startswith("mgsm_8shot_")


def reads_user_data(suite: Suite, task: str) -> bool:
    """A task that reads a file the user supplies (gsm8k_5shot: GSM8K's train split): rendered by its own test."""
    local = yaml.safe_load(suite.task_files[task].read_text().replace("!function", ""))
    return bool(set(suite.user_data) & set(_data_names(local)))


def upstream_tasks(suite: Suite) -> list[str]:
    return [t for t in suite.all_tasks
            if str(yaml.safe_load(suite.task_files[t].read_text().replace("!function", "")).get("include", ""))
            .startswith(UPSTREAM)]


def upstream_folder(suite: Suite, tasks: list[str], out: Path) -> Path:
    """lm-eval's own view of the same tasks: each a YAML that includes the upstream file by its path and sets only
    our data source (paths absolute), for `TaskManager(include_path=...)` / `lm_eval --include_path`."""
    out.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        text = suite.task_files[task].read_text()
        local = yaml.safe_load(text.replace("!function", ""))
        rel = local["include"].removeprefix(UPSTREAM)
        text = text.replace(local["include"], str(lm_eval_tasks_dir().parent / rel))
        for name in _data_names(local):
            text = text.replace(name, str(suite.path / name))
        (out / f"{task}.yaml").write_text(text)
        utils = suite.task_files[task].parent / "utils.py"  # our process_docs (how our data file is read)
        if utils.is_file():
            (out / "utils.py").write_bytes(utils.read_bytes())
    return out


def _data_names(cfg: dict) -> list[str]:
    files = cfg["dataset_kwargs"]["data_files"]
    return [v for v in (files.values() if isinstance(files, dict) else [files])]


def _requests(tasks: dict, limit: int = 3) -> dict[str, list]:
    out = {}
    for name, task in sorted(tasks.items()):
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        out[name] = [(i.request_type, i.doc_id, i.args) for i in task.instances]
    return out


def test_which_real_suites_are_upstream() -> None:
    for name in REAL:
        suite = load_suite(name)
        assert set(upstream_tasks(suite)) == {t for t in suite.all_tasks if not ours(t)}, name
        assert not any(ours(t) for t in suite.splits[suite.default_split]) or name == "mgsm", name


@pytest.mark.parametrize("name", REAL)
def test_suite_renders_as_lm_evals_own_task(name: str, tmp_path: Path) -> None:
    from lm_eval.tasks import TaskManager

    suite = load_suite(name)
    tasks = [t for t in upstream_tasks(suite) if not reads_user_data(suite, t)]
    splits = [split for split, names in suite.splits.items() if set(names) <= set(tasks)]
    configs = {c["task"]: c for split in splits for c in suite.task_configs(split) if c["task"] in tasks}
    ours = TaskManager(include_defaults=False).load(list(configs.values()))["tasks"]
    folder = upstream_folder(suite, tasks, tmp_path / "upstream")
    theirs = TaskManager(include_path=str(folder), include_defaults=False).load(tasks)["tasks"]
    assert sorted(ours) == sorted(theirs) == sorted(tasks)
    for task in tasks:
        a, b = ours[task].config, theirs[task].config
        assert a.metric_list == b.metric_list and a.filter_list == b.filter_list, task
        assert (a.generation_kwargs, a.num_fewshot, a.doc_to_text, a.doc_to_target) == \
            (b.generation_kwargs, b.num_fewshot, b.doc_to_text, b.doc_to_target), task
    assert _requests(ours) == _requests(theirs)


def test_gsm8k_oll_v1_renders_as_lm_evals_own_gsm8k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Split oll_v1's gsm8k_5shot is lm-eval's plain gsm8k task (5 shots drawn from the train split by its sampler
    and seed) on our test file and the user's train file. GSM8K's train split is not shipped: the train file here is
    made from 40 test items only to have few-shot docs; the parity does not depend on which docs they are."""
    from lm_eval.tasks import TaskManager

    suite = load_suite("gsm8k")
    test = suite.path / "data" / "test.jsonl"
    train = tmp_path / "train.jsonl"
    train.write_text("".join(test.read_text().splitlines(keepends=True)[-40:]))
    monkeypatch.setenv("HARNESS_GSM8K_TRAIN", str(train))
    ours = TaskManager(include_defaults=False).load(suite.task_configs("oll_v1"))["tasks"]["gsm8k_5shot"]
    (tmp_path / "gsm8k.yaml").write_text(yaml.safe_dump({
        "include": str(lm_eval_tasks_dir() / "gsm8k" / "gsm8k.yaml"), "dataset_path": "json", "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(test), "train": str(train)}}}))
    theirs = TaskManager(include_path=str(tmp_path), include_defaults=False).load(["gsm8k"])["tasks"]["gsm8k"]
    a, b = ours.config, theirs.config
    assert a.metric_list == b.metric_list and a.filter_list == b.filter_list
    assert (a.generation_kwargs, a.doc_to_text, a.doc_to_target, a.fewshot_split, a.fewshot_config) == \
        (b.generation_kwargs, b.doc_to_text, b.doc_to_target, b.fewshot_split, b.fewshot_config)
    assert a.num_fewshot == b.num_fewshot == 5
    for task in (ours, theirs):
        task.set_fewshot_seed(1234)  # what simple_evaluate does (fewshot_random_seed=1234, as harness runs it)
    mine, upstream = _requests({"t": ours}, limit=4)["t"], _requests({"t": theirs}, limit=4)["t"]
    assert mine == upstream and len(mine) == 4
    shots = re.findall(r"Question: (.*?)\nAnswer:", mine[0][2][0], flags=re.S)[:-1]
    assert len(shots) == 5 and set(shots) <= {json.loads(line)["question"] for line in train.read_text().splitlines()}
    assert mine[0][2][0].endswith(f"Question: {json.loads(test.open().readline())['question']}\nAnswer:")
    assert suite.data_hash("oll_v1") != suite.data_hash() == suite.data_hash("test")  # the train file is hashed


def test_gsm8k_oll_v1_without_a_train_file(tmp_path: Path, results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from harness.store import Store

    suite = load_suite("gsm8k")
    assert not (suite.path / "data" / "train.jsonl").exists(), "a user's train.jsonl is in the suite: move it away"
    monkeypatch.delenv("HARNESS_GSM8K_TRAIN", raising=False)
    assert suite.task_configs("test") and suite.data_hash("last_number")  # the other splits never look for it
    with pytest.raises(HarnessError) as err:
        suite.task_configs("oll_v1")
    assert err.value.exit_code == 2 and "grade-school-math" in err.value.line()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
           "HARNESS_GSM8K_TRAIN": str(tmp_path / "nowhere.jsonl")}
    out = subprocess.run([sys.executable, "-m", "harness.cli", "eval", "whatever", "--suite", "gsm8k:oll_v1"],
                         capture_output=True, text=True, env=env, timeout=300)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "data/train.jsonl is missing" in errors[0] and "nowhere.jsonl is not a file" in errors[0]
    assert "set HARNESS_GSM8K_TRAIN" in errors[0] and "grade_school_math/data/train.jsonl" in errors[0]
    db = results / "harness.duckdb"
    assert not db.exists() or Store(db).counts()["runs"] == 0  # nothing stored


def test_a_task_yaml_the_installed_lm_eval_no_longer_ships(tmp_path: Path, results: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import version

    from harness.store import Store

    folder = tmp_path / "suites" / "renamed"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "test.jsonl").write_text(json.dumps({"question": "1 + 1?", "answer": "#### 2"}) + "\n")
    (folder / "suite.yaml").write_text("name: renamed\nversion: '1'\nkind: lm-eval\ndefault_split: test\n"
                                       "splits: {test: [gsm8k_cot_v9]}\n")
    (folder / "task.yaml").write_text(
        "task: gsm8k_cot_v9\ninclude: lm_eval:tasks/gsm8k/gsm8k-cot-v9.yaml\ndataset_path: json\n"
        "dataset_kwargs: {data_files: {test: data/test.jsonl}}\n")
    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path / "suites"))
    with pytest.raises(HarnessError) as err:
        load_suite("renamed")
    assert err.value.exit_code == 2
    assert f"task 'gsm8k_cot_v9' includes tasks/gsm8k/gsm8k-cot-v9.yaml, which lm-eval {version('lm_eval')} " \
        "does not ship" in err.value.line()
    import os

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-m", "harness.cli", "eval", "whatever", "--suite", "renamed"],
                         capture_output=True, text=True, env=env, timeout=300)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "lm-eval" in errors[0] and "gsm8k_cot_v9" in errors[0]
    db = results / "harness.duckdb"
    assert not db.exists() or Store(db).counts()["runs"] == 0  # nothing stored


def _lm_eval_cli(model: Path, tasks: list[str], include: Path, limit: int, out: Path,
                 run_names: list[str] | None = None, batch: int = 1) -> dict[str, list[dict]]:
    """Per-sample rows of the real `lm_eval` CLI on the upstream task (or group) names, data from --include_path."""
    subprocess.run(
        [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args",
         f"pretrained={model},dtype=float32", "--tasks", ",".join(run_names or tasks), "--include_path", str(include),
         "--limit", str(limit), "--device", "cpu", "--batch_size", str(batch), "--log_samples",
         "--output_path", str(out)],
        check=True, capture_output=True, text=True, timeout=900)
    rows: dict[str, list[dict]] = {}
    for task in tasks:
        (path,) = out.rglob(f"samples_{task}_*.jsonl")
        rows[task] = [json.loads(line) for line in path.read_text().splitlines()]
    (res,) = out.rglob("results_*.json")
    rows["_results"] = [json.loads(res.read_text())["results"]]
    return rows


def _same_per_sample(store, res, tasks: list[str], theirs: dict[str, list[dict]]) -> None:
    """Every sample: the same filtered response and score; every task: the same scores as lm-eval's results."""
    for task in tasks:
        ours = store.samples(res.run_id, task)
        assert len(theirs[task]) and len(ours), task
        for s in theirs[task]:
            for metric in s["metrics"]:
                key = f"{metric},{s['filter']}" if s["filter"] != "none" else metric
                (row,) = ours[(ours["doc_id"] == s["doc_id"]) & (ours["metric"] == key)].itertuples()
                if s["filtered_resps"] and isinstance(s["filtered_resps"][0], str):  # generation tasks
                    assert row.prediction == s["filtered_resps"][0], (task, s["doc_id"], key)
                assert row.score == s[metric], (task, s["doc_id"], key)
        for key, value in theirs["_results"][0][task].items():
            if "," in key and "_stderr" not in key:
                assert res.score(task, key.replace(",none", "")).value == pytest.approx(value), key


def _suite_row(store, name: str, split: str):
    from harness.store import frames as views

    (row,) = views.suite_scores(store, rules=score_rules()).query(f"suite == '{name}' and split == '{split}'")\
        .itertuples()
    return row


@pytest.mark.slow
def test_harness_eval_equals_lm_eval_cli_per_sample(tiny_llama, results: Path, store, tmp_path: Path) -> None:
    """gsm8k (limit 10) and one bbh task (limit 2): the same responses, filtered answers and per-sample scores as
    `lm_eval run` on the upstream task names with our data, and the same task and suite scores."""
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions, evaluate_model

    model = tiny_llama("parity", max_positions=2048)  # bbh asks for up to 1024 new tokens
    opts = EvalOptions(backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=1))
    for name, tasks, limit in (("gsm8k", ["gsm8k_cot"], 10), ("bbh", ["bbh_cot_fewshot_navigate"], 2)):
        suite = load_suite(name)
        res = evaluate_model(str(model), suite, opts, store=store, limit=limit, tasks=tuple(tasks))
        theirs = _lm_eval_cli(model, tasks, upstream_folder(suite, tasks, tmp_path / name), limit,
                              tmp_path / f"{name}-out")
        _same_per_sample(store, res, tasks, theirs)
        row = _suite_row(store, name, suite.default_split)
        assert row.value == pytest.approx(theirs["_results"][0][tasks[0]][suite.aggregate.metric])


@pytest.mark.slow
def test_mmlu_and_mgsm_equal_lm_eval_cli_per_sample(tiny_llama, results: Path, store, tmp_path: Path) -> None:
    """mmlu (every subject, limit 3) against `lm_eval run --tasks mmlu` (lm-eval's own group over our data) and
    mgsm's lm-eval native-CoT split (11 languages, limit 3): the same per-sample scores and task scores; the mmlu
    suite score (value and stderr) is lm-eval's mmlu group result; mgsm's is the size-weighted strict-match."""
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions, evaluate_model

    model = tiny_llama("parity", max_positions=512)
    batch = 64  # one batch per task set: 33 generations of up to 256 tokens run as one (both sides alike)
    opts = EvalOptions(backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=batch))
    mmlu = load_suite("mmlu")
    tasks = list(mmlu.splits["test"])
    res = evaluate_model(str(model), mmlu, opts, store=store, limit=3)
    theirs = _lm_eval_cli(model, tasks, upstream_folder(mmlu, tasks, tmp_path / "mmlu"), 3, tmp_path / "mmlu-out",
                          run_names=["mmlu"], batch=batch)
    _same_per_sample(store, res, tasks, theirs)
    group, row = theirs["_results"][0]["mmlu"], _suite_row(store, "mmlu", "test")
    assert (row.n, row.tasks) == (171, 57)
    assert (row.value, row.se) == pytest.approx((group["acc,none"], group["acc_stderr,none"]), rel=1e-9)

    mgsm = load_suite("mgsm")
    tasks = list(mgsm.splits["lm_eval_native_cot"])
    res = evaluate_model(str(model), mgsm, opts, store=store, limit=3, split="lm_eval_native_cot")
    theirs = _lm_eval_cli(model, tasks, upstream_folder(mgsm, tasks, tmp_path / "mgsm"), 3, tmp_path / "mgsm-out",
                          batch=batch)
    _same_per_sample(store, res, tasks, theirs)
    strict = [theirs["_results"][0][t]["exact_match,strict-match"] for t in tasks]
    row = _suite_row(store, "mgsm", "lm_eval_native_cot")
    assert row.metric == "exact_match,strict-match" and row.n == 33
    assert row.value == pytest.approx(sum(strict) / len(strict))

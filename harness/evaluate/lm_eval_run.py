"""lm-eval on a run's plan, and its results into the store: what one evaluation run computes and records.

    out = lm_eval_results(target, plan, opts, bo, settings)   # the model built lazily, answers through the cache
    scores, folder = record_results(target, run, out, store)  # Score + Sample rows, results/runs/<run-id>/, store

harness.evaluate.runner calls the two in turn; `harness eval --workers N` (harness/workflows/fanout.py) calls the
first in its workers and the second in the process that writes the store.
"""

from __future__ import annotations

import gc
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.evaluate.backends import get_backend
from harness.evaluate.backends.base import BackendOptions, ModelTarget
from harness.evaluate.plan import HUB_SPLIT, Plan, task_configs
from harness.evaluate.run_errors import as_harness_error, check_finite_scores, check_hub, hub_error, one_line
from harness.evaluate.run_settings import (
    LM_EVAL_BOOTSTRAP_ITERS,
    answer_cache_path,
    answer_settings,
    engine_versions,
)
from harness.store.records import RunRecord, Sample, Score, TaskCuts

if TYPE_CHECKING:
    from harness.evaluate.runner import EvalOptions
    from harness.store import Store


def free_memory() -> None:
    """Give a GPU's memory back before the next model; on CPU, dropping the last reference is enough."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def _plan_parts(plan: Plan, opts: EvalOptions) -> dict[str, Any]:
    """What request plans are keyed by besides each task's config and limit: no model (see request_plan.py)."""
    return {"suite": plan.suite.name, "suite_version": str(plan.suite.version), "split": plan.split,
            "data_hash": plan.data_hash, "seed": opts.seed}


@dataclass(frozen=True)
class LmEvalOutput:
    """What lm-eval gave for a plan's tasks: its results (with the logged samples), its tracker's general config
    (model name and arguments, for the results file) and the request cache's hits and misses."""

    results: dict[str, Any]
    config: Any  # lm_eval.loggers.evaluation_tracker.GeneralConfigTracker
    hits: int = 0
    misses: int = 0
    planned: int = 0  # tasks whose rendered requests came from the request plan cache
    cuts: tuple[TaskCuts, ...] = ()  # per task: requests, and those cut to fit the context (evaluate/cuts.py)


def lm_eval_results(target: ModelTarget, plan: Plan, opts: EvalOptions, bo: BackendOptions,
                    settings: dict[str, Any]) -> LmEvalOutput:
    """Run lm-eval on the plan's tasks (the model built lazily, answers through the request cache); writes nothing
    to the store. `settings` are the run's (the answer-changing ones key the request cache)."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    from harness.evaluate.lm_eval_speed import faster_lm_eval
    from harness.evaluate.request_cache import RequestCache, cached_lm
    from harness.evaluate.request_plan import PlanStats, request_plans

    configs = task_configs(plan)
    if plan.split == HUB_SPLIT:
        check_hub(plan)
    backend = get_backend(opts.backend)

    def build() -> Any:
        from harness.evaluate.target import check_finite_weights

        try:
            check_finite_weights(target)
            if opts.backend in ("hf", "vllm", "ensemble"):
                import torch

                torch.manual_seed(opts.seed)  # lm-eval's torch seed, deferred to here (lm_eval_speed)
            return backend.build(target, bo)
        except Exception as exc:  # noqa: BLE001
            raise as_harness_error(exc, target, opts, "load") from None

    cache = None
    if opts.use_cache:
        cache = RequestCache(answer_cache_path(target.model_id, opts.backend, settings))
    progress = opts.progress(target) if opts.progress is not None else None
    lm = cached_lm(build, cache, str(target.path or target.name), progress, label=target.name)
    try:
        tracker = EvaluationTracker()
        plans = opts.use_cache and plan.split != HUB_SPLIT  # the hub's data can change under one version
        plan_cache = request_plans(_plan_parts(plan, opts)) if plans else nullcontext(PlanStats())
        with faster_lm_eval(), plan_cache as pstats:
            results = lm_eval.simple_evaluate(
                model=lm, tasks=configs, limit=None if plan.samples else plan.limit,
                samples={t: list(d) for t, d in plan.samples} if plan.samples else None,
                bootstrap_iters=LM_EVAL_BOOTSTRAP_ITERS,
                log_samples=True, evaluation_tracker=tracker, apply_chat_template=bo.chat,  # few-shot multi-turn
                task_manager=TaskManager(include_defaults=plan.split == HUB_SPLIT),
                random_seed=opts.seed, numpy_random_seed=opts.seed, torch_random_seed=opts.seed,
                fewshot_random_seed=opts.seed,
            )
    except Exception as exc:  # noqa: BLE001
        if plan.split == HUB_SPLIT and not isinstance(exc, HarnessError):
            raise hub_error(one_line(exc), plan) from None
        raise as_harness_error(exc, target, opts, "eval") from None
    finally:
        if cache is not None:
            cache.close()
        built, counts, seen = lm.built, (lm.hits, lm.misses), lm.seen
        lm = None
        if built:
            free_memory()
    from harness.evaluate.cuts import count_cuts, remembered_cuts

    answers = [target.model_id, opts.backend, answer_settings(settings), engine_versions(opts.backend)]
    cuts = tuple(remembered_cuts(seen, opts.backend, target, bo, answers) if opts.use_cache
                 else count_cuts(seen, opts.backend, target, bo))
    return LmEvalOutput(results, tracker.general_config_tracker, counts[0], counts[1], pstats.reused, cuts)


def record_results(target: ModelTarget, run: RunRecord, out: LmEvalOutput, store: Store) -> tuple[list[Score], Path]:
    """lm-eval's results -> Score and Sample rows, results/runs/<run-id>/, then the store (scores, samples and
    complete in one transaction); a non-finite score raises before anything is written."""
    from lm_eval.loggers import EvaluationTracker

    from harness.evaluate.lm_eval_rows import to_records
    from harness.evaluate.results_dir import write_run_dir

    scores, samples = to_records(out.results, seed=run.seed or 0)  # before the tracker sanitizes the samples
    check_finite_scores(target, scores)
    tracker = EvaluationTracker()
    tracker.general_config_tracker = out.config
    folder = write_run_dir(run, out.results, scores, tracker)
    questions, metric = scored_questions(run, samples)
    store.finish_run(run.run_id, scores, samples, questions, metric, list(out.cuts))
    return scores, folder


def scored_questions(run: RunRecord, samples: list[Sample]) -> tuple[dict[tuple[str, int], str], str | None]:
    """The question each scored item poses and the metric the run's suite is scored on
    (harness/run_questions.py): what the store needs for the suite score's question-clustered stderr."""
    from harness.run_questions import run_questions

    return run_questions(run.suite, run.split, {(s.task, s.doc_id): s.doc_hash for s in samples})

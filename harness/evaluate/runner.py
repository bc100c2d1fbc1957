"""One evaluation run: model + suite + backend -> lm-eval -> store + results/runs/<run-id>/.

    evaluate_model(model_ref, suite, split=..., backend=..., limit=...) -> RunResult

The run id is a hash of everything that decides the scores (harness/evaluate/run_settings.py), so a re-run finds its
previous work: a complete run is returned from the store, and a killed one resumes from the request cache. lm-eval
itself runs, and its results are recorded, in harness/evaluate/lm_eval_run.py. The store is written once
at the start (running) and once at the end (scores + samples + complete, in one transaction), or marked failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import harness
from harness.errors import HarnessError
from harness.evaluate.backends import get_backend
from harness.evaluate.backends.base import BackendOptions, ModelTarget
from harness.evaluate.lm_eval_run import lm_eval_results, record_results
from harness.evaluate.options import check_backend
from harness.evaluate.plan import Plan, make_plan
from harness.evaluate.run_errors import one_line
from harness.evaluate.run_settings import resolve_bos, run_id_for, score_settings
from harness.store.records import RunRecord, Score, TaskCuts

if TYPE_CHECKING:
    from harness.evaluate.progress import RequestProgress
    from harness.store import Store
    from harness.suites import Suite

R = TypeVar("R")  # what one model's evaluation returns: a RunResult, or a judge suite's JudgeResult


@dataclass(frozen=True)
class EvalOptions:
    """Everything about a run besides the model and suite."""

    split: str | None = None
    backend: str = "hf"
    limit: int | None = None
    tier: str | None = None
    tasks: tuple[str, ...] | None = None
    seed: int = 1234
    rerun: bool = False  # recompute even if a complete run exists (answers still come from the cache)
    use_cache: bool = True
    serve: bool = False  # backend openai: start `vllm serve` on the model for the length of the run
    hub: bool = False  # run lm-eval's built-in tasks for the suite (suite.yaml hub_tasks) from the Hugging Face hub
    backend_options: BackendOptions = field(default_factory=BackendOptions)
    progress: Callable[[ModelTarget], RequestProgress] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class RunResult:
    run_id: str
    model_id: str
    model_name: str
    suite: str
    split: str
    backend: str
    status: str  # complete | failed
    scores: list[Score]
    results_dir: Path | None
    reused: bool = False  # a complete run with this id already existed
    cached_requests: int = 0
    new_requests: int = 0
    seconds: float = 0.0
    error: str | None = None
    planned_tasks: int = 0  # tasks whose rendered requests came from the request plan cache
    cuts: tuple[TaskCuts, ...] = ()  # per task: requests, and those cut to fit the context (evaluate/cuts.py)

    def score(self, task: str, metric: str = "acc") -> Score | None:
        return next((s for s in self.scores if s.task == task and s.metric == metric), None)


def plan_for(suite: str | Suite, opts: EvalOptions) -> Plan:
    """The run plan of these options (suite, split, tasks, limit, data hash), checked before any model loads."""
    return make_plan(suite, opts.split, opts.limit, opts.tier, list(opts.tasks) if opts.tasks else None, opts.hub)


def quiet_engines() -> None:
    for name in ("lm-eval", "lm_eval", "vllm", "transformers", "datasets", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _evaluate(target: ModelTarget, plan: Plan, run: RunRecord, opts: EvalOptions,
              bo: BackendOptions, store: Store) -> RunResult:
    start = time.perf_counter()
    out = lm_eval_results(target, plan, opts, bo, run.settings)
    scores, folder = record_results(target, run, out, store)
    return RunResult(
        run.run_id, target.model_id, target.name, plan.suite.name, plan.split, opts.backend, "complete",
        scores, folder, cached_requests=out.hits, new_requests=out.misses,
        seconds=time.perf_counter() - start, planned_tasks=out.planned, cuts=out.cuts,
    )


def _evaluate_served(target: ModelTarget, plan: Plan, run: RunRecord, opts: EvalOptions,
                     bo: BackendOptions, store: Store) -> RunResult:
    from harness.evaluate.serve import serving

    if target.path is None:
        raise HarnessError(f"--serve needs a local model folder, got {target.name!r}", "pass a folder")
    with serving(target.path, name=target.name, dtype=bo.dtype, max_model_len=bo.max_length,
                 trust_remote_code=bo.trust_remote_code) as server:
        bo = replace(bo, base_url=server.base_url, served_model=server.model_name)
        return _evaluate(target, plan, run, opts, bo, store)


def _reuse(store: Store, attempts: list[RunRecord], target: ModelTarget, plan: Plan,
           backend: str) -> RunResult | None:
    """The newest complete attempt at this run, when its results folder is there too."""
    from harness.evaluate.results_dir import run_dir

    done = [a for a in attempts if a.status == "complete" and (run_dir(a.run_id) / "harness.json").is_file()]
    if not done:
        return None
    run_id = max(done, key=lambda a: (a.ended is not None, a.ended or a.started)).run_id
    with store.reading():
        scores, cuts = store.scores(run_id), tuple(store.cuts(run_id))
    return RunResult(run_id, target.model_id, target.name, plan.suite.name, plan.split, backend, "complete",
                     scores, run_dir(run_id), reused=True, cuts=cuts)


@dataclass(frozen=True)
class Prepared:
    """A run about to be evaluated: its model, its backend options (BOS resolved) and its record, not yet stored."""

    target: ModelTarget
    bo: BackendOptions
    run: RunRecord


def prepare_run(model_ref: str, plan: Plan, opts: EvalOptions, store: Store) -> Prepared | RunResult:
    """The run of this model on the plan: the stored complete run (reused) unless --rerun, else its record under
    the attempt id to write it as. Registers the model in the store."""
    from harness.evaluate.target import resolve_model

    target = resolve_model(model_ref, store, opts.backend_options.base_url)
    if target.path is not None:
        from harness.weights import require_safe_weights

        require_safe_weights(target.path, target.name, opts.backend_options.allow_pickle)  # as merge does
    bo = replace(opts.backend_options, seed=opts.seed, add_bos_token=resolve_bos(target, opts.backend_options))
    settings = score_settings(plan, opts, bo)
    run_id = run_id_for(target, plan, opts.backend, settings)
    attempts = store.attempts(run_id)
    if not opts.rerun and (done := _reuse(store, attempts, target, plan, opts.backend)) is not None:
        return done
    run = RunRecord(
        run_id=store.attempt_id(run_id),  # a re-run of a complete run is a new attempt; nothing is hidden
        model_id=target.model_id, suite=plan.suite.name, backend=opts.backend,
        harness_version=harness.__version__, suite_version=str(plan.suite.version), split=plan.split,
        data_hash=plan.data_hash, backend_version=get_backend(opts.backend).version(),
        settings={**settings, "batch_size": bo.batch_size, "device": bo.device, "base_url": bo.base_url,
                  **bo.engine_settings(opts.backend)},
        seed=opts.seed,
    )
    return Prepared(target, bo, run)


def evaluate_model(
    model_ref: str, suite: str | Suite, options: EvalOptions | None = None, store: Store | None = None,
    plan: Plan | None = None, **overrides: Any,
) -> RunResult:
    """Evaluate one model on one suite split; raises HarnessError (one line) after marking the run failed.

    `overrides` set EvalOptions fields by name, e.g. evaluate_model(path, "zoo_math", split="public", limit=20).
    `plan` is the plan_for(suite, options) a caller evaluating several models built once.
    """
    from harness.run_questions import fill_question_stderr
    from harness.store import Store

    opts = replace(options or EvalOptions(), **overrides)
    store = store or Store()
    if not store.path.exists():
        store.init()  # an existing store is checked (and migrated if older) by its first read
    quiet_engines()
    check_backend(opts)  # an unknown backend, openai without an endpoint: fail before anything else
    plan = plan or plan_for(suite, opts)
    fill_question_stderr(store)  # runs written before v5: once per store (harness/run_questions.py)
    prepared = prepare_run(model_ref, plan, opts, store)
    if isinstance(prepared, RunResult):
        return prepared
    target, bo, run, run_id = prepared.target, prepared.bo, prepared.run, prepared.run.run_id
    store.start_run(run)
    try:
        if not opts.serve:
            return _evaluate(target, plan, run, opts, bo, store)
        return _evaluate_served(target, plan, run, opts, bo, store)
    except BaseException as exc:
        store.fail_run(run_id, one_line(exc))
        raise


def each_model(
    model_refs: Sequence[str], evaluate_one: Callable[[str], R],
    on_done: Callable[[str, R | HarnessError], None] | None = None,
) -> list[R | HarnessError]:
    """`evaluate_one` on each model in turn: a model that fails is reported (its HarnessError in the list and to
    `on_done`) and the rest go on. The one per-model loop of every evaluation of several models, lm-eval or judged."""
    out: list[R | HarnessError] = []
    for ref in model_refs:
        try:
            res: R | HarnessError = evaluate_one(ref)
        except HarnessError as exc:
            res = exc
        out.append(res)
        if on_done:
            on_done(ref, res)
    return out


def evaluate_models(
    model_refs: Sequence[str], suite: str | Suite, options: EvalOptions | None = None,
    store: Store | None = None, on_done: Callable[[str, RunResult | HarnessError], None] | None = None,
    **overrides: Any,
) -> list[RunResult | HarnessError]:
    """Evaluate several models; a model that fails is reported (HarnessError in the list) and the rest go on.

    Problems shared by every model (unknown backend, suite, split, tier or task) raise once, before any run.
    """
    opts = replace(options or EvalOptions(), **overrides)
    check_backend(opts)
    plan = plan_for(suite, opts)  # once, for every model: unknown suites, splits, tiers and tasks fail here
    return each_model(model_refs, lambda ref: evaluate_model(ref, plan.suite, opts, store, plan=plan), on_done)


def result_dict(res: RunResult) -> dict[str, Any]:
    d = asdict(res)
    d["results_dir"] = str(res.results_dir) if res.results_dir else None
    return d

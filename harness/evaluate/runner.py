"""One evaluation run: model + suite + backend -> lm-eval -> store + results/runs/<run-id>/.

    evaluate_model(model_ref, suite, split=..., backend=..., limit=...) -> RunResult

The run id is a hash of everything that decides the scores, so a re-run finds its previous work: a complete
run is returned from the store, and a killed one resumes from the request cache. The store is written once
at the start (running) and once at the end (scores + samples + complete, in one transaction), or marked failed.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import harness
from harness.errors import HarnessError
from harness.evaluate.backends import get_backend
from harness.evaluate.backends.base import BackendOptions, ModelTarget, package_version
from harness.evaluate.plan import HUB_SPLIT, Plan, make_plan, task_configs
from harness.evaluate.run_errors import as_harness_error, check_finite_scores, check_hub, hub_error, one_line
from harness.hashing import hash_json
from harness.store.records import RunRecord, Sample, Score, TaskCuts

if TYPE_CHECKING:
    from harness.evaluate.progress import RequestProgress
    from harness.store import Store
    from harness.suites import Suite

LM_EVAL_BOOTSTRAP_ITERS = 1000


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


def resolve_bos(target: ModelTarget, options: BackendOptions) -> bool | None:
    """Whether this model's tokenizer adds BOS by default: decided once, passed to every backend alike.

    Remembered per model id and tokenizer under results/cache/, so a re-run does not load the tokenizer."""
    if options.add_bos_token is not None:
        return options.add_bos_token
    folder = options.tokenizer or (str(target.path) if target.path else None)
    if folder is None:
        return None
    from harness.identity import memo

    key = hash_json(["bos", target.model_id, folder])
    known = memo("bos").get(key)
    if known is not None:
        return bool(known)
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=options.trust_remote_code)
    except Exception:  # noqa: BLE001 - a broken folder fails (and is recorded) when the backend loads it
        return None
    ids = tok("a b").input_ids
    adds = bool(tok.bos_token_id is not None and ids and ids[0] == tok.bos_token_id)
    memo("bos", key, adds)
    return adds


def score_settings(plan: Plan, opts: EvalOptions, bo: BackendOptions) -> dict[str, Any]:
    """The settings that can change scores: part of the run id (batch size and device are not)."""
    return {
        "tasks": list(plan.tasks), "limit": plan.limit, "seed": opts.seed, "dtype": bo.dtype,
        "add_bos_token": bo.add_bos_token, "max_length": bo.max_length, "chat": bo.chat,
        "num_fewshot": None, "lm_eval_bootstrap_iters": LM_EVAL_BOOTSTRAP_ITERS,
        **({"lm_eval_tasks": package_version("lm_eval")} if plan.split == HUB_SPLIT else {}),  # tasks live there
        **({"task_definitions": plan.suite.definition_hash(plan.tasks)} if plan.split != HUB_SPLIT else {}),
        **({"samples": {t: list(d) for t, d in plan.samples}} if plan.samples else {}),  # a paired tier sample
        **({"tokenizer": tokenizer_id(bo.tokenizer)} if bo.tokenizer else {}),  # openai: it makes the token ids
    }


def tokenizer_id(tokenizer: str) -> str:
    """A --tokenizer folder by its content (as a model folder is), anything else by its name."""
    from harness.identity import model_id

    return model_id(Path(tokenizer)) if Path(tokenizer).is_dir() else tokenizer


def answer_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The run settings that change a model's answer to a request: they key its request cache."""
    return {k: settings[k] for k in ("dtype", "add_bos_token", "max_length", "chat", "tokenizer") if k in settings}


def answer_cache_path(model_id: str, backend: str, settings: dict[str, Any]) -> Path:
    """The request cache of a model's answers: keyed by its answer settings and by the engines that answer (lm-eval,
    which tokenizes and scores; the backend's transformers and torch, or vLLM): an answer cached by another version
    of them is never read (a `--rerun` after an upgrade computes every answer again)."""
    from harness.evaluate.request_cache import cache_path

    return cache_path(model_id, backend, {**answer_settings(settings), "engines": engine_versions(backend)})


def engine_versions(backend: str) -> str:
    """The versions of what turns a model into scores: lm-eval (tokenizes and scores) and the backend's engine
    (transformers and torch, or vLLM). Every cache of answers or scores is keyed by them."""
    return f"lm_eval {package_version('lm_eval')}; {get_backend(backend).version()}"


def run_id_for(target: ModelTarget, plan: Plan, backend: str, settings: dict[str, Any]) -> str:
    key = {"model": target.model_id, "suite": plan.suite.name, "suite_version": str(plan.suite.version),
           "split": plan.split, "data_hash": plan.data_hash, "backend": backend, "settings": settings}
    return "r" + hash_json(key)[:19]


def quiet_engines() -> None:
    for name in ("lm-eval", "lm_eval", "vllm", "transformers", "datasets", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _free_memory() -> None:
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
            _free_memory()
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
    """The question each scored item poses (harness/seed_questions.py, as the gate names them) and the metric the
    run's suite is scored on: what the store needs for the suite score's question-clustered stderr. No questions
    for a judge suite (its stored overall row is its score) or a suite.yaml that no longer reads."""
    from harness.seed_questions import question_keys
    from harness.suites import score_rules

    rule = score_rules().get(run.suite)
    if rule is None or rule.summary_task is not None:
        return {}, None
    hashes = {(s.task, s.doc_id): s.doc_hash for s in samples}
    return question_keys(run.suite, run.split, hashes), rule.metric_for(run.split)


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

    if opts.backend != "openai":
        raise HarnessError("--serve works with --backend openai only", "add --backend openai or drop --serve")
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
    from harness.store import Store

    opts = replace(options or EvalOptions(), **overrides)
    store = store or Store()
    if not store.path.exists():
        store.init()  # an existing store is checked (and migrated if older) by its first read
    quiet_engines()
    get_backend(opts.backend)  # unknown backend: fail before anything else
    plan = plan or plan_for(suite, opts)
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


def evaluate_models(
    model_refs: Sequence[str], suite: str | Suite, options: EvalOptions | None = None,
    store: Store | None = None, on_done: Callable[[str, RunResult | HarnessError], None] | None = None,
    **overrides: Any,
) -> list[RunResult | HarnessError]:
    """Evaluate several models; a model that fails is reported (HarnessError in the list) and the rest go on.

    Problems shared by every model (unknown backend, suite, split, tier or task) raise once, before any run.
    """
    opts = replace(options or EvalOptions(), **overrides)
    get_backend(opts.backend)
    plan = plan_for(suite, opts)  # once, for every model: unknown suites, splits, tiers and tasks fail here
    out: list[RunResult | HarnessError] = []
    for ref in model_refs:
        try:
            res: RunResult | HarnessError = evaluate_model(ref, plan.suite, opts, store, plan=plan)
        except HarnessError as exc:
            res = exc
        out.append(res)
        if on_done:
            on_done(ref, res)
    return out


def result_dict(res: RunResult) -> dict[str, Any]:
    d = asdict(res)
    d["results_dir"] = str(res.results_dir) if res.results_dir else None
    return d

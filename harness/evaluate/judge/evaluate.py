"""`harness eval MODEL --suite mt_bench --judge JUDGE [--baseline MODEL]`: models and backends resolved the
same way as every other evaluation, then the judge runner. Several models share one judge and one baseline:
`judge_engine` and `baseline_engine` build each once and release it after the last model."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.evaluate.judge.rules import ANSWER_MAX_NEW_TOKENS, JUDGE_MAX_NEW_TOKENS, JudgeRules

if TYPE_CHECKING:
    from harness.evaluate.backends.base import BackendOptions, ModelTarget
    from harness.evaluate.judge.chat import ChatGenerator
    from harness.evaluate.judge.pipeline import JudgeResult
    from harness.store import Store
    from harness.suites import Suite

    Baseline = tuple[str, ChatGenerator]  # a pairwise run's baseline: its model id and its generator


@dataclass(frozen=True)
class JudgeOptions:
    judge: str  # a model folder / name / id, or the model name an endpoint serves (with judge_base_url)
    judge_backend: str = "hf"
    judge_base_url: str | None = None  # openai judge: the endpoint; its key comes from $OPENAI_API_KEY
    baseline: str | None = None  # pairwise comparison against this model's answers
    backend: str = "hf"  # the answering model's backend (and the baseline's)
    backend_options: BackendOptions | None = None
    limit: int | None = None
    tier: str | None = None
    max_new_tokens: int = ANSWER_MAX_NEW_TOKENS   # FastChat's answer budget
    judge_max_new_tokens: int = JUDGE_MAX_NEW_TOKENS  # FastChat's judge budget (2048)
    rules: JudgeRules = field(default_factory=JudgeRules)  # FastChat's behaviour; named deviations off
    extra: dict[str, Any] = field(default_factory=dict)
    started: Callable[[ModelTarget], None] | None = field(default=None, compare=False)  # the model resolved


log = logging.getLogger(__name__)


def _generator(ref: str, backend: str, bo: BackendOptions, store: Store, max_new_tokens: int,
               temperature: float, role: str,
               started: Callable[[ModelTarget], None] | None = None) -> tuple[str, Any]:
    from harness.evaluate.backends import get_backend
    from harness.evaluate.judge.chat import ChatGenerator
    from harness.evaluate.target import resolve_model

    be = get_backend(backend)
    try:
        target = resolve_model(ref, store, bo.base_url)
    except HarnessError as exc:  # say which of the run's models it is, unless it is the one the line names
        if role == "model":
            raise
        raise HarnessError(f"{role}: {exc.problem}", exc.fix, exc.exit_code) from None
    if started is not None:
        started(target)
    if backend == "openai":  # `harness serve FOLDER` serves the model under its folder's name
        bo = replace(bo, chat=True, served_model=bo.served_model or (target.path.name if target.path else target.name))
    log.info("loading %s %s with %s", role, target.name, backend)  # one line per backend build: a model load
    try:
        lm = be.build(target, bo)
    except HarnessError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise HarnessError(f"{role} {target.name} won't load with {backend}: {str(exc).splitlines()[0][:200]}",
                           "check the model folder or the endpoint") from None
    identity = {"model": target.model_id, "name": target.name, "backend": backend, "version": be.version()}
    return target.model_id, ChatGenerator(lm, identity, max_new_tokens, temperature)


def load_judge(opts: JudgeOptions, store: Store) -> ChatGenerator:
    """The judge, built by its backend (a local judge is a whole model load)."""
    from harness.evaluate.backends.base import BackendOptions

    store.init()
    bo = opts.backend_options or BackendOptions()
    judge_bo = BackendOptions(base_url=opts.judge_base_url, device=bo.device, dtype=bo.dtype,
                              batch_size=bo.batch_size)
    return _generator(opts.judge, opts.judge_backend, judge_bo, store, opts.judge_max_new_tokens, 0.0, "judge")[1]


def load_baseline(opts: JudgeOptions, store: Store) -> Baseline | None:
    """The baseline of a pairwise run (its model id and generator), built by the answering models' backend; None
    without `--baseline`."""
    from harness.evaluate.backends.base import BackendOptions

    if not opts.baseline:
        return None
    store.init()
    return _generator(opts.baseline, opts.backend, opts.backend_options or BackendOptions(), store,
                      opts.max_new_tokens, 0.0, "baseline")


@contextmanager
def _released(gen: ChatGenerator | None) -> Iterator[None]:
    """After the last model: the generator's engine dropped, its memory (a GPU's too) given back."""
    from harness.evaluate.lm_eval_run import free_memory

    try:
        yield
    finally:
        if gen is not None:
            gen.lm = None  # the last reference to the engine
            free_memory()


@contextmanager
def judge_engine(opts: JudgeOptions, store: Store) -> Iterator[ChatGenerator]:
    """The judge loaded once for every model of one evaluation (pass it to `evaluate_judge`), released after the
    last. A judge that won't load raises here, once, before any model answers."""
    judge = load_judge(opts, store)
    with _released(judge):
        yield judge


@contextmanager
def baseline_engine(opts: JudgeOptions, store: Store) -> Iterator[Baseline | None]:
    """The baseline loaded once for every model of one pairwise evaluation (pass it to `evaluate_judge`): its
    answers are made with the first model and read from the answer cache for the others. Released after the last;
    a baseline that won't load raises here, once, before any model answers. None without `--baseline`."""
    baseline = load_baseline(opts, store)
    with _released(baseline[1] if baseline else None):
        yield baseline


def evaluate_judge(model_ref: str, suite_name: str | Suite, opts: JudgeOptions, store: Store | None = None,
                   judge: ChatGenerator | None = None, baseline: Baseline | None = None) -> JudgeResult:
    """Answer with the model, judge with the judge (`judge_engine`'s, else one loaded for this model alone) against
    the baseline's answers on a pairwise run (`baseline_engine`'s, else one loaded for this model alone), store the
    run; returns the judge result."""
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.judge.pipeline import run_judge_suite
    from harness.store import Store
    from harness.suites import load_suite

    store = store or Store()
    store.init()
    suite = load_suite(suite_name) if isinstance(suite_name, str) else suite_name
    if suite.kind != "judge":
        raise HarnessError(f"--judge needs a judge suite; {suite_name} is an lm-eval suite",
                           "use --suite mt_bench or vicuna_bench, or drop --judge")
    limit = opts.limit if opts.limit is not None else (suite.tier_limit(opts.tier) if opts.tier else None)
    bo = opts.backend_options or BackendOptions()
    model_id, answerer = _generator(model_ref, opts.backend, bo, store, opts.max_new_tokens, 0.0, "model",
                                    opts.started)
    baseline = baseline or load_baseline(opts, store)
    judge = judge or load_judge(opts, store)
    from harness.evaluate.backends import get_backend

    return run_judge_suite(
        store, suite.name, str(suite.version), suite.path / "data", model_id, answerer, judge, baseline=baseline,
        limit=limit, backend=opts.backend, backend_version=get_backend(opts.backend).version(),
        data_hash_value=suite.data_hash(), split=suite.default_split, rules=opts.rules,
    )

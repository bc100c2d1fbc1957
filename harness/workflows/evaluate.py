"""`harness eval`: models (folders, names, ids or merge recipes) on one suite. The suite is loaded once and its kind
picks the runner: lm-eval suites go through harness.evaluate.runner with one plan for every model; judge suites
(mt_bench, vicuna_bench) through the judge and a pairwise run's baseline, each loaded once for every model. A merge
recipe given as a model is merged first (cached), then evaluated like any folder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.evaluate.judge.evaluate import JudgeOptions
    from harness.evaluate.runner import EvalOptions
    from harness.store import Store
    from harness.suites import Suite


@dataclass(frozen=True)
class Evaluation:
    suite: Suite
    results: list[Any]  # RunResult | JudgeResult | HarnessError, one per model


def suite_kind_check(suite: Suite, judged: bool) -> None:
    """Judge flags belong to judge suites and judge suites need a judge."""
    if suite.kind == "judge" and not judged:
        raise HarnessError(f"suite {suite.name!r} is scored by a judge model",
                           "add --judge MODEL (a folder, a registered name, or a served model with --judge-base-url)")
    if suite.kind != "judge" and judged:
        raise HarnessError(f"--judge needs a judge suite; {suite.name} is an lm-eval suite",
                           "use --suite mt_bench or vicuna_bench, or drop --judge")


def materialise(ref: str, store: Store, merge_seed: int = 0) -> str:
    """A merge recipe YAML given as a model is merged with `merge_seed` (or found in the merge cache: the seed is
    part of the merge id, as `harness merge --seed`); anything else passes through."""
    path = Path(ref).expanduser()
    if not (path.is_file() and path.suffix in (".yaml", ".yml")):
        return ref
    from harness.merge import merge_to_folder

    return merge_to_folder(path, seed=merge_seed, store=store).model_id


def evaluate(
    models: Sequence[str], suite_name: str, opts: EvalOptions, judge: JudgeOptions | None = None,
    store: Store | None = None, on_done: Callable[[str, Any], None] | None = None, merge_seed: int = 0,
) -> Evaluation:
    """Evaluate each model; a model that fails is reported (HarnessError in the list) and the rest go on.
    Problems shared by every model (unknown suite, split, tier, task or backend; a judge or baseline that won't
    load) raise once, before any run."""
    from harness.evaluate.runner import each_model
    from harness.store import Store
    from harness.suites import load_suite

    suite = load_suite(suite_name.partition(":")[0])
    suite_kind_check(suite, judge is not None)
    store = store or Store()
    if judge is None:
        return Evaluation(suite, each_model(models, _evaluator(suite_name, suite, opts, store, merge_seed), on_done))
    from harness.evaluate.judge.evaluate import baseline_engine, evaluate_judge, judge_engine

    # one judge load and one baseline load for every model, each released after the last
    with judge_engine(judge, store) as engine, baseline_engine(judge, store) as base:
        return Evaluation(suite, each_model(
            models, lambda ref: evaluate_judge(materialise(ref, store, merge_seed), suite, judge, store, engine, base),
            on_done))


def _evaluator(suite_name: str, suite: Suite, opts: EvalOptions, store: Store,
               merge_seed: int) -> Callable[[str], Any]:
    """One model's evaluation by lm-eval on one plan built here for every model (checked before any model loads)."""
    from harness.evaluate.options import check_backend
    from harness.evaluate.runner import evaluate_model, plan_for

    check_backend(opts)
    plan = plan_for(suite_name if ":" in suite_name else suite, opts)
    return lambda ref: evaluate_model(materialise(ref, store, merge_seed), plan.suite, opts, store, plan=plan)

"""Typed rows of the store. The query API takes and returns these, never raw tuples."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ModelRecord:
    model_id: str
    name: str | None
    path: str | None
    kind: str  # source | zoo | merge | candidate
    source: str | None = None
    architecture: str | None = None
    n_params: int | None = None
    recipe_id: str | None = None
    materialized: bool = True
    meta: dict[str, Any] = field(default_factory=dict)
    created: datetime | None = None


@dataclass(frozen=True)
class LineageEdge:
    child_id: str
    parent_id: str
    role: str  # base | source | finetuned_from
    weight: float | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    model_id: str
    suite: str
    backend: str
    harness_version: str
    status: str = "running"  # running | complete | failed
    suite_version: str | None = None
    split: str | None = None
    data_hash: str | None = None
    backend_version: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    error: str | None = None
    started: datetime | None = None
    ended: datetime | None = None


AGGREGATE_TASK = "_aggregate"  # the run-level row each lm-eval run stores beside its tasks; never a task


@dataclass(frozen=True)
class ScoreRule:
    """How a suite's stored task rows make its one score (harness/store/frames.py SUITE_SCORES_SQL); built from
    suite.yaml by harness.suites.score_rules."""

    metric: str | None = None         # the metric every task contributes; None: each task's primary metric
    weight_by_size: bool = True       # lm-eval's weight_by_size: tasks weighted by their document counts
    summary_task: str | None = None   # judge suites: their stored 'overall' row is the score
    split_metrics: tuple[tuple[str, str], ...] = ()  # (split, metric) where a split's tasks report another one
    default_split: str | None = None  # the split a run stored without one ran (suite.yaml default_split)

    def metric_for(self, split: str | None) -> str | None:
        """The metric a run of this split is scored on; a run without a split ran the suite's default split."""
        return dict(self.split_metrics).get(split or self.default_split or "", self.metric)


@dataclass(frozen=True)
class Score:
    task: str
    metric: str
    value: float | None
    stderr: float | None = None
    n: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass(frozen=True)
class TaskCuts:
    """A task's requests in one run and those cut from their start to fit the context (harness/evaluate/cuts.py)."""

    task: str
    context: int  # the context length, in tokens, the backend cut requests to
    requests: int  # requests the task made (every kind)
    loglikelihood: int = 0  # loglikelihood requests cut
    generate: int = 0  # generation contexts cut

    @property
    def cut(self) -> int:
        return self.loglikelihood + self.generate


def cut_sentence(cut: int, requests: int, contexts: Iterable[int]) -> str:
    """"12 of 684 requests cut to the 256-token context: ...": what `harness eval` and the Runs page say."""
    sizes = "/".join(str(c) for c in sorted(set(contexts)))
    return (f"{cut} of {requests} requests cut to the {sizes}-token context: scores not comparable with a longer "
            "context")


@dataclass(frozen=True)
class Sample:
    task: str
    doc_id: int
    metric: str
    score: float | None
    prediction: str | None = None
    target: str | None = None
    prompt: str | None = None
    doc_hash: str | None = None
    prompt_hash: str | None = None
    target_hash: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Selection:
    selection_id: str
    model_id: str
    suite: str
    process: str  # evolve | check | user | train
    split: str | None = None
    process_id: str | None = None
    note: str | None = None
    created: datetime | None = None

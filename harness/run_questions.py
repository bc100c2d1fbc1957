"""The question each scored item of a run poses, and the metric its suite is scored on: what the store needs for the
suite score's question-clustered stderr (harness/store/suite_se.py), for a run being recorded and for the runs
written before the store computed it (schema v5), from their stored samples, so that an old run's interval follows
the rule a new run of the same samples gets.

    questions, metric = run_questions(suite, split, {(task, doc): doc_hash, ...})
    fill_question_stderr(store)   # once per store: `harness db info` and every evaluation call it

Until a writer has filled a store, its readers compute the same figures in memory at each read (the read-only views
pass `run_questions` to harness/store/frames.py `suite_scores`), so a store shows one interval whichever ran first.
Here, not in harness/evaluate/, because those readers (the analysis, the dashboard) never import the evaluator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.store import Store


def run_questions(suite: str, split: str | None, hashes: Mapping[tuple[str, int], str | None],
                  ) -> tuple[dict[tuple[str, int], str], str | None]:
    """{(task, doc): the question it poses} (harness/seed_questions.py, as the gate names them) for the scored items
    (`hashes`: their doc_hash) of a run of suite:split, and the metric the suite is scored on. No questions for a
    judge suite (its stored overall row is its score) or a suite.yaml that no longer reads."""
    from harness.seed_questions import question_keys
    from harness.suites import score_rules

    rule = score_rules().get(suite)
    if rule is None or rule.summary_task is not None:
        return {}, None
    return question_keys(suite, split, hashes), rule.metric_for(split)


def fill_question_stderr(store: Store) -> int:
    """Give the complete runs written before v5 (NULL question columns) the clustered stderr a new run of their
    samples gets, once per store (then marked filled: later calls read one meta row), a chunk of runs a write
    transaction (a killed fill resumes where it stopped), with a bar on stderr where that is a terminal; returns
    the runs computed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(TextColumn("question stderr of runs written before v5"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, disable=not console.is_terminal, transient=True) as bar:
        task = bar.add_task("fill", total=None)
        return store.fill_question_stderr(run_questions,
                                          progress=lambda done, total: bar.update(task, completed=done, total=total))

"""The question each scored item of a run poses, and the metric its suite is scored on: what the store needs for the
suite score's question-clustered stderr (harness/store/suite_se.py), for a run being recorded and for the runs
written before the store computed it (schema v5), from their stored samples, so that an old run's interval follows
the rule a new run of the same samples gets.

    questions, metric = run_questions(run, {(task, doc): doc_hash, ...})
    fill_question_stderr(store)   # once per store: `harness db info` and every evaluation call it
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.store import Store
    from harness.store.records import RunRecord


def run_questions(run: RunRecord, hashes: Mapping[tuple[str, int], str | None],
                  ) -> tuple[dict[tuple[str, int], str], str | None]:
    """{(task, doc): the question it poses} (harness/seed_questions.py, as the gate names them) for the run's scored
    items (`hashes`: their doc_hash) and the metric the run's suite is scored on. No questions for a judge suite
    (its stored overall row is its score) or a suite.yaml that no longer reads."""
    from harness.seed_questions import question_keys
    from harness.suites import score_rules

    rule = score_rules().get(run.suite)
    if rule is None or rule.summary_task is not None:
        return {}, None
    return question_keys(run.suite, run.split, hashes), rule.metric_for(run.split)


def fill_question_stderr(store: Store) -> int:
    """Give the complete runs written before v5 (NULL question columns) the clustered stderr a new run of their
    samples gets, once per store (then marked filled: later calls read one meta row); returns the runs computed."""
    pending = store.question_se_unfilled()
    if pending is None:
        return 0
    fills = [(run.run_id, *run_questions(run, hashes)) for run, hashes in pending]
    store.fill_question_stderr(fills)
    return len(fills)

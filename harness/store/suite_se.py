"""The question-clustered standard error of a run's suite score, computed once when the run is written.

lm-eval's stderr of a group (the suite score's `se`, harness/store/frames.py SUITE_SCORES_SQL) counts every item
as an independent draw. A suite that asks one question several times does not: MGSM asks each of its 250 problems
in 11 languages (11 tasks), GSM-Plus each GSM8K seed under 7 perturbations, a zoo suite scores one document by
multiple choice and by generation. Their items are correlated through the question, and the pooled stderr is too
narrow (a simulation of 60 problems x 11 languages: about half the true stderr; docs/overfitting.md "The
suite score").

`Store.finish_run` takes the question each item poses (harness/seed_questions.py `question_keys`, which the
runner knows and the store may not import) and the metric the suite is scored on, and stores in `runs`, beside
the scores, the cluster-robust stderr of both suite-score definitions (harness.stats.question_clustered_stderr):
`question_se_size` for the size-weighted mean (weight_by_size: true) and `question_se_mean` for the plain mean of
the task means, with `question_metric`, the metric column SUITE_SCORES_SQL shows for the run, so that a suite.yaml
whose aggregate changed later is read with the pooled stderr again. All three are NULL where no question has more
than one item (the suite score keeps lm-eval's stderr, bit for bit), where the per-document scores do not make
the stored task scores (a metric that is not a per-document mean, samples not logged), and in runs written before
(migration v5 adds the columns and computes nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.store.records import AGGREGATE_TASK, Score

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

DDL = [f"ALTER TABLE runs ADD COLUMN {c}" for c in
       ("question_metric VARCHAR", "question_se_size DOUBLE", "question_se_mean DOUBLE")]
TOLERANCE = 1e-9  # how far a task's stored value may be from the mean of its documents' scores


@dataclass(frozen=True)
class QuestionStderr:
    metric: str        # as SUITE_SCORES_SQL's `metric` column names the run's metrics: sorted, '+'-joined
    by_size: float     # stderr of the size-weighted mean of the tasks
    by_mean: float     # stderr of the plain mean of the task means


def chosen_metrics(scores: list[Score], want: str | None) -> dict[str, Score]:
    """Each task's row the suite score reads (as SUITE_SCORES_SQL picks it): its `want` metric, else its first of
    PRIMARY_METRICS, else its alphabetically first metric; rows without a value and the `_aggregate` row are out."""
    from harness.store.frames import PRIMARY_METRICS

    def rank(s: Score) -> tuple[int, str]:
        m = s.metric
        return (PRIMARY_METRICS.index(m) if m in PRIMARY_METRICS else len(PRIMARY_METRICS), m)

    out: dict[str, Score] = {}
    for s in scores:
        if s.value is None or s.task == AGGREGATE_TASK or (want is not None and s.metric != want):
            continue
        if s.task not in out or rank(s) < rank(out[s.task]):
            out[s.task] = s
    return out


def question_stderr(scores: list[Score], samples: pd.DataFrame, questions: Mapping[tuple[str, int], str],
                    want: str | None) -> QuestionStderr | None:
    """The clustered stderr of the run's suite score (both definitions), or None where no question has more than
    one item or a task's per-document scores do not make its stored value (count and mean). An item `questions`
    does not name is a question of its own."""
    from harness.stats import question_clustered_stderr

    rows = chosen_metrics(scores, want)
    if not rows or not len(samples):
        return None
    scored = samples[samples["score"].notna()]
    docs = scored.groupby(["task", "metric", "doc_id"], sort=True)["score"].mean()
    tasks: list[tuple[list[float], list[object], float]] = []
    for task, row in sorted(rows.items()):
        try:
            per_doc = docs.loc[(task, row.metric)]
        except KeyError:
            return None
        if len(per_doc) != row.n or abs(float(per_doc.mean()) - float(row.value)) > TOLERANCE:
            return None
        keys = [questions.get((task, int(d)), ("#item", task, int(d))) for d in per_doc.index]
        tasks.append((per_doc.tolist(), keys, float(len(per_doc))))
    named = [k for _, keys, _ in tasks for k in keys]
    if len(set(named)) == len(named):
        return None
    total = sum(c for _, _, c in tasks)
    by_size = question_clustered_stderr([(x, k, c / total) for x, k, c in tasks])
    by_mean = question_clustered_stderr([(x, k, 1 / len(tasks)) for x, k, _ in tasks])
    if by_size != by_size or by_mean != by_mean:
        return None
    return QuestionStderr("+".join(sorted({r.metric for r in rows.values()})), by_size, by_mean)


def write_question_stderr(con: duckdb.DuckDBPyConnection, run_id: str, found: QuestionStderr | None) -> None:
    """Store the run's clustered stderr (NULLs where there is none), inside the caller's write transaction."""
    values = [found.metric, found.by_size, found.by_mean] if found else [None, None, None]
    con.execute("UPDATE runs SET question_metric = ?, question_se_size = ?, question_se_mean = ? WHERE run_id = ?",
                [*values, run_id])

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
whose aggregate changed later is read with the pooled stderr again. It reads the scores and samples that
finish_run's write transaction has just written: each task's row as the suite score picks it (frames.py
`task_rows_sql`, the one definition both use) and its documents' scores on that row's metric (the mean of each
document's scored sample rows, in SQL). All three are NULL where no question has more
than one item (the suite score keeps lm-eval's stderr, bit for bit), where the per-document scores do not make
the stored task scores (a metric that is not a per-document mean, samples not logged).

Runs written before v5 (migration v5 adds the columns and computes nothing: the store cannot name questions) get
theirs from their stored samples, as a new run of the same samples would (the questions named by
harness/run_questions.py `run_questions`): `Store.fill_question_stderr`, which `harness db info` and each evaluation
call, stores them for every complete run whose columns are NULL, a chunk of runs a write transaction in run id order
(meta CURSOR_KEY: where the last committed chunk ended, so a killed fill resumes there), then marks the store filled
(meta FILLED_KEY); until then the suite scores' readers compute the same figures in memory at each read
(`unfilled_stderr`, frames.py `suite_scores`), so a read-only view shows them without writing, where the migration
found the store older than v5 (meta BEFORE_V5_KEY: `holds_runs_before_v5`, one meta row, keeps every other store's
reads free). All three compute through store/question_se_bulk.py, many runs at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.store.frames import task_rows_sql

if TYPE_CHECKING:
    import duckdb

DDL = [f"ALTER TABLE runs ADD COLUMN {c}" for c in
       ("question_metric VARCHAR", "question_se_size DOUBLE", "question_se_mean DOUBLE")]
# (suite, split, {(task, doc): doc_hash}) -> ({(task, doc): question}, the suite's metric): harness/run_questions.py
QuestionNamer = Callable[[str, str | None, Mapping[tuple[str, int], str | None]],
                         tuple[Mapping[tuple[str, int], str], str | None]]
TOLERANCE = 1e-9  # how far a task's stored value may be from the mean of its documents' scores

# Parameters: the suite's metric (NULL: each task's primary), the run id twice. Per task the suite score reads (by
# name): its chosen row's metric, value and n, and its documents' scores on that metric (each the mean of the
# document's scored sample rows; favg: compensated, as pandas' group mean was) and doc_hashes, in doc_id order.
_RUN_SCORES = """(SELECT run_id, task, metric, value, n, stderr, ?::VARCHAR AS want, NULL::VARCHAR AS summary
                FROM scores WHERE run_id = ?)"""
_TASK_DOCS_SQL = f"""
WITH chosen AS ({task_rows_sql(_RUN_SCORES)}
), docs AS (  -- only the chosen metric's rows (bbh and gsm8k log two filters per document)
    SELECT s.task, s.metric, s.doc_id, favg(s.score) AS score, min(s.doc_hash) AS doc_hash FROM samples s
    SEMI JOIN chosen c ON c.task = s.task AND c.x.metric = s.metric
    WHERE s.run_id = ? AND s.score IS NOT NULL GROUP BY s.task, s.metric, s.doc_id
)
SELECT c.task, c.x.metric, c.x.value, c.x.n, list(d.score ORDER BY d.doc_id) FILTER (WHERE d.doc_id IS NOT NULL),
       list(d.doc_id ORDER BY d.doc_id) FILTER (WHERE d.doc_id IS NOT NULL),
       list(d.doc_hash ORDER BY d.doc_id) FILTER (WHERE d.doc_id IS NOT NULL)
FROM chosen c LEFT JOIN docs d ON d.task = c.task AND d.metric = c.x.metric
GROUP BY ALL ORDER BY c.task"""


@dataclass(frozen=True)
class TaskDocuments:
    """One task of a run as its suite score reads it: the chosen row (metric, value, n) and its documents' scores on
    that metric, with their doc ids and doc_hashes (None where a sample has none), in doc_id order."""

    task: str
    metric: str
    value: float
    n: int
    scores: list[float]
    doc_ids: list[int]
    hashes: list[str | None]

    def makes_value(self) -> bool:
        """Whether the documents' scores make the task's stored value (count and mean): a metric that is not a
        per-document mean, or samples not logged, do not."""
        import numpy as np

        # `not <=`: a stored NaN is not made by any documents' scores
        return bool(self.scores) and len(self.scores) == self.n \
            and abs(float(np.mean(self.scores)) - self.value) <= TOLERANCE


def task_documents(con: duckdb.DuckDBPyConnection, run_id: str, want: str | None) -> list[TaskDocuments]:
    """Each task of the run on the suite score's row (`want`: the suite's metric, None: each task's primary), with
    its documents' scores on that metric, by task name."""
    rows = con.execute(_TASK_DOCS_SQL, [want, run_id, run_id]).fetchall()
    return [TaskDocuments(t, m, v, n, s or [], d or [], h or []) for t, m, v, n, s, d, h in rows]


@dataclass(frozen=True)
class QuestionStderr:
    metric: str        # as SUITE_SCORES_SQL's `metric` column names the run's metrics: sorted, '+'-joined
    by_size: float     # stderr of the size-weighted mean of the tasks
    by_mean: float     # stderr of the plain mean of the task means


def write_question_stderr(con: duckdb.DuckDBPyConnection, run_id: str, questions: Mapping[tuple[str, int], str],
                          want: str | None) -> None:
    """Compute and store the run's clustered stderr (NULLs where there is none) from its scores and samples as
    just written, inside the caller's write transaction (store/question_se_bulk.py, as the pre-v5 fill computes
    many runs'); no `questions`: NULLs."""
    from harness.store.question_se_bulk import question_stderrs

    store_question_stderrs(con, question_stderrs(con, [([run_id], questions, want)]))


def store_question_stderrs(con: duckdb.DuckDBPyConnection, found: Mapping[str, QuestionStderr | None]) -> None:
    """Store each run's clustered stderr (NULLs for None), in one statement."""
    import pandas as pd

    rows = [(r, *((f.metric, f.by_size, f.by_mean) if f else (None, None, None))) for r, f in found.items()]
    if not rows:
        return
    frame = pd.DataFrame(rows, columns=["run_id", "metric", "by_size", "by_mean"]).astype(
        {"metric": object, "by_size": float, "by_mean": float})
    con.register("found_question_se", frame)
    try:
        con.execute("UPDATE runs SET question_metric = f.metric, question_se_size = f.by_size, "
                    "question_se_mean = f.by_mean FROM found_question_se f WHERE runs.run_id = f.run_id")
    finally:
        con.unregister("found_question_se")


FILLED_KEY = "question_se:filled"  # meta: the runs written before v5 have had their clustered stderr computed
CURSOR_KEY = "question_se:filled_through"  # meta: the fill's last committed chunk ends at this run id
# the runs the fill computes, after the cursor (parameter): complete, never given a clustered stderr
PENDING_SQL = "FROM runs WHERE status = 'complete' AND question_metric IS NULL AND run_id > ?"
BEFORE_V5_KEY = "question_se:before_v5"  # meta: the migration found a store older than v5 (its runs have none)


def is_filled(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("SELECT value FROM meta WHERE key = ?", [FILLED_KEY]).fetchall())


def holds_runs_before_v5(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store holds runs written before v5 that no writer has filled yet: a store this harness migrated
    from v1-v4 (meta BEFORE_V5_KEY, written by database.migrate), not marked filled. One meta read: what keeps the
    readers of every other store (new ones, filled ones, and those an older harness migrated past v5, which the
    next writer fills) free of unfilled_stderr."""
    keys = {k for (k,) in con.execute("SELECT key FROM meta WHERE key IN (?, ?)", [FILLED_KEY, BEFORE_V5_KEY])
            .fetchall()}
    return keys == {BEFORE_V5_KEY}


def filled_through(con: duckdb.DuckDBPyConnection) -> str:
    """The last run id of the fill's last committed chunk ('' before the first): the runs up to it are computed."""
    row = con.execute("SELECT value FROM meta WHERE key = ?", [CURSOR_KEY]).fetchone()
    return row[0] if row else ""


def unfilled_stderr(con: duckdb.DuckDBPyConnection, name: QuestionNamer) -> dict[str, QuestionStderr | None]:
    """Until the store is marked filled, each complete run whose clustered stderr may never have been computed (NULL
    columns after the fill's last chunk: written before v5, or computed and found none) with the one a new run of
    its stored samples gets (None: none), its questions named by `name` (harness/run_questions.py run_questions);
    {} once filled (one meta row). All at once (store/question_se_bulk.py: 60,000 runs in about a minute, 70 ms a
    run before): readers call it only where holds_runs_before_v5."""
    from harness.store.question_se_bulk import named_groups, question_stderrs

    if is_filled(con):
        return {}
    ids = [r for (r,) in con.execute(f"SELECT run_id {PENDING_SQL} ORDER BY run_id", [filled_through(con)])
           .fetchall()]
    return question_stderrs(con, named_groups(con, ids, name)) if ids else {}


def unfilled_lists(found: Mapping[str, QuestionStderr | None]) -> list[list]:
    """frames.py SUITE_SCORES_SQL's `computed` parameters: run ids, metrics, both stderrs of the runs that have one."""
    have = sorted((r, f) for r, f in found.items() if f is not None)
    return [[r for r, _ in have], [f.metric for _, f in have], [f.by_size for _, f in have],
            [f.by_mean for _, f in have]]


def mark_filled(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, 'yes')", [FILLED_KEY])
    con.execute("DELETE FROM meta WHERE key = ?", [CURSOR_KEY])


def mark_filled_through(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [CURSOR_KEY, run_id])


def mark_before_v5(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, 'yes')", [BEFORE_V5_KEY])

"""The per-document index of the samples: each metric's score of each (run, task, document), written with them.

    run_tasks   one row per (run, task, metric) the run scored: a small integer key `rt`, the metric (NULL, in the
                task's one row, when no sample of the task has a score), the lowest and highest doc_id of any sample
                row of the task (a twin map must know every document a run scored),
                and over its documents' scores on the metric: their number, sum and sample variance
    doc_scores  one row per (rt, doc_id) with a score: the mean of that metric's scored sample rows of the document

A reader reads each (run, task) on the metric its suite score reads (`chosen_sql`, under the suites' rules, as
frames.task_rows_sql picks a task's score row): gsm8k's tasks log `exact_match,strict-match` and
`exact_match,flexible-extract` per document and the suite is scored on strict-match, so an index of one metric picked
without the rule (the alphabetically first, flexible-extract) paired other numbers than the scores shown.
The twin pairing (harness/store/twin_pairs.py) reads these two narrow tables instead of the per-sample rows: at
10,000 models and 5 million samples that is most of the Overfitting page's cold cost (docs/dashboard.md).
`Store.finish_run` writes a run's rows in the transaction that writes its samples (`index_run`), so a reader sees
both or neither; migration v4 back-filled a store written before (`index_all`), and v8 rebuilt it with every metric,
once. Nothing else writes them; samples changed by other means (SQL by hand) need `rebuild`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.store.frames import METRIC_ORDER, RULE_JOINS_SQL, WANT_SQL

if TYPE_CHECKING:
    import duckdb

DDL = [
    """CREATE TABLE run_tasks (
        rt BIGINT NOT NULL,                    -- the (run, task, metric) key doc_scores uses
        run_id VARCHAR NOT NULL,
        task VARCHAR NOT NULL,
        metric VARCHAR,                        -- NULL: no sample of the task has a score (the task's one row)
        low_doc BIGINT NOT NULL,               -- min(doc_id) over every sample row of the task
        top_doc BIGINT NOT NULL,               -- max(doc_id) over every sample row of the task
        docs BIGINT NOT NULL,                  -- documents with a score on the metric (rows in doc_scores)
        total DOUBLE,                          -- their sum
        var DOUBLE                             -- their sample variance (NULL under two documents)
    )""",
    "CREATE INDEX run_tasks_run ON run_tasks (run_id)",
    """CREATE TABLE doc_scores (
        rt BIGINT NOT NULL,
        doc_id BIGINT NOT NULL,
        score DOUBLE NOT NULL                  -- mean of the metric's scored sample rows of the document
    )""",
]


# {where} is one of two constant filters (the samples of one run, or of the runs not yet indexed), never data.
_TASKS_SQL = """
INSERT INTO run_tasks (rt, run_id, task, metric, low_doc, top_doc, docs)
SELECT ? + row_number() OVER (ORDER BY run_id, task, metric), run_id, task, metric, low_doc, top_doc, 0
FROM (SELECT run_id, task, low_doc, top_doc, unnest(CASE WHEN len(metrics) > 0 THEN metrics ELSE [NULL] END) AS metric
      FROM (SELECT run_id, task, min(doc_id) AS low_doc, max(doc_id) AS top_doc,
                   list(DISTINCT metric) FILTER (WHERE score IS NOT NULL) AS metrics
            FROM samples s WHERE {where} GROUP BY run_id, task))"""
_DOCS_SQL = """
INSERT INTO doc_scores
SELECT t.rt, s.doc_id, avg(s.score)
FROM samples s JOIN run_tasks t ON t.run_id = s.run_id AND t.task = s.task AND t.metric = s.metric
WHERE s.score IS NOT NULL AND t.rt > ? AND {where}
GROUP BY t.rt, s.doc_id"""
_TOTALS_SQL = """
UPDATE run_tasks SET docs = d.n, total = d.total, var = d.var
FROM (SELECT rt, count(*) AS n, sum(score) AS total, var_samp(score) AS var FROM doc_scores WHERE rt > ?
      GROUP BY rt) d
WHERE run_tasks.rt = d.rt"""
_ONE_RUN = "s.run_id = ?"
_NEW_RUNS = "s.run_id NOT IN (SELECT run_id FROM run_tasks WHERE rt <= ?)"


def chosen_sql(runs: str) -> str:
    """The index rows (rt, run_id, task, metric, low_doc, top_doc, docs, total, var) each (run, task) of the runs in
    `runs` (a relation with a run_id column) is read on: the metric its suite score reads (frames.task_rows_sql),
    the `want` of the run's rule (its split's own where the rule names one, as SUITE_SCORES_SQL picks it) where
    there is one, else the task's first by METRIC_ORDER; a task without a score on the wanted metric has no row.
    Parameters: three parallel lists, the rules' suite, split ('': the suite's own) and metric (frames.rule_lists),
    then what `runs` takes."""
    return f"""
    WITH rules AS (
        SELECT unnest(?::VARCHAR[]) AS suite, unnest(?::VARCHAR[]) AS split, unnest(?::VARCHAR[]) AS want
    ), wanted AS (
        SELECT x.run_id, {WANT_SQL} AS want
        FROM (SELECT DISTINCT run_id FROM {runs}) x LEFT JOIN runs r USING (run_id) {RULE_JOINS_SQL}
    )
    SELECT t.rt, t.run_id, t.task, t.metric, t.low_doc, t.top_doc, t.docs, t.total, t.var
    FROM run_tasks t JOIN wanted w USING (run_id)
    WHERE t.metric IS NOT NULL AND (w.want IS NULL OR t.metric = w.want)
    QUALIFY row_number() OVER (PARTITION BY t.run_id, t.task ORDER BY {METRIC_ORDER}) = 1"""


def _index(con: duckdb.DuckDBPyConnection, where: str, arg: object) -> None:
    """Index the samples of the runs `where` selects (none of which is indexed): run_tasks, doc_scores, totals."""
    (last,) = con.execute("SELECT coalesce(max(rt), 0) FROM run_tasks").fetchone()
    arg = last if arg is None else arg
    con.execute(_TASKS_SQL.format(where=where), [last, arg])
    con.execute(_DOCS_SQL.format(where=where), [last, arg])
    con.execute(_TOTALS_SQL, [last])


def index_run(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """(Re)write the index rows of one run from its samples, inside the caller's write transaction."""
    old = [r[0] for r in con.execute("SELECT rt FROM run_tasks WHERE run_id = ?", [run_id]).fetchall()]
    if old:  # a run written again (a resumed attempt): its rows go first; a first write scans nothing
        con.execute("DELETE FROM doc_scores WHERE list_contains(?, rt)", [old])
        con.execute("DELETE FROM run_tasks WHERE run_id = ?", [run_id])
    _index(con, _ONE_RUN, run_id)


def index_all(con: duckdb.DuckDBPyConnection) -> None:
    """Index every run whose samples are not indexed yet (the migration's back-fill; a bulk generator's too)."""
    _index(con, _NEW_RUNS, None)


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """Drop every index row and index all samples again: after samples were changed by hand (a test, a repair)."""
    con.execute("DELETE FROM doc_scores")
    con.execute("DELETE FROM run_tasks")
    index_all(con)

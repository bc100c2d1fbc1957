"""The per-document index of the samples: the primary metric of each (run, task, document), written with them.

    run_tasks   one row per (run, task) the run scored: a small integer key `rt`, the primary metric (as the suite
                score picks it: the first of PRIMARY_METRICS the task scored, else its alphabetically first metric;
                NULL when no sample has a score), the lowest and highest doc_id of any sample row (a twin map must
                know every document a run scored),
                and over its documents' primary scores: their number, sum and sample variance
    doc_scores  one row per (rt, doc_id) with a primary-metric score: the mean of that metric's scored sample rows

The twin pairing (harness/store/twin_pairs.py) reads these two narrow tables instead of the per-sample rows: at
10,000 models and 5 million samples that is most of the Overfitting page's cold cost (docs/dashboard.md).
`Store.finish_run` writes a run's rows in the transaction that writes its samples (`index_run`), so a reader sees
both or neither; migration v4 back-fills a store written before (`index_all`), once. Nothing else writes them; samples
changed by other means (SQL by hand) need `rebuild`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

DDL = [
    """CREATE TABLE run_tasks (
        rt BIGINT NOT NULL,                    -- the (run, task) key doc_scores uses
        run_id VARCHAR NOT NULL,
        task VARCHAR NOT NULL,
        metric VARCHAR,                        -- primary metric; NULL when no sample of the task has a score
        low_doc BIGINT NOT NULL,               -- min(doc_id) over every sample row of the task
        top_doc BIGINT NOT NULL,               -- max(doc_id) over every sample row of the task
        docs BIGINT NOT NULL,                  -- documents with a primary score (rows in doc_scores)
        total DOUBLE,                          -- their sum
        var DOUBLE                             -- their sample variance (NULL under two documents)
    )""",
    "CREATE INDEX run_tasks_run ON run_tasks (run_id)",
    """CREATE TABLE doc_scores (
        rt BIGINT NOT NULL,
        doc_id BIGINT NOT NULL,
        score DOUBLE NOT NULL                  -- mean of the primary metric's scored sample rows of the document
    )""",
]


# {where} is one of two constant filters (the samples of one run, or of the runs not yet indexed), never data.
_TASKS_SQL = """
INSERT INTO run_tasks (rt, run_id, task, metric, low_doc, top_doc, docs)
SELECT ? + row_number() OVER (ORDER BY run_id, task), *
FROM (SELECT run_id, task, arg_min(metric, {order}) FILTER (WHERE score IS NOT NULL) AS metric,
             min(doc_id) AS low_doc, max(doc_id) AS top_doc, 0 AS docs
      FROM samples s WHERE {where} GROUP BY run_id, task)"""
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


def _index(con: duckdb.DuckDBPyConnection, where: str, arg: object) -> None:
    """Index the samples of the runs `where` selects (none of which is indexed): run_tasks, doc_scores, totals."""
    from harness.store.frames import METRIC_ORDER  # the suite score's order of a task's metrics

    (last,) = con.execute("SELECT coalesce(max(rt), 0) FROM run_tasks").fetchone()
    arg = last if arg is None else arg
    con.execute(_TASKS_SQL.format(order=METRIC_ORDER, where=where), [last, arg])
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

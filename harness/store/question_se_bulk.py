"""The question-clustered stderr of many runs at once (harness/store/suite_se.py says what it is and why): two SQL
statements read every run's chosen task rows and its documents' scores, and numpy computes
harness.stats.question_clustered_stderr's formula for all runs together,

    var = G / (G - 1) * sum_g (sum_{i in g} c_t(i) / n_t(i) * (x_i - mean_t(i)))^2

size-weighted (c_t = n_t / N) and plain (c_t = 1 / k). `Store.finish_run` computes one run's with it, the pre-v5
fill (`fill_chunk`) a chunk of runs per write transaction, and the read-only views every unfilled run's in memory:
the sums run in each run's own order (task, doc_id), so a run's figures are the same bit for bit however many
runs are computed beside it. Per run it was one query and one Python pass (about 70 ms: 70 minutes for the 60,000
runs of a 10,000-model store, docs/store.md).

Runs whose items pose the same questions are named once: the runs of a suite:split that scored the same documents
(their (task, doc_id, doc_hash) lists are equal) form a group, and the namer (harness/run_questions.py) is called
per group, not per run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from harness.store.frames import task_rows_sql

if TYPE_CHECKING:
    import duckdb

    from harness.store.suite_se import QuestionNamer, QuestionStderr

# fill_runs (run_id, grp, want) and fill_questions (grp, task, doc_id, qid) are data frames registered for a call.
_CHOSEN = f"""chosen AS (
    SELECT row_number() OVER (ORDER BY run_id, task) - 1 AS tid, *
    FROM ({task_rows_sql('''(SELECT s.run_id, s.task, s.metric, s.value, s.n, s.stderr, f.want,
                                    NULL::VARCHAR AS summary FROM scores s JOIN fill_runs f USING (run_id))''')}))"""
_TASKS_SQL = f"WITH {_CHOSEN} SELECT run_id, x.metric, x.value, x.n FROM chosen ORDER BY tid"
_ITEMS_SQL = f"""WITH {_CHOSEN}, docs AS (  -- only the chosen metric's rows (bbh and gsm8k log two filters a document)
    SELECT c.tid, f.grp, s.task, s.doc_id, favg(s.score) AS score FROM samples s
    JOIN chosen c ON c.run_id = s.run_id AND c.task = s.task AND c.x.metric = s.metric
    JOIN fill_runs f ON f.run_id = s.run_id
    WHERE s.score IS NOT NULL GROUP BY ALL
)
SELECT d.tid, d.score, coalesce(q.qid, -1) AS qid FROM docs d
LEFT JOIN fill_questions q ON q.grp = d.grp AND q.task = d.task AND q.doc_id = d.doc_id
ORDER BY d.tid, d.doc_id"""
# The runs of a chunk grouped by what names their questions: suite, split and the items they scored.
_GROUPS_SQL = """
WITH chunk AS (SELECT unnest(?::VARCHAR[]) AS run_id), items AS (
    SELECT run_id, list({'t': task, 'd': doc_id, 'h': doc_hash} ORDER BY task, doc_id) AS items
    FROM (SELECT run_id, task, doc_id, min(doc_hash) AS doc_hash FROM samples SEMI JOIN chunk USING (run_id)
          GROUP BY ALL)
    GROUP BY run_id
)
SELECT r.suite, r.split, i.items, list(r.run_id ORDER BY r.run_id) FROM chunk c JOIN runs r USING (run_id)
LEFT JOIN items i USING (run_id) GROUP BY ALL"""

# (run ids, {(task, doc): question}, the suite's metric): runs whose items the same names name
Group = tuple[Sequence[str], Mapping[tuple[str, int], str], str | None]


def named_groups(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str], name: QuestionNamer) -> list[Group]:
    """The runs grouped by suite, split and scored items, each group's questions named once by `name`."""
    out: list[Group] = []
    for suite, split, items, runs in con.execute(_GROUPS_SQL, [list(run_ids)]).fetchall():
        questions, want = name(suite, split, {(i["t"], int(i["d"])): i["h"] for i in items or []})
        out.append((runs, questions, want))
    return out


def question_stderrs(con: duckdb.DuckDBPyConnection, groups: Sequence[Group]) -> dict[str, QuestionStderr | None]:
    """Each run's clustered stderr of its suite score (both definitions) from its scores and samples as stored, or
    None where it has no questions, no question has more than one item, or a task's per-document scores do not make
    its stored value (count and mean). An item its group's questions do not name is a question of its own."""
    import pandas as pd

    out: dict[str, QuestionStderr | None] = {r: None for runs, _, _ in groups for r in runs}
    named = [(runs, qs, want) for runs, qs, want in groups if qs]
    if not named:
        return out
    runs = pd.DataFrame([(r, g, want) for g, (rs, _, want) in enumerate(named) for r in rs],
                        columns=["run_id", "grp", "want"]).astype({"want": object})
    questions = pd.DataFrame(_question_rows(named), columns=["grp", "task", "doc_id", "qid"])
    con.register("fill_runs", runs)
    con.register("fill_questions", questions.astype({"grp": "int64", "doc_id": "int64", "qid": "int64"}))
    try:
        tasks = con.execute(_TASKS_SQL).df()
        items = con.execute(_ITEMS_SQL).fetchnumpy()
    finally:
        con.unregister("fill_runs")
        con.unregister("fill_questions")
    out.update(_compute(tasks, items))
    return out


def _question_rows(named: Sequence[Group]) -> list[tuple[int, str, int, int]]:
    """(group, task, doc, question number) of every named item: a group's questions numbered from 0."""
    rows = []
    for g, (_, qs, _) in enumerate(named):
        ids: dict[str, int] = {}
        rows += [(g, t, d, ids.setdefault(q, len(ids))) for (t, d), q in qs.items()]
    return rows


def _compute(tasks, items: Mapping) -> dict[str, QuestionStderr]:
    """The formula over every run's tasks (one row per chosen task, by run) and items (tid, score, qid; -1: not
    named), vectorised; the runs that have a clustered stderr."""
    import numpy as np

    from harness.store.suite_se import TOLERANCE, QuestionStderr

    if tasks.empty:
        return {}
    run_codes, run_ids = tasks["run_id"].factorize()
    t_run, n_runs = np.asarray(run_codes), len(run_ids)
    tid, x, qid = (np.asarray(items[c]) for c in ("tid", "score", "qid"))
    size = np.bincount(tid, minlength=len(tasks)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(tid, weights=x, minlength=len(tasks)) / size
        made = (size > 0) & (size == tasks["n"].to_numpy(dtype=float, na_value=np.nan)) \
            & (np.abs(mean - tasks["value"].to_numpy(dtype=float, na_value=np.nan)) <= TOLERANCE)
    ok = np.bincount(t_run, weights=~made, minlength=n_runs) == 0
    total, k = np.bincount(t_run, weights=size, minlength=n_runs), np.bincount(t_run, minlength=n_runs)
    run = t_run[tid]
    key = run.astype(np.int64) << 32 | np.where(qid >= 0, qid, (1 << 31) + np.arange(len(x)))
    uniq, cluster = np.unique(key, return_inverse=True)
    c_run = uniq >> 32
    g = np.bincount(c_run, minlength=n_runs).astype(float)
    found = ok & (np.bincount(run, minlength=n_runs) > g) & (g >= 2)
    ses = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for coef in (size[tid] / total[run] / size[tid], 1 / k[run] / size[tid]):  # c_t / n_t, as stats.py
            r = np.bincount(cluster, weights=(x - mean[tid]) * coef, minlength=len(uniq))
            ses.append(np.sqrt(g / (g - 1) * np.bincount(c_run, weights=r * r, minlength=n_runs)))
    found &= np.isfinite(ses[0]) & np.isfinite(ses[1])
    metrics: dict[int, set[str]] = {}
    for i, m in zip(t_run.tolist(), tasks["metric"].tolist(), strict=True):
        metrics.setdefault(i, set()).add(m)
    return {run_ids[i]: QuestionStderr("+".join(sorted(metrics[i])), float(ses[0][i]), float(ses[1][i]))
            for i in np.flatnonzero(found).tolist()}


def fill_chunk(con: duckdb.DuckDBPyConnection, name: QuestionNamer, after: str, chunk: int,
               store: Callable[[duckdb.DuckDBPyConnection, Mapping[str, QuestionStderr | None]], None],
               ) -> list[str]:
    """Compute and store (`store`) the clustered stderr of the next `chunk` pending runs after run id `after`, in
    run id order, inside the caller's write transaction; returns their ids ([]: none left)."""
    from harness.store.suite_se import PENDING_SQL

    ids = [r for (r,) in con.execute(f"SELECT run_id {PENDING_SQL} ORDER BY run_id LIMIT ?", [after, chunk])
           .fetchall()]
    if ids:
        store(con, question_stderrs(con, named_groups(con, ids, name)))
    return ids

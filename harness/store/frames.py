"""Read-only bulk queries over the store for the analysis and the dashboard: whole tables as DataFrames.

Every function takes a `Store` and reads through `store.db.read()` (one short read transaction under the shared
lock, never a write); the table readers also take an open read connection, so several run in one snapshot.
They return pandas DataFrames built by one SQL statement each, so they stay fast on stores
with thousands of models and millions of per-sample rows; the dashboard caches them (dashboard/queries.py).

A *suite score* is one number per (model, suite, split), defined here and only here (SUITE_SCORES_SQL): the task rows
(never the `_aggregate` row a run also stores) of the one run CHOSEN_RUNS_SQL picks (the complete run that scored the
most documents, then the latest) on the suite's aggregate metric (suite.yaml `aggregate.metric`, as lm-eval's group
config names it, or the split's own in `aggregate.split_metrics`; else each task's first of PRIMARY_METRICS, else its
alphabetically first metric), combined as lm-eval combines a group's subtasks: the size-weighted mean with lm-eval's
pooled stderr (`weight_by_size: true`, the default) or the plain mean of the task scores with the stderr of that mean
(`weight_by_size: false`), except where a question has several items in the run (MGSM's 11 languages, GSM-Plus's 7
rewrites of a seed, a zoo document scored by multiple choice and by generation): there `se` is the run's
question-clustered stderr, stored when the run was written (harness/store/suite_se.py; for runs written before v5,
computed from their samples at the read until a writer stores it, where the caller names questions). Its 95%
interval stays inside the metric's range (harness.stats.bounded_intervals): Wilson's for 0/1 metrics, the normal
one clipped to the range otherwise. A judge suite's score is its stored `overall` row (rating or
win rate, the interval clustered by question). The CLI leaderboard, the dashboard and `harness overfit` read suite
scores through `suite_scores` (with harness.suites.score_rules()); `harness check` gates per task on the suite's
aggregate metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from harness.store.records import AGGREGATE_TASK, ScoreRule

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from harness.store import Store
    from harness.store.records import ScoreRule
    from harness.store.suite_se import QuestionNamer

PRIMARY_METRICS = ("acc", "exact_match", "acc_norm", "score", "pass@1", "f1", "rating", "win_rate")
JUDGE_METRICS = ("rating", "win_rate")  # a judge suite's score is one of these, never its parse rate
RAW_SCALE_METRICS = ("rating",)  # not a proportion: shown as is, never averaged with accuracies
BINARY_METRICS = ("acc", "acc_norm", "exact_match", "pass@1")  # 0 or 1 per sample
METRIC_RANGES = {**{m: (0.0, 1.0) for m in (*BINARY_METRICS, "f1", "win_rate", "parse_rate")},
                 "rating": (1.0, 10.0)}  # FastChat's single-answer scale; other metrics: no known range

# A task's metrics in the order the suite score picks its row (an arg_min key): PRIMARY_METRICS in order, then the
# rest alphabetically. doc_index.chosen_sql reads the per-document index by it too (where the rule names no metric).
METRIC_ORDER = "{'rank': CASE metric " + " ".join(f"WHEN '{m}' THEN {i}" for i, m in enumerate(PRIMARY_METRICS)) \
    + f" ELSE {len(PRIMARY_METRICS)} END, 'metric': metric}}"


def task_rows_sql(rows: str) -> str:
    """The suite score's choice of each (run, task)'s row, as SQL (columns run_id, task, x: a struct of metric,
    value, n, stderr) over `rows`, a relation of score rows with their run's rule (run_id, task, metric, value, n,
    stderr, want, summary): a row with a value, on the `want` metric where the rule names one, else the task's
    first by METRIC_ORDER; never the `_aggregate` row, and with a summary task only its judge metric. One
    definition for SUITE_SCORES_SQL and the question-clustered stderr written with the run (suite_se.py)."""
    return f"""
    SELECT run_id, task, arg_min({{'metric': metric, 'value': value, 'n': n, 'stderr': stderr}}, {METRIC_ORDER}) AS x
    FROM {rows}
    WHERE value IS NOT NULL AND (want IS NULL OR metric = want)
      AND CASE WHEN summary IS NULL THEN task <> '{AGGREGATE_TASK}'
               ELSE task = summary AND metric IN {JUDGE_METRICS} END
    GROUP BY run_id, task"""


# Parameters: five parallel lists, the suites' rules (suite, split, metric, weight_by_size, summary task): split ''
# is the suite's rule, a named split overrides its metric, split NULL is the rule of runs stored without a split (its
# default split's own metric); a suite without a rule is read under the default one (primary metrics, size-weighted).
UNIT_METRICS = "(" + ", ".join(f"'{m}'" for m, r in METRIC_RANGES.items() if r == (0.0, 1.0)) + ")"  # proportions

# The one rule that picks "the run" of a (model, suite, split): the run a suite score is read from (SUITE_SCORES_SQL)
# and whose task rows `Store.leaderboard` shows beside it. Columns run_id and split. Parameters: two parallel lists,
# suites and their default splits (a run without a split is a run of its suite's default split, 'default' for a suite
# not listed). Of the group's complete runs, the one that scored the most documents: per task the largest n of its
# rows (lm-eval's sample count, the same for each metric of a task; a row without n counts 1), summed over the run's
# tasks, never the `_aggregate` row; so a later --limit, --tier or --tasks run never hides a whole one. Of runs with
# as many documents, the latest: one with an end time first, then the latest end, then the highest run_id.
CHOSEN_RUNS_SQL = f"""
    WITH defaults AS (SELECT unnest(?::VARCHAR[]) AS suite, unnest(?::VARCHAR[]) AS split
    ), done AS (
        SELECT r.run_id, r.model_id, r.suite, coalesce(r.split, d.split, 'default') AS split, r.ended
        FROM runs r LEFT JOIN defaults d ON r.split IS NULL AND d.suite = r.suite WHERE r.status = 'complete'
    ), docs AS (
        SELECT run_id, sum(n) AS docs
        FROM (SELECT run_id, max(coalesce(n, 1)) AS n FROM scores
              WHERE task <> '{AGGREGATE_TASK}' GROUP BY run_id, task)
        GROUP BY run_id
    )
    SELECT arg_max(run_id, {{'docs': coalesce(docs, 0), 'done': ended IS NOT NULL,
                            'at': coalesce(ended, TIMESTAMP 'epoch'), 'id': run_id}}) AS run_id, split
    FROM done LEFT JOIN docs USING (run_id) GROUP BY model_id, suite, split"""


def default_split_args(default_splits: dict[str, str] | None) -> list[list[str]]:
    """CHOSEN_RUNS_SQL's parameters: the suites and their default splits, as two lists."""
    pairs = sorted((default_splits or {}).items())
    return [[s for s, _ in pairs], [d for _, d in pairs]]


# The metric a run's suite score reads (`want`; NULL: each task's first by METRIC_ORDER): its split's own where the
# rules (a relation `rules` with suite, split, want) name one (a run without a split: the NULL split's row, its
# default split's, rule_lists), else its suite's. Over `runs r`; one definition for SUITE_SCORES_SQL and the
# per-document index's readers (doc_index.chosen_sql).
RULE_JOINS_SQL = """LEFT JOIN rules u ON u.suite = r.suite AND u.split = ''
        LEFT JOIN rules us ON us.suite = r.suite AND us.split IS DISTINCT FROM ''
                          AND us.split IS NOT DISTINCT FROM r.split"""
WANT_SQL = "CASE WHEN us.suite IS NULL THEN u.want ELSE us.want END"

SUITE_SCORES_SQL = f"""
WITH rules AS (
    SELECT unnest(?::VARCHAR[]) AS suite, unnest(?::VARCHAR[]) AS split, unnest(?::VARCHAR[]) AS want,
           unnest(?::BOOLEAN[]) AS by_size, unnest(?::VARCHAR[]) AS summary
), computed AS (  -- a run written before v5 of a store not yet filled: its clustered stderr, computed for this read
    SELECT unnest(?::VARCHAR[]) AS run_id, unnest(?::VARCHAR[]) AS metric, unnest(?::DOUBLE[]) AS se_size,
           unnest(?::DOUBLE[]) AS se_mean
), chosen AS ({CHOSEN_RUNS_SQL}
), latest AS (
    SELECT r.run_id, r.model_id, r.suite, k.split, r.backend, r.ended,
        coalesce(u.by_size, true) AS by_size, {WANT_SQL} AS want, u.summary,
        coalesce(r.question_metric, q.metric) AS question_metric, coalesce(r.question_se_size, q.se_size)
        AS question_se_size, coalesce(r.question_se_mean, q.se_mean) AS question_se_mean
    FROM runs r JOIN chosen k USING (run_id) LEFT JOIN computed q ON q.run_id = r.run_id {RULE_JOINS_SQL}
), c AS (
    SELECT s.run_id, s.task, s.metric, s.value, coalesce(s.n, 1) AS n, s.stderr, l.want, l.summary
    FROM scores s JOIN latest l ON l.run_id = s.run_id
), t AS (  -- one row per task (task_rows_sql): value, size, and lm-eval's stderr, else the binomial one where the
            -- metric is a proportion, else unknown (NULL: a binomial stderr of a 0-100 score is 0, not none)
    SELECT run_id, task, x.metric, x.value, x.n,
        coalesce(x.stderr, CASE WHEN split_part(x.metric, ',', 1) IN {UNIT_METRICS}
                                THEN sqrt(greatest(x.value * (1 - x.value), 0) / greatest(x.n - 1, 1)) END) AS se
    FROM ({task_rows_sql("c")})
), terms AS (  -- per run, grouped by run_id alone: its tasks' terms in task order (the threads hand a run's tasks
                -- over in any order, and a float sum taken in another order differs in its last bits)
    SELECT run_id, list_sort(list({{'task': task, 'vn': value * n, 'v': value, 'q': (n - 1) * n * se * se,
                                    'ss': se * se}})) AS x,
        sum(n) AS sn, count(*) AS tasks, count(*) - count(se) AS unknown,
        array_to_string(list_sort(list_distinct(list(metric))), '+') AS metric
    FROM t GROUP BY run_id
), a AS (  -- per run, summed in that order; joined to the run's columns after
    SELECT run_id, list_sum([e.vn FOR e IN x]) AS vn, sn, list_avg([e.v FOR e IN x]) AS mean,
        list_sum([e.q FOR e IN x]) AS q, list_sum([e.ss FOR e IN x]) AS ss, tasks, unknown, metric
    FROM terms
)
SELECT l.model_id, l.suite, l.split, l.run_id, l.backend, l.ended,
    CASE WHEN l.by_size THEN a.vn / a.sn ELSE a.mean END AS value,
    coalesce(  -- the run's question-clustered stderr where it has one for these metrics (harness/store/suite_se.py)
        CASE WHEN l.summary IS NULL AND l.question_metric = a.metric
             THEN CASE WHEN l.by_size THEN l.question_se_size ELSE l.question_se_mean END END,
        CASE WHEN a.unknown > 0 THEN NULL  -- a task's stderr unknown: the suite's too (sum() would skip it)
             WHEN l.by_size  -- else lm-eval's pooled_sample_stderr, or its unweighted_mean_stderr
             THEN sqrt(a.q / greatest(a.sn - a.tasks, 1) / a.sn) ELSE sqrt(a.ss) / a.tasks END) AS se,
    a.sn::BIGINT AS n, a.tasks::BIGINT AS tasks, a.metric
FROM a JOIN latest l USING (run_id)
ORDER BY l.model_id, l.suite, l.split  -- a fixed order: the groups above come in whichever order the threads left them
"""


@contextmanager
def _reading(src: Store | duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """An open read connection (several queries, one consistent snapshot), or a Store's short read."""
    if hasattr(src, "execute"):
        yield src
        return
    with src.db.read() as con:
        yield con


def _df(src: Store | duckdb.DuckDBPyConnection, sql: str, args: list[object] | None = None) -> pd.DataFrame:
    """Run one query: on an open read connection or a Store."""
    with _reading(src) as con:
        return con.execute(sql, args or []).df()


def models(store: Store | duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per model: id, name, kind, merge method (from its recipe), created, meta."""
    return _df(store, """
        SELECT m.model_id, coalesce(m.name, left(m.model_id, 12)) AS name, m.kind, m.source, m.n_params,
               r.method, m.materialized, m.created
        FROM models m LEFT JOIN recipes r USING (recipe_id) ORDER BY m.created, m.model_id""")


def edges(store: Store | duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every lineage edge (child_id, parent_id, role, weight)."""
    return _df(store, "SELECT child_id, parent_id, role, weight FROM lineage ORDER BY child_id, role, parent_id")


def selections(store: Store | duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every selection (which model was chosen or optimised on which suite/split, by what process)."""
    return _df(store, "SELECT selection_id, model_id, suite, split, process, process_id, note, created "
                      "FROM selections ORDER BY created, selection_id")


def suite_scores(store: Store | duckdb.DuckDBPyConnection, default_splits: dict[str, str] | None = None,
                 *, rules: dict[str, ScoreRule], questions: QuestionNamer | None = None) -> pd.DataFrame:
    """One row per (model, suite, split), sorted by model_id, suite and split, with value, se, 95% interval, n,
    tasks, metric, from the run CHOSEN_RUNS_SQL picks; a run without a split is one of its suite's default split
    (`default_splits`, else 'default'). `rules` (suite -> ScoreRule): every suite.yaml's, from
    harness.suites.score_rules(); a suite without one is read under the default rule. `questions`
    (harness/run_questions.py run_questions): in a store not yet filled, the runs written before v5 get the
    clustered stderr a writer's fill stores, computed for this read (suite_se.py unfilled_stderr), where the store
    was migrated from before v5 and not yet filled (holds_runs_before_v5); None: they keep lm-eval's until a writer
    fills them."""
    from harness.store.suite_se import holds_runs_before_v5, unfilled_lists, unfilled_stderr

    with _reading(store) as con:
        found = unfilled_stderr(con, questions) if questions and holds_runs_before_v5(con) else {}
        computed = unfilled_lists(found)
        df = con.execute(SUITE_SCORES_SQL, rule_lists(rules) + computed + default_split_args(default_splits)).df()
    df["ci_low"], df["ci_high"] = metric_intervals(df["value"], df["se"], df["n"], df["metric"])
    return df


def rule_lists(rules: dict[str, ScoreRule] | None) -> list[list]:
    """The suites' rules as SUITE_SCORES_SQL's five parallel lists (suite, split, metric, weight_by_size, summary
    task): split '' is the suite's rule, a named split's row overrides its metric, and where the default split has
    its own, a row of split None gives it to runs stored without a split (ScoreRule.metric_for(None)); None: no rules
    (every suite under the default one)."""
    items = sorted((rules or {}).items())
    rows = [(n, "", r.metric, r.weight_by_size, r.summary_task) for n, r in items]
    rows += [(n, split, metric, r.weight_by_size, r.summary_task)
             for n, r in items for split, metric in r.split_metrics]
    rows += [(n, None, r.metric_for(None), r.weight_by_size, r.summary_task)
             for n, r in items if r.default_split in dict(r.split_metrics)]
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(5)]


def metric_intervals(value: pd.Series, se: pd.Series, n: pd.Series, metric: pd.Series) -> tuple:
    """95% intervals inside each row's metric range ('exact_match,strict-match' is exact_match's; several metrics
    joined by '+' share a range only when each has it)."""
    import numpy as np
    import pandas as pd

    from harness.stats import bounded_intervals

    codes, names = pd.factorize(pd.Series(metric, dtype=object).map(str))  # a few names: each is read once
    bases = [{m.split(",", 1)[0] for m in name.split("+")} for name in names]
    ranges = [METRIC_RANGES.get(next(iter(b))) if len({METRIC_RANGES.get(x) for x in b}) == 1 else None
              for b in bases]
    binary = np.array([b <= set(BINARY_METRICS) for b in bases] + [False])[codes]
    low = np.array([r[0] if r else float("nan") for r in ranges] + [float("nan")])[codes]
    high = np.array([r[1] if r else float("nan") for r in ranges] + [float("nan")])[codes]
    return bounded_intervals(value, se, n, binary, low, high)


BOARD_COLUMNS = ["model", "model_id", "kind", "suite", "split", "task", "metric", "value", "stderr", "n", "tasks",
                 "ci_low", "ci_high", "backend", "run_id"]


def suite_board(store: Store, default_splits: dict[str, str] | None, rules: dict[str, ScoreRule],
                questions: QuestionNamer | None = None) -> pd.DataFrame:
    """Suite scores (`questions`: as suite_scores) with each model's name and kind, in `harness leaderboard`'s
    columns (task 'all')."""
    with store.db.read() as con:
        df = suite_scores(con, default_splits, rules=rules, questions=questions)
        names = models(con)[["model_id", "name", "kind"]]
    df = df.merge(names, on="model_id", how="left")
    df["model"] = df["name"].fillna(df["model_id"])
    df = df.rename(columns={"se": "stderr"}).assign(task="all")
    return df[BOARD_COLUMNS].sort_values(["suite", "split", "model"], ignore_index=True)


def run_samples(store: Store, run_id: str, task: str | None = None, wrong_only: bool = False,
                limit: int = 500, offset: int = 0) -> pd.DataFrame:
    """Per-sample rows of one run (prompt, response, target, score), a page at a time."""
    return _df(store, """
        SELECT task, doc_id, metric, prompt, prediction AS response, target, score
        FROM samples WHERE run_id = ? AND (? IS NULL OR task = ?) AND (NOT ? OR score < 1)
        ORDER BY task, doc_id, metric LIMIT ? OFFSET ?""", [run_id, task, task, wrong_only, limit, offset])


def run_tasks_of(store: Store, run_id: str) -> list[str]:
    """Every task with sample rows in one run, sorted (not only those of its first page of rows)."""
    return _df(store, "SELECT DISTINCT task FROM samples WHERE run_id = ? ORDER BY task", [run_id])["task"].tolist()


def doc_scores(store: Store, run_ids: Iterable[str], rules: dict[str, ScoreRule] | None = None) -> pd.DataFrame:
    """Per-document scores of some runs (run_id, task, doc_id, score) for paired comparisons, each task on the
    metric its suite score reads under `rules` (harness.suites.score_rules(); None: every suite under the default
    rule, each task's primary metric): the per-document index (harness/store/doc_index.py chosen_sql), which holds
    exactly this (the mean of the metric's scored sample rows of each document), instead of the sample rows."""
    from harness.store.doc_index import chosen_sql

    runs = "(SELECT unnest(?::VARCHAR[]) AS run_id)"
    return _df(store, f"""
        WITH t AS ({chosen_sql(runs)})
        SELECT t.run_id, t.task, d.doc_id, d.score FROM doc_scores d JOIN t USING (rt) ORDER BY ALL""",
        [*rule_lists(rules)[:3], list(run_ids)])


def runs_of(store: Store, model_id: str) -> pd.DataFrame:
    """A model's runs (newest first) with their number of sample rows and of requests cut to fit the context."""
    return _df(store, """
        WITH r AS (
            SELECT run_id, suite, split, status, backend, backend_version, suite_version, seed, started, ended, error
            FROM runs WHERE model_id = ?
        ), c AS (
            SELECT run_id, count(*) AS samples FROM samples WHERE run_id IN (SELECT run_id FROM r) GROUP BY run_id
        ), k AS (  -- requests cut to fit the context (NULL: a run written before they were counted)
            SELECT run_id, sum(requests)::BIGINT AS requests, sum(cut_loglikelihood + cut_generate)::BIGINT AS cut,
                max(context) AS context
            FROM run_cuts WHERE run_id IN (SELECT run_id FROM r) GROUP BY run_id
        )
        SELECT r.*, coalesce(c.samples, 0) AS samples, k.requests, k.cut, k.context
        FROM r LEFT JOIN c USING (run_id) LEFT JOIN k USING (run_id)
        ORDER BY started DESC, suite, split, run_id""", [model_id])


def evolve_runs(store: Store) -> pd.DataFrame:
    return _df(store, "SELECT evolve_id, status, generation, best_model_id, config, started, ended "
                      "FROM evolve_runs ORDER BY started DESC, evolve_id")


def evolve_candidates(store: Store | duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every evolve candidate with both a fitness and a held-out score, with its run's best model and config."""
    return _df(store, """
        SELECT c.evolve_id, c.generation, c.idx, c.model_id, c.fitness, c.heldout, r.best_model_id, r.config
        FROM evolve_candidates c JOIN evolve_runs r USING (evolve_id)
        WHERE c.fitness IS NOT NULL AND c.heldout IS NOT NULL ORDER BY c.evolve_id, c.generation, c.idx""")


def evolve_history(store: Store, evolve_id: str) -> pd.DataFrame:
    """Per generation: best and mean fitness, the held-out score of the fittest candidate (NULL when it has none;
    ties go to the earliest, as harness.store.evolve.best), and the mean held-out score."""
    return _df(store, """
        SELECT generation, max(fitness) AS best_fitness, avg(fitness) AS mean_fitness,
               first(CASE WHEN fitness IS NOT NULL THEN heldout END ORDER BY fitness DESC NULLS LAST, idx)
                   AS heldout_of_fittest,
               avg(heldout) AS mean_heldout, count(*) AS candidates
        FROM evolve_candidates WHERE evolve_id = ? GROUP BY generation ORDER BY generation""", [evolve_id])


def checks(store: Store) -> pd.DataFrame:
    return _df(store, "SELECT check_id, candidate_id, baseline, suite, passed, created FROM checks "
                      "ORDER BY created, check_id")

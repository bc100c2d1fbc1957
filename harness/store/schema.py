"""The store's schema as an ordered list of migrations. A database records the version it is at.

Add a migration by appending to MIGRATIONS; never edit one that has shipped. A step is an SQL statement or a function
of the connection (a back-fill written once, in harness/store/).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.store.doc_index import DDL as DOC_INDEX_DDL
from harness.store.doc_index import index_all, rebuild
from harness.store.suite_se import DDL as QUESTION_SE_DDL

if TYPE_CHECKING:
    import duckdb

V1 = [
    """CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)""",
    # One row per model: sources, zoo models, merges, and evolve candidates (materialized = false).
    """CREATE TABLE models (
        model_id VARCHAR PRIMARY KEY,          -- content hash (sources) or recipe hash (merges)
        name VARCHAR,                          -- display name
        path VARCHAR,                          -- folder on disk, NULL if not materialized
        kind VARCHAR NOT NULL,                 -- source | zoo | merge | candidate
        source VARCHAR,                        -- where it came from: hub id, local path, 'zoo', 'merge'
        architecture VARCHAR,
        n_params BIGINT,
        recipe_id VARCHAR,                     -- merges: the recipe that made it
        materialized BOOLEAN NOT NULL DEFAULT TRUE,
        meta JSON,                             -- free-form facts (training steps, card fields)
        created TIMESTAMP NOT NULL DEFAULT current_timestamp
    )""",
    # A name points at the newest model registered under it (like a tag).
    """CREATE TABLE aliases (
        name VARCHAR PRIMARY KEY,
        model_id VARCHAR NOT NULL,
        updated TIMESTAMP NOT NULL DEFAULT current_timestamp
    )""",
    """CREATE TABLE recipes (
        recipe_id VARCHAR PRIMARY KEY,         -- hash of the normalised recipe
        method VARCHAR NOT NULL,
        yaml VARCHAR NOT NULL,                 -- normalised recipe text
        created TIMESTAMP NOT NULL DEFAULT current_timestamp
    )""",
    """CREATE TABLE lineage (
        child_id VARCHAR NOT NULL,
        parent_id VARCHAR NOT NULL,
        role VARCHAR NOT NULL,                 -- base | source | finetuned_from | ...
        weight DOUBLE,
        params JSON,                           -- method parameters for this parent (density, layer weights...)
        PRIMARY KEY (child_id, parent_id, role)
    )""",
    """CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY,
        model_id VARCHAR NOT NULL,
        suite VARCHAR NOT NULL,
        suite_version VARCHAR,
        split VARCHAR,                         -- public | heldout | twin | ... (NULL: the suite's default)
        data_hash VARCHAR,
        backend VARCHAR NOT NULL,
        backend_version VARCHAR,
        harness_version VARCHAR NOT NULL,
        settings JSON,                         -- limit, tier, batch size, dtype, judge, few-shot...
        seed BIGINT,
        status VARCHAR NOT NULL,               -- running | complete | failed
        error VARCHAR,
        started TIMESTAMP NOT NULL DEFAULT current_timestamp,
        ended TIMESTAMP
    )""",
    """CREATE TABLE scores (
        run_id VARCHAR NOT NULL,
        task VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        value DOUBLE,
        stderr DOUBLE,
        n BIGINT,
        ci_low DOUBLE,
        ci_high DOUBLE,
        PRIMARY KEY (run_id, task, metric)
    )""",
    """CREATE TABLE samples (
        run_id VARCHAR NOT NULL,
        task VARCHAR NOT NULL,
        doc_id BIGINT NOT NULL,
        metric VARCHAR NOT NULL,
        doc_hash VARCHAR,
        prompt_hash VARCHAR,
        target_hash VARCHAR,
        prompt VARCHAR,
        prediction VARCHAR,
        target VARCHAR,
        score DOUBLE,                           -- NULL when unscorable (an unparsed judgment)
        extra JSON                              -- judge text, verdicts, per-choice loglikelihoods...
    )""",
    "CREATE INDEX samples_run ON samples (run_id)",
    # Which model was chosen or optimised on which suite and split, by what process.
    """CREATE TABLE selections (
        selection_id VARCHAR PRIMARY KEY,
        model_id VARCHAR NOT NULL,
        suite VARCHAR NOT NULL,
        split VARCHAR,
        process VARCHAR NOT NULL,              -- evolve | check | user | train
        process_id VARCHAR,                    -- the evolve run, check or training that selected it
        note VARCHAR,
        created TIMESTAMP NOT NULL DEFAULT current_timestamp
    )""",
    """CREATE TABLE evolve_runs (
        evolve_id VARCHAR PRIMARY KEY,
        config JSON NOT NULL,
        status VARCHAR NOT NULL,               -- running | complete | failed
        generation BIGINT NOT NULL DEFAULT 0,
        optimizer_state BLOB,                  -- cmaes state as JSON (harness.evolve.optimizer_state), never pickle
        best_model_id VARCHAR,
        started TIMESTAMP NOT NULL DEFAULT current_timestamp,
        ended TIMESTAMP
    )""",
    """CREATE TABLE evolve_candidates (
        evolve_id VARCHAR NOT NULL,
        generation BIGINT NOT NULL,
        idx BIGINT NOT NULL,
        model_id VARCHAR NOT NULL,
        params JSON,
        fitness DOUBLE,
        heldout DOUBLE,
        PRIMARY KEY (evolve_id, generation, idx)
    )""",
    """CREATE TABLE checks (
        check_id VARCHAR PRIMARY KEY,
        candidate_id VARCHAR NOT NULL,
        baseline VARCHAR NOT NULL,
        suite VARCHAR NOT NULL,
        passed BOOLEAN NOT NULL,
        report JSON,
        created TIMESTAMP NOT NULL DEFAULT current_timestamp
    )""",
]

# v2: indexes for lineage walks and per-model lookups at dashboard scale (thousands of models)
V2 = [
    "CREATE INDEX runs_model ON runs (model_id)",
    "CREATE INDEX selections_model ON selections (model_id)",
    "CREATE INDEX lineage_parent ON lineage (parent_id)",
]

# v3: suite scores are read under one definition (harness/store/frames.py): `_aggregate` rows are no longer
# counted as a task, judge suites are scored by rating / win_rate. Nothing stored is recomputed; a store that
# already holds runs gets a one-line note naming the suites whose shown scores change (`harness db info`).
V3 = [
    """INSERT OR REPLACE INTO meta
       SELECT 'note:v3', 'suite scores now follow each suite''s own aggregation (no _aggregate row counted as a task; '
           || 'judge suites by rating / win_rate); the shown scores of these suites change: '
           || string_agg(DISTINCT r.suite, ', ' ORDER BY r.suite)
       FROM runs r JOIN scores s USING (run_id)
       WHERE r.status = 'complete' AND (s.task = '_aggregate' OR s.metric IN ('rating', 'win_rate'))
       HAVING count(*) > 0""",
]

# v4: the per-document index of the samples (harness/store/doc_index.py: run_tasks, doc_scores), which the twin
# pairing reads instead of every sample row; written by Store.finish_run with the samples, back-filled here once
# (5 million samples: about 5 s).
V4: list[str | Callable[[duckdb.DuckDBPyConnection], None]] = [*DOC_INDEX_DDL, index_all]

# v5: a run's question-clustered stderr (harness/store/suite_se.py), which its suite score's se reads where a
# question has several items (MGSM's 11 languages); NULL in runs written before, which keep lm-eval's stderr.
V5: list[str | Callable[[duckdb.DuckDBPyConnection], None]] = [*QUESTION_SE_DDL]

# v6: evolve's fitness cache, one row per (candidate model, fitness key), written as soon as a candidate is scored:
# a resumed run reuses the candidates its killed generation had scored (evolve_candidates rows are written per
# generation, in one transaction). Rows before v6 stay readable through evolve_candidates.
V6 = [
    """CREATE TABLE evolve_fitness (
        model_id VARCHAR NOT NULL,
        fitness_key VARCHAR NOT NULL,
        fitness DOUBLE,                        -- NULL: the merge failed (non-finite weights)
        outcome JSON,                          -- per-suite scores, stderr, seconds, swap gap, error
        created TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (model_id, fitness_key)
    )""",
]

# v7: per (run, task), the requests lm-eval cut from their start to fit the context (harness/evaluate/cuts.py),
# written by Store.finish_run with the scores. Runs written before have no rows: not counted, shown as unknown.
V7 = [
    """CREATE TABLE run_cuts (
        run_id VARCHAR NOT NULL,
        task VARCHAR NOT NULL,
        context BIGINT NOT NULL,               -- the context length (tokens) the backend cut requests to
        requests BIGINT NOT NULL,              -- requests the task made, every kind
        cut_loglikelihood BIGINT NOT NULL,     -- loglikelihood requests cut (context + continuation too long)
        cut_generate BIGINT NOT NULL,          -- generation contexts cut (context + max_gen_toks too long)
        PRIMARY KEY (run_id, task)
    )""",
]

# v8: the per-document index holds every metric of a task, and a reader reads each task on the metric its suite
# score reads (harness/store/doc_index.py chosen_sql): the index of v4 held one metric picked without the suite's rule
# (gsm8k's flexible-extract where the suite is scored on strict-match). Rebuilt here from the samples, once (as v4's
# back-fill: about 5 s at 5 million samples).
V8: list[str | Callable[[duckdb.DuckDBPyConnection], None]] = [rebuild]

MIGRATIONS: list[list[str | Callable[[duckdb.DuckDBPyConnection], None]]] = [V1, V2, V3, V4, V5, V6, V7, V8]
SCHEMA_VERSION = len(MIGRATIONS)
TABLES = (
    "meta", "models", "aliases", "recipes", "lineage", "runs", "scores", "samples",
    "selections", "evolve_runs", "evolve_candidates", "evolve_fitness", "checks", "run_tasks", "doc_scores",
    "run_cuts",
)

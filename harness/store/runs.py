"""Evaluation runs, their scores and per-sample rows: the part of the store that `harness eval` writes.

A run is written twice: `start_run` records it as running, and `finish_run` writes every score and sample and
marks it complete in one transaction, so a killed run never shows as complete and never leaves partial scores.

A re-run of a complete run is a new attempt with a run id of its own (`<run id>-<n>`, `attempt_id`): the complete
run stays visible until the attempt completes (views take the newest complete run), and every attempt is kept.
`start_run` refuses to overwrite a complete run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.store.doc_index import index_run
from harness.store.question_se_bulk import fill_chunk
from harness.store.records import RunRecord, Sample, Score, TaskCuts
from harness.store.suite_se import (
    PENDING_SQL,
    filled_through,
    is_filled,
    mark_filled,
    mark_filled_through,
    store_question_stderrs,
    write_question_stderr,
)

if TYPE_CHECKING:
    import pandas as pd

    from harness.store.database import Database
    from harness.store.suite_se import QuestionNamer

FILL_CHUNK = 2000  # runs a write transaction of the pre-v5 fill (about 2 s each on a 10,000-model store)
_RUN_COLS = (
    "run_id, model_id, suite, backend, harness_version, status, suite_version, split, data_hash, "
    "backend_version, settings, seed, error, started, ended"
)
SAMPLE_COLS = (
    "run_id", "task", "doc_id", "metric", "doc_hash", "prompt_hash", "target_hash", "prompt", "prediction",
    "target", "score", "extra",
)


def _run(row: tuple) -> RunRecord:
    values = list(row)
    values[10] = json.loads(values[10]) if values[10] else {}
    return RunRecord(*values)


def samples_frame(run_id: str, samples: list[Sample]) -> pd.DataFrame:
    """Per-sample rows as a DataFrame in the table's column order (the fast bulk-insert path)."""
    import pandas as pd

    rows = []
    for s in samples:
        d = asdict(s)
        d["run_id"] = run_id
        d["extra"] = json.dumps(d["extra"]) if d["extra"] else None
        rows.append(d)
    return pd.DataFrame(rows, columns=list(SAMPLE_COLS))


class RunsMixin:
    db: Database

    def start_run(self, run: RunRecord) -> None:
        """Record `run` as running (replacing an attempt that never completed: a resume); never a complete run."""
        with self.db.write() as con:
            prev = con.execute("SELECT status FROM runs WHERE run_id = ?", [run.run_id]).fetchone()
            if prev is not None and prev[0] == "complete":
                raise HarnessError(f"run {run.run_id} is complete and is kept",
                                   "start a new attempt (Store.attempt_id; harness eval --rerun does)")
            con.execute(
                "INSERT OR REPLACE INTO runs (run_id, model_id, suite, backend, harness_version, status, "
                "suite_version, split, data_hash, backend_version, settings, seed) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                [run.run_id, run.model_id, run.suite, run.backend, run.harness_version, run.suite_version,
                 run.split, run.data_hash, run.backend_version, json.dumps(run.settings), run.seed],
            )

    def finish_run(self, run_id: str, scores: list[Score], samples: list[Sample] | pd.DataFrame,
                   questions: Mapping[tuple[str, int], str] | None = None, metric: str | None = None,
                   cuts: list[TaskCuts] | None = None) -> None:
        """Write all scores and samples and mark the run complete, atomically. `questions` ({(task, doc): the
        question it poses}, harness/seed_questions.py) and `metric` (the one the suite is scored on, None: each
        task's primary) give the run its question-clustered stderr where a question has several items
        (harness/store/suite_se.py); without them the suite score keeps lm-eval's. `cuts`: each task's requests
        and those cut to fit the context (harness/evaluate/cuts.py); None: not counted (no rows)."""
        frame = samples if not isinstance(samples, list) else samples_frame(run_id, samples)
        with self.db.write() as con:
            status = con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if status is None:
                raise HarnessError(f"run {run_id} was never started", "call start_run first")
            con.execute("DELETE FROM scores WHERE run_id = ?", [run_id])
            con.execute("DELETE FROM samples WHERE run_id = ?", [run_id])
            for s in scores:
                con.execute(
                    "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [run_id, s.task, s.metric, s.value, s.stderr, s.n, s.ci_low, s.ci_high],
                )
            if len(frame):
                con.register("incoming_samples", frame)
                con.execute(f"INSERT INTO samples SELECT {', '.join(SAMPLE_COLS)} FROM incoming_samples")
                con.unregister("incoming_samples")
            con.execute("DELETE FROM run_cuts WHERE run_id = ?", [run_id])
            for c in cuts or []:
                con.execute("INSERT INTO run_cuts VALUES (?, ?, ?, ?, ?, ?)",
                            [run_id, c.task, c.context, c.requests, c.loglikelihood, c.generate])
            index_run(con, run_id)  # the per-document index the twin pairing reads, in the same transaction
            write_question_stderr(con, run_id, questions or {}, metric)  # from the rows just written
            con.execute(
                "UPDATE runs SET status = 'complete', error = NULL, ended = current_timestamp WHERE run_id = ?",
                [run_id],
            )

    def fill_question_stderr(self, name: QuestionNamer, chunk: int = FILL_CHUNK,
                             progress: Callable[[int, int], None] | None = None) -> int:
        """Store the clustered stderr of the complete runs written before v5 (NULL columns) from their stored scores
        and samples, their questions named by `name` (harness/run_questions.py run_questions), as finish_run stores
        a new run's, `chunk` runs a write transaction in run id order (meta CURSOR_KEY: the last one committed, so
        a killed fill resumes after it and other writers get the lock between chunks), then mark the store filled;
        once filled, a read of one meta row. `progress(done, total)` after each chunk. Returns the runs computed."""
        with self.db.read() as con:
            if is_filled(con):
                return 0
            (total,) = con.execute(f"SELECT count(*) {PENDING_SQL}", [filled_through(con)]).fetchone()
        done = 0
        while True:
            with self.db.write() as con:
                ids = fill_chunk(con, name, filled_through(con), chunk, store_question_stderrs)
                if not ids:
                    mark_filled(con)
                    return done
                mark_filled_through(con, ids[-1])
            done += len(ids)
            if progress is not None:
                progress(done, max(total, done))

    def fail_run(self, run_id: str, error: str) -> None:
        """Mark a run that has not completed failed; a complete run is kept as it is (a writer whose start_run found
        it completed by another process meanwhile, or that failed after finish_run, never hides it)."""
        with self.db.write() as con:
            con.execute(
                "UPDATE runs SET status = 'failed', error = ?, ended = current_timestamp "
                "WHERE run_id = ? AND status <> 'complete'",
                [error[:2000], run_id],
            )

    def attempts(self, run_id: str) -> list[RunRecord]:
        """Every attempt at run `run_id` (the run itself and its re-runs `<run_id>-<n>`), oldest first."""
        with self.db.read() as con:
            rows = con.execute(f"SELECT {_RUN_COLS} FROM runs WHERE run_id = ? OR run_id LIKE ? "
                               "ORDER BY started, run_id", [run_id, f"{run_id}-%"]).fetchall()
        return [_run(r) for r in rows]

    def attempt_id(self, run_id: str) -> str:
        """The id to write run `run_id` under now. A run that never completed is resumed under its id; once one
        attempt is complete, each re-run is a new attempt `<run_id>-<n>`, so the complete run stays visible
        until the new one completes, and a failed or killed re-run stays in the history beside it."""
        attempts = self.attempts(run_id)
        if not any(a.status == "complete" for a in attempts):
            return attempts[-1].run_id if attempts else run_id
        taken = {a.run_id for a in attempts}
        n = len(taken) + 1
        while f"{run_id}-{n}" in taken:
            n += 1
        return f"{run_id}-{n}"

    def get_run(self, run_id: str) -> RunRecord | None:
        with self.db.read() as con:
            row = con.execute(f"SELECT {_RUN_COLS} FROM runs WHERE run_id = ?", [run_id]).fetchone()
        return _run(row) if row else None

    def list_runs(
        self, model_id: str | None = None, suite: str | None = None, status: str | None = "complete"
    ) -> list[RunRecord]:
        where, args = [], []
        for col, val in (("model_id", model_id), ("suite", suite), ("status", status)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = f"SELECT {_RUN_COLS} FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        with self.db.read() as con:
            return [_run(r) for r in con.execute(sql + " ORDER BY started, run_id", args).fetchall()]

    def scores(self, run_id: str) -> list[Score]:
        with self.db.read() as con:
            rows = con.execute(
                "SELECT task, metric, value, stderr, n, ci_low, ci_high FROM scores WHERE run_id = ? "
                "ORDER BY task, metric", [run_id]
            ).fetchall()
        return [Score(*r) for r in rows]

    def cuts(self, run_id: str) -> list[TaskCuts]:
        """Each task's requests and those cut to fit the context; [] for a run written before they were counted."""
        with self.db.read() as con:
            rows = con.execute("SELECT task, context, requests, cut_loglikelihood, cut_generate FROM run_cuts "
                               "WHERE run_id = ? ORDER BY task", [run_id]).fetchall()
        return [TaskCuts(*r) for r in rows]

    def samples(self, run_id: str, task: str | None = None) -> pd.DataFrame:
        sql = f"SELECT {', '.join(SAMPLE_COLS)} FROM samples WHERE run_id = ?"
        args: list[object] = [run_id]
        if task:
            sql += " AND task = ?"
            args.append(task)
        with self.db.read() as con:
            return con.execute(sql + " ORDER BY task, doc_id, metric", args).df()

    def leaderboard(self, suite: str | None = None, default_splits: dict[str, str] | None = None) -> pd.DataFrame:
        """Every score row of each (model, suite, split)'s run as harness/store/frames.py CHOSEN_RUNS_SQL picks it
        (the complete run that scored the most documents, then the latest; a run without a split is one of its
        suite's default split, from `default_splits`, else 'default'), with the model's name: the run its suite score
        is read from, so a task's row never comes from another run than the suite score beside it."""
        from harness.store.frames import CHOSEN_RUNS_SQL, default_split_args

        sql = f"""
            WITH chosen AS ({CHOSEN_RUNS_SQL})
            SELECT coalesce(m.name, r.model_id) AS model, r.model_id, m.kind, r.suite, chosen.split, s.task,
                   s.metric, s.value, s.stderr, s.n, s.ci_low, s.ci_high, r.backend, r.run_id
            FROM chosen JOIN runs r USING (run_id) JOIN scores s USING (run_id)
                LEFT JOIN models m ON m.model_id = r.model_id
            WHERE ? IS NULL OR r.suite = ?
            ORDER BY r.suite, s.task, model, s.metric"""  # noqa: S608 (a constant of the store, no data)
        with self.db.read() as con:
            return con.execute(sql, [*default_split_args(default_splits), suite, suite]).df()

    def counts(self) -> dict[str, int]:
        from harness.store.schema import TABLES

        with self.db.read() as con:
            return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # noqa: S608


class ChecksMixin:
    db: Database

    def add_check(self, check_id: str, candidate_id: str, baseline: str, suite: str, passed: bool,
                  report: dict) -> None:
        with self.db.write() as con:
            con.execute(
                "INSERT OR REPLACE INTO checks (check_id, candidate_id, baseline, suite, passed, report) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [check_id, candidate_id, baseline, suite, passed, json.dumps(report, default=str)],
            )

    def checks(self, candidate_id: str | None = None) -> list[dict]:
        sql = "SELECT check_id, candidate_id, baseline, suite, passed, report, created FROM checks"
        args: list[object] = []
        if candidate_id:
            sql += " WHERE candidate_id = ?"
            args.append(candidate_id)
        with self.db.read() as con:
            rows = con.execute(sql + " ORDER BY created, check_id", args).fetchall()
        keys = ("check_id", "candidate_id", "baseline", "suite", "passed", "report", "created")
        return [dict(zip(keys, (*r[:5], json.loads(r[5]) if r[5] else {}, r[6]), strict=True)) for r in rows]

"""The results store: schema, typed API, lineage queries, bad files, and real multi-process concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from harness.errors import HarnessError
from harness.store import LineageEdge, ModelRecord, RunRecord, Sample, Score, Selection, Store
from harness.store import frames as views
from harness.store.schema import SCHEMA_VERSION

REPO = Path(__file__).resolve().parent.parent


def test_new_store_has_every_table(store: Store) -> None:
    counts = store.counts()
    for table in ("models", "lineage", "recipes", "runs", "scores", "samples", "selections", "evolve_runs"):
        assert counts[table] == 0
    assert store.schema_version() == SCHEMA_VERSION


def test_models_aliases_and_lookup(store: Store) -> None:
    store.add_model(ModelRecord("a" * 64, "zoo-base", "/m/base", "zoo", n_params=10, meta={"steps": 5}))
    with pytest.raises(HarnessError, match="the name 'zoo-base' is taken by model aaaaaaaaaaaa.*--name"):
        store.add_model(ModelRecord("b" * 64, "zoo-base", "/m/base2", "zoo"))  # never re-pointed silently
    assert store.get_model("zoo-base").model_id == "a" * 64 and store.find_model("b" * 64) is None
    store.add_model(ModelRecord("b" * 64, None, "/m/base2", "zoo"))
    assert store.rename("b" * 64, "zoo-base", force=True) == ("b" * 64, "a" * 64)  # explicitly
    assert store.get_model("zoo-base").model_id == "b" * 64
    assert store.get_model("zoo-base-aaaaaaaa").model_id == "a" * 64
    assert store.get_model("a" * 10).meta == {"steps": 5}
    assert store.get_model("/m/base").model_id == "a" * 64
    with pytest.raises(HarnessError, match="did you mean 'zoo-base'"):
        store.get_model("zoo-bse")


def _chain(store: Store) -> None:
    # s1, s2 -> m1 ; m1, s3 -> m2 ; m2, s1 -> m3  (three levels of merges of merges)
    for mid in ("s1", "s2", "s3", "m1", "m2", "m3"):
        store.add_model(ModelRecord(mid, mid, None, "merge" if mid[0] == "m" else "source"))
    store.add_lineage([
        LineageEdge("m1", "s1", "base"), LineageEdge("m1", "s2", "source", 0.5),
        LineageEdge("m2", "m1", "base"), LineageEdge("m2", "s3", "source", 0.3, {"density": 0.5}),
        LineageEdge("m3", "m2", "source", 0.7), LineageEdge("m3", "s1", "source", 0.3),
    ])


def test_depth_of_a_long_chain_of_merges_of_merges(store: Store) -> None:
    """Each merge of the two models before it: the paths to the root grow as Fibonacci's numbers (1.1 million at
    depth 30), which the depth query followed one by one (2 s at depth 34, 1.6x per level; `harness lineage` on a
    model 60 merges deep never answered). It keeps each (ancestor, distance) once."""
    import time

    n = 60
    with store.writing():
        for i in range(n):
            store.add_model(ModelRecord(f"m{i}", f"m{i}", None, "merge" if i > 1 else "source"))
        store.add_lineage([LineageEdge(f"m{i}", f"m{i - 1}", "base") for i in range(1, n)]
                          + [LineageEdge(f"m{i}", f"m{i - 2}", "source") for i in range(2, n)])
    start = time.monotonic()
    assert [store.depth(f"m{i}") for i in (0, 1, 2, 30, n - 1)] == [0, 1, 2, 30, n - 1]
    assert time.monotonic() - start < 10


def test_lineage_queries(store: Store) -> None:
    _chain(store)
    assert store.ancestors("m3") == {"m2": 1, "s1": 1, "m1": 2, "s3": 2, "s2": 3}
    assert store.descendants("s1") == {"m1": 1, "m3": 1, "m2": 2}
    assert store.depth("m3") == 3 and store.depth("m1") == 1 and store.depth("s1") == 0
    assert store.roots("m3") == ["s1", "s2", "s3"]
    assert store.parents("m2")[1].params == {"density": 0.5}


def test_lineage_command_counts_merge_depth_as_the_analysis_does(store: Store) -> None:
    """`harness lineage` printed the depth over every edge as "merge depth": a merge of a fine-tune of a source read
    merge depth 2 where the overfitting analysis (a fine-tune step does not count) says 1. Compared with networkx:
    the longest path for depth, the most merge nodes on a path for merge depth."""
    import networkx as nx

    from tests.factories import run_cli

    store.add_recipe("r", "linear", "merge_method: linear")
    for mid, kind in (("s1", "source"), ("s2", "source"), ("ft", "source"), ("m1", "merge"), ("m2", "merge")):
        store.add_model(ModelRecord(mid, mid, None, kind, recipe_id="r" if kind == "merge" else None))
    edges = [("ft", "s1", "finetuned_from"), ("m1", "ft", "base"), ("m1", "s2", "source"), ("m2", "m1", "base"),
             ("m2", "ft", "source")]
    store.add_lineage([LineageEdge(c, p, r) for c, p, r in edges])
    g = nx.DiGraph([(p, c) for c, p, _ in edges])
    for mid in ("ft", "m1", "m2"):
        paths = [p for r in ("s1", "s2") if nx.has_path(g, r, mid) for p in nx.all_simple_paths(g, r, mid)]
        want_depth = nx.dag_longest_path_length(g.subgraph(nx.ancestors(g, mid) | {mid}))
        want_merges = max(sum(n in ("m1", "m2") for n in p) for p in paths)
        code, out, err = run_cli("--db", str(store.path), "lineage", mid, "--json")
        got = json.loads(out)
        assert code == 0 and (got["depth"], got["merge_depth"]) == (want_depth, want_merges), (mid, got, err)
        code, out, _ = run_cli("--db", str(store.path), "lineage", mid)
        assert f"depth {want_depth}, merge depth {want_merges}" in out.splitlines()[0], out


def test_exposure_follows_ancestors(store: Store) -> None:
    _chain(store)
    store.add_selection(Selection("sel1", "m1", "zoo_math", "evolve", split="search", process_id="evo1"))
    store.add_selection(Selection("sel2", "s3", "mmlu", "user"))
    assert {(s.model_id, s.suite) for s in store.exposure("m3")} == {("m1", "zoo_math"), ("s3", "mmlu")}
    assert store.exposure("s2") == []


def test_run_lifecycle_is_atomic(store: Store) -> None:
    store.add_model(ModelRecord("m", "m", None, "source"))
    store.start_run(RunRecord("r1", "m", "zoo_math", "hf", "0.1.0", settings={"limit": 5}))
    assert store.list_runs() == [] and store.get_run("r1").status == "running"
    store.finish_run("r1", [Score("t", "acc", 0.6, 0.2, 5)], [Sample("t", i, "acc", float(i > 1)) for i in range(5)])
    run = store.get_run("r1")
    assert run.status == "complete" and run.settings == {"limit": 5}
    assert len(store.samples("r1")) == 5 and store.scores("r1")[0].value == 0.6
    board = store.leaderboard()
    assert list(board["model"]) == ["m"] and board["value"][0] == 0.6

    store.start_run(RunRecord("r2", "m", "zoo_math", "hf", "0.1.0"))
    with pytest.raises(RuntimeError):
        with store.db.write() as con:  # a crash half-way through a write leaves nothing behind
            con.execute("INSERT INTO scores VALUES ('r2', 't', 'acc', 1, 0, 1, 0, 1)")
            raise RuntimeError("killed")
    assert store.scores("r2") == []
    store.fail_run("r2", "boom")
    assert store.get_run("r2").status == "failed" and len(store.leaderboard()) == 1


def test_a_complete_run_is_never_marked_failed(store: Store) -> None:
    """`harness eval --workers` marks every run it started failed when it stops early, and counted a run as started
    before its start_run, which refuses a run another process completed meanwhile: that complete run was marked
    failed and left every view. fail_run now leaves a complete run as it is."""
    store.add_model(ModelRecord("m", "m", None, "source"))
    store.start_run(RunRecord("r", "m", "s", "hf", "0.1.0", split="public"))
    store.finish_run("r", [Score("t", "acc", 0.5, 0.25, 4)], [Sample("t", i, "acc", float(i % 2)) for i in range(4)])
    with pytest.raises(HarnessError, match="is complete and is kept"):
        store.start_run(RunRecord("r", "m", "s", "hf", "0.1.0", split="public"))
    store.fail_run("r", "interrupted")
    run = store.get_run("r")
    assert (run.status, run.error) == ("complete", None) and len(store.leaderboard()) == 1
    store.start_run(RunRecord("r-2", "m", "s", "hf", "0.1.0", split="public"))
    store.fail_run("r-2", "interrupted")  # one that never completed is still marked
    assert store.get_run("r-2").status == "failed"


def test_corrupt_file_is_refused_and_kept(tmp_path: Path) -> None:
    bad = tmp_path / "harness.duckdb"
    bad.write_bytes(b"this is not a database" * 100)
    before = bad.read_bytes()
    with pytest.raises(HarnessError, match="not a readable DuckDB database"):
        Store(bad).init()
    assert bad.read_bytes() == before


def test_foreign_duckdb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t (x INT)")
    con.close()
    with pytest.raises(HarnessError, match="not a harness store"):
        Store(path).init()


def test_newer_schema_is_refused(store: Store) -> None:
    with store.db.write() as con:
        con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(HarnessError, match="newer harness"):
        Store(store.path).init()


def test_unwritable_results_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be")
    with pytest.raises(HarnessError, match="cannot create the results folder"):
        Store(blocker / "harness.duckdb").init()
    assert blocker.read_text().startswith("a file")


def _cli(*args: str, env_db: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli.__main__", "--db", str(env_db), *args],
        capture_output=True, text=True, cwd=REPO,
    )


def test_cli_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "x.duckdb"
    bad.write_text("garbage")
    proc = _cli("db", "info", env_db=bad)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and str(bad) in proc.stderr and "--db" in proc.stderr


def test_two_writers_and_a_reader(tmp_path: Path) -> None:
    """Two writer processes and a reader on one file at once: no error, no row lost."""
    db = tmp_path / "harness.duckdb"
    Store(db).init()
    runs, per_run = 25, 400
    cmd = [sys.executable, "-m", "tests.store_worker"]
    procs = [subprocess.Popen([*cmd, "write", str(db), str(w), str(runs), str(per_run)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in (1, 2)]
    procs.append(subprocess.Popen([*cmd, "read", str(db), "4"], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    figures = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        figures.append(json.loads(out))
    print("concurrency figures:", figures)
    store = Store(db)
    counts = store.counts()
    assert counts["runs"] == 2 * runs and counts["samples"] == 2 * runs * per_run
    assert all(r.status == "complete" for r in store.list_runs())
    assert figures[2]["reads"] > 0


def test_nested_calls_share_one_connection(store: Store) -> None:
    store.add_model(ModelRecord("m", "m", None, "source"))
    before = store.db.stats.acquisitions
    with store.reading():
        assert store.get_model("m").model_id == "m" and store.counts()["models"] == 1
    assert store.db.stats.acquisitions == before + 1
    with store.db.write() as con:  # a read inside a write sees the write's own rows
        con.execute("INSERT INTO aliases VALUES ('alias', 'm', now())")
        assert store.get_model("alias").model_id == "m"
    with pytest.raises(HarnessError, match="inside a read"):
        with store.reading():
            store.add_model(ModelRecord("n", "n", None, "source"))


def test_a_query_alongside_reads_the_same_store(store: Store) -> None:
    """db.alongside: a second connection in a thread while a read is open, its error raised to the caller; inside
    a write, the write's own connection (which sees its uncommitted rows), in the caller's thread."""
    import threading

    def count(con: duckdb.DuckDBPyConnection) -> tuple[str, int]:
        return threading.current_thread().name, con.execute("SELECT count(*) FROM models").fetchone()[0]

    store.add_model(ModelRecord("m", "m", None, "source"))
    with store.db.read() as con, store.db.alongside(con, count) as result:
        assert con.execute("SELECT count(*) FROM models").fetchone()[0] == 1
        assert result() == ("harness-read", 1)
    with store.db.read() as con, store.db.alongside(con, lambda c: c.execute("SELECT * FROM nowhere")) as result:
        with pytest.raises(duckdb.CatalogException, match="nowhere"):
            result()
    with store.db.write() as con:
        con.execute("INSERT INTO models (model_id, name, kind) VALUES ('n', 'n', 'source')")
        with store.db.read() as inner, store.db.alongside(inner, count) as result:
            assert result() == (threading.current_thread().name, 2)
    with pytest.raises(HarnessError, match="inside db.read"):
        with store.db.alongside(duckdb.connect(), count):
            pass


def test_an_older_store_is_migrated_on_open(tmp_path: Path) -> None:
    from harness.store.schema import MIGRATIONS

    path = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(path))
    for sql in MIGRATIONS[0]:
        con.execute(sql)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute("INSERT INTO models (model_id, kind) VALUES ('old', 'source')")
    con.close()
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION >= 2
    assert store.get_model("old").kind == "source"
    with store.reading() as con:
        names = {r[0] for r in con.execute("SELECT index_name FROM duckdb_indexes()").fetchall()}
    assert {"runs_model", "selections_model", "lineage_parent"} <= names


def _written_rows(db: Path) -> dict[str, list[tuple]]:
    """Every row that writing runs leaves, without the times: what a store killed and resumed must equal."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            "runs": con.execute("SELECT run_id, model_id, suite, split, status, settings, error, question_metric "
                                "FROM runs ORDER BY run_id").fetchall(),
            "scores": con.execute("SELECT * FROM scores ORDER BY ALL").fetchall(),
            "samples": con.execute("SELECT * FROM samples ORDER BY ALL").fetchall(),
            # var to 12 decimals: DuckDB's parallel variance differs in its last bits between two back-fills
            "run_tasks": con.execute("SELECT run_id, task, metric, low_doc, top_doc, docs, total, round(var, 12) "
                                     "FROM run_tasks ORDER BY ALL").fetchall(),
            "doc_scores": con.execute("SELECT t.run_id, t.task, d.doc_id, d.score FROM doc_scores d "
                                      "JOIN run_tasks t USING (rt) ORDER BY ALL").fetchall(),
        }
    finally:
        con.close()


def _run_states(db: Path) -> list[tuple]:
    """(run_id, status, sample rows, score rows, index rows) of every run."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("""
            SELECT r.run_id, r.status, (SELECT count(*) FROM samples s WHERE s.run_id = r.run_id),
                   (SELECT count(*) FROM scores s WHERE s.run_id = r.run_id),
                   (SELECT count(*) FROM run_tasks t WHERE t.run_id = r.run_id)
            FROM runs r ORDER BY r.run_id""").fetchall()
    finally:
        con.close()


def _worker(*args: object, **kw: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.store_worker", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_a_writer_killed_inside_finish_run_leaves_no_complete_run(tmp_path: Path) -> None:
    """SIGKILL while finish_run's transaction is open (its scores, samples, index rows and `complete` written, not
    committed): the run stays `running` with no rows, a reader opens the store, and the resumed run's rows equal
    those of a run never killed."""
    import os
    import signal

    db, ref = tmp_path / "killed.duckdb", tmp_path / "ref.duckdb"
    Store(db).init()
    proc = _worker("hold", db, "run-0", 2000)
    assert proc.stdout.readline().strip() == "holding", proc.stderr.read()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _run_states(db) == [("run-0", "running", 0, 0, 0)]
    store = Store(db)
    assert store.list_runs() == [] and store.leaderboard().empty  # what the dashboard and CLI read
    for path in (db, ref):
        done = subprocess.run([sys.executable, "-m", "tests.store_worker", "resume", str(path), "1", "2000"],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert _written_rows(db) == _written_rows(ref)
    assert _run_states(db) == [("run-0", "complete", 2000, 4, 4)]


def test_writers_killed_at_random_resume_to_the_rows_of_one_never_killed(tmp_path: Path) -> None:
    """A writer of 8 runs killed (SIGKILL) at random moments after it has written a run, then run again, until it
    finishes: after every kill each run is complete with all its rows or has none, and the end is the store an
    uninterrupted writer makes, row for row."""
    import os
    import random
    import signal
    import time

    runs, per_run = 8, 3000
    db, ref = tmp_path / "killed.duckdb", tmp_path / "ref.duckdb"
    done = subprocess.run([sys.executable, "-m", "tests.store_worker", "resume", str(ref), str(runs), str(per_run)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rng, kills = random.Random(0), 0
    for _ in range(2 * runs):
        proc = _worker("resume", db, runs, per_run)
        first = proc.stdout.readline()  # one more run complete: the worker is writing the next one now
        time.sleep(rng.uniform(0.0, 0.4))
        if not first or proc.poll() is not None:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        for run_id, status, samples, scores, index in _run_states(db):
            assert (status, samples, scores, index) in (("complete", per_run, 4, 4), ("running", 0, 0, 0)), run_id
    else:
        raise AssertionError("the writer never finished")
    print(f"{kills} kills")
    assert kills >= 3
    assert _written_rows(db) == _written_rows(ref)


def test_every_table_of_a_v1_store_keeps_its_rows_through_the_migrations(tmp_path: Path) -> None:
    """A v1 file with rows in every table it had: after opening, each table's v1 columns hold the same rows, the
    runs' v5 columns are NULL (nothing recomputed) and the per-document index (v4, v8) is back-filled from the samples
    as finish_run writes it."""
    from harness.store.schema import MIGRATIONS

    path = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(path))
    for sql in MIGRATIONS[0]:
        con.execute(sql)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute("""INSERT INTO models (model_id, name, path, kind, source, n_params, recipe_id, meta) VALUES
        ('a', 'a', '/m/a', 'source', 'hub', 10, NULL, '{"x": 1}'),
        ('b', 'b', NULL, 'merge', 'merge', 10, 'rc', NULL)""")
    con.execute("INSERT INTO aliases (name, model_id) VALUES ('a', 'a'), ('b', 'b')")
    con.execute("INSERT INTO recipes (recipe_id, method, yaml) VALUES ('rc', 'ties', 'merge_method: ties')")
    con.execute("INSERT INTO lineage VALUES ('b', 'a', 'base', 0.5, '{\"density\": 0.5}')")
    con.execute("""INSERT INTO runs (run_id, model_id, suite, split, backend, harness_version, settings, seed, status,
        ended) VALUES ('r1', 'a', 's', 'public', 'hf', '0.0', '{"limit": 3}', 1, 'complete', now()),
        ('r2', 'b', 's', NULL, 'hf', '0.0', NULL, NULL, 'running', NULL)""")
    con.execute("INSERT INTO scores VALUES ('r1', 't', 'acc', 0.5, 0.25, 4, 0.1, 0.9), "
                "('r1', '_aggregate', 'acc', 0.5, 0.0, 1, NULL, NULL)")
    con.execute("""INSERT INTO samples (run_id, task, doc_id, metric, score, prediction, extra) VALUES
        ('r1', 't', 0, 'acc', 1, 'x', '{"k": 1}'), ('r1', 't', 1, 'acc', 0, 'y', NULL),
        ('r1', 't', 2, 'acc', 1, NULL, NULL), ('r1', 't', 3, 'acc', 0, NULL, NULL),
        ('r1', 't', 3, 'acc_norm', 1, NULL, NULL)""")
    con.execute("INSERT INTO selections (selection_id, model_id, suite, split, process) VALUES "
                "('s1', 'b', 's', 'public', 'user')")
    con.execute("INSERT INTO evolve_runs (evolve_id, config, status, generation, optimizer_state) VALUES "
                "('e', '{}', 'running', 2, '\\x01\\x02'::BLOB)")
    con.execute("INSERT INTO evolve_candidates VALUES ('e', 0, 0, 'b', '{\"w\": 1}', 0.4, 0.3)")
    con.execute("INSERT INTO checks (check_id, candidate_id, baseline, suite, passed, report) VALUES "
                "('c', 'b', 'base', 's', true, '{}')")
    v1_tables = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
    columns = {t: [c for (c,) in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                                             "ORDER BY ordinal_position", [t]).fetchall()] for t in v1_tables}
    before = {t: con.execute(f"SELECT {', '.join(columns[t])} FROM {t} ORDER BY ALL").fetchall()
              for t in v1_tables if t != "meta"}
    con.close()

    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION
    with store.reading() as con:
        after = {t: con.execute(f"SELECT {', '.join(columns[t])} FROM {t} ORDER BY ALL").fetchall() for t in before}
        assert con.execute("SELECT count(*) FROM runs WHERE question_metric IS NOT NULL OR question_se_size IS NOT "
                           "NULL OR question_se_mean IS NOT NULL").fetchone()[0] == 0
        index = con.execute("SELECT run_id, task, metric, low_doc, top_doc, docs, total FROM run_tasks "
                            "ORDER BY ALL").fetchall()
    assert after == before and sum(len(rows) for rows in before.values()) == 19
    # every metric of the task (v8), each over the task's doc range; read on acc, the suite score's metric
    assert index == [("r1", "t", "acc", 0, 3, 4, 2.0), ("r1", "t", "acc_norm", 0, 3, 1, 1.0)]
    assert views.doc_scores(store, ["r1"])["score"].tolist() == [1.0, 0.0, 1.0, 0.0]


def test_a_migration_killed_half_way_leaves_the_old_store_or_the_new_one(tmp_path: Path) -> None:
    """SIGKILL while a v3 store (200,000 samples: its v4 back-fill takes a while) is being migrated, at several
    moments: the file is then at v3 with every row, or at the current version with every row; opened again, it is
    the store a migration never killed makes."""
    import os
    import random
    import shutil
    import signal
    import time

    from benchmarks.gen_store import build
    from tests.factories import downgrade_store

    old = tmp_path / "v3.duckdb"
    build(old, models=200, docs=170, sources=4, seed=3)
    downgrade_store(old, 3)
    ref = tmp_path / "ref.duckdb"
    shutil.copy(old, ref)
    opener = ("import sys, time; from harness.store import Store; print('opening', flush=True); "
              "t = time.monotonic(); Store(sys.argv[1]).init(); print(time.monotonic() - t)")
    out = subprocess.run([sys.executable, "-c", opener, str(ref)], cwd=REPO, check=True, capture_output=True, text=True)
    took = float(out.stdout.split()[-1])  # the migration alone, imports not counted
    want = _written_rows(ref)
    with duckdb.connect(str(old), read_only=True) as con:
        old_samples = con.execute("SELECT count(*), sum(score) FROM samples").fetchone()
    rng, outcomes = random.Random(1), []
    for k in range(4):
        path = tmp_path / f"killed-{k}.duckdb"
        shutil.copy(old, path)
        proc = subprocess.Popen([sys.executable, "-c", opener, str(path)], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "opening", proc.stderr.read()
        time.sleep(rng.uniform(0.0, 1.2 * took))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with duckdb.connect(str(path), read_only=True) as con:
            version = int(con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
            samples = con.execute("SELECT count(*), sum(score) FROM samples").fetchone()
        assert version in (3, SCHEMA_VERSION) and samples == old_samples
        outcomes.append(version)
        assert Store(path).schema_version() == SCHEMA_VERSION
        assert _written_rows(path) == want
    print(f"migration {took:.2f} s; versions found after the kills:", outcomes)

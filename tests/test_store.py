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


def test_lineage_queries(store: Store) -> None:
    _chain(store)
    assert store.ancestors("m3") == {"m2": 1, "s1": 1, "m1": 2, "s3": 2, "s2": 3}
    assert store.descendants("s1") == {"m1": 1, "m3": 1, "m2": 2}
    assert store.depth("m3") == 3 and store.depth("m1") == 1 and store.depth("s1") == 0
    assert store.roots("m3") == ["s1", "s2", "s3"]
    assert store.parents("m2")[1].params == {"density": 0.5}


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

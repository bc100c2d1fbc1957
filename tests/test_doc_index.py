"""The per-document index (harness/store/doc_index.py) and the twin pairing that reads it (harness/store/twin_pairs.py):
written by Store.finish_run with the samples, back-filled by the v4 migration, and giving the pairing the numbers the
query over every sample row gave (REFERENCE_SQL: the pairing as it was before the index, kept here to compare)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from harness.store import RunRecord, Sample, Score, Store
from harness.store.frames import METRIC_ORDER
from harness.store.schema import SCHEMA_VERSION
from harness.store.twin_pairs import COLUMNS, mapped_diffs, max_docs
from tests.factories import downgrade_store

MODELS = 6
REFERENCE_SQL = f"""
WITH prim AS MATERIALIZED (
    SELECT s.run_id, s.task, s.doc_id, avg(s.score) AS score
    FROM samples s JOIN (
        SELECT run_id, task, arg_min(metric, {METRIC_ORDER}) AS metric
        FROM (SELECT DISTINCT run_id, task, metric FROM samples
              WHERE run_id IN (SELECT run_a FROM pairs_in UNION SELECT run_b FROM pairs_in) AND score IS NOT NULL)
        GROUP BY run_id, task
    ) m USING (run_id, task, metric)
    WHERE s.score IS NOT NULL GROUP BY ALL),
twin_side AS MATERIALIZED (
    SELECT p.pid, p.run_a, p.map_key, b.task, b.doc_id, b.score FROM pairs_in p JOIN prim b ON b.run_id = p.run_b),
tw AS (
    SELECT t.pid, t.run_a, m.public_task, m.public_doc, t.score AS sb FROM twin_side t JOIN maps_in m
      ON m.map_key = t.map_key AND m.twin_task = t.task AND m.twin_doc = t.doc_id),
c AS (
    SELECT tw.pid, tw.public_task, tw.public_doc, sum(a.score - tw.sb) AS s, count(*) AS k, sum(a.score) AS sa,
           sum(tw.sb) AS sb
    FROM tw JOIN prim a ON a.run_id = tw.run_a AND a.task = tw.public_task AND a.doc_id = tw.public_doc GROUP BY ALL),
tot AS (
    SELECT pid, sum(k) AS n, count(*) AS clusters, sum(s) / sum(k) AS diff, sum(sa) / sum(k) AS mean_a,
           sum(sb) / sum(k) AS mean_b FROM c GROUP BY pid),
robust AS (
    SELECT tot.pid, any_value(tot.n) AS n, any_value(tot.clusters) AS clusters, any_value(tot.diff) AS diff,
           any_value(tot.mean_a) AS mean_a, any_value(tot.mean_b) AS mean_b, sum(power(c.s - tot.diff * c.k, 2)) AS ss
    FROM tot JOIN c USING (pid) GROUP BY tot.pid),
twin_all AS (
    SELECT s.pid, count(*) AS n_b_all, avg(s.score) AS mean_b_all, var_samp(s.score) AS var_b_all
    FROM twin_side s JOIN tasks_in t ON t.map_key = s.map_key AND t.twin_task = s.task GROUP BY s.pid)
SELECT p.pid, coalesce(r.n, 0) AS n, coalesce(r.clusters, 0) AS clusters, r.diff, r.ss, r.mean_a, r.mean_b,
       coalesce(t.n_b_all, 0) AS n_b_all, t.mean_b_all, t.var_b_all
FROM pairs_in p LEFT JOIN robust r USING (pid) LEFT JOIN twin_all t USING (pid) ORDER BY p.pid"""


def _samples(rng: np.random.Generator, tasks: dict[str, int], limit: int) -> list[Sample]:
    """Rows as lm-eval leaves them: two metrics per task (the primary one by rank), a few unscored rows, a document
    scored twice, fractional scores."""
    out = []
    for task, docs in tasks.items():
        metrics = ("acc", "acc_norm") if task.endswith("1") else ("f1", "bleu")
        for d in range(min(docs, limit)):
            for m in metrics:
                out.append(Sample(task, d, m, None if rng.random() < 0.05 else float(rng.integers(0, 4)) / 3))
        out.append(Sample(task, 1, metrics[0], 1.0))  # a second row of one document: its mean counts once
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store written only through Store.start_run / finish_run: public runs (tasks p1, p2) and twin runs (t1, t2,
    t3), some limited to their first documents, one public run without p2, one twin run written twice."""
    path = tmp_path_factory.mktemp("doc_index") / "s.duckdb"
    store, rng = Store(path), np.random.default_rng(7)
    for j in range(MODELS):
        public = {"p1": 30} if j == 2 else {"p1": 30, "p2": 20}
        for run, tasks, limit in ((f"pub-{j}", public, 30), (f"tw-{j}", {"t1": 32, "t2": 20, "t3": 9}, 12 + 3 * j)):
            store.start_run(RunRecord(run, f"m{j}", "s", "hf", "test", split="twin" if run[0] == "t" else None))
            if run == "tw-1":  # a run written twice: the second write's rows replace the first's
                store.finish_run(run, [Score("t1", "acc", 0.5, 0.1, 1)], _samples(rng, tasks, 3))
            store.finish_run(run, [Score(t, "acc", 0.5, 0.1, 1) for t in tasks], _samples(rng, tasks, limit))
    return path


def _inputs() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Three maps over the same runs: A pairs two twin items with each p1 seed and shuffles p2; B is the identity on
    p1 (twin doc 31 of t1 has no seed in either); C gives p1 seeds items in two twin tasks (gsm_plus: each gsm8k
    question has perturbations in eight tasks)."""
    a = [("A", "t1", d, "p1", d // 2) for d in range(31)] + [("A", "t2", d, "p2", (7 * d + 3) % 20) for d in range(20)]
    b = [("B", "t1", d, "p1", d) for d in range(30)]
    c = [("C", "t1", d, "p1", d % 15) for d in range(30)] + [("C", "t2", d, "p1", d) for d in range(20)]
    maps = pd.DataFrame(a + b + c, columns=["map_key", "twin_task", "twin_doc", "public_task", "public_doc"])
    tasks = pd.DataFrame([("A", "t1"), ("A", "t2"), ("A", "t3"), ("B", "t1"), ("C", "t1"), ("C", "t2")],
                         columns=["map_key", "twin_task"])
    rows = [(10 * j + k, f"pub-{j}", f"tw-{j}", key) for j in range(MODELS) for k, key in enumerate("ABC")]
    rows.append((99, "pub-0", "tw-gone", "A"))  # a twin run with no samples: nothing pairs, nothing to average
    return pd.DataFrame(rows, columns=["pid", "run_a", "run_b", "map_key"]), maps, tasks


def _reference(path: Path, pairs: pd.DataFrame, maps: pd.DataFrame, tasks: pd.DataFrame) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    for name, frame in (("pairs_in", pairs), ("maps_in", maps), ("tasks_in", tasks)):
        con.register(name, frame)
    out = con.execute(REFERENCE_SQL).df()
    con.close()
    c, n, nb = (out[x].to_numpy(dtype=float) for x in ("clusters", "n", "n_b_all"))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["se"] = np.where(c > 1, np.sqrt(c / (c - 1) * out["ss"].fillna(0).to_numpy()) / n, np.nan)
        out["se_b_all"] = np.where(nb > 1, np.sqrt(out["var_b_all"].fillna(0).to_numpy() / nb), np.nan)
    return out[COLUMNS]


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == COLUMNS and len(got) == len(want)
    for col in ("pid", "n", "clusters", "n_b_all"):
        assert got[col].astype(int).tolist() == want[col].astype(int).tolist(), col
    for col in ("diff", "se", "mean_a", "mean_b", "mean_b_all", "se_b_all"):
        np.testing.assert_allclose(got[col].to_numpy(dtype=float), want[col].to_numpy(dtype=float), rtol=1e-12,
                                   atol=1e-15, equal_nan=True, err_msg=col)


def test_pairing_reads_the_index_and_equals_the_query_over_samples(written: Path) -> None:
    pairs, maps, tasks = _inputs()
    got = mapped_diffs(Store(written), pairs.sample(frac=1, random_state=0), maps, tasks)
    want = _reference(written, pairs, maps, tasks)
    _same(got, want)
    by = got.set_index("pid")
    assert by.loc[99, "n"] == 0 and by.loc[99, "n_b_all"] == 0 and np.isnan(by.loc[99, "diff"])
    assert (by.loc[[0, 10], "clusters"] < by.loc[[0, 10], "n"]).all()  # map A: two twin items per p1 seed
    assert by.loc[20, "n"] < by.loc[50, "n"]  # pub-2 has no p2; tw-5 scored more documents than tw-2
    assert (by["n_b_all"] > 0).sum() == 3 * MODELS and by["se"].notna().sum() >= MODELS
    aligned = pairs[pairs["map_key"] == "B"]  # one twin item per seed: each item is its own cluster
    _same(mapped_diffs(Store(written), aligned, maps[maps["map_key"] == "B"], tasks),
          _reference(written, aligned, maps[maps["map_key"] == "B"], tasks))


def test_max_docs_reads_the_index(written: Path) -> None:
    got = max_docs(Store(written), ["pub-2", "tw-1", "tw-gone"]).sort_values(["run_id", "task"], ignore_index=True)
    con = duckdb.connect(str(written), read_only=True)
    want = con.execute("SELECT run_id, task, max(doc_id) AS top FROM samples WHERE run_id IN ('pub-2', 'tw-1') "
                       "GROUP BY ALL ORDER BY ALL").df()
    con.close()
    assert got.astype(str).values.tolist() == want.astype(str).values.tolist()
    assert got.loc[got["run_id"] == "tw-1", "top"].tolist() == [14, 14, 8]  # the second write's limit, not 3


def _index_rows(path: Path) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute("SELECT t.run_id, t.task, t.metric, t.low_doc, t.top_doc, t.docs, round(t.total, 12), "
                       "round(t.var, 12), d.doc_id, round(d.score, 12) FROM run_tasks t "
                       "LEFT JOIN doc_scores d USING (rt) ORDER BY ALL").fetchall()
    con.close()
    return rows


def test_migration_back_fills_a_store_written_before_the_index(written: Path, tmp_path: Path) -> None:
    old = tmp_path / "v3.duckdb"
    old.write_bytes(written.read_bytes())
    downgrade_store(old, 3)  # the file as harness wrote it at schema v3: no index tables
    store = Store(old)
    pairs, maps, tasks = _inputs()
    got = mapped_diffs(store, pairs, maps, tasks)  # the first read migrates, once
    assert store.schema_version() == SCHEMA_VERSION >= 4
    assert _index_rows(old) == _index_rows(written)  # what finish_run wrote, from the samples alone
    _same(got, _reference(old, pairs, maps, tasks))
    assert store.counts()["doc_scores"] == sum(1 for r in _index_rows(old) if r[-2] is not None)



def test_pairing_sums_in_the_same_order_whatever_order_the_store_returns(tmp_path: Path) -> None:
    """The same documents stored in other orders (a parallel scan of a large store returns them in a varying order):
    every figure of the pairing is the same bit for bit, since the documents are summed by their place in the map,
    not in the order they come back (fractional scores, whose sums depend on their order)."""
    path, rng, docs = tmp_path / "s.duckdb", np.random.default_rng(3), 400
    store = Store(path)
    for run, task in (("pub", "p1"), ("tw", "t1")):
        store.start_run(RunRecord(run, "m", "s", "hf", "test", split="twin" if run == "tw" else None))
        store.finish_run(run, [Score(task, "f1", 0.5, 0.1, docs)],
                         [Sample(task, d, "f1", float(rng.random())) for d in range(docs)])
    maps = pd.DataFrame([("B", "t1", d, "p1", (d * 7) % docs) for d in range(docs)],  # aligned: no sort by seed
                        columns=["map_key", "twin_task", "twin_doc", "public_task", "public_doc"])
    tasks = pd.DataFrame([("B", "t1")], columns=["map_key", "twin_task"])
    pairs = pd.DataFrame([(0, "pub", "tw", "B")], columns=["pid", "run_a", "run_b", "map_key"])
    want = mapped_diffs(store, pairs, maps, tasks)
    for seed in (1, 2, 3):
        con = duckdb.connect(str(path))
        shuffled = con.execute("SELECT * FROM doc_scores").df().sample(frac=1, random_state=seed)
        con.execute("DELETE FROM doc_scores")
        con.register("shuffled_in", shuffled)
        con.execute("INSERT INTO doc_scores SELECT * FROM shuffled_in")
        con.close()
        got = mapped_diffs(Store(path), pairs, maps, tasks)
        for col in COLUMNS:
            a, b = got[col].to_numpy(dtype=float), want[col].to_numpy(dtype=float)
            assert np.array_equal(a, b, equal_nan=True), (seed, col, a - b)


def test_pairing_read_in_chunks_is_the_same_bit_for_bit(written: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twin documents read a few slots at a time (a store larger than CHUNK_ROWS): the same figures, bit for bit
    (the first chunk is read with the public documents, the others on their own)."""
    from harness.store import twin_pairs

    pairs, maps, tasks = _inputs()
    want = mapped_diffs(Store(written), pairs, maps, tasks)
    monkeypatch.setattr(twin_pairs, "CHUNK_ROWS", 7)
    got = mapped_diffs(Store(written), pairs, maps, tasks)
    for col in COLUMNS:
        assert np.array_equal(got[col].to_numpy(dtype=float), want[col].to_numpy(dtype=float), equal_nan=True), col

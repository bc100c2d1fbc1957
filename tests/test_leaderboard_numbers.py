"""Every number the Leaderboard page shows, against the same numbers computed here from the per-sample rows with pandas
and numpy alone: each suite score (size-weighted task means), its stderr (lm-eval's pooled_sample_stderr) and Wilson
interval, the run it comes from (the complete one that scored the most documents, then the latest: never a failed or
killed attempt, never two runs averaged, never a later --limit or --tasks run over a whole one), in-sample marks
inherited through the lineage, lineage depth, kind, the overall column (in-sample scores left out, a missing suite
not counted), the order of the rows (most suites counted first, then overall), ties included; and the CLI's per-task
rows, which come from the run the suite score comes from."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.store import LineageEdge, ModelRecord, RunRecord, Sample, Score, Selection, Store

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "dashboard" / "app.py")
Z = 1.959963984540054
SUITES = ("aud_alpha", "aud_beta")  # no suite.yaml: the default rule (each task's primary metric, by size)
T0 = pd.Timestamp("2026-01-01")


def _write_run(store: Store, run_id: str, model: str, suite: str, tasks: dict[str, list[float | None]],
               ended: int | None, status: str = "complete", split: str | None = "public") -> None:
    """A run with these per-document scores per task; its task rows are what lm-eval reports for them (mean and
    mean_stderr), plus an `_aggregate` row that must never count."""
    store.start_run(RunRecord(run_id, model, suite, "hf", "test", split=split))
    if status == "running":  # killed: started, never finished
        return
    if status == "failed":
        store.fail_run(run_id, "boom")
        return
    samples, scores = [], []
    for task, xs in tasks.items():
        samples += [Sample(task, d, "acc", x) for d, x in enumerate(xs)]
        kept = [x for x in xs if x is not None]
        mean = float(np.mean(kept)) if kept else None
        se = float(np.std(kept, ddof=1) / math.sqrt(len(kept))) if len(kept) > 1 else None
        scores.append(Score(task, "acc", mean, se, len(kept)))
    scores.append(Score("_aggregate", "acc", 0.99, 0.0, 1))
    store.finish_run(run_id, scores, samples)
    with store.db.write() as con:
        con.execute("UPDATE runs SET ended = ? WHERE run_id = ?", [T0 + pd.Timedelta(hours=ended), run_id])


def _docs(rng: np.random.Generator, n: int, p: float) -> list[float]:
    return [float(x) for x in (rng.random(n) < p)]


def planted(path: Path) -> Store:
    store = Store(path)
    store.init()
    rng = np.random.default_rng(7)
    kinds = {"src-a": "source", "src-b": "source", "ft-a": "zoo", "mrg-ab": "merge", "mrg-abx": "merge",
             "dup-1": "source", "dup-2": "source", "only-alpha": "source", "zero": "source", "reran": "source",
             "unscored-task": "source", "no-runs": "source", "partial": "source"}
    for m, kind in kinds.items():
        store.add_model(ModelRecord(m, m, None, kind))
    store.add_lineage([LineageEdge("ft-a", "src-a", "finetuned_from"),
                       LineageEdge("mrg-ab", "ft-a", "base"), LineageEdge("mrg-ab", "src-b", "source", 0.5),
                       LineageEdge("mrg-abx", "mrg-ab", "base"), LineageEdge("mrg-abx", "src-a", "source", 0.3)])
    store.add_selection(Selection("sel-ab", "mrg-ab", "aud_beta", "user", split=None))  # None: the default split
    tie = {"t1": _docs(rng, 30, 0.6), "t2": _docs(rng, 10, 0.3)}
    for i, m in enumerate(kinds):
        if m in ("no-runs", "zero", "reran", "unscored-task", "partial"):
            continue
        alpha = tie if m.startswith("dup-") else {"t1": _docs(rng, 30, 0.3 + 0.05 * i), "t2": _docs(rng, 10, 0.5)}
        _write_run(store, f"{m}-alpha", m, "aud_alpha", alpha, ended=1)
        if m != "only-alpha":  # a missing suite: no score, not a zero
            beta = tie if m.startswith("dup-") else {"u": _docs(rng, 50, 0.2 + 0.04 * i)}
            _write_run(store, f"{m}-beta", m, "aud_beta", beta, ended=1)
    # src-a: a later failed attempt and a later killed one change nothing
    _write_run(store, "src-a-alpha-failed", "src-a", "aud_alpha", {}, ended=None, status="failed")
    _write_run(store, "src-a-alpha-killed", "src-a", "aud_alpha", {}, ended=None, status="running")
    # reran: complete twice (a --rerun attempt): the later one only, never the mean of both
    _write_run(store, "reran-alpha", "reran", "aud_alpha", {"t1": _docs(rng, 30, 0.9), "t2": _docs(rng, 10, 0.9)}, 1)
    _write_run(store, "reran-alpha-2", "reran", "aud_alpha", {"t1": _docs(rng, 30, 0.2), "t2": _docs(rng, 10, 0.1)}, 2)
    _write_run(store, "reran-beta", "reran", "aud_beta", {"u": _docs(rng, 50, 0.5)}, 1)
    # zero: every answer wrong (Wilson's interval at p = 0, a stderr of 0)
    _write_run(store, "zero-alpha", "zero", "aud_alpha", {"t1": [0.0] * 30, "t2": [0.0] * 10}, 1)
    _write_run(store, "zero-beta", "zero", "aud_beta", {"u": [0.0] * 50}, 1)
    # a task whose every document is unscorable has no value: the suite score is the other task's
    _write_run(store, "unscored-alpha", "unscored-task", "aud_alpha",
               {"t1": _docs(rng, 30, 0.5), "t2": [None] * 10}, 1)
    # partial: a whole run, then a later --limit 5 run and a later --tasks t1 run: the whole one is shown; on
    # aud_beta only a --limit run, shown since nothing more complete exists
    whole = {"t1": _docs(rng, 30, 0.4), "t2": _docs(rng, 10, 0.6)}
    _write_run(store, "partial-alpha", "partial", "aud_alpha", whole, 1)
    _write_run(store, "partial-alpha-limit", "partial", "aud_alpha", {"t1": [1.0] * 5, "t2": [1.0] * 5}, 2)
    _write_run(store, "partial-alpha-tasks", "partial", "aud_alpha", {"t1": _docs(rng, 30, 0.9)}, 3)
    _write_run(store, "partial-beta-limit", "partial", "aud_beta", {"u": _docs(rng, 5, 0.5)}, 1)
    return store


def _samples(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        runs = con.execute("SELECT run_id, model_id, suite, split, status, ended FROM runs").df()
        samples = con.execute("SELECT run_id, task, doc_id, score FROM samples").df()
        edges = con.execute("SELECT child_id, parent_id FROM lineage").df()
        sels = con.execute("SELECT model_id, suite, split FROM selections").df()
    finally:
        con.close()
    return runs, samples, edges, sels


def _wilson(p: float, n: float) -> tuple[float, float]:
    z2 = Z * Z / n
    centre = (p + z2 / 2) / (1 + z2)
    half = Z * math.sqrt(p * (1 - p) / n + z2 / (4 * n)) / (1 + z2)
    return min(max(centre - half, 0.0), p), max(min(centre + half, 1.0), p)


def oracle(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(suite scores, leaderboard rows) from the raw rows, without harness's SQL or its statistics."""
    from lm_eval.api.metrics import mean_stderr, pooled_sample_stderr

    runs, samples, edges, sels = _samples(path)
    done = runs[runs["status"] == "complete"].copy()
    done["split"] = done["split"].fillna("public")
    scored = samples.dropna(subset=["score"]).groupby("run_id").size()  # each run's scored documents, all tasks
    done["docs"] = done["run_id"].map(scored).fillna(0)
    done = done.sort_values(["docs", "ended", "run_id"]).groupby(["model_id", "suite", "split"]).tail(1)
    rows = []
    for r in done.itertuples():
        per_task = (samples[(samples["run_id"] == r.run_id)].dropna(subset=["score"])
                    .groupby("task")["score"].agg(["mean", "count", mean_stderr]))
        n = int(per_task["count"].sum())
        value = float((per_task["mean"] * per_task["count"]).sum() / n)
        se = float(pooled_sample_stderr(per_task["mean_stderr"].tolist(), per_task["count"].tolist()))
        eff = min(n, value * (1 - value) / se**2) if 0 < value < 1 and se > 0 else n
        lo, hi = _wilson(value, eff)
        rows.append({"model_id": r.model_id, "suite": r.suite, "split": r.split, "run_id": r.run_id,
                     "value": value, "se": se, "n": n, "tasks": len(per_task), "ci_low": lo, "ci_high": hi})
    scores = pd.DataFrame(rows)

    parents: dict[str, list[str]] = {}
    for c, p in edges.itertuples(index=False):
        parents.setdefault(c, []).append(p)

    def ancestors(m: str) -> set[str]:
        return set().union(*({p} | ancestors(p) for p in parents.get(m, [])))

    def depth(m: str) -> int:
        return 1 + max(depth(p) for p in parents[m]) if m in parents else 0

    selected = {(m, s, sp if isinstance(sp, str) else "public") for m, s, sp in sels.itertuples(index=False)}
    board = []
    for m, own in scores.groupby("model_id"):
        lineage = {m} | ancestors(m)
        cells, counted = {}, []
        for r in own.itertuples():
            in_sample = any((a, r.suite, r.split) in selected for a in lineage)
            text = f"{100 * r.value:.1f} [{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}]"
            cells[f"{r.suite}:{r.split}"] = text + (" (in-sample)" if in_sample else "")
            if not in_sample:
                counted.append(r.value)
        board.append({"name": m, "depth": depth(m), "overall": 100 * float(np.mean(counted)) if counted else np.nan,
                      "suites counted": len(counted), **cells})
    return scores, pd.DataFrame(board)


@pytest.fixture()
def page_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "planted.duckdb"
    planted(path)
    monkeypatch.setenv("HARNESS_DB", str(path))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("HARNESS_DASHBOARD_PREWARM", "0")
    return path


def test_suite_scores_are_the_per_sample_computation(page_env: Path) -> None:
    from harness.store import frames as views

    want, _ = oracle(page_env)
    got = views.suite_scores(Store(page_env), rules={})
    merged = want.merge(got, on=["model_id", "suite", "split"], suffixes=("", "_got"), validate="one_to_one")
    assert len(merged) == len(want) == len(got) == 22
    assert (merged["run_id"] == merged["run_id_got"]).all()
    assert (merged["n"] == merged["n_got"]).all() and (merged["tasks"] == merged["tasks_got"]).all()
    for col in ("value", "se", "ci_low", "ci_high"):
        np.testing.assert_allclose(merged[f"{col}_got"], merged[col], rtol=1e-12, atol=1e-15, err_msg=col)
    by = merged.set_index(["model_id", "suite"])
    assert by.loc[("reran", "aud_alpha"), "run_id"] == "reran-alpha-2"  # the rerun, not the mean of both
    assert by.loc[("partial", "aud_alpha"), "run_id"] == "partial-alpha"  # not the later --limit / --tasks runs
    assert by.loc[("partial", "aud_beta"), ["run_id", "n"]].tolist() == ["partial-beta-limit", 5]  # all there is
    assert by.loc[("src-a", "aud_alpha"), "run_id"] == "src-a-alpha"  # neither the failed nor the killed attempt
    assert by.loc[("unscored-task", "aud_alpha"), "tasks"] == 1
    assert (by.loc[("zero", "aud_alpha"), ["value", "ci_low"]] == 0).all()


def test_leaderboard_page_shows_the_per_sample_computation(page_env: Path) -> None:
    from streamlit.testing.v1 import AppTest

    _, want = oracle(page_env)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    columns = [f"{s}:public" for s in SUITES]
    at.sidebar.multiselect(key="lb_columns").set_value(columns).run()
    assert not at.exception, [e.value for e in at.exception]
    board = at.dataframe[0].value
    assert len(board) == len(want) == 12  # every scored model once; no-runs has nothing to show
    got = board.set_index("name")
    want = want.set_index("name").reindex(got.index)
    np.testing.assert_allclose(got["overall"].to_numpy(float), want["overall"].to_numpy(float), rtol=1e-12)
    assert (got["suites counted"] == want["suites counted"]).all()
    assert (got["depth"] == want["depth"]).all()
    for col in columns:
        assert got[col].tolist() == want[col].fillna("").tolist(), col
    assert got.loc["mrg-abx", "in-sample on"] == "aud_beta:public"  # inherited from mrg-ab
    assert got.loc[["src-a", "ft-a", "mrg-ab", "mrg-abx"], "kind"].tolist() == ["source", "fine-tune", "merge",
                                                                                 "merge"]
    # ranked like with like: the models with the most suites counted first, then by overall, highest first (an overall
    # over one easy suite ranked above models scored on both); the two models with the same samples tied, adjacent
    most = want["suites counted"].max()
    fewer = want["suites counted"] < most
    assert want.loc[fewer, "overall"].max() > want.loc[~fewer, "overall"].min()  # the store has such a model
    hand = want.assign(_n=-want["suites counted"], _o=-want["overall"]).sort_values(["_n", "_o"])
    assert list(zip(got["suites counted"], got["overall"], strict=True)) == list(
        zip(hand["suites counted"], hand["overall"], strict=True))
    assert (got["suites counted"].iloc[:int((~fewer).sum())] == most).all()
    order = list(got.index)
    assert abs(order.index("dup-1") - order.index("dup-2")) == 1
    assert got.loc["dup-1", "overall"] == got.loc["dup-2", "overall"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Models"] == "12" and metrics["With in-sample scores"] == "2"


def test_cli_task_rows_come_from_the_run_of_the_suite_score(results: Path, store: Store) -> None:
    """`harness leaderboard --suite S` and Store.leaderboard: every row (each task's and `all`) comes from one run, the
    suite score's. After a whole run, a later run of one task (--tasks t1) and a later --limit 2 run showed the --limit
    run's 2 documents a task (t1 0.5, t2 1.0, all 0.75) in place of the whole run's 40; the whole run is shown, its
    figures those of its per-sample rows."""
    from typer.testing import CliRunner

    from harness.cli import app

    store.add_model(ModelRecord("m", "m", None, "source"))
    _write_run(store, "full", "m", "aud_alpha", {"t1": [1.0, 0.0, 0.0] * 10, "t2": [1.0] * 9 + [0.0]}, ended=1)
    _write_run(store, "one-task", "m", "aud_alpha", {"t1": [1.0, 1.0, 0.0, 1.0]}, ended=2)
    _write_run(store, "limit", "m", "aud_alpha", {"t1": [1.0, 0.0], "t2": [1.0, 1.0]}, ended=3)
    samples = store.samples("full")
    want = samples.groupby("task")["score"].mean().to_dict() | {"all": samples["score"].mean()}
    assert want == pytest.approx({"t1": 10 / 30, "t2": 0.9, "all": 19 / 40})
    out = CliRunner().invoke(app, ["leaderboard", "--suite", "aud_alpha", "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["task"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"all", "t1", "t2"} and {r["run_id"] for r in rows.values()} == {"full"}
    assert {t: r["value"] for t, r in rows.items()} == pytest.approx(want, abs=1e-12)
    assert rows["all"]["n"] == 40
    board = store.leaderboard("aud_alpha").query("task != '_aggregate'")
    assert set(board["run_id"]) == {"full"}
    assert dict(zip(board["task"], board["value"], strict=True)) == pytest.approx({"t1": 10 / 30, "t2": 0.9})


def test_leaderboard_json_counts_tasks_as_integers(results: Path, store: Store) -> None:
    """`harness leaderboard --suite S --json` printed the suite row's `tasks` as 2.0: the outer merge with the task
    rows (which have no task count) made the column float. A count is an integer, as `leaderboard --json` prints it;
    the task rows' count is null."""
    import os
    import subprocess
    import sys

    store.add_model(ModelRecord("m", "m", None, "source"))
    _write_run(store, "full", "m", "aud_alpha", {"t1": [1.0, 0.0, 0.0], "t2": [1.0, 1.0]}, ended=1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def cli(*args: str) -> tuple[str, list[dict]]:
        done = subprocess.run([sys.executable, "-m", "harness.cli", "leaderboard", *args, "--json"], env=env,
                              capture_output=True, text=True, cwd=REPO)
        assert done.returncode == 0, done.stderr
        return done.stdout, json.loads(done.stdout)

    text, rows = cli("--suite", "aud_alpha")
    by_task = {r["task"]: r for r in rows}
    assert set(by_task) == {"all", "t1", "t2"}
    assert '"tasks": 2,' in text and '"tasks": 2.0' not in text, text
    assert type(by_task["all"]["tasks"]) is int and by_task["all"]["tasks"] == 2  # t1 and t2
    assert by_task["t1"]["tasks"] is None and by_task["t2"]["tasks"] is None
    assert [type(r["n"]) for r in rows] == [int] * 3 and by_task["all"]["n"] == 5  # 3 + 2 documents
    text, (row,) = cli()
    assert type(row["tasks"]) is int and row["tasks"] == 2


def test_a_run_without_a_split_is_one_column_with_its_default_split(store: Store) -> None:
    """runs.split NULL means the suite's default split: a model with such a run and a later run on the default
    split by name has one score there, the later one (both were shown as two rows of one cell, and the dashboard's
    pivot took whichever DuckDB returned first)."""
    from harness.store import frames as views

    store.add_model(ModelRecord("m", "m", None, "source"))
    _write_run(store, "named", "m", "aud_alpha", {"t": [1.0, 0.0, 0.0, 0.0]}, ended=2)
    _write_run(store, "unnamed", "m", "aud_alpha", {"t": [1.0, 1.0, 1.0, 0.0]}, ended=1, split=None)
    _write_run(store, "unnamed-later", "m", "aud_beta", {"t": [1.0, 1.0, 1.0, 0.0]}, ended=3, split=None)
    _write_run(store, "named-earlier", "m", "aud_beta", {"t": [1.0, 0.0, 0.0, 0.0]}, ended=2)
    df = views.suite_scores(store, {"aud_alpha": "public", "aud_beta": "public"}, rules={})
    assert sorted(zip(df["suite"], df["split"], df["run_id"], df["value"], strict=True)) == [
        ("aud_alpha", "public", "named", 0.25), ("aud_beta", "public", "unnamed-later", 0.75)]

"""Every dashboard page under Streamlit's AppTest against a real store with planted cases, a missing store, and a
real writer process writing while the pages read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from benchmarks.gen_store import build
from harness.analysis.flags import THRESHOLDS
from harness.store import Store

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("dash") / "planted.duckdb"
    build(path, models=40, docs=200, sources=4, seed=1)
    return str(path)


@pytest.fixture(autouse=True)
def no_background_warmup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each AppTest render computes what it needs itself (the warm-up thread runs in the e2e test's server)."""
    monkeypatch.setenv("HARNESS_DASHBOARD_PREWARM", "0")


@pytest.fixture()
def use_db(db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("HARNESS_DB", db)
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))  # the analysis kept on disk goes here
    return db


def open_page(page: str, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if page != "leaderboard":
        at.switch_page(f"views/{page}.py")
    at.query_params.update(query or {})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def expire_caches() -> None:
    """What the TTLs do after a while: the next render reads the store again."""
    st.cache_data.clear()
    st.cache_resource.clear()


def charts(at: AppTest) -> list:
    return at.get("vega_lite_chart")


def test_leaderboard(use_db: str) -> None:
    at = open_page("leaderboard")
    assert at.title[0].value == "Leaderboard"
    board = at.dataframe[0].value
    assert {"name", "kind", "method", "depth", "overall", "zoo_math:public", "in-sample on"} <= set(board.columns)
    kinds = board.set_index("name")["kind"]
    assert (kinds["zoo-overfit"], kinds["merge-linear"]) == ("fine-tune", "merge")  # not all "merged"
    assert set(kinds) <= {"source", "fine-tune", "merge", "candidate"} and "source" in set(kinds)
    row = board.set_index("name").loc["zoo-overfit"]
    assert row["zoo_math:public"].endswith("(in-sample)") and " [" in row["zoo_math:public"]
    assert row["in-sample on"] == "zoo_math:public"
    assert not board.set_index("name").loc["merge-linear", "zoo_math:public"].endswith("(in-sample)")
    # ranked by suites counted (most first), then by overall within each group
    assert board["suites counted"].is_monotonic_decreasing
    assert all(g["overall"].is_monotonic_decreasing for _, g in board.groupby("suites counted"))
    # the overall column leaves in-sample scores out unless asked: zoo-overfit counts one suite fewer
    assert row["suites counted"] == 2
    at.sidebar.toggle(key="lb_exclude").set_value(False).run()
    assert at.dataframe[0].value.set_index("name").loc["zoo-overfit", "suites counted"] == 3
    at.sidebar.multiselect(key="lb_kinds").set_value(["source"]).run()
    assert set(at.dataframe[0].value["kind"]) == {"source"}


def test_pickers_open_on_a_model_with_scores(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model a picker lists first (the deepest) may have no runs: the Lineage and Runs pages open on one that
    has scores instead."""
    import shutil

    from harness.store import LineageEdge, ModelRecord

    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    monkeypatch.setenv("HARNESS_DB", str(copy))
    store = Store(copy)
    deepest = max(store.list_models(), key=lambda m: store.depth(m.model_id))
    store.add_model(ModelRecord(model_id="e" * 64, name="unscored", path=None, kind="merge"))
    store.add_lineage([LineageEdge("e" * 64, deepest.model_id, "base")])
    scored = {r.model_id for r in store.list_runs()}
    expire_caches()
    for page, key in (("lineage", "lin_model"), ("runs", "runs_model")):
        box = open_page(page).selectbox(key=key)
        assert box.options[0] == "unscored" and box.value in scored


def test_methods(use_db: str) -> None:
    at = open_page("methods")
    assert len(charts(at)) == 2  # distributions, paired differences
    spec = json.loads(charts(at)[0].proto.spec)
    assert spec["facet"]["column"]["field"] == "suite" and "\"data\"" not in json.dumps(spec["spec"])  # per suite
    summary = at.dataframe[0].value
    assert {"linear", "ties", "dare_ties"} <= set(summary["method"])
    ids = at.selectbox(key="m_a").options
    assert len(ids) == 40
    table = at.dataframe[1].value
    assert {"B - A", "ci_low", "ci_high", "mcnemar_p", "significant"} <= set(table.columns)
    assert (table["ci_low"] <= table["B - A"]).all() and (table["B - A"] <= table["ci_high"]).all()


def test_lineage_graph_and_chains(use_db: str, db: str) -> None:
    mid = Store(db).get_model("creep-4").model_id
    at = open_page("lineage", {"model": mid, "suite": "zoo_math"})
    dot = at.get("graphviz_chart")[0].proto.spec
    for name in ("creep-4", "creep-1", "src-d", "src-b"):
        assert name in dot
    assert "peripheries=2" in dot  # the creep models were selected on zoo_math
    assert any("In-sample" in w.value for w in at.warning)
    assert len(charts(at)) == 1
    chain = at.dataframe[0].value
    assert {"public", "twin", "gap", "in_sample"} <= set(chain.columns) and chain["step"].max() == 4
    child = Store(db).get_model("merge-of-overfit").model_id
    at = open_page("lineage", {"model": child, "suite": "zoo_math"})
    at.radio(key="lin_colour").set_value("flag").run()
    dot = at.get("graphviz_chart")[0].proto.spec
    assert not at.exception and 'label="zoo-overfit\\nhigh flag", fillcolor="#d62728"' in dot
    # a merge of a fine-tune (zoo-overfit of src-a): depth 2, merge depth 1 as the divergence signal counts it
    assert any("merge-of-overfit: merge depth 1," in c.value for c in at.caption), [c.value for c in at.caption]


def _zoo_math_run(store: Store, run_id: str, model: str, split: str, score) -> None:
    """A complete zoo_math run of `split`: documents 0-39 of each public task (0-19 of each twin task), scored
    score(d), on the metric its suite score reads (mc: acc, gen: exact_match,strip)."""
    from harness.store import RunRecord, Sample, Score

    docs = 40 if split == "public" else 20
    tasks = {f"zoo_math_mc_{split}": "acc", f"zoo_math_gen_{split}": "exact_match,strip"}
    store.start_run(RunRecord(run_id, model, "zoo_math", "hf", "test", split=split))
    xs = [float(score(d)) for d in range(docs)]
    store.finish_run(run_id, [Score(t, m, sum(xs) / docs, 0.05, docs) for t, m in tasks.items()],
                     [Sample(t, d, m, x) for t, m in tasks.items() for d, x in enumerate(xs)])


def test_lineage_chain_gap_is_the_analysis_gap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Lineage page's public - twin along a chain is the gap the overfitting analysis flags on (`harness
    overfit`, the Overfitting page's evidence): paired through the twin's map over the items both runs scored. It
    was the two suite scores' difference, over different items when the public run scored more documents than the
    twin run: 0.0 where the analysis (and a hand count) finds 50 points."""
    from harness.analysis.evidence import gather
    from harness.store import LineageEdge, ModelRecord

    store = Store(tmp_path / "gap.duckdb")
    store.add_model(ModelRecord("r" * 64, "root", None, "source"))
    store.add_model(ModelRecord("m" * 64, "merged", None, "merge"))
    store.add_lineage([LineageEdge("m" * 64, "r" * 64, "base")])
    _zoo_math_run(store, "rp", "r" * 64, "public", lambda d: d % 2 == 0)  # 50%, and 50% on seeds 0-19
    _zoo_math_run(store, "rt", "r" * 64, "twin", lambda d: d % 2 == 0)  # 50%
    _zoo_math_run(store, "mp", "m" * 64, "public", lambda d: d < 20)  # 50%: 100% on seeds 0-19, 0% on 20-39
    _zoo_math_run(store, "mt", "m" * 64, "twin", lambda d: d % 2 == 0)  # 50%
    seeds = json.loads((REPO / "suites/zoo/zoo_math/twins/perturbed.json").read_text())["tasks"]
    public = {d: float(d < 20) for d in range(40)}  # merged's public documents, each task alike
    by_hand = sum(public[seeds[t]["seeds"][d]] - float(d % 2 == 0) for t in seeds for d in range(20)) / 40
    gaps = gather(store).gaps.set_index(["model_id", "kind"])
    assert by_hand == 0.5 and gaps.loc[("m" * 64, "perturbed"), "gap"] == pytest.approx(by_hand)
    monkeypatch.setenv("HARNESS_DB", str(tmp_path / "gap.duckdb"))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    expire_caches()
    at = open_page("lineage", {"model": "m" * 64, "suite": "zoo_math"})
    at.selectbox(key="lin_kind").set_value("perturbed").run()
    chain = at.dataframe[0].value.set_index("model")
    print("chain:", chain[["public", "twin", "gap"]].to_dict("index"), "analysis:", gaps["gap"].to_dict())
    for name, model_id in (("merged", "m" * 64), ("root", "r" * 64)):
        row = gaps.loc[(model_id, "perturbed")]
        assert chain.loc[name, ["public", "twin", "gap"]].tolist() == pytest.approx(
            [row["public"], row["twin_value"], row["gap"]], abs=1e-4)


def test_the_lineage_page_reads_its_chains_gaps_not_the_whole_analysis(use_db: str, db: str, tmp_path: Path) -> None:
    """A cold Lineage page of a store never analysed computes the twin gaps of the models on its chains only, not
    every model's gaps, flags and coverage (at 10,000 models: 1.7 CPU s instead of 0.6 before the page read the
    analysis's gaps), and shows the figures the analysis has for them, exactly."""
    from harness.analysis.evidence import gather

    mid = Store(db).get_model("creep-4").model_id
    expire_caches()
    at = open_page("lineage", {"model": mid, "suite": "zoo_math"})
    assert not list((tmp_path / "results" / "cache" / "dashboard").glob("*.json"))  # no analysis computed
    chain = at.dataframe[0].value
    gaps = gather(Store(db)).gaps
    want = gaps[(gaps["suite"] == "zoo_math") & (gaps["kind"] == at.selectbox(key="lin_kind").value)]
    want = want.set_index("model_id").loc[chain["model_id"], ["public", "twin_value", "gap", "paired"]]
    print("chain:", len(chain), "rows,", int(chain["paired"].sum()), "paired")
    assert len(chain) >= 5  # paired rows: test_lineage_chain_gap_is_the_analysis_gap (zoo_math's real map)
    assert chain[["public", "twin", "gap"]].to_numpy().tolist() == want[["public", "twin_value", "gap"]].round(
        4).to_numpy().tolist()
    assert chain["paired"].tolist() == want["paired"].tolist()


def test_a_write_shows_on_the_next_render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cached queries are keyed by the store's version: a run written after a page has rendered shows on the next
    render, as `harness leaderboard` shows it at once. Keyed by the path alone they showed the score read before
    the write for up to the 30 s TTL (50.0 where the store holds 100.0), and no note said so."""
    from harness.store import ModelRecord

    path = tmp_path / "write.duckdb"
    store = Store(path)
    store.add_model(ModelRecord("r" * 64, "root", None, "source"))
    _zoo_math_run(store, "first", "r" * 64, "public", lambda d: d % 2 == 0)  # 50%
    monkeypatch.setenv("HARNESS_DB", str(path))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    expire_caches()
    assert open_page("leaderboard").dataframe[0].value.set_index("name").loc["root", "zoo_math:public"].startswith(
        "50.0 [")
    _zoo_math_run(store, "again", "r" * 64, "public", lambda d: True)  # as many documents, later: the board's run
    cell = open_page("leaderboard").dataframe[0].value.set_index("name").loc["root", "zoo_math:public"]
    print("after the write:", cell)
    assert cell.startswith("100.0 [")


def test_a_judge_rating_of_a_selected_split_is_in_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A judge's rating of a split (`SPLIT-by-JUDGE`, a column of its own) is a score on that split's questions: a
    model selected on mt_bench (its default split, test) is in-sample in its rating column, on the Leaderboard and
    the Runs page. The marks matched the split's name, so the rating of a selected model showed no mark."""
    from harness.store import ModelRecord, RunRecord, Sample, Score

    path = tmp_path / "judge.duckdb"
    store = Store(path)
    store.add_model(ModelRecord("c" * 64, "chat", None, "source"))
    store.start_run(RunRecord("rated", "c" * 64, "mt_bench", "hf", "test", split="test-by-j1"))
    store.finish_run("rated", [Score("overall", "rating", 6.5, 0.3, 20)],
                     [Sample("mt_bench", d, "rating", 6.0 + d % 2) for d in range(20)])
    store.select("c" * 64, "mt_bench", "user")  # no split: the suite's default, test
    monkeypatch.setenv("HARNESS_DB", str(path))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    expire_caches()
    row = open_page("leaderboard").dataframe[0].value.set_index("name").loc["chat"]
    assert row["mt_bench:test-by-j1"] == "6.50 [5.91, 7.09] (in-sample)"  # 6.5 +- 1.96 x 0.3
    assert row["in-sample on"] == "mt_bench:test-by-j1"
    runs = open_page("runs", {"model": "c" * 64}).dataframe[0].value
    assert runs.set_index("run_id").loc["rated", "in_sample"]


def test_overfitting_flags_and_evidence(use_db: str) -> None:
    at = open_page("overfitting")
    cover, table = at.dataframe[0].value, at.dataframe[1].value  # coverage first, then the flags
    assert {"checked", "no twin"} <= set(cover["status"])  # zoo_code has no twin: said, not silent
    checked = cover[cover["status"] == "checked"]
    assert (checked["smallest detectable excess (pts)"] >= 100 * THRESHOLDS.gap_min).all()
    assert any("(model, suite) checked" in i.value and "not checked" in i.value for i in at.warning)
    assert list(table["rank"]) == sorted(table["rank"], reverse=True)
    top = table[table["model"] == "zoo-overfit"]
    assert "twin_gap" in set(top["signal"]) and "high" in set(top["severity"])
    assert all(link.startswith("/lineage?model=") for link in table["evidence"])
    assert int(at.metric[0].value) >= 2  # high flags
    evidence = json.loads(at.code[0].value)
    assert "gap_ci" in evidence or "divergence_ci" in evidence or "gain_ci" in evidence


def test_runs_samples_and_evolve(use_db: str, db: str) -> None:
    mid = Store(db).get_model("evo-best").model_id
    at = open_page("runs", {"model": mid})
    samples = at.dataframe[1].value
    assert {"prompt", "response", "target", "score"} <= set(samples.columns) and len(samples) == 200
    at.toggle(key="runs_wrong").set_value(True).run()
    assert (at.dataframe[1].value["score"] < 1).all()
    assert len(charts(at)) == 1  # evolve history
    assert any("generation 0" in c.value for c in at.caption)


def test_runs_page_offers_every_task_of_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The task picker listed the tasks of the run's first 1,000 sample rows (ordered by task): of mmlu's 57 tasks at
    100 documents, the first 10. A run of three tasks of 600 rows each offers all three, and the last one's rows."""
    from harness.store import ModelRecord, RunRecord, Sample, Score

    path = tmp_path / "tasks.duckdb"
    store = Store(path)
    store.add_model(ModelRecord("m" * 64, "m", None, "source"))
    store.start_run(RunRecord("r", "m" * 64, "s", "hf", "test", split="public"))
    tasks = ("ta", "tb", "tc")
    store.finish_run("r", [Score(t, "acc", 0.5, 0.02, 600) for t in tasks],
                     [Sample(t, d, "acc", float(d % 2)) for t in tasks for d in range(600)])
    monkeypatch.setenv("HARNESS_DB", str(path))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    expire_caches()
    at = open_page("runs", {"model": "m" * 64})
    assert at.selectbox(key="runs_task").options == ["(all)", *tasks]
    at.selectbox(key="runs_task").set_value("tc").run()
    assert set(at.dataframe[1].value["task"]) == {"tc"} and len(at.dataframe[1].value) == 200


def test_runs_page_warns_of_a_run_cut_to_fit_the_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose requests were cut shows how many, beside its columns; a run with none cut, or one stored before
    they were counted, shows no warning."""
    from harness.store import ModelRecord, RunRecord, Score
    from harness.store.records import TaskCuts

    path = tmp_path / "cuts.duckdb"
    store = Store(path)
    store.add_model(ModelRecord("m" * 64, "m", None, "source"))
    for run_id, cuts in (("cut", [TaskCuts("ta", 256, 40, 12, 0), TaskCuts("tb", 256, 20, 0, 3)]),
                         ("whole", [TaskCuts("ta", 256, 40, 0, 0)]), ("older", None)):
        store.start_run(RunRecord(run_id, "m" * 64, "s", "hf", "test", split="public"))
        store.finish_run(run_id, [Score("ta", "acc", 0.5, 0.02, 10)], [], cuts=cuts)
    monkeypatch.setenv("HARNESS_DB", str(path))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    expire_caches()
    at = open_page("runs", {"model": "m" * 64})
    runs = at.dataframe[0].value.set_index("run_id")
    assert list(runs.loc[["cut", "whole"], "cut"]) == [15, 0] and runs.loc["older", ["cut", "requests"]].isna().all()
    for run_id, warned in (("cut", ["15 of 60 requests cut to the 256-token context: scores not comparable with a "
                                    "longer context."]), ("whole", []), ("older", [])):
        at.selectbox(key="runs_run").set_value(run_id).run()
        assert [w.value for w in at.warning] == warned


def test_missing_store_is_an_error_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_DB", str(tmp_path / "none.duckdb"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception and "No harness store" in at.error[0].value
    assert not (tmp_path / "none.duckdb").exists()


def test_pages_read_while_a_writer_process_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "busy.duckdb"
    build(path, models=30, docs=50, sources=3, seed=2)
    monkeypatch.setenv("HARNESS_DB", str(path))
    writer = subprocess.Popen([sys.executable, "-m", "tests.store_worker", "write", str(path), "w1", "20", "200"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    renders = 0
    try:
        while writer.poll() is None or renders < 3:
            for page in ("leaderboard", "overfitting", "runs"):
                expire_caches()
                open_page(page)  # asserts no exception and no error
                renders += 1
            if renders > 60:
                break
    finally:
        out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    assert json.loads(out)["runs"] == 20
    expire_caches()
    board = open_page("leaderboard")
    assert "mw1" in set(board.dataframe[0].value["name"])  # the writer's model shows up once it is written
    assert renders >= 3
    time.sleep(0)  # the store is still a valid harness store after the concurrent use
    assert Store(path).counts()["runs"] >= 20


def test_dashboard_command_refuses_a_missing_store_and_a_busy_port(db: str, tmp_path: Path) -> None:
    import socket

    cmd = [sys.executable, "-m", "harness.cli.__main__"]
    missing = subprocess.run([*cmd, "--db", str(tmp_path / "none.duckdb"), "dashboard"], capture_output=True,
                             text=True, cwd=REPO, timeout=60)
    assert missing.returncode == 2 and "no harness store" in missing.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([*cmd, "--db", db, "dashboard", "--port", str(port)], capture_output=True, text=True,
                             cwd=REPO, timeout=60)
    assert out.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in out.stderr


@pytest.mark.parametrize("page", ["leaderboard", "methods", "lineage", "overfitting", "runs", "studies"])
def test_every_page_on_an_empty_store(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store(tmp_path / "empty.duckdb").init()
    monkeypatch.setenv("HARNESS_DB", str(tmp_path / "empty.duckdb"))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))  # no study there either
    at = open_page(page)  # no exception, no error
    assert at.title and (at.info or at.success)


def test_evolve_only_evidence_on_the_overfitting_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "evolve_only.duckdb"
    build(path, models=0, docs=100, seed=3)
    store = Store(path)
    best = store.get_model("evo-best").model_id  # not inside the write: the store's lock is not re-entrant
    with store.db.write() as con:  # an evolve pick that was never evaluated: only the evolve records remain
        con.execute("DELETE FROM runs WHERE model_id = ?", [best])
    monkeypatch.setenv("HARNESS_DB", str(path))
    at = open_page("overfitting")
    box = at.selectbox(key="of_flag")
    pos = [i for i, o in enumerate(box.options) if "evo-best" in o and "twin_gap" in o]
    assert len(pos) == 1
    box.select_index(pos[0]).run()
    assert not at.exception
    assert any("Evolve run evo-overfit" in c.value for c in at.caption)
    assert json.loads(at.code[0].value)["source"] == "evolve"


def test_what_lives_leaves_the_cyclic_collector_after_a_page(use_db: str) -> None:
    """After a page has run, the objects then alive (the imports' modules, functions and classes) are frozen, so a
    cold Overfitting render's full collections walk only what pages made since."""
    import gc

    open_page("leaderboard")
    assert gc.get_freeze_count() > 50_000


def test_no_cyclic_collection_while_a_page_renders(use_db: str) -> None:
    """The cyclic collector is paused while a page runs (its passes over a cold render's objects were a tenth of a
    cold Overfitting render at 10,000 models) and runs again after."""
    import gc

    open_page("leaderboard")  # the process's first page: what lives is frozen after it
    expire_caches()
    automatic = []
    gc.callbacks.append(lambda phase, info: automatic.append(info["generation"]) if phase == "start" else None)
    try:
        open_page("overfitting")
    finally:
        gc.callbacks.pop()
    assert gc.isenabled()
    assert len(automatic) < 30, automatic  # AppTest's own work around the script: 8 here; 113 without the pause


def test_the_collector_pause_is_shared_by_overlapping_renders() -> None:
    """Overlapping renders (two sessions): the first pauses, the last resumes, an exception resumes too, and a
    collector that was disabled before stays disabled."""
    import gc
    import threading

    sys.path.insert(0, str(REPO / "dashboard"))
    import queries

    entered, leave = threading.Event(), threading.Event()

    def other_session() -> None:
        with queries.collector_paused():
            entered.set()
            leave.wait(10)

    with queries.collector_paused():
        assert not gc.isenabled()
        thread = threading.Thread(target=other_session)
        thread.start()
        assert entered.wait(10)
    assert not gc.isenabled()  # the other render is still running
    leave.set()
    thread.join(10)
    assert gc.isenabled()
    with pytest.raises(RuntimeError), queries.collector_paused():
        raise RuntimeError("a page that fails")
    assert gc.isenabled()
    gc.disable()
    try:
        with queries.collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_analysis_is_kept_on_disk_per_store_version(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted dashboard on an unchanged store reads the flags from disk; after a write to the store the page
    shows the previous flags at once, says so, and the new analysis replaces them when its thread is done."""
    import shutil

    import pyarrow.parquet as pq

    from harness.store.records import ModelRecord, Selection

    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    monkeypatch.setenv("HARNESS_DB", str(copy))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    folder = tmp_path / "results" / "cache" / "dashboard"
    expire_caches()
    open_page("overfitting")
    (kept,) = folder.glob("*.json")
    body = json.loads(kept.read_text())
    flags = body["flags"]
    assert any(f["model"] == "zoo-overfit" and f["signal"] == "twin_gap" for f in flags)
    cover = pq.read_table(folder / kept.name.replace(".json", "-coverage.parquet")).to_pydict()
    assert "checked" in cover["status"] and None in cover["mde"]
    assert (folder / kept.name.replace(".json", ".parquet")).is_file()
    body["flags"] = [{**f, "explanation": "read from disk"} for f in flags]
    kept.write_text(json.dumps(body))  # proof of reading
    expire_caches()  # a new server process
    again = open_page("overfitting")
    assert "read from disk" in str([df.value.to_dict() for df in again.dataframe])
    assert not [i for i in again.info if "store has changed" in i.value]

    Store(copy).add_model(ModelRecord(model_id="f" * 64, name="new-model", path=None, kind="source"))
    Store(copy).add_selection(Selection("sel-new", "f" * 64, "zoo_math", "user", "public"))
    stale = open_page("overfitting")  # same server: the previous flags at once, and a note
    assert "read from disk" in str([df.value.to_dict() for df in stale.dataframe])
    assert [i for i in stale.info if "store has changed" in i.value]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and [p.name for p in folder.glob("*.json")] == [kept.name]:
        time.sleep(0.5)
    (now,) = folder.glob("*.json")  # the old version was replaced
    assert now.name != kept.name and "read from disk" not in now.read_text()
    fresh = open_page("overfitting")
    assert "read from disk" not in str([df.value.to_dict() for df in fresh.dataframe])
    assert not [i for i in fresh.info if "store has changed" in i.value]
    assert "new-model was selected on zoo_math:public" in now.read_text()  # the refresh read the new rows


def test_a_first_analysis_reads_the_store_of_its_version(db: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The lineage and scores a page cached (30 s) may predate a write; a store's first analysis, kept on disk under
    the store's version, must not be computed from them: flags missing the new rows would be shown as current until
    the next write."""
    import shutil

    from harness.store.records import ModelRecord, Selection

    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    monkeypatch.setenv("HARNESS_DB", str(copy))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    expire_caches()
    open_page("leaderboard")  # caches the lineage and scores; no analysis yet
    Store(copy).add_model(ModelRecord(model_id="f" * 64, name="new-model", path=None, kind="source"))
    Store(copy).add_selection(Selection("sel-new", "f" * 64, "zoo_math", "user", "public"))
    at = open_page("overfitting")  # same server, within the TTL
    (kept,) = (tmp_path / "results" / "cache" / "dashboard").glob("*.json")
    assert "new-model was selected on zoo_math:public" in kept.read_text()
    info = [f for f in json.loads(kept.read_text())["flags"] if f["severity"] == "info"]
    assert [m.value for m in at.metric if m.label == "selections (info)"] == [str(len(info))]  # the page shows it
    assert not [i for i in at.info if "store has changed" in i.value]


def test_dashboard_command_analyses_the_store_beside_the_server(db: str, tmp_path: Path) -> None:
    """`harness dashboard` starts the overfitting analysis while the server boots: it is kept on disk before any
    page is opened (Streamlit runs no page code until a browser connects), and no finished process is left
    unreaped under the server."""
    import socket

    from harness.analysis.overfit import analyse

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HARNESS_RESULTS": str(tmp_path / "results")}
    server = subprocess.Popen([sys.executable, "-m", "harness.cli.__main__", "--db", db, "dashboard", "--port",
                               str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    folder = tmp_path / "results" / "cache" / "dashboard"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(folder.glob("*.json")):
            assert server.poll() is None, server.stderr.read()
            time.sleep(0.2)
        (kept,) = folder.glob("*.json")
        flags = json.loads(kept.read_text())["flags"]
        assert sorted((f["model"], f["signal"], f["suite"]) for f in flags) == sorted(
            (f.model, f.signal, f.suite) for f in analyse(Store(db)))
        time.sleep(1)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        stats = [Path(f"/proc/{c}/stat") for c in children]
        assert not [st for st in stats if st.exists() and st.read_text().rsplit(")", 1)[-1].split()[0] == "Z"]
    finally:
        server.terminate()
        server.wait(30)


def test_chart_specs_are_the_ones_altair_writes() -> None:
    """dashboard/charts.py writes the Vega-Lite that Altair's classes wrote for the same charts (Altair, the peer,
    is installed with Streamlit): the same marks and encodings, without Altair's per-render cost."""
    import altair as alt
    import pandas as pd

    sys.path.insert(0, str(REPO / "dashboard"))
    import charts

    def altair_dict(chart: alt.TopLevelMixin) -> dict:
        spec = chart.to_dict()
        for key in ("$schema", "config", "data", "datasets"):
            spec.pop(key, None)
        return json.loads(json.dumps(spec))

    def layer_shared(spec: dict) -> dict:  # a layer's shared encoding moved into each layer, as Altair writes it
        shared = spec.pop("encoding")
        spec["layer"] = [{**layer, "encoding": {**shared, **layer["encoding"]}} for layer in spec["layer"]]
        return spec

    frame = pd.DataFrame({"step": [0, 1], "score": [40.0, 45.5], "split": ["public", "twin"], "model": ["a", "b"],
                          "who": ["x", "y"], "gap": [1.0, 2.0], "lo": [0.5, 1.5], "hi": [1.5, 2.5]})
    mine = charts.lines("step:O", "score:Q", "split:N", charts.tooltips("model", "split", "score:Q"))
    theirs = alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("step:O"), y=alt.Y("score:Q", scale=alt.Scale(zero=False)), color="split:N",
        tooltip=["model:N", "split:N", "score:Q"])
    assert mine == altair_dict(theirs)
    base = alt.Chart(frame).encode(y=alt.Y("who:N", title=None))
    theirs = (base.mark_bar().encode(x=alt.X("gap:Q", title="public - twin (points)"))
              + base.mark_rule(color="black").encode(x="lo:Q", x2="hi:Q"))
    assert layer_shared(charts.bars_with_interval("who:N", "gap:Q", "public - twin (points)")) == altair_dict(theirs)
    assert charts.field("B - A:Q", title=None) == {"field": "B - A", "type": "quantitative", "title": None}


@pytest.mark.parametrize(("rows", "expected"), [
    ([(0.30, 0.20), (0.50, 0.25), (0.40, 0.35), (0.10, 0.05)], 0.25),
    ([(0.30, 0.20), (0.50, None), (0.40, 0.35)], None),  # arg_max skipped the NULL and gave 0.35 (m2's)
    ([(0.50, 0.20), (0.50, 0.30)], 0.20),  # a fitness tie goes to the earliest, as records.best
])
def test_evolve_history_heldout_is_the_fittest_candidates(tmp_path: Path, rows, expected) -> None:
    """The Runs page's evolve history: a generation's held-out score is its fittest candidate's, NULL when that
    one has none, the number records.history (harness evolve --json) gives too."""
    import math

    from harness.store import evolve as records
    from harness.store import frames as views

    store = Store(tmp_path / "h.duckdb")
    store.init()
    records.start_run(store, "ev1", {"fitness_key": "k"})
    with store.db.write() as con:
        for idx, (fit, held) in enumerate(rows):
            con.execute("INSERT INTO evolve_candidates VALUES (?, ?, ?, ?, ?, ?, ?)",
                        ["ev1", 1, idx, f"m{idx}", json.dumps({}), fit, held])
    got = views.evolve_history(store, "ev1")["heldout_of_fittest"].tolist()[0]
    assert (got is None or math.isnan(got)) if expected is None else got == expected
    assert records.history(store, "ev1")[0]["heldout"] == expected


def _split_scores(db: str, suite: str, split: str) -> pd.DataFrame:
    """Each model's score (%) on suite:split from the per-sample rows alone (benchmarks/gen_store.py writes one run
    of one task per model, suite and split), with its merge method from its recipe."""
    import duckdb

    with duckdb.connect(db, read_only=True) as con:
        return con.execute("""
            SELECT m.model_id, m.name, rec.method, 100 * avg(s.score) AS score
            FROM runs r JOIN samples s USING (run_id) JOIN models m USING (model_id)
                LEFT JOIN recipes rec USING (recipe_id)
            WHERE r.suite = ? AND r.split = ? AND s.task NOT LIKE '\\_%' ESCAPE '\\'
            GROUP BY ALL""", [suite, split]).df()


def _exposed(db: str, suite: str, split: str) -> set[str]:
    """The models selected on suite:split or descending from one that was, by a recursive walk of the lineage table."""
    import duckdb

    with duckdb.connect(db, read_only=True) as con:
        return {m for (m,) in con.execute("""
            WITH RECURSIVE up(model_id, ancestor) AS (
                SELECT model_id, model_id FROM models
                UNION SELECT up.model_id, l.parent_id FROM up JOIN lineage l ON l.child_id = up.ancestor)
            SELECT DISTINCT up.model_id FROM up JOIN selections s ON s.model_id = up.ancestor
            WHERE s.suite = ? AND s.split = ?""", [suite, split]).fetchall()}


def _box_data(at: AppTest) -> pd.DataFrame:
    """The rows the Methods page's box plots are drawn from (the chart's own data, not the table beside it)."""
    import pyarrow as pa

    raw = charts(at)[0].proto.data.data
    return pa.ipc.open_stream(raw).read_all().to_pandas().set_index(["method", "suite"]).sort_index()


def _expected_box(scores: pd.DataFrame, suite: str) -> pd.DataFrame:
    merged = scores[scores["method"].notna()]
    g = merged.groupby("method")["score"]
    out = pd.DataFrame({"n": g.count(), "min": g.min(), "q1": g.quantile(0.25), "median": g.median(),
                        "q3": g.quantile(0.75), "max": g.max()})
    return out.assign(suite=suite).set_index("suite", append=True).sort_index()


@pytest.fixture()
def heldout_pick(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the planted store where creep-4 and merge-deeper (merges no model descends from) were also selected
    on zoo_math's heldout split; every other selection of the store is on public."""
    import shutil

    copy = tmp_path / "heldout.duckdb"
    shutil.copy(db, copy)
    store = Store(copy)
    for name in ("creep-4", "merge-deeper"):
        store.select(store.get_model(name).model_id, "zoo_math", "user", split="heldout")
    monkeypatch.setenv("HARNESS_DB", str(copy))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    expire_caches()
    return copy


def test_methods_box_plots_show_the_split_picked(heldout_pick: Path) -> None:
    """The Methods page's box plots were fixed to each suite's default split: no way to compare merge methods on
    heldout. Its split picker opens on the default (the figures as before) and, on heldout, plots every merge's
    heldout score, leaving out (when asked) the models in-sample on heldout, not those selected on public."""
    db = str(heldout_pick)
    at = open_page("methods")
    picker = at.selectbox(key="m_split")
    assert picker.value is None and picker.options == [  # each split with the suites merges are scored on there
        "each suite's default", "heldout (zoo_math)", "public (zoo_code, zoo_lang, zoo_math)",
        "twin (zoo_lang, zoo_math)"]
    at.toggle(key="m_drop").set_value(False).run()
    default = _box_data(at)
    for suite in ("zoo_math", "zoo_lang", "zoo_code"):  # each suite's default split: public
        want = _expected_box(_split_scores(db, suite, "public"), suite)
        got = default.xs(suite, level="suite", drop_level=False)[want.columns]
        pd.testing.assert_frame_equal(got, want, check_dtype=False, check_names=False)

    picker.select("heldout").run()
    heldout = _box_data(at)
    want = _expected_box(_split_scores(db, "zoo_math", "heldout"), "zoo_math")  # the one suite with a heldout split
    print("heldout medians:", heldout["median"].round(2).to_dict())
    pd.testing.assert_frame_equal(heldout[want.columns], want, check_dtype=False, check_names=False)
    assert not heldout["median"].equals(default.xs("zoo_math", level="suite", drop_level=False)["median"])

    at.toggle(key="m_drop").set_value(True).run()  # in-sample on heldout: its own selections' models only
    scores = _split_scores(db, "zoo_math", "heldout")
    left_out = _exposed(db, "zoo_math", "heldout")
    assert {"creep-4", "merge-deeper"} == set(scores.loc[scores["model_id"].isin(left_out), "name"])
    want = _expected_box(scores[~scores["model_id"].isin(left_out)], "zoo_math")
    pd.testing.assert_frame_equal(_box_data(at)[want.columns], want, check_dtype=False, check_names=False)


def _dot_nodes(dot: str) -> dict[str, tuple[str, str, bool]]:
    """name -> (the value written under it, its fill colour, whether it has a double outline)."""
    import re

    found = re.findall(r'label="([^"\\]+)\\n([^"]*)", fillcolor="(#\w+)"([^\]]*)\];', dot)
    return {name: (value, fill, "peripheries=2" in rest) for name, value, fill, rest in found}


def test_lineage_colours_show_the_split_picked(heldout_pick: Path) -> None:
    """The Lineage page coloured nodes by their score on the suite's default split only. Its split picker opens on
    the default (public here: the values and double outlines as before) and, on heldout, writes and colours each
    node by its heldout score, with the double outline on the models in-sample on heldout."""
    sys.path.insert(0, str(REPO / "dashboard"))
    from lineage_graph import RAMP

    db = str(heldout_pick)
    creep = Store(db).get_model("creep-4").model_id
    at = open_page("lineage", {"model": creep, "suite": "zoo_math"})
    picker = at.selectbox(key="lin_split_zoo_math")
    assert picker.value == "public" and set(picker.options) == {"public", "heldout", "twin"}
    for split in ("public", "heldout"):
        picker.select(split).run()
        nodes = _dot_nodes(at.get("graphviz_chart")[0].proto.spec)
        scores = _split_scores(db, "zoo_math", split).set_index("name")["score"].loc[list(nodes)]
        print(split, {n: v for n, (v, _f, _d) in nodes.items()})
        assert {"creep-4", "creep-1", "src-d", "src-b"} <= set(nodes)
        assert {n: v for n, (v, _f, _d) in nodes.items()} == {n: f"{s:.1f}" for n, s in scores.items()}
        frac = (scores - scores.min()) / (scores.max() - scores.min())
        assert {n: f for n, (_v, f, _d) in nodes.items()} == {
            n: RAMP[min(len(RAMP) - 1, int(x * len(RAMP)))] for n, x in frac.items()}
        ids = {Store(db).get_model(n).model_id: n for n in nodes}
        assert {n for n, (_v, _f, double) in nodes.items() if double} == {
            ids[m] for m in _exposed(db, "zoo_math", split) if m in ids}
    assert {n for n, (_v, _f, double) in nodes.items() if double} == {"creep-4"}  # heldout: its own selection only


def test_a_judged_suites_rating_splits_are_offered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A judged suite is scored by a judge's ratings of a split (`test-by-j1`, `heldout-by-j1`; 1-10, not a
    proportion). The Methods and Lineage pages offer those splits, plot the ratings as they are (not x 100), and the
    Lineage page opens on the rating of the suite's default split's questions (mt_bench: test), which has no scores
    of its own."""
    import numpy as np

    from harness.store import LineageEdge, ModelRecord, RunRecord, Sample, Score

    path = tmp_path / "judged.duckdb"
    store = Store(path)
    store.add_model(ModelRecord("c" * 64, "chat", None, "source"))
    store.add_recipe("lin", "linear", "merge_method: linear\n")
    store.add_recipe("ties", "ties", "merge_method: ties\n")
    models = {"chat": ("c" * 64, None), "lin-a": ("a" * 64, "lin"), "lin-b": ("b" * 64, "lin"),
              "ties-a": ("d" * 64, "ties")}
    means: dict[tuple[str, str], float] = {}
    for i, (name, (mid, recipe)) in enumerate(models.items()):
        if recipe:
            store.add_model(ModelRecord(mid, name, None, "merge", recipe_id=recipe))
            store.add_lineage([LineageEdge(mid, "c" * 64, "base")])
        for split, shift in (("test-by-j1", 0.0), ("heldout-by-j1", -2.0)):
            xs = [4.0 + shift + (d * (i + 1)) % 6 for d in range(20)]
            means[(name, split)] = float(np.mean(xs))
            run = f"{name}-{split}"
            store.start_run(RunRecord(run, mid, "mt_bench", "hf", "test", split=split))
            store.finish_run(run, [Score("overall", "rating", means[(name, split)], 0.3, 20)],
                             [Sample("mt_bench", d, "rating", x) for d, x in enumerate(xs)])
    monkeypatch.setenv("HARNESS_DB", str(path))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    expire_caches()

    at = open_page("methods")
    assert at.selectbox(key="m_split").options == [
        "each suite's default", "heldout-by-j1 (mt_bench)", "test-by-j1 (mt_bench)"]
    at.selectbox(key="m_split").select("test-by-j1").run()
    box = _box_data(at)
    lin = [means[("lin-a", "test-by-j1")], means[("lin-b", "test-by-j1")]]
    assert box.loc[("linear", "mt_bench"), ["n", "min", "median", "max"]].tolist() == pytest.approx(
        [2, min(lin), float(np.median(lin)), max(lin)])
    assert box.loc[("ties", "mt_bench"), "median"] == pytest.approx(means[("ties-a", "test-by-j1")])

    at = open_page("lineage", {"model": "a" * 64, "suite": "mt_bench"})
    picker = at.selectbox(key="lin_split_mt_bench")
    assert picker.value == "test-by-j1" and picker.options == ["heldout-by-j1", "test-by-j1"]
    for split in ("test-by-j1", "heldout-by-j1"):
        picker.select(split).run()
        nodes = _dot_nodes(at.get("graphviz_chart")[0].proto.spec)
        assert {n: v for n, (v, _f, _d) in nodes.items()} == {n: f"{means[(n, split)]:.2f}" for n in ("lin-a", "chat")}

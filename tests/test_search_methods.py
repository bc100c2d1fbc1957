"""Searches as methods (harness.analysis.search_methods): labels from evolve runs, their selections and lineage,
picks made on the selection split by suite score, paired differences per question on the compared split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.analysis.search_methods import search_labels, stored_comparison

PS = {"config": {"method": "task_arithmetic"}}
DFS = {"config": {"method": "dfs"}}


def frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    models = pd.DataFrame({"model_id": ["h1", "h2", "ps", "ps0", "dfs", "psdfs", "src"],
                           "kind": ["merge", "merge", "merge", "merge", "merge", "merge", "model"]})
    runs = pd.DataFrame([
        {"evolve_id": "e1", "status": "complete", "best_model_id": "ps", "config": json.dumps(PS)},
        {"evolve_id": "e2", "status": "complete", "best_model_id": "dfs", "config": json.dumps(DFS)},
        {"evolve_id": "e3", "status": "complete", "best_model_id": "psdfs", "config": json.dumps(DFS)},
        {"evolve_id": "e4", "status": "running", "best_model_id": "h2", "config": "{}"},
    ])
    edges = pd.DataFrame({"child_id": ["dfs", "psdfs", "psdfs"], "parent_id": ["src", "ps0", "src"]})
    sels = pd.DataFrame({"model_id": ["ps0", "ps", "h1"], "suite": "s", "split": "search",
                         "process": ["evolve", "evolve", "user"], "process_id": ["e1", "e1", None]})
    return models, runs, edges, sels


def test_labels_follow_the_search_that_made_each_model() -> None:
    """ps0 is e1's pick before e1 was extended (its selection stays; best_model_id is now ps): a PS merge, never a
    hand recipe, and a layer path over it is PS+DFS. Before: ps0 "hand", psdfs "DFS"."""
    labels = search_labels(*frames())
    assert labels == {"ps": "PS", "ps0": "PS", "dfs": "DFS", "psdfs": "PS+DFS", "h1": "hand", "h2": "hand"}


# ---------------------------------------------------------------------------------------- real stores
def write_suite(root: Path, name: str, splits: dict[str, list[str]], by_size: bool = True) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "suite.yaml").write_text(
        f"name: {name}\nversion: '1'\nkind: lm-eval\ndefault_split: search\nsplits: {json.dumps(splits)}\n"
        f"aggregate: {{metric: acc, weight_by_size: {str(by_size).lower()}}}\n")


def add_run(store, model_id: str, suite: str, split: str, tasks: dict[str, np.ndarray], shared: bool) -> None:
    """A complete run with one 0/1 acc sample per document; `shared`: a document's doc_hash is the same in every
    task of the split (a zoo suite), else each (task, document) is its own (an MMLU-like suite)."""
    from harness.store import RunRecord, Sample, Score

    run_id = f"{model_id}-{suite}-{split}"
    store.start_run(RunRecord(run_id, model_id, suite, "hf", "0", split=split))
    store.finish_run(run_id, [Score(t, "acc", float(np.mean(x)), None, len(x)) for t, x in tasks.items()],
                     [Sample(t, d, "acc", float(v), doc_hash=f"{split}/{d}" if shared else f"{t}/{d}")
                      for t, x in tasks.items() for d, v in enumerate(x)])


def add_models(store, ids: list[str]) -> None:
    from harness.store import ModelRecord

    for mid in ids:
        store.add_model(ModelRecord(mid, mid, None, "merge"))


def add_evolve(store, evolve_id: str, picks: list[str], suite: str, config: dict) -> None:
    """An evolve run that picked `picks` in turn (extended: its best is the last), each recorded as a selection."""
    from harness.store import evolve as records

    records.start_run(store, evolve_id, config)
    for mid in picks:
        records.add_selection(store, mid, suite, "search", evolve_id)
    records.finish_run(store, evolve_id, "complete", picks[-1])


def hand_figures(items: pd.DataFrame, by_size: bool) -> pd.Series:
    """(model, split) -> suite score, from the items (model, split, task, doc, score) by pandas."""
    if by_size:
        return items.groupby(["model", "split"])["score"].mean()
    return items.groupby(["model", "split", "task"])["score"].mean().groupby(["model", "split"]).mean()


def mmlu_like(rng: np.random.Generator) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """model -> split -> task -> 0/1 scores. Search: abstract algebra 10 documents, anatomy 30; h1 answers 16 of
    anatomy's documents 10-29, h2 every document 0-9 of both (suite scores 40.0 and 50.0; by doc_id averaged over
    the tasks, as before: 53.3 and 33.3). Held-out: 12 and 36 documents, random at each model's own rate."""
    def blocks(alg: int, low: int, high: int) -> dict[str, np.ndarray]:
        return {"alg_s": (np.arange(10) < alg).astype(float),
                "anat_s": np.r_[np.arange(10) < low, np.arange(20) < high].astype(float)}

    search = {"h1": blocks(0, 0, 16), "h2": blocks(10, 10, 0), "h3": blocks(4, 4, 6),
              "ps0": blocks(6, 6, 6), "ps": blocks(10, 10, 4)}
    rate = {"h1": 0.7, "h2": 0.4, "h3": 0.5, "ps0": 0.6, "ps": 0.55}
    return {m: {"search": s, "heldout": {"alg_h": (rng.random(12) < rate[m]).astype(float),
                                         "anat_h": (rng.random(36) < rate[m]).astype(float)}}
            for m, s in search.items()}


def build(store, suites: Path, suite: str, data: dict, shared: bool, by_size: bool = True) -> pd.DataFrame:
    splits = {sp: list(tasks) for sp, tasks in next(iter(data.values())).items()}
    write_suite(suites, suite, splits, by_size)
    add_models(store, list(data))
    for mid, per in data.items():
        for split, tasks in per.items():
            add_run(store, mid, suite, split, tasks, shared)
    return pd.DataFrame([(m, sp, t, d, v) for m, per in data.items() for sp, tasks in per.items()
                         for t, x in tasks.items() for d, v in enumerate(x)],
                        columns=["model", "split", "task", "doc", "score"])


@pytest.mark.parametrize("by_size", [True, False])
def test_an_mmlu_like_suite_is_picked_by_suite_score_and_paired_by_question(store, tmp_path, monkeypatch,
                                                                            by_size) -> None:
    """Tasks holding different documents of different sizes: the picks and means are the suite scores (size-weighted
    or the plain mean of the task means, per suite.yaml), the pairing unit a question (48 held-out questions, not
    36 doc ids) and the paired difference the suite scores' difference. Before: hand h1 (doc_id averages 53.3 vs
    h2's 33.3, suite scores 40.0 vs 50.0), n 36, differences of averages of unrelated documents."""
    suites = tmp_path / "suites"
    monkeypatch.setenv("HARNESS_SUITES", str(suites))
    items = build(store, suites, "mmlike", mmlu_like(np.random.default_rng(1)), shared=False, by_size=by_size)
    add_evolve(store, "e1", ["ps0", "ps"], "mmlike", PS)
    score = hand_figures(items, by_size)
    table = stored_comparison(store, "mmlike").set_index("method")
    hands = score.xs("search", level="split").loc[["h1", "h2", "h3"]]
    assert table.loc["hand", "model_id"] == hands.idxmax() == "h2"
    searched = score.xs("search", level="split").loc[["ps0", "ps"]]
    assert table.loc["PS", "model_id"] == searched.idxmax()
    for method, mid in table["model_id"].items():
        assert table.loc[method, "search"] == pytest.approx(100 * score[(mid, "search")], abs=1e-9)
        assert table.loc[method, "heldout"] == pytest.approx(100 * score[(mid, "heldout")], abs=1e-9)
        want = 100 * (score[(mid, "heldout")] - score[("h2", "heldout")])
        assert table.loc[method, "vs best hand"] == pytest.approx(want, abs=1e-9)
        assert table.loc[method, "n"] == 48
    held = items[items["split"] == "heldout"].pivot_table(index=["task", "doc"], columns="model", values="score")
    if by_size:  # one question per item: the mean of the item differences
        ps = table.loc["PS", "model_id"]
        assert table.loc["PS", "vs best hand"] == pytest.approx(100 * (held[ps] - held["h2"]).mean(), abs=1e-9)
    assert table.loc["PS", "ci_low"] < table.loc["PS", "vs best hand"] < table.loc["PS", "ci_high"]


def test_a_zoo_suite_pairs_a_document_once_with_both_its_tasks(store, tmp_path, monkeypatch) -> None:
    """Tasks posing the same documents (a zoo suite's multiple choice and generation: one doc_hash): unchanged, a
    document is one question, its score the mean over the tasks; picks by suite score."""
    suites = tmp_path / "suites"
    monkeypatch.setenv("HARNESS_SUITES", str(suites))
    rng = np.random.default_rng(2)
    rate = {"h1": 0.3, "h2": 0.5, "ps": 0.6}
    data = {m: {sp: {f"{k}_{sp}": (rng.random(40) < p).astype(float) for k in ("mc", "gen")}
                for sp in ("search", "heldout")} for m, p in rate.items()}
    items = build(store, suites, "zoolike", data, shared=True)
    add_evolve(store, "e1", ["ps"], "zoolike", PS)
    table = stored_comparison(store, "zoolike").set_index("method")
    score = hand_figures(items, True)
    assert table.loc["hand", "model_id"] == score.xs("search", level="split").loc[["h1", "h2"]].idxmax()
    doc = items[items["split"] == "heldout"].groupby(["model", "doc"])["score"].mean()
    hand = table.loc["hand", "model_id"]
    assert table.loc["PS", "vs best hand"] == pytest.approx(100 * (doc.loc["ps"] - doc.loc[hand]).mean(), abs=1e-9)
    assert table.loc["PS", "n"] == 40 and table.loc["hand", "vs best hand"] == 0.0
    assert table.loc["PS", "heldout"] == pytest.approx(100 * score[("ps", "heldout")], abs=1e-9)


def test_an_extended_runs_earlier_pick_stays_its_searchs(store, tmp_path, monkeypatch) -> None:
    """An evolve run extended with a larger budget picks `ps` after `ps0` (both selections recorded): ps0, the best
    on the search split of every merge, is a PS pick, not the best hand recipe. Before: hand = ps0 (search 60.0)."""
    suites = tmp_path / "suites"
    monkeypatch.setenv("HARNESS_SUITES", str(suites))
    rng = np.random.default_rng(3)
    rate = {"h1": 0.3, "h2": 0.4, "ps0": 0.9, "ps": 0.6}
    data = {m: {sp: {f"t_{sp}": (np.arange(40) < 40 * p).astype(float) if sp == "search"
                     else (rng.random(40) < p).astype(float)} for sp in ("search", "heldout")}
            for m, p in rate.items()}
    build(store, suites, "onetask", data, shared=False)
    add_evolve(store, "e1", ["ps0", "ps"], "onetask", PS)
    from harness.store import evolve as records

    records.add_selection(store, "ps", "onetask", "heldout", "e1", note="finalist")
    table = stored_comparison(store, "onetask").set_index("method")
    assert table.loc["hand", "model_id"] == "h2" and table.loc["PS", "model_id"] == "ps0"
    assert table["in_sample"].to_dict() == {"hand": False, "PS": False}
    records.add_selection(store, "ps0", "onetask", "heldout", "e1", note="finalist")
    assert stored_comparison(store, "onetask")["in_sample"].tolist() == [False, True]


def test_stored_comparison_on_a_generated_store_equals_pandas(tmp_path) -> None:
    """On a generated DuckDB store (one task per split, thousands of documents): per suite and pair of splits, the
    picks are the suite scores' best, and each difference the pandas mean of the per-document differences."""
    from benchmarks.gen_store import build as generate
    from harness.store import Store
    from harness.store import frames as views

    generate(tmp_path / "s.duckdb", models=60, docs=40, sources=4, seed=4)
    store = Store(tmp_path / "s.duckdb")
    with store.db.read() as con:
        models, edges, sels = views.models(con), views.edges(con), views.selections(con)
        scores = views.suite_scores(con, rules={})
    labels = search_labels(models, views.evolve_runs(store), edges, sels)
    assert {"hand", "PS"} <= set(labels.values())
    docs = views.doc_scores(store, sorted(scores["run_id"])).merge(scores[["run_id", "model_id", "split", "suite"]])
    compared = 0
    for suite in sorted(scores["suite"].unique()):
        sc = scores[(scores["suite"] == suite) & scores["model_id"].isin(labels)]
        for a in sorted(sc["split"].unique()):
            for b in sorted(set(sc["split"]) - {a}):
                table = stored_comparison(store, suite, a, b).set_index("method")
                both = sc.pivot_table(index="model_id", columns="split", values="value")[[a, b]].dropna()
                for method, mid in table["model_id"].items():
                    own = both[both.index.map(labels) == method][a]
                    assert mid == max(own.index[own == own.max()])  # ties: the highest id
                    hand = table.loc["hand", "model_id"]
                    per = docs[(docs["suite"] == suite) & (docs["split"] == b)].pivot_table(
                        index="doc_id", columns="model_id", values="score")
                    want = 100 * (per[mid] - per[hand]).dropna().mean()
                    assert table.loc[method, "vs best hand"] == pytest.approx(want, abs=1e-9)
                compared += not table.empty
    assert compared


JUDGED = "heldout-by-judge@j1"  # a judge's rating of the held-out split: its questions are heldout's


def lineage_store(store, suites: Path) -> None:
    """onetask: hand h1, h2 (children of `hbase`), PS picks ps0, ps (children of `pbase`), scored on search,
    heldout and a judge's rating of heldout; `pbase` selected on heldout, `hbase` on the suite's default split
    (a selection without a split: search)."""
    from harness.store import LineageEdge, ModelRecord

    rng = np.random.default_rng(5)
    rate = {"h1": 0.3, "h2": 0.4, "ps0": 0.9, "ps": 0.6}
    data = {m: {sp: {f"t_{sp}": (rng.random(40) < p).astype(float)} for sp in ("search", "heldout", JUDGED)}
            for m, p in rate.items()}
    build(store, suites, "onetask", data, shared=False)
    add_evolve(store, "e1", ["ps0", "ps"], "onetask", PS)
    for base, children in (("pbase", ["ps0", "ps"]), ("hbase", ["h1", "h2"])):
        store.add_model(ModelRecord(base, base, None, "source"))
        store.add_lineage([LineageEdge(c, base, "source", 1.0) for c in children])
    store.select("pbase", "onetask", "user", split="heldout")
    store.select("hbase", "onetask", "user")


# by hand: each model's (and its ancestors') selections, as the questions of the split selected on
EXPOSED = {"ps0": {"search", "heldout"}, "ps": {"search", "heldout"}, "h1": {"search"}, "h2": {"search"}}


@pytest.mark.parametrize(("chosen_on", "compare_on"), [("search", "heldout"), ("search", JUDGED),
                                                       ("heldout", "search")])
def test_in_sample_is_the_one_rule_a_parents_selection_and_a_judges_split_count(store, tmp_path, monkeypatch,
                                                                               chosen_on, compare_on) -> None:
    """A pick whose PARENT was selected on the compared split (or on the split a judge rated, or on the default split
    through a selection without one) is in-sample there, in `harness leaderboard --methods` and on the dashboard's
    Methods page alike (harness.analysis.evidence Data.in_sample). Before: only the pick's own selections of that raw
    split name counted: PS on heldout, both on the judge's split and hand on search all False."""
    import sys

    suites = tmp_path / "suites"
    monkeypatch.setenv("HARNESS_SUITES", str(suites))
    lineage_store(store, suites)
    question = {JUDGED: "heldout"}.get(compare_on, compare_on)
    table = stored_comparison(store, "onetask", chosen_on, compare_on)
    want = {r.method: question in EXPOSED[r.model_id] for r in table.itertuples()}
    assert set(want) == {"hand", "PS"} and any(want.values())
    assert dict(zip(table["method"], table["in_sample"], strict=True)) == want
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dashboard"))
    import queries

    shown = queries.search_comparison(str(store.path), "onetask", chosen_on, compare_on)
    assert dict(zip(shown["method"], shown["in_sample"], strict=True)) == want

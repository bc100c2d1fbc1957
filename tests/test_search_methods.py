"""Searches as methods (harness.analysis.search_methods): labels from evolve runs and lineage, picks made on the
selection split, paired differences on the compared split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from harness.analysis.search_methods import method_comparison, search_labels


def frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    models = pd.DataFrame({"model_id": ["h1", "h2", "ps", "dfs", "psdfs", "src"],
                           "kind": ["merge", "merge", "merge", "merge", "merge", "model"]})
    runs = pd.DataFrame([
        {"evolve_id": "e1", "status": "complete", "best_model_id": "ps",
         "config": json.dumps({"config": {"method": "task_arithmetic"}})},
        {"evolve_id": "e2", "status": "complete", "best_model_id": "dfs",
         "config": json.dumps({"config": {"method": "dfs"}})},
        {"evolve_id": "e3", "status": "complete", "best_model_id": "psdfs",
         "config": json.dumps({"config": {"method": "dfs"}})},
        {"evolve_id": "e4", "status": "running", "best_model_id": "h2", "config": "{}"},
    ])
    edges = pd.DataFrame({"child_id": ["dfs", "psdfs", "psdfs"], "parent_id": ["src", "ps", "src"]})
    return models, runs, edges


def test_labels_follow_the_search_that_made_each_model() -> None:
    labels = search_labels(*frames())
    assert labels == {"ps": "PS", "dfs": "DFS", "psdfs": "PS+DFS", "h1": "hand", "h2": "hand"}


def test_picks_are_made_on_the_selection_split_and_compared_paired_on_the_other() -> None:
    rng = np.random.default_rng(0)
    n = 200
    truth = {"h1": 0.30, "h2": 0.20, "ps": 0.45, "dfs": 0.30, "psdfs": 0.60}
    rows = []
    for mid, p in truth.items():
        for split in ("search", "heldout"):
            for task in ("mc", "gen"):
                for d in range(n):
                    rows.append({"model_id": mid, "split": split, "task": f"{task}_{split}", "doc_id": d,
                                 "score": float(rng.random() < p)})
    docs = pd.DataFrame(rows)
    labels = search_labels(*frames())
    table = method_comparison(labels, docs, "search", "heldout").set_index("method")
    assert list(table.index) == ["hand", "PS", "DFS", "PS+DFS"]
    assert table.loc["hand", "model_id"] == "h1" and table.loc["hand", "vs best hand"] == 0.0
    held = docs[docs["split"] == "heldout"].groupby(["model_id", "doc_id"])["score"].mean()
    want = 100 * (held.loc["psdfs"] - held.loc["h1"]).mean()
    assert abs(table.loc["PS+DFS", "vs best hand"] - want) < 1e-9
    assert table.loc["PS+DFS", "ci_low"] > 0 and table.loc["PS+DFS", "n"] == n
    assert table.loc["DFS", "ci_low"] < 0 < table.loc["DFS", "ci_high"]
    assert method_comparison(labels, docs[~docs["model_id"].isin(["h1", "h2"])], "search",
                             "heldout").empty  # no hand recipe: nothing to compare with
    assert not table["in_sample"].any()
    finalists = method_comparison(labels, docs, "search", "heldout", frozenset({("psdfs", "heldout"),
                                                                                  ("ps", "search")}))
    assert finalists.set_index("method")["in_sample"].to_dict() == {"hand": False, "PS": False, "DFS": False,
                                                                     "PS+DFS": True}


def test_stored_comparison_reads_only_contenders_and_equals_the_whole_comparison(tmp_path) -> None:
    """On a generated DuckDB store: the per-run document means from the index equal the pandas means of the
    documents, and the comparison over the contenders' documents equals method_comparison over every model's."""
    from benchmarks.gen_store import build
    from harness.analysis.search_methods import selections_of, stored_comparison
    from harness.store import Store
    from harness.store import frames as views

    build(tmp_path / "s.duckdb", models=60, docs=40, sources=4, seed=4)
    store = Store(tmp_path / "s.duckdb")
    with store.db.read() as con:
        models, edges = views.models(con), views.edges(con)
        scores = views.suite_scores(con, rules={})
    labels = search_labels(models, views.evolve_runs(store), edges)
    assert {"hand", "PS"} <= set(labels.values())
    runs = sorted(scores["run_id"])
    docs = views.doc_scores(store, runs)
    want = docs.groupby(["run_id", "doc_id"])["score"].mean().groupby("run_id").mean()
    got = views.run_doc_means(store, runs).set_index("run_id")["mean"]
    assert list(got.index) == list(want.index) and np.allclose(got, want, rtol=0, atol=1e-12)
    compared = 0
    for suite in sorted(scores["suite"].unique()):
        splits = sorted(scores.loc[scores["suite"] == suite, "split"].unique())
        for a in splits:
            for b in splits:
                sc = scores[(scores["suite"] == suite) & scores["split"].isin([a, b])
                            & scores["model_id"].isin(labels)]
                every = docs.merge(sc[["run_id", "model_id", "split"]], on="run_id")
                whole = method_comparison(labels, every, a, b, selections_of(views.selections(store), suite))
                pd.testing.assert_frame_equal(stored_comparison(store, suite, a, b), whole)
                compared += not whole.empty
    assert compared

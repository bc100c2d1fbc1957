"""Searches as methods (harness.analysis.search_methods): labels from evolve runs and lineage, picks made on the
selection split, paired differences on the compared split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness.analysis.search_methods import method_comparison, search_labels, stored_comparison

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
    from harness.analysis.search_methods import selections_of
    from harness.store import Store
    from harness.store import frames as views

    build(tmp_path / "s.duckdb", models=60, docs=40, sources=4, seed=4)
    store = Store(tmp_path / "s.duckdb")
    with store.db.read() as con:
        models, edges, sels = views.models(con), views.edges(con), views.selections(con)
        scores = views.suite_scores(con, rules={})
    labels = search_labels(models, views.evolve_runs(store), edges, sels)
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

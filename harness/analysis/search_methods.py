"""Hand recipes against the searches (PS, DFS, PS+DFS) as methods, from stored results only.

    labels = search_labels(models, evolve_runs, edges, selections)  # model_id -> "hand" | "PS" | "DFS" | "PS+DFS"
    table = stored_comparison(store, suite, chosen_on="search", compare_on="heldout")

Every merge an evolve run picked (its best when it completed, and each pick it recorded as a selection: a run
extended with a larger budget picks again, and its earlier pick stays its search's) is labelled by its search:
"DFS" when the run searched a layer path, "PS+DFS" when that path's parents include another evolve run's pick,
else "PS"; every other merge is a "hand" recipe. Per method, the model with the highest suite score on `chosen_on`
(the search split: the choice is itself a selection, never made on the split compared) is compared with the best
hand recipe chosen the same way, on `compare_on`. The scores are the suite scores the leaderboard shows
(harness/store/frames.py SUITE_SCORES_SQL: the size-weighted or plain mean over the suite's tasks, per its rules);
the pairing unit is a question (harness/seed_questions.py question_keys: a zoo document scored by multiple choice
and by generation is one question, document 0 of two MMLU subjects are two), each weighted as the suite score
weights its items, so that the paired mean difference is the difference of the two suite scores; with a paired
t 95% interval over questions (harness.stats.paired_compare).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from harness.stats import paired_compare

if TYPE_CHECKING:
    from harness.analysis.evidence import Data
    from harness.store import Store

METHOD_ORDER = ("hand", "PS", "DFS", "PS+DFS")
ITEM_COLUMNS = ["model_id", "task", "doc_id", "score", "question"]


def search_picks(evolve_runs: pd.DataFrame, selections: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """model_id -> the config of the evolve run that picked it: each complete run's best, and every model an evolve
    run recorded as its selection (harness.store.evolve.add_selection; a run's earlier picks too)."""
    configs = {r.evolve_id: r.config for r in evolve_runs.itertuples()}
    chosen = [(r.best_model_id, r.config) for r in evolve_runs.itertuples()
              if r.status == "complete" and isinstance(r.best_model_id, str)]
    chosen += [(s.model_id, configs[s.process_id]) for s in selections.itertuples()
               if s.process == "evolve" and s.process_id in configs]
    out: dict[str, dict[str, Any]] = {}
    for mid, config in chosen:
        cfg = json.loads(config) if isinstance(config, str) else dict(config or {})
        out.setdefault(mid, cfg.get("config", {}))
    return out


def search_labels(models: pd.DataFrame, evolve_runs: pd.DataFrame, edges: pd.DataFrame,
                  selections: pd.DataFrame) -> dict[str, str]:
    picks = search_picks(evolve_runs, selections)
    out: dict[str, str] = {}
    for mid, cfg in picks.items():
        if cfg.get("method") == "dfs":
            parents = set(edges.loc[edges["child_id"] == mid, "parent_id"])
            out[mid] = "PS+DFS" if parents & set(picks) else "DFS"
        else:
            out[mid] = "PS"
    for r in models.itertuples():
        if r.kind == "merge" and r.model_id not in out:
            out[r.model_id] = "hand"
    return out


def method_picks(labels: dict[str, str], scores: pd.DataFrame, chosen_on: str, compare_on: str) -> dict[str, str]:
    """method -> the model with the highest suite score on `chosen_on` of those with one on both splits (ties: the
    highest id). `scores` has model_id, split, value (suite scores, frames.suite_scores)."""
    wide = scores.pivot_table(index="model_id", columns="split", values="value", aggfunc="first")
    if chosen_on not in wide or compare_on not in wide:
        return {}
    on = wide.dropna(subset=[chosen_on, compare_on])[chosen_on]
    picks: dict[str, str] = {}
    for method in METHOD_ORDER:
        cands = [m for m in on.index if labels.get(m) == method]
        if cands:
            picks[method] = max(cands, key=lambda m: (on[m], m))
    return picks


def question_scores(items: pd.DataFrame, by_size: bool) -> pd.Series:
    """question -> its share of the suite score: the sum of its items' scores, each weighted as the suite score
    weights it (1/N of the N items, or 1/(T n_t) for the plain mean of T task means); the shares sum to the score.
    `items` has task, score, question (one run's)."""
    if items.empty:
        return pd.Series(dtype=float)
    per_task = items.groupby("task")["score"].transform("size")
    weight = 1.0 / len(items) if by_size else 1.0 / (items["task"].nunique() * per_task)
    return (items["score"] * weight).groupby(items["question"]).sum()


def paired_by_question(ref: pd.DataFrame, other: pd.DataFrame, by_size: bool) -> Any:
    """harness.stats.paired_compare of two runs' items (task, score, question) over the questions both scored,
    each question's share of the suite score times their number Q: the mean difference is the difference of the
    two suite scores over those questions (a question counts once, with all its items)."""
    common = np.intersect1d(ref["question"].unique(), other["question"].unique())
    a = question_scores(ref[ref["question"].isin(common)], by_size).reindex(common)
    b = question_scores(other[other["question"].isin(common)], by_size).reindex(common)
    return paired_compare(len(common) * a.to_numpy(), len(common) * b.to_numpy())


def method_comparison(labels: dict[str, str], scores: pd.DataFrame, items: pd.DataFrame, chosen_on: str,
                      compare_on: str, by_size: bool = True,
                      in_sample: frozenset[str] = frozenset()) -> pd.DataFrame:
    """One row per method with a model scored on both splits: its pick (method_picks), suite scores, and the paired
    difference with the best hand recipe on `compare_on` (points), or an empty frame when no hand recipe is scored
    on both. `items` has ITEM_COLUMNS: the picks' items on `compare_on` (a pick without items: no difference, n 0).
    `in_sample` holds the models whose `compare_on` scores are in-sample (evidence.Data.in_sample: it or an ancestor
    was selected on those questions, an evolve run's declared finalists, say): such a pick is marked `in_sample`, its
    difference there no honest check."""
    picks = method_picks(labels, scores, chosen_on, compare_on)
    if "hand" not in picks:
        return pd.DataFrame()
    value = scores.set_index(["model_id", "split"])["value"]
    of = dict(tuple(items.groupby("model_id")))
    ref = of.get(picks["hand"], pd.DataFrame(columns=ITEM_COLUMNS))
    rows = []
    for method, mid in picks.items():
        cmp = paired_by_question(ref, of.get(mid, pd.DataFrame(columns=ITEM_COLUMNS)), by_size)
        rows.append({"method": method, "model_id": mid, chosen_on: 100 * value[(mid, chosen_on)],
                     compare_on: 100 * value[(mid, compare_on)], "vs best hand": 100 * cmp.mean_diff,
                     "ci_low": 100 * cmp.ci_low, "ci_high": 100 * cmp.ci_high, "n": cmp.n,
                     "in_sample": mid in in_sample})
    return pd.DataFrame(rows)


def run_items(store: Store, suite: str, split: str, run_id: str, metric: str) -> pd.DataFrame:
    """A run's items as its suite score reads them (harness/store/suite_se.py task_documents: the suite's metric,
    `metric` as frames.suite_scores shows it, several joined by '+' where each task takes its primary) with the
    question each poses (harness/seed_questions.py question_keys; an item without one is a question of its own);
    no rows where a task's documents do not make its stored value (no honest pairing)."""
    from harness.seed_questions import question_keys
    from harness.store.suite_se import task_documents

    with store.db.read() as con:
        tasks = task_documents(con, run_id, None if "+" in metric else metric)
    if not tasks or not all(t.makes_value() for t in tasks):
        return pd.DataFrame(columns=ITEM_COLUMNS[1:])
    items = pd.DataFrame([(t.task, d, x, h) for t in tasks for d, x, h in zip(t.doc_ids, t.scores, t.hashes,
                                                                               strict=True)],
                         columns=["task", "doc_id", "score", "doc_hash"])
    hashes = {(t, int(d)): h for t, d, h in zip(items["task"], items["doc_id"], items["doc_hash"], strict=True)}
    named = question_keys(suite, split, hashes)
    items["question"] = [named.get(k, f"{k[0]}#{k[1]}") for k in hashes]
    return items.drop(columns="doc_hash")


def compare_scores(store: Store, data: Data, labels: dict[str, str], sc: pd.DataFrame, suite: str, chosen_on: str,
                   compare_on: str) -> pd.DataFrame:
    """method_comparison over `sc` (suite scores of `suite` on the two splits: model_id, split, run_id, value,
    metric), reading the items of the picks' runs on `compare_on` only; a pick in-sample there by the one rule
    (`data`.in_sample) is marked."""
    from harness.suites import score_rules

    picks = method_picks(labels, sc, chosen_on, compare_on)
    if "hand" not in picks:
        return pd.DataFrame()
    runs = sc[(sc["split"] == compare_on) & sc["model_id"].isin(picks.values())]
    items = [run_items(store, suite, compare_on, r.run_id, r.metric).assign(model_id=r.model_id)
             for r in runs.itertuples()]
    rule = score_rules().get(suite)
    inside = frozenset(m for m in picks.values() if data.in_sample(m, suite, compare_on))
    return method_comparison(labels, sc, pd.concat(items, ignore_index=True)[ITEM_COLUMNS], chosen_on, compare_on,
                             rule.weight_by_size if rule else True, inside)


def stored_labels(store: Store, data: Data) -> dict[str, str]:
    """search_labels of the stored models, over `data`'s lineage graph (no second read of the edges)."""
    from harness.store import frames as views

    edges = pd.DataFrame([(c, p) for c, ps in data.graph.parents.items() for p in ps],
                         columns=["child_id", "parent_id"])
    return search_labels(data.models, views.evolve_runs(store), edges, views.selections(store))


def stored_comparison(store: Store, suite: str, chosen_on: str = "search", compare_on: str = "heldout") -> pd.DataFrame:
    """method_comparison over the runs of `suite` the suite scores are read from (what `harness leaderboard --methods`
    prints)."""
    from harness.analysis.evidence import gather_base

    data = gather_base(store)  # the suite scores, lineage and exposure (the one in-sample rule)
    labels = stored_labels(store, data)
    scores = data.scores
    sc = scores[(scores["suite"] == suite) & scores["split"].isin([chosen_on, compare_on])
                & scores["model_id"].isin(labels)]
    return compare_scores(store, data, labels, sc, suite, chosen_on, compare_on) if len(sc) else pd.DataFrame()

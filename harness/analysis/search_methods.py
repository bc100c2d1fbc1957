"""Hand recipes against the searches (PS, DFS, PS+DFS) as methods, from stored results only.

    labels = search_labels(models, evolve_runs, edges, selections)  # model_id -> "hand" | "PS" | "DFS" | "PS+DFS"
    table = method_comparison(labels, docs, chosen_on="search", compare_on="heldout")

Every merge an evolve run picked (its best when it completed, and each pick it recorded as a selection: a run
extended with a larger budget picks again, and its earlier pick stays its search's) is labelled by its search:
"DFS" when the run searched a layer path, "PS+DFS" when that path's parents include another evolve run's pick,
else "PS"; every other merge is a "hand" recipe. Per method, the model with the highest score on `chosen_on` (the
search split: the choice is itself a selection, never made on the split compared) is compared with the best hand
recipe chosen the same way, per document on `compare_on` (a document's score: the mean over the suite's tasks of
its primary metric), with a paired bootstrap 95% interval (harness.stats.paired_compare).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pandas as pd

from harness.stats import paired_compare

if TYPE_CHECKING:
    from harness.store import Store

METHOD_ORDER = ("hand", "PS", "DFS", "PS+DFS")


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


def per_document(docs: pd.DataFrame) -> pd.DataFrame:
    """(model_id, split, doc_id) -> score: the mean over tasks of each document's score. `docs` has model_id,
    split, task, doc_id, score (one suite; task names carry the split, so tasks pair up by their position)."""
    return docs.groupby(["model_id", "split", "doc_id"], as_index=False)["score"].mean()


def method_comparison(labels: dict[str, str], docs: pd.DataFrame, chosen_on: str,
                      compare_on: str, selected_on: frozenset[tuple[str, str]] = frozenset()) -> pd.DataFrame:
    """One row per method with a model scored on both splits: its pick, scores, and the paired difference with the
    best hand recipe on `compare_on` (points), or an empty frame when no hand recipe is scored on both.
    `selected_on` holds the recorded (model id, split) selections of the suite: a pick selected on `compare_on` (an
    evolve run's declared finalists, say) is marked `in_sample`, its difference there no honest check."""
    doc = per_document(docs[docs["model_id"].isin(labels)])
    means = doc.groupby(["model_id", "split"])["score"].mean().unstack("split")
    if chosen_on not in means or compare_on not in means:
        return pd.DataFrame()
    means = means.dropna(subset=[chosen_on, compare_on])
    picks: dict[str, str] = {}
    for method in METHOD_ORDER:
        cands = [m for m in means.index if labels.get(m) == method]
        if cands:
            picks[method] = max(cands, key=lambda m: (means.loc[m, chosen_on], m))
    if "hand" not in picks:
        return pd.DataFrame()
    on = doc[doc["split"] == compare_on].set_index(["model_id", "doc_id"])["score"]
    ref = on.loc[picks["hand"]]
    rows = []
    for method, mid in picks.items():
        both = pd.concat([ref.rename("a"), on.loc[mid].rename("b")], axis=1, join="inner")
        cmp = paired_compare(both["a"].to_numpy(), both["b"].to_numpy(), iters=2000)
        rows.append({"method": method, "model_id": mid, chosen_on: 100 * means.loc[mid, chosen_on],
                     compare_on: 100 * means.loc[mid, compare_on], "vs best hand": 100 * cmp.mean_diff,
                     "ci_low": 100 * cmp.ci_low, "ci_high": 100 * cmp.ci_high, "n": cmp.n,
                     "in_sample": (mid, compare_on) in selected_on})
    return pd.DataFrame(rows)


def contenders(labels: dict[str, str], means: pd.DataFrame, chosen_on: str, compare_on: str,
               tol: float = 1e-9) -> set[str]:
    """The models that can be a method's pick: `means` has model_id, split and mean (the mean over documents of a
    document's mean over tasks, harness.store.frames.run_doc_means, per run); of the models with a mean on both
    splits, each within `tol` of its method's best on `chosen_on`. method_comparison over their documents alone
    makes the picks it makes over every model's (it computes the means again from the documents; `tol` covers the
    rounding of two summation orders), without reading the documents of thousands of hand recipes."""
    wide = means.pivot_table(index="model_id", columns="split", values="mean", aggfunc="first")
    if chosen_on not in wide or compare_on not in wide:
        return set()
    on = wide.dropna(subset=[chosen_on, compare_on])[chosen_on]
    best = on.groupby(on.index.map(labels)).transform("max")
    return set(on.index[on >= best - tol])


def contender_scores(store: Store, labels: dict[str, str], sc: pd.DataFrame, chosen_on: str,
                     compare_on: str) -> pd.DataFrame:
    """The rows of `sc` (suite scores of one suite: model_id, split, run_id) of the models that can be a method's
    pick (`contenders`): document means of the runs on `chosen_on` only (frames.run_doc_means); on `compare_on`
    only whether the run has a scored document matters (frames.scored_runs)."""
    from harness.store import frames as views

    on, other = sc[sc["split"] == chosen_on], sc[sc["split"] == compare_on]
    means = views.run_doc_means(store, on["run_id"]).merge(on[["run_id", "model_id", "split"]], on="run_id")
    present = other[other["run_id"].isin(views.scored_runs(store, other["run_id"]))]
    means = pd.concat([means[["model_id", "split", "mean"]], present[["model_id", "split"]].assign(mean=0.0)])
    return sc[sc["model_id"].isin(contenders(labels, means, chosen_on, compare_on))]


def stored_comparison(store: Store, suite: str, chosen_on: str = "search", compare_on: str = "heldout") -> pd.DataFrame:
    """method_comparison over a store's latest complete runs of `suite` (what `harness leaderboard --methods`
    prints)."""
    from harness.analysis.evidence import suite_twins
    from harness.store import frames as views
    from harness.suites import score_rules

    with store.db.read() as con:
        models, edges = views.models(con), views.edges(con)
        scores = views.suite_scores(con, suite_twins(None)[1], rules=score_rules())
        selections = views.selections(con)
    labels = search_labels(models, views.evolve_runs(store), edges, selections)
    sc = scores[(scores["suite"] == suite) & scores["split"].isin([chosen_on, compare_on])
                & scores["model_id"].isin(labels)]
    if sc.empty:
        return pd.DataFrame()
    sc = contender_scores(store, labels, sc, chosen_on, compare_on)
    docs = views.doc_scores(store, sorted(sc["run_id"])).merge(sc[["run_id", "model_id", "split"]], on="run_id")
    return method_comparison(labels, docs, chosen_on, compare_on, selections_of(selections, suite))


def selections_of(selections: pd.DataFrame, suite: str) -> frozenset[tuple[str, str]]:
    """(model id, split) of every recorded selection on `suite` (harness.store.frames.selections)."""
    own = selections[selections["suite"] == suite]
    return frozenset(zip(own["model_id"], own["split"], strict=True))

"""Methods: how each merge method does across suites, and a paired comparison of two models."""

from __future__ import annotations

import charts
import pandas as pd
import queries as q
import streamlit as st
import widgets

from harness.stats import paired_compare

db = widgets.page_header("Merge methods", "Score distributions of merged models by merge method, per suite, on "
                                          "each suite's default split or the split picked.")
data = q.base(db)
scores = q.scores_marked(db)
merged_splits = q.method_splits(db)  # split -> the suites merged models are scored on there

if not merged_splits:
    st.info("No scored merges yet.")
else:
    c1, c2 = st.columns(2)
    split = c1.selectbox("Split", [None, *merged_splits], key="m_split",
                         format_func=lambda sp: "each suite's default" if sp is None
                         else f"{sp} ({', '.join(merged_splits[sp])})")
    drop_in = c2.toggle("Leave out in-sample scores", value=True, key="m_drop",
                        help="Scores of models that were (or descend from one) selected on this split.")
    stats = q.method_stats(db, drop_in, split)
    units = set(stats["unit"])  # % for proportions, a judge's rating as it is
    y_title = "score (%)" if units <= {"%"} else "rating" if units == {"rating"} else "score (% or rating)"
    box = {  # a box plot from precomputed quantiles: small specs however many models there are
        "facet": {"column": charts.field("suite:N", title=None)},
        "spec": {"width": 220, "height": 260, "encoding": {
            "x": charts.field("method:N", title=None), "color": charts.field("method:N", legend=None)}, "layer": [
            {"mark": "rule", "encoding": {"y": charts.unzeroed("min:Q", title=y_title), "y2": {"field": "max"}}},
            {"mark": {"type": "bar", "size": 18}, "encoding": {
                "y": charts.field("q1:Q"), "y2": {"field": "q3"},
                "tooltip": charts.tooltips("method", "suite", "n:Q", "q1:Q", "median:Q", "q3:Q")}},
            {"mark": {"type": "tick", "color": "black", "size": 18}, "encoding": {"y": charts.field("median:Q")}}]}}
    if len(units) > 1:
        box["resolve"] = {"scale": {"y": "independent"}}  # ratings (1-10) beside percentages
    if stats.empty:
        st.info("No merged model's score is left on this split.")
    else:
        st.vega_lite_chart(stats, box)
        st.dataframe(stats.round(2), hide_index=True, width="stretch")

st.header("Searches against hand recipes")
st.caption("Every merge an evolve run picked labelled by its search (PS, DFS, PS+DFS; other merges are hand "
           "recipes). Per method, the model with the best suite score on the selection split is compared with the "
           "best hand recipe chosen the same way, paired per question (weighted as the suite score weights it, so "
           "the mean difference is the suite scores' difference): paired t 95% interval.")
labels = q.search_labels(db)
searched = scores[scores["model_id"].isin([m for m, lab in labels.items() if lab != "hand"])]
if searched.empty:
    st.info("No evolve run with a scored pick yet.")
else:
    s1, s2, s3 = st.columns(3)
    suites = sorted(searched["suite"].unique())
    suite = s1.selectbox("Suite", suites, key="sm_suite")
    splits = sorted(scores.loc[scores["suite"] == suite, "split"].unique())
    chosen_on = s2.selectbox("Chosen on", splits, index=splits.index("search") if "search" in splits else 0,
                             key="sm_chosen")
    compare_on = s3.selectbox("Compared on", splits, key="sm_compare",
                              index=splits.index("heldout") if "heldout" in splits else 0)
    table = q.search_comparison(db, suite, chosen_on, compare_on)
    if table.empty or chosen_on == compare_on:
        st.info("Pick two different splits on which a hand recipe and a searched merge are both scored.")
    else:
        table.insert(1, "model", table["model_id"].map(lambda m: data.names.get(m, m[:12])))
        st.dataframe(table.round(2), hide_index=True, width="stretch")

st.header("Paired comparison")
st.caption("Per-task difference (B - A) over the documents both models answered, with a 95% interval (Tango's "
           "score interval for 0/1 scores, a paired t interval otherwise) and McNemar's exact test for 0/1 scores.")
merged_first = data.models.sort_values(["depth", "name"], ascending=[False, True])
ids = list(merged_first["model_id"])
if len(ids) < 2:
    st.info("Two models are needed for a comparison.")
    st.stop()
c1, c2 = st.columns(2)
a = c1.selectbox("Model A", ids, index=0, key="m_a", format_func=lambda m: data.names.get(m, m[:12]))
b = c2.selectbox("Model B", ids, index=1, key="m_b", format_func=lambda m: data.names.get(m, m[:12]))
sa = scores[scores["model_id"] == a].set_index(["suite", "split"])["run_id"]
sb = scores[scores["model_id"] == b].set_index(["suite", "split"])["run_id"]
common = sa.index.intersection(sb.index)
if a == b or common.empty:
    st.info("Pick two different models that share at least one suite:split.")
    st.stop()
docs = q.doc_scores(db, tuple(sorted(set(sa[common]) | set(sb[common]))))
rows = []
for suite, split in common:
    da = docs[docs["run_id"] == sa[(suite, split)]].set_index(["task", "doc_id"])["score"]
    dbb = docs[docs["run_id"] == sb[(suite, split)]].set_index(["task", "doc_id"])["score"]
    both = pd.concat([da.rename("a"), dbb.rename("b")], axis=1, join="inner")
    for task, grp in both.groupby(level="task"):
        if len(grp) < 2:
            continue
        cmp = paired_compare(grp["a"].to_numpy(), grp["b"].to_numpy())
        rows.append({"suite": suite, "split": split, "task": task, "n": cmp.n, "A": 100 * cmp.mean_a,
                     "B": 100 * cmp.mean_b, "B - A": 100 * cmp.mean_diff, "ci_low": 100 * cmp.ci_low,
                     "ci_high": 100 * cmp.ci_high, "mcnemar_p": cmp.mcnemar_p,
                     "significant": bool(cmp.ci_low > 0 or cmp.ci_high < 0),
                     "in-sample (A/B)": f"{q.IN_SAMPLE if data.in_sample(a, suite, split) else '-'} / "
                                        f"{q.IN_SAMPLE if data.in_sample(b, suite, split) else '-'}"})
if not rows:
    st.info("No per-sample rows shared by the two models.")
    st.stop()
table = pd.DataFrame(rows)
table["label"] = table["suite"] + ":" + table["split"] + " / " + table["task"]
differences = {"encoding": {"y": charts.field("label:N", title=None)}, "layer": [
    {"mark": "bar", "encoding": {
        "x": charts.field("B - A:Q", title=f"{data.names.get(b)} minus {data.names.get(a)} (points)"),
        "color": charts.field("significant:N", scale={"domain": [True, False], "range": ["#d62728", "#999999"]}),
        "tooltip": charts.tooltips("label", "n:Q", "B - A:Q", "ci_low:Q", "ci_high:Q", "mcnemar_p:Q")}},
    {"mark": "rule", "encoding": {"x": charts.field("ci_low:Q"), "x2": {"field": "ci_high"}}}]}
st.vega_lite_chart(table, differences, width="stretch")
st.dataframe(table.drop(columns="label").round(3), hide_index=True, width="stretch")

"""Lineage: a model's ancestry graph (coloured by score or by flag) and public-versus-twin scores along its chains."""

from __future__ import annotations

import charts
import pandas as pd
import queries as q
import streamlit as st
import widgets
from lineage_graph import chains, dot_graph, paths_to_roots

from harness.store import frames as views
from harness.suites import question_split

MAX_NODES = 80
MAX_CHAINS = 6

db = widgets.page_header("Lineage", "Where a model comes from, what each ancestor was selected on, and how its public "
                              "scores and their twins moved along each chain of merges.")
data = q.base(db)
if data.models.empty:
    st.info("No models in the store yet.")
    st.stop()
model_id = widgets.pick_model(data, "Model", "lin_model")
suites = sorted(data.scores["suite"].unique())
twin_suites = [s for s in sorted(data.twins) if s in suites]
c1, c2, c3 = st.columns(3)
colour_by = c1.radio("Colour nodes by", ["score", "flag"], horizontal=True, key="lin_colour")
wanted = st.query_params.get("suite")
suite_options = twin_suites or suites
suite = c2.selectbox("Suite", suite_options, key="lin_suite",
                     index=suite_options.index(wanted) if wanted in suite_options else 0) if suite_options else None
of_suite = data.scores[data.scores["suite"] == suite]
splits = sorted(of_suite["split"].unique())  # every split it has scores on, a judge's rating splits included
split = data.default_split(suite or "")
if splits:  # one picker per suite, opening on its default split (else a judge's rating of its questions)
    opening = split if split in splits else next((sp for sp in splits if question_split(sp) == split), splits[0])
    split = c3.selectbox("Split", splits, key=f"lin_split_{suite}", index=splits.index(opening))

ancestors = data.graph.ancestors(model_id, limit=MAX_NODES)
nodes = [model_id, *ancestors]
on_split = of_suite[of_suite["split"] == split]
values = dict(zip(on_split["model_id"].tolist(), on_split["value"].tolist(), strict=True))
severity = q.worst_severity(db) if colour_by == "flag" else {}
percent = not on_split["metric"].isin(views.RAW_SCALE_METRICS).any()  # a judge's rating is written as it is
st.graphviz_chart(dot_graph(data, nodes, model_id, values if colour_by == "score" else None, severity, suite,
                            split, percent))
depth = int(data.models.set_index("model_id").loc[model_id, "merge_depth"])  # fine-tunes not counted
st.caption(f"{data.names.get(model_id)}: merge depth {depth}, {len(data.graph.ancestors(model_id)):,} ancestors"
           + (f" (the nearest {MAX_NODES} drawn)" if len(ancestors) >= MAX_NODES else "")
           + f". Nodes: score on {suite}:{split} (darker = higher), or the worst flag; a double outline marks a "
             "model in-sample there (it or an ancestor was selected on that split's questions); edges carry the "
             "merge weight.")

exposed = sorted({(s, sp or data.default_split(s), proc, data.names.get(who, who[:12]))
                  for s, sp, proc, who in data.exposure.get(model_id, ())})
if exposed:
    st.warning("In-sample: " + "; ".join(f"{s}:{sp} (selected by {proc} on {who})" for s, sp, proc, who in exposed))

st.header("Public versus twin along each chain")
st.caption("Public and twin as the overfitting analysis compares them (`harness overfit`): over the items the twin's "
           "map pairs and both runs scored where enough pair (`paired`), else the two suite scores.")
kinds = data.twins.get(suite or "", {})
if not kinds:
    st.info("This suite has no twin (suite.yaml `twins:`), so there is nothing to compare along the chains.")
    st.stop()
kind = st.selectbox("Twin", list(kinds), key="lin_kind",
                    format_func=lambda k: f"{k} ({kinds[k].ref}, {kinds[k].relation})")
paths = paths_to_roots(data, model_id, MAX_CHAINS)
on_chains = tuple(sorted({m for path in paths for m in path}))
frame = chains(data, q.gaps_of(db, on_chains), paths, suite, kind)  # the gaps `harness overfit` flags on
if frame.empty:
    st.info("No scores along this model's chains for this suite and twin.")
    st.stop()
long = frame.melt(id_vars=["chain", "step", "model", "in_sample"], value_vars=["public", "twin"],
                  var_name="split", value_name="score")
long["score"] = long["score"] * 100
chart = charts.lines(charts.field("step:O", title="merge step along the chain (root = 0)"),
                     charts.unzeroed("score:Q", title=f"{suite} score (%)"), charts.field("split:N", title=None),
                     charts.tooltips("chain", "step:O", "model", "split", charts.field("score:Q", format=".1f"),
                                     "in_sample"),
                     shape=charts.field("in_sample:N", title="in-sample"))
st.vega_lite_chart(long, {"facet": charts.field("chain:N", title=None), "columns": 2,
                          "spec": {**chart, "width": 320, "height": 220}})
st.dataframe(pd.DataFrame(frame).round(4), hide_index=True, width="stretch")

"""Leaderboard: models x suites with 95% intervals, in-sample marks, kind (source, fine-tune, merge, candidate),
method and lineage depth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import queries as q
import streamlit as st
import widgets

from harness.store import frames as views
from harness.suites import rated_on

db = widgets.page_header("Leaderboard", "Score per model and suite:split, with its 95% interval: of the complete "
                         "runs, the one that scored the most documents, then the latest.")
data = q.base(db)
scores = q.scores_marked(db)
if scores.empty:
    st.info("No complete runs in the store yet.")
    st.stop()

scores["column"] = scores["suite"] + ":" + scores["split"]
defaults = sorted({c for s, sp, c in scores[["suite", "split", "column"]].drop_duplicates().itertuples(index=False)
                   if rated_on(sp, data.default_split(s))})  # a judge suite's: each judge's rating column
all_columns = sorted(scores["column"].unique())

with st.sidebar:
    st.header("Filters")
    columns = st.multiselect("Suites", all_columns, default=defaults or all_columns, key="lb_columns")
    kinds = st.multiselect("Kind", list(q.KINDS), default=list(q.KINDS), key="lb_kinds")
    methods = sorted(m for m in data.models["method"].dropna().unique())
    method_pick = st.multiselect("Merge method", methods, default=[], key="lb_methods",
                                 help="Empty: every method (and unmerged models).")
    name_filter = st.text_input("Name contains", key="lb_name")
    max_depth = int(data.models["depth"].max() or 0)
    depth_range = st.slider("Lineage depth", 0, max(max_depth, 1), (0, max(max_depth, 1)), key="lb_depth")
    exclude = st.toggle("Overall excludes in-sample scores", value=True, key="lb_exclude")
    limit = st.number_input("Rows shown", 10, 5000, 200, step=50, key="lb_limit")

wide_value, wide_lo, wide_hi, wide_in = q.wide(db, tuple(columns))
metric_of = scores.groupby("column")["metric"].first()
proportions = [c for c in wide_value.columns if metric_of.get(c) not in views.RAW_SCALE_METRICS]
counted = wide_value.where(~wide_in.fillna(False).astype(bool)) if exclude else wide_value
counted = counted[proportions]  # the overall mean is over proportions only (a 1-10 rating is not one)

board = data.models.set_index("model_id")[["name", "kind", "method", "depth"]].copy()
board["kind"] = q.model_kinds(data).reindex(board.index)
board["overall"] = counted.mean(axis=1) * 100
board["suites counted"] = counted.notna().sum(axis=1)
marks = wide_in.fillna(False).astype(bool)
names = np.array(marks.columns, dtype=object)
board["in-sample on"] = pd.Series([", ".join(names[row]) for row in marks.to_numpy()], index=marks.index)
scored = set(wide_value.index.to_numpy(dtype=object))  # a set: Index.isin of 10,000 Arrow strings is ~0.1 s
board = board[np.fromiter((m in scored for m in board.index.to_numpy(dtype=object)), bool, len(board))]
board = board[board["kind"].isin(kinds)]
if method_pick:
    board = board[board["method"].isin(method_pick)]
if name_filter:
    board = board[board["name"].str.contains(name_filter, case=False, regex=False)]
board = board[(board["depth"] >= depth_range[0]) & (board["depth"] <= depth_range[1])]

sort_options = ["overall", *columns, "depth", "name"]
c1, c2 = st.columns([3, 1])
sort_by = c1.selectbox("Sort by", sort_options, key="lb_sort")
ascending = c2.toggle("Ascending", value=sort_by == "name", key="lb_asc")
key = wide_value[sort_by].reindex(board.index) if sort_by in columns else board[sort_by]
# overall is ranked like with like: a mean over fewer suites (one easy suite, or in-sample ones left out) is never
# ranked against a mean over more, so the most suites counted come first, then overall in the order asked for
keys, order = (["suites counted", "_key"], [False, ascending]) if sort_by == "overall" else (["_key"], [ascending])
board = board.assign(_key=key).sort_values(keys, ascending=order, na_position="last").drop(columns="_key")

top = board.head(int(limit)).copy()
for col in columns:
    v, lo, hi, i = (w.reindex(top.index)[col] if col in w else pd.Series(index=top.index, dtype=float)
                    for w in (wide_value, wide_lo, wide_hi, wide_in))
    top[col] = [widgets.fmt_score(a, b, c, bool(d) if d == d else False, metric_of.get(col)) if a == a else ""
                for a, b, c, d in zip(v, lo, hi, i, strict=True)]
top = top.reset_index()[
    ["name", "kind", "method", "depth", "overall", "suites counted", *columns, "in-sample on"]]

m1, m2, m3, m4 = st.columns(4)
m1.metric("Models", f"{len(board):,}")
m2.metric("Merges", f"{int(board['kind'].isin(['merge', 'candidate']).sum()):,}")
m3.metric("With in-sample scores", f"{int((board['in-sample on'] != '').sum()):,}")
m4.metric("Suites:splits shown", len(columns))
st.caption(f"A score marked ({q.IN_SAMPLE}) was selected or optimised on by the model or an ancestor (evolve, "
           "check, user or train). Overall = mean of the shown suites"
           + (", without in-sample scores" if exclude else ", in-sample scores included")
           + "; sorted by overall, models with the most suites counted come first, each group by its overall.")
st.dataframe(
    top, hide_index=True, width="stretch", height=560,
    column_config={"overall": st.column_config.NumberColumn("overall", format="%.1f"),
                   "depth": st.column_config.NumberColumn(
                       "depth", help="lineage depth: 0 for a source, 1 for a fine-tune or merge of sources, ...")},
)
if len(board) > len(top):
    st.caption(f"Showing the first {len(top):,} of {len(board):,} models; raise 'Rows shown' in the sidebar.")

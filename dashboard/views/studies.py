"""Studies: a `harness dtm` study on one page: the recipes side by side with intervals, the alignment-tax curve,
and the lineage of the winning recipe. Reads the finished studies' study.json under results/dtm/ and the store."""

from __future__ import annotations

import json

import charts
import pandas as pd
import queries as q
import streamlit as st
import widgets
from lineage_graph import dot_graph

from harness.paths import results_dir

db = widgets.page_header("Studies", "Disperse-Then-Merge studies (harness dtm): each recipe's score per suite task "
                         "with its 95% interval and the paired difference against vanilla fine-tuning.")
found = sorted(results_dir().glob("dtm/*/study.json"))
if not found:
    st.info("No finished study yet: run `harness dtm examples/dtm_zoo.yaml`.")
    st.stop()
path = st.selectbox("Study", found, format_func=lambda p: p.parent.name, key="study")
study = json.loads(path.read_text())


def frame(rows: list[dict]) -> pd.DataFrame:
    out = []
    for r in rows:
        for col, c in r["cells"].items():
            out.append({"recipe": r["row"], "task": col.split("/")[1], "score": c["value"],
                        "95% low": c.get("ci_low"), "95% high": c.get("ci_high"),  # none in a study.json of table 1
                        "Δ vanilla": c.get("diff"), "Δ ±95%": c.get("diff_ci95"), "n": c["n"],
                        "fraction": r.get("fraction"), "model_id": r.get("model_id")})
    return pd.DataFrame(out)


table = frame(study["rows"])
wide = table.pivot_table(index="recipe", columns="task", values=["score", "Δ vanilla"], sort=False).round(1)
st.dataframe(wide, width="stretch")
widths = table["95% high"] - table["95% low"]
st.caption("Intervals: " + "; ".join(f"{t}: {widths[table.task == t].max():.1f} points wide at most"
                                    for t in table.task.unique()) + ". Full table with intervals below.")
st.dataframe(table.drop(columns=["fraction", "model_id"]).round(2), width="stretch", hide_index=True)

curve = frame(study["curve"])
curve["low"], curve["high"] = curve["95% low"], curve["95% high"]
x = charts.field("fraction:Q", title="fraction of the instruction data", scale={"domain": [0, 1]})
st.subheader("The alignment-tax curve: vanilla fine-tuning on more of the data")
st.vega_lite_chart(curve, {"encoding": {"x": x, "color": charts.field("task:N")}, "layer": [
    {"mark": {"type": "line", "point": True}, "encoding": {"y": charts.field("score:Q", title="score (%)")}},
    {"mark": "errorbar", "encoding": {"y": charts.field("low:Q"), "y2": {"field": "high"}}}]}, width="stretch")

recipes = table[~table.recipe.isin(["base", "vanilla"])].groupby("recipe", sort=False)["Δ vanilla"].mean()
winner = recipes.idxmax()
st.subheader(f"The winner: {winner} ({recipes[winner]:+.1f} points against vanilla, averaged over the tasks)")
model_id = table[table.recipe == winner].model_id.iloc[0]
data = q.base(db)
if model_id and model_id in set(data.models.model_id):
    st.graphviz_chart(dot_graph(data, [model_id, *data.graph.ancestors(model_id, limit=40)], model_id, None, {},
                                None))
else:
    st.info("The winner is not in this store (or the study predates model ids in study.json).")

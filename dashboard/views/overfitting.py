"""Overfitting: what was checked (coverage and power), every flag of harness.analysis.overfit, sortable by
severity, each linked to its evidence. Silence is never shown as health: the page says how many (model, suite)
were checked, how small an excess they could have seen, and how many were not checked and why."""

from __future__ import annotations

import json

import charts
import pandas as pd
import queries as q
import streamlit as st
import widgets

from harness.analysis.coverage import coverage_summary, headline
from harness.analysis.flags import SEVERITIES, SIGNALS, THRESHOLDS

db = widgets.page_header("Overfitting flags", "Exposure, twin gaps, lineage divergence and specialisation cost "
                                        "(docs/overfitting.md).")
frame = q.flags_frame(db)
flags = q.flags(db)
if q.analysis_is_stale(db):
    st.info("The store has changed since these flags were computed: this is the previous analysis, and the new "
            "one is being computed in the background. Reload in a few seconds.")

counts = frame[frame["severity"] != "info"].groupby("severity").size() if len(frame) else pd.Series(dtype=int)
cols = st.columns(5)
for col, sev in zip(cols, ["high", "medium", "low"], strict=False):
    col.metric(f"{sev} flags", int(counts.get(sev, 0)))
flagged_models = int(frame.loc[frame["severity"] != "info", "model_id"].nunique()) if len(frame) else 0
cols[3].metric("flagged models", flagged_models)
cols[4].metric("selections (info)", int((frame["severity"] == "info").sum()) if len(frame) else 0)

cover = q.coverage(db)
summary = coverage_summary(cover)
line = headline(cover)
(st.warning if summary["flagged"] else st.info)(
    f"Coverage: {line}." + ("" if frame.empty else f" {len(frame)} flags of all signals below."))
with st.expander(f"Coverage: {summary['checked']} checked, {summary['not_checked']} not checked", expanded=False):
    cov = pd.DataFrame({  # column by column: no object per row (30,000 at 10,000 models)
        "model": cover.column("model"), "suite": cover.column("suite"), "status": cover.column("status"),
        "flagged": cover.column("flagged"),
        "smallest detectable excess (pts)": [None if m is None else round(100 * m, 1) for m in cover.column("mde")],
        "detail": cover.column("detail")})
    st.dataframe(cov, hide_index=True, width="stretch", height=320,
                 column_config={"detail": st.column_config.TextColumn("detail", width="large")})
if frame.empty:
    st.info(f"No flags among {summary['checked']} (model, suite) checked; {summary['not_checked']} not checked "
            "(see Coverage). No flag means no excess above the smallest detectable one, not no overfitting.")
    st.stop()

c1, c2, c3 = st.columns([2, 2, 2])
sev_pick = c1.multiselect("Severity", list(SEVERITIES[::-1]), default=["high", "medium", "low"], key="of_sev")
sig_pick = c2.multiselect("Signal", list(SIGNALS), default=list(SIGNALS), key="of_sig")
name = c3.text_input("Model name contains", key="of_name")
shown = frame[frame["severity"].isin(sev_pick) & frame["signal"].isin(sig_pick)]
if name:
    shown = shown[shown["model"].str.contains(name, case=False, regex=False)]
shown = shown.sort_values(["rank", "signal", "model"], ascending=[False, True, True])
st.dataframe(
    shown.drop(columns=["model_id"]), hide_index=True, width="stretch", height=420,
    column_config={
        "rank": st.column_config.NumberColumn("rank", help="severity as a number (3 = high): sort on it"),
        "evidence": st.column_config.LinkColumn("evidence", display_text="lineage",
                                                help="the model's lineage page"),
        "explanation": st.column_config.TextColumn("explanation", width="large"),
    },
)

st.header("Evidence")
options = list(range(len(flags)))
visible = [i for i in options if flags[i].severity in sev_pick and flags[i].signal in sig_pick]
if not visible:
    st.stop()
pick = st.selectbox("Flag", visible, key="of_flag",
                    format_func=lambda i: " · ".join((flags[i].severity, flags[i].signal, flags[i].model,
                                                      flags[i].suite)))
flag = flags[pick]
st.markdown(f"**{flag.severity} {flag.signal}** on `{flag.suite}`: {flag.explanation}")
st.page_link("views/lineage.py", label=f"Open the lineage of {flag.model}",
             query_params={"model": flag.model_id, "suite": flag.suite})
ev = flag.evidence
search = ev if ev.get("source") == "evolve" else ev.get("evolve")
if search:  # an evolve run's own record: fitness against the held-out score of the fittest, per generation
    hist = pd.DataFrame(search["history"]).melt(id_vars="generation", var_name="series", value_name="score")
    hist["score"] *= 100
    st.caption(f"Evolve run {search['evolve_id']}: fitness and the held-out score of the fittest candidate.")
    st.vega_lite_chart(hist, charts.lines("generation:O", "score:Q", "series:N"), width="stretch")
if flag.signal == "twin_gap" and "gap" in ev:
    bars = [{"who": "this model", "gap": ev["gap"], "lo": ev["gap_ci"][0], "hi": ev["gap_ci"][1]},
            {"who": f"reference models ({ev['reference_models']})", "gap": ev["reference_gap"],
             "lo": ev["reference_gap"], "hi": ev["reference_gap"]}]
    if "parent_gap" in ev:
        bars.append({"who": "parents (mean)", "gap": ev["parent_gap"], "lo": ev["parent_gap"],
                     "hi": ev["parent_gap"]})
    df = pd.DataFrame(bars)
    df[["gap", "lo", "hi"]] *= 100
    st.vega_lite_chart(df, charts.bars_with_interval("who:N", "gap:Q", f"public - {ev['twin']} (points)"),
                       width="stretch")
elif flag.signal == "lineage_divergence" and ev.get("chain"):
    chain = pd.DataFrame(ev["chain"]).reset_index(names="step")
    long = chain.melt(id_vars=["step", "model"], value_vars=["public", "twin"], var_name="split",
                      value_name="score")
    long["score"] *= 100
    st.vega_lite_chart(long, charts.lines("step:O", "score:Q", "split:N", charts.tooltips("model", "split", "score:Q")),
                       width="stretch")
elif flag.signal == "specialisation":
    rows = [{"suite": f"{ev['optimised_suite']}:{ev['optimised_split']}", "delta": ev["gain"],
             "lo": ev["gain_ci"][0], "hi": ev["gain_ci"][1]}]
    rows += [{"suite": s, "delta": d["delta"], "lo": d["ci"][0], "hi": d["ci"][1]} for s, d in ev["losses"].items()]
    df = pd.DataFrame(rows)
    df[["delta", "lo", "hi"]] *= 100
    st.vega_lite_chart(df, charts.bars_with_interval("suite:N", "delta:Q", "model - mean of parents (points)"),
                       width="stretch")
st.code(json.dumps(ev, indent=1, default=str), language="json")
with st.expander("Thresholds"):
    st.json(THRESHOLDS.__dict__)

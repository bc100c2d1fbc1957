"""Runs: per-sample drill-down of one evaluation run (with its requests cut to fit the context), and the history
of evolve runs."""

from __future__ import annotations

import json

import charts
import pandas as pd
import queries as q
import streamlit as st
import widgets

PAGE_ROWS = 200

db = widgets.page_header("Runs", "Every evaluation run of a model down to its samples, and each evolve run's history.")
data = q.base(db)
tab_runs, tab_evolve = st.tabs(["Samples", "Evolve history"])

with tab_runs:
    if data.models.empty:
        st.info("No models in the store yet.")
    else:
        model_id = widgets.pick_model(data, "Model", "runs_model")
        runs = q.runs_of(db, model_id)
        if runs.empty:
            st.info("This model has no runs.")
        else:
            runs = runs.assign(in_sample=[data.in_sample(model_id, s, sp) for s, sp in zip(
                runs["suite"], runs["split"].fillna(""), strict=True)])
            st.dataframe(runs, hide_index=True, width="stretch", height=220)
            by_id = runs.set_index("run_id")
            run_id = st.selectbox("Run", list(runs["run_id"]), key="runs_run", format_func=lambda r: (
                f"{r[:10]} {by_id.loc[r, 'suite']}:{by_id.loc[r, 'split']} ({by_id.loc[r, 'status']})"))
            row = by_id.loc[run_id]
            if not pd.isna(row["cut"]) and row["cut"] > 0:  # NA: a run stored before cuts were counted
                from harness.store.records import cut_sentence

                st.warning(cut_sentence(int(row["cut"]), int(row["requests"]), [int(row["context"])]) + ".")
            if row["in_sample"]:
                st.warning(f"{row['suite']}:{row['split']} is in-sample for this model: it or an ancestor was "
                           "selected on it.")
            c1, c2, c3 = st.columns(3)
            tasks = q.run_tasks_of(db, run_id)  # every task of the run, not those of its first 1,000 rows
            task = c1.selectbox("Task", ["(all)", *tasks], key="runs_task")
            wrong = c2.toggle("Only score < 1", key="runs_wrong")
            total = int(row["samples"])
            page = c3.number_input("Page", 1, max(1, -(-total // PAGE_ROWS)), 1, key="runs_page")
            samples = q.run_samples(db, run_id, None if task == "(all)" else task, wrong, PAGE_ROWS,
                                    (int(page) - 1) * PAGE_ROWS)
            st.caption(f"{total:,} sample rows in this run; showing {len(samples)} (page {page}).")
            st.dataframe(samples, hide_index=True, width="stretch", height=420,
                         column_config={"score": st.column_config.NumberColumn("score", format="%.2f"),
                                        "prompt": st.column_config.TextColumn("prompt", width="large")})

with tab_evolve:
    evo = q.evolve_runs(db)
    if evo.empty:
        st.info("No evolve runs in the store.")
    else:
        evolve_id = st.selectbox("Evolve run", list(evo["evolve_id"]), key="runs_evolve")
        info = evo.set_index("evolve_id").loc[evolve_id]
        hist = q.evolve_history(db, evolve_id)
        best = info["best_model_id"]
        st.markdown(f"Status **{info['status']}**, {int(info['generation'])} generations; best model "
                    f"**{data.names.get(best, str(best)[:12]) if best else '-'}**.")
        long = hist.melt(id_vars=["generation"], value_vars=["best_fitness", "mean_fitness", "heldout_of_fittest",
                                                             "mean_heldout"], var_name="series", value_name="score")
        st.vega_lite_chart(long, charts.lines("generation:O", "score:Q", charts.field("series:N", title=None),
                                              charts.tooltips("generation:O", "series", "score:Q")), width="stretch")
        if len(hist) > 1:
            gap_now = hist["best_fitness"].iloc[-1] - hist["heldout_of_fittest"].iloc[-1]
            gap_first = hist["best_fitness"].iloc[0] - hist["heldout_of_fittest"].iloc[0]
            st.caption(f"Fitness minus the held-out score of the fittest candidate: {100 * gap_first:+.1f} "
                       f"points in generation 0, {100 * gap_now:+.1f} in the last (a widening gap means the "
                       "search overfits).")
        st.dataframe(hist.round(4), hide_index=True, width="stretch")
        with st.expander("Config"):
            st.json(json.loads(info["config"]) if isinstance(info["config"], str) else info["config"])
        chk = q.checks(db)
        st.subheader("Held-out checks")
        if chk.empty:
            st.caption("No `harness check` verdicts in the store.")
        else:
            chk = chk.assign(candidate=chk["candidate_id"].map(lambda m: data.names.get(m, m[:12])))
            st.dataframe(chk, hide_index=True, width="stretch")

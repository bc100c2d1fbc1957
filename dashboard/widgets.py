"""The dashboard's small shared widgets: a score with its interval, a model picker, a page header."""

from __future__ import annotations

import queries as q
import streamlit as st

from harness.analysis import evidence
from harness.store import frames as views


def fmt_score(value: float, ci_low: float, ci_high: float, in_sample: bool, metric: str | None = None) -> str:
    """A proportion as a percentage with its 95% interval (inside 0-100: docs/eval.md "Intervals"); a judge rating
    (1-10) as it is."""
    if metric in views.RAW_SCALE_METRICS:
        text = f"{value:.2f} [{ci_low:.2f}, {ci_high:.2f}]"
    else:
        text = f"{100 * value:.1f} [{100 * ci_low:.1f}, {100 * ci_high:.1f}]"
    return f"{text} ({q.IN_SAMPLE})" if in_sample else text


def pick_model(data: evidence.Data, label: str, key: str, default: str | None = None) -> str:
    """A model selectbox (names, newest merges first) that honours ?model=ID in the URL; returns a model_id.
    Without one it opens on the first model that has scores, not on a model with nothing to show."""
    models = data.models.sort_values(["depth", "name"], ascending=[False, True])
    ids = list(models["model_id"])
    wanted = st.query_params.get("model") or default
    scored = set(data.scores["model_id"]) if "model_id" in data.scores else set()
    index = ids.index(wanted) if wanted in ids else next((i for i, m in enumerate(ids) if m in scored), 0)
    return st.selectbox(label, ids, index=index, key=key, format_func=lambda m: data.names.get(m, m[:12]))


def page_header(title: str, caption: str) -> str:
    db = q.store_or_stop()
    st.title(title)
    st.caption(f"{caption} Store: `{db}` (read-only).")
    return db

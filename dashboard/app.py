"""The harness dashboard: a read-only Streamlit view over the results store (started by `harness dashboard`).

Pages live in dashboard/views/ (not pages/: a pages/ folder beside the entry script puts Streamlit in its
legacy multipage mode, which ignores st.navigation); every one reads through dashboard/queries.py, which only
ever opens the store read-only. The store is $HARNESS_DB (set by `harness dashboard` from --db) or
results/harness.duckdb.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `import queries` from the pages, however the app is started
    sys.path.insert(0, str(HERE))

st.set_page_config(page_title="harness leaderboard", layout="wide")
PAGES = [
    st.Page(str(HERE / "views" / "leaderboard.py"), title="Leaderboard", url_path="leaderboard", default=True),
    st.Page(str(HERE / "views" / "methods.py"), title="Methods", url_path="methods"),
    st.Page(str(HERE / "views" / "lineage.py"), title="Lineage", url_path="lineage"),
    st.Page(str(HERE / "views" / "overfitting.py"), title="Overfitting", url_path="overfitting"),
    st.Page(str(HERE / "views" / "runs.py"), title="Runs", url_path="runs"),
    st.Page(str(HERE / "views" / "studies.py"), title="Studies", url_path="studies"),
]
page = st.navigation(PAGES)
import queries  # noqa: E402 (needs the path above)

if os.environ.get("HARNESS_DASHBOARD_PREWARM", "1") != "0" and Path(queries.db_path()).exists():
    queries.prewarm(queries.db_path())  # the overfitting analysis, in the background
with queries.collector_paused():  # a cold render's objects are not walked again and again
    page.run()
queries.freeze_what_lives()  # once per process, its imports done

"""Cluster Studio: ``streamlit run app/main.py [-- --runs PATH]``.

One ``st.navigation`` with a page per view. Every page reads run directories (the contract
written by ``clustering.runs``); none imports training internals to draw.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run app/main.py` puts app/ (not the repository) on sys.path; the pages import
# `app.*` and `clustering.*` from the repository root whatever the working directory.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.logic.runtime import limit_threads  # noqa: E402
from app.ui import context  # noqa: E402

limit_threads()  # see app/logic/runtime.py: one thread is faster on a shared, busy CPU

st.set_page_config(page_title="Cluster Studio", page_icon=":material/scatter_plot:", layout="wide")

PAGES = [
    st.Page("views/runs.py", title="Runs", icon=":material/table_rows:", default=True),
    st.Page("views/curves.py", title="Training curves", icon=":material/show_chart:"),
    st.Page("views/story.py", title="Run story", icon=":material/timeline:"),
    st.Page("views/confusion.py", title="Confusion matrix", icon=":material/grid_on:"),
    st.Page("views/embedding.py", title="Embedding map", icon=":material/scatter_plot:"),
    st.Page("views/graph.py", title="Community graph", icon=":material/hub:"),
    st.Page("views/galleries.py", title="Galleries & failures", icon=":material/photo_library:"),
    st.Page("views/compare.py", title="Compare runs", icon=":material/compare_arrows:"),
]

page = st.navigation(PAGES)
context.sidebar()
page.run()

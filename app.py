"""oga in the browser: ``streamlit run app.py``.

This file is the router. It does what every page needs, in order: the page settings, torch's
threads, the upload clean-up, the sidebar's ranking, the messages queued by callbacks, and for
every page but Set-up the session's analysis (with live progress, any error shown with a link to
Set-up); then it runs the page chosen by ``st.navigation`` and adds the sidebar's summary.

The pages are the files in pages/, registered here by path (which is also what AppTest's
``switch_page`` addresses). Each runs inside :func:`oga_app.entry.serving`, which hands it the
analysis; see oga_app/entry.py for a page file requested before any run reached this router.
"""

from __future__ import annotations

import streamlit as st

from oga_app import callbacks, entry, loading, resources, sidebar
from oga_app.messages import guard

st.set_page_config(page_title="oga · find the samples that hurt your model", page_icon="🧹", layout="wide")
resources.configure_threads()
resources.clean_old_uploads()

SETUP = st.Page("pages/setup.py", title="Set-up", icon=":material/tune:", url_path="setup", default=True)
ANALYSIS_PAGES = (  # each draws the session's analysis, loaded here first
    st.Page("pages/explore.py", title="Explore", icon=":material/scatter_plot:", url_path="explore"),
    st.Page("pages/review.py", title="Review", icon=":material/grid_view:", url_path="review"),
    st.Page("pages/export.py", title="Export", icon=":material/download:", url_path="export"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/analytics:", url_path="evaluate"),
)

page = st.navigation([SETUP, *ANALYSIS_PAGES])
sidebar.ranking()
callbacks.show_flash()
if page is SETUP:  # Set-up lays out the analysis beside its form, after a new one is requested
    with entry.serving(None):
        page.run()
else:
    st.title(page.title)
    with guard(setup_link=True):
        analysis = loading.current_analysis()
        with entry.serving(analysis):
            page.run()
sidebar.summary()

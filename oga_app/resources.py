"""What the server process holds for every session: torch's thread count, the analysis
registry, open decision stores, the views kept per analysis, the maps and the thumbnails.

Everything here lives in ``st.cache_resource`` / ``st.cache_data`` or in the process, never in a
session: a reload or a second tab finds it ready.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

from oga_app.maps import MapJobs
from oga_app.registry import AnalysisRegistry
from oga_app.retrain_jobs import RetrainJobs
from oga_app.views import AnalysisViews
from oga_core import summaries
from oga_core.decisions import DecisionStore
from oga_core.errors import OgaError
from oga_core.pipeline import Analysis
from oga_core.train import configure_threads as configure
from oga_core.uploads import clean_uploads


def configure_threads() -> int:
    """Set torch's threads once per process (``oga_core.train.configure_threads``); a bad
    ``$OGA_THREADS`` falls back to the default rather than taking the app down."""
    try:
        return configure()
    except OgaError:
        os.environ.pop("OGA_THREADS", None)
        return configure()


@st.cache_resource(show_spinner=False)
def clean_old_uploads() -> int:
    """Once per server process: remove uploads that no analysed data set uses (older than an hour)."""
    return len(clean_uploads())


@st.cache_resource(show_spinner=False)
def registry() -> AnalysisRegistry:
    """The process-wide registry (st.cache_resource: shared by all sessions)."""
    return AnalysisRegistry()


@st.cache_resource(show_spinner=False, max_entries=32)
def store_at(path: str) -> DecisionStore:
    """The decision store at ``path``, opened once per process (callbacks get the path as text)."""
    return DecisionStore(Path(path))


def store_for(analysis: Analysis) -> DecisionStore:
    """The decisions of the analysed data (its workspace under the current app home)."""
    return store_at(str(analysis.workspace.decisions_path))


@st.cache_resource(show_spinner=False, max_entries=8)
def _views(data_id: str, config: str, scores_id: int, _analysis: Analysis) -> AnalysisViews:
    return AnalysisViews(_analysis)


def views(analysis: Analysis) -> AnalysisViews:
    """The kept views of ``analysis`` (id index, score order, decisions joined on), one per
    analysed data and ranking in the process: every session and rerun finds them ready."""
    # The score table's identity too: a data set analysed again gets views of its new table.
    return _views(analysis.data_id, repr(analysis.config), id(analysis.scores), analysis)


@st.cache_resource(show_spinner=False)
def maps() -> MapJobs:
    """The process-wide maps: computed once per analysis, method and space, in the background
    for large data sets (oga_app/maps.py)."""
    return MapJobs()


@st.cache_resource(show_spinner=False)
def retrain_jobs() -> RetrainJobs:
    """The process-wide retraining runs (oga_app/retrain_jobs.py): one per analysis and set of
    decisions, in the background, so a person can go on reviewing meanwhile."""
    return RetrainJobs()


@st.cache_resource(show_spinner=False, max_entries=8)
def _density(key: tuple, _coords: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return summaries.density_grid(_coords)


def density(analysis: Analysis, method: str, space: str, coords: np.ndarray) -> tuple:
    """The map's 2-D histogram (``summaries.density_grid``), counted once per map."""
    return _density((*MapJobs.key(analysis, method, space), len(coords)), coords)


@st.cache_data(show_spinner=False, max_entries=20_000)
def _thumb(data_id: str, sample_id: str, index: int, side: int, _analysis: Analysis) -> bytes:
    return summaries.thumbnail_png(_analysis.dataset, index, side=side)


def thumbnail_png(analysis: Analysis, sample_id: str, index: int, side: int) -> bytes:
    """PNG bytes of sample ``index`` (``sample_id``) at most ``side`` pixels a side; OgaError if
    its file can no longer be read."""
    return _thumb(analysis.data_id, sample_id, index, side, analysis)

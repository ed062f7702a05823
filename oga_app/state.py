"""The session's settings: the last analysed ``AnalysisConfig`` and the sidebar's ranking.

``st.session_state[CONFIG_KEY]`` holds the settings last analysed in this session (ranked as
they were analysed); the sidebar's widgets (:data:`RANKING_KEYS`) re-rank them at once. The last
analysed settings are also written to ``$OGA_HOME/app/last_config.json``. A new session starts
where the person left off (:mod:`oga_app.resume`: the URL's workspace, the analysis running in
the server, the most recent work, else the demo), and every page showing an analysis names its
workspace in the URL (:func:`name_in_url`). Decisions are never kept here: they live in SQLite.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import streamlit as st

from oga_app import callbacks, resources, resume
from oga_app.messages import escape_md
from oga_core import options
from oga_core.config import AnalysisConfig
from oga_core.errors import OgaError
from oga_core.files import atomic_write_text
from oga_core.store import oga_home

_LOG = logging.getLogger("oga.app")

DEMO_NOISE = 0.1  # the demo flips 10% of labels, so a newcomer sees flagged samples at once
DEFAULT_CONFIG = AnalysisConfig(data=options.DEFAULT_DATA, noise=DEMO_NOISE)
CONFIG_KEY = "oga_config"
DETECTOR_KEY, BUDGET_KEY, PER_CLASS_KEY = "rank_detector", "rank_budget", "rank_per_class"


def last_config_path() -> Path:
    return oga_home() / "app" / "last_config.json"


def load_last_config() -> AnalysisConfig | None:
    """The settings last analysed in this app home, or None (missing, unreadable or invalid)."""
    try:
        return AnalysisConfig.from_dict(json.loads(last_config_path().read_text())).validate()
    except (OSError, ValueError, TypeError, OgaError):
        return None


def save_last_config(config: AnalysisConfig) -> None:
    path = last_config_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(config.to_dict(), indent=2))
    except OSError as exc:  # a read-only home must not break the app; settings just won't persist
        _LOG.warning("cannot save the last settings to %s: %s", path, exc)


def stored_config() -> AnalysisConfig:
    """The session's analysed settings (ranking as analysed); a new session's are chosen by
    :func:`oga_app.resume.choose` (a bad link in the URL is one line of warning)."""
    config = st.session_state.get(CONFIG_KEY)
    if config is None:
        try:
            saved_at = last_config_path().stat().st_mtime
        except OSError:
            saved_at = None
        config, warning = resume.choose(
            linked=st.query_params.get(resume.QUERY),
            running=resources.registry().running_configs(),
            saved=load_last_config(),
            saved_at=saved_at,
            default=DEFAULT_CONFIG,
        )
        if warning:
            callbacks.flash("warning", escape_md(warning))
        st.session_state[CONFIG_KEY] = config
    return config


def name_in_url(data_id: str) -> None:
    """Write the workspace shown into the URL (``?workspace=<data id>``): a bookmark or a shared
    link of this page opens the same data (``oga_app.resume``)."""
    if st.query_params.get(resume.QUERY) != data_id:
        st.query_params[resume.QUERY] = data_id


def session_config() -> AnalysisConfig:
    """The settings the pages show: the stored config ranked as the sidebar says now.

    The sidebar's budget is a percentage (0.5-50); the config's a fraction.
    """
    config = stored_config()
    detector = st.session_state.get(DETECTOR_KEY, config.detector)
    budget = st.session_state.get(BUDGET_KEY, config.budget * 100) / 100
    per_class = st.session_state.get(PER_CLASS_KEY, config.per_class)
    return config.ranked(detector=detector, budget=round(float(budget), 6), per_class=bool(per_class))


def adopt(config: AnalysisConfig) -> None:
    """Make ``config`` (just analysed without error) the session's and the saved settings."""
    st.session_state[CONFIG_KEY] = config
    save_last_config(config)


def save_ranking() -> None:
    """Widget callback of the sidebar's ranking: a reload keeps the ranking too."""
    save_last_config(session_config())

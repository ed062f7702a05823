"""The session's analysis: found in memory, or computed / loaded from the disk cache with a
status box and one progress bar per stage; and its score table with the decisions joined on."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from oga_app import resources, state
from oga_core.config import AnalysisConfig
from oga_core.options import STAGES, labels, names
from oga_core.pipeline import Analysis

STAGE_LABELS = labels(STAGES)
REDRAW_S = 0.1  # each progress update is a message to the browser: ~10 per second is smooth and cheap


def current_analysis() -> Analysis:
    """The session's analysis, with live progress in the page if it has to be computed or loaded
    (or is being computed for another session); its workspace is named in the URL."""
    config = state.session_config()
    found = resources.registry().peek(config)
    analysis = found if found is not None else run_analysis(config)
    state.name_in_url(analysis.data_id)
    resources.maps().prefetch(analysis)
    return analysis


def run_analysis(config: AnalysisConfig, *, fresh: bool = False) -> Analysis:
    """Analyse ``config`` with a status box and one progress bar per stage; OgaError on bad input.
    ``fresh``: look at the data on disk again (see :meth:`AnalysisRegistry.get`)."""
    config.validate()
    status = st.status(f"Analyzing {config.data} …", expanded=True)
    bars = {stage: status.progress(0.0, text=STAGE_LABELS[stage]) for stage in names(STAGES)}
    last_draw = dict.fromkeys(bars, 0.0)

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage not in bars or (done < total and now - last_draw[stage] < REDRAW_S):
            return
        last_draw[stage] = now
        text = STAGE_LABELS[stage]
        if stage == "train" and total > 1:
            text += f": step {done:,} of {total:,}"
        elif total > 1:
            text += f": {done:,} of {total:,}"
        bars[stage].progress(min(1.0, done / total) if total else 1.0, text=text)

    start = time.perf_counter()
    try:
        analysis = resources.registry().get(config, progress, fresh=fresh)
    except Exception:  # not Streamlit's stop / rerun signals: the page is going away then
        status.update(label=f"Could not analyze {config.data}", state="error", expanded=False)
        raise
    took = time.perf_counter() - start
    note = " (from the cache)" if set(analysis.run.get("cache_hits", [])) >= {"train", "gradients", "scores"} else ""
    status.update(label=f"Analyzed {config.data} in {took:.1f} s{note}", state="complete", expanded=False)
    return analysis


def start_analysis(config: AnalysisConfig) -> Analysis:
    """Analyse new settings (an explicit request: the data on disk is looked at again); only on
    success do they become the session's (and the saved) ones."""
    analysis = run_analysis(config, fresh=True)
    state.adopt(config)
    return analysis


def decided_table(analysis: Analysis) -> pd.DataFrame:
    """The analysis' score table with the current decisions joined on: as SQLite holds them now
    (re-read whenever they changed, in this tab or another), shared by every session; never
    modify it."""
    return resources.views(analysis).decided(resources.store_for(analysis))

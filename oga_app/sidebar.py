"""The sidebar on every page: the ranking (applied at once by rescoring, never retraining) and
a summary of what is loaded and how far the review has got."""

from __future__ import annotations

import logging

import streamlit as st

from oga_app import resources, state
from oga_app.messages import escape_md
from oga_core import options
from oga_core.detectors import DETECTORS

_LOG = logging.getLogger("oga.app")

BUDGET_RANGE = (0.5, 50.0)  # percent of samples flagged; the slider's steps are 0.5
DETECTOR_HELP = (
    "The score that orders samples and decides which are flagged. "
    + options.DEFAULT_DETECTOR_WHY
    + "\n\n"
    + "\n\n".join(f"**{d.label}**: {d.help}." for d in DETECTORS.values())
)


def ranking() -> None:
    """Detector, budget and per-class ranking; a change re-ranks the analysis in memory."""
    config = state.stored_config()
    with st.sidebar:
        st.markdown("**Ranking** · instant, no retraining")
        st.selectbox(
            "Detector",
            list(DETECTORS),
            index=list(DETECTORS).index(config.detector),
            format_func=lambda name: DETECTORS[name].label,
            key=state.DETECTOR_KEY,
            on_change=state.save_ranking,
            help=DETECTOR_HELP,
        )
        lo, hi = BUDGET_RANGE
        st.slider(
            "Budget (% of samples flagged)",
            lo,
            hi,
            min(hi, max(lo, round(config.budget * 200) / 2)),
            0.5,
            key=state.BUDGET_KEY,
            on_change=state.save_ranking,
            format="%.1f%%",
            help="The paper trims the top 5%.",
        )
        st.toggle(
            "Rank within each class",
            value=config.per_class,
            key=state.PER_CLASS_KEY,
            on_change=state.save_ranking,
            help="Gradient norms differ by class; ranking within classes spreads the budget evenly.",
        )


def summary() -> None:
    """What is loaded and how far the review has got (only if the analysis is already in memory)."""
    analysis = resources.registry().peek(state.session_config())
    if analysis is None:
        return
    try:
        reviewed, flagged, counts = resources.views(analysis).progress(resources.store_for(analysis))
    except Exception:  # a summary must never take the page down
        _LOG.exception("sidebar summary failed")
        return
    with st.sidebar:
        st.divider()
        st.caption(
            f"**{escape_md(analysis.config.data)}** · {len(analysis.dataset):,} samples · "
            f"{analysis.dataset.num_classes} classes"
        )
        st.progress(reviewed / flagged if flagged else 0.0, text=f"Reviewed {reviewed} of {flagged} flagged")
        st.caption(f"kept {counts['keep']:,} · dropped {counts['drop']:,} · relabelled {counts['relabel']:,}")

"""Retrain with the decisions applied and show before / after (docs/architecture.md, "Retraining").

The run itself is :func:`oga_core.retrain.retrain` in a server thread (oga_app/retrain_jobs.py);
this module draws its button, its progress (a fragment polls) and the comparison: held-out
accuracy (on samples neither run trains on; the page says which labels it is measured on), the
flagged samples before and after, the samples whose rank moved most, and the estimate of wrong
labels left below the cut.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from oga_app import callbacks, resources
from oga_app.messages import escape_md
from oga_app.retrain_jobs import RetrainJobs, RetrainState
from oga_core import options, remaining
from oga_core.errors import OgaError
from oga_core.pipeline import Analysis
from oga_core.retrain import CHANGED_COLUMNS

STAGE_LABELS = options.labels(options.STAGES)


def section(analysis: Analysis, *, key: str) -> None:
    """The retrain button and the latest comparison of ``analysis`` (``key`` keeps the widgets
    of two pages apart)."""
    views = resources.views(analysis)
    _, _, counts = views.progress(resources.store_for(analysis))
    changes = counts["drop"] + counts["relabel"]
    state = resources.retrain_jobs().latest(analysis.config, analysis.data_id)
    st.caption(
        "Trains the same recipe again (model, epochs, learning rate, seed) with the dropped samples left out and "
        "the relabels applied, then compares the two runs on the held-out part, which neither run trains on."
    )
    running = state is not None and state.running
    st.button(
        f"Retrain with {counts['drop']:,} drop(s) and {counts['relabel']:,} relabel(s)",
        key=f"{key}-retrain",
        icon=":material/model_training:",
        on_click=callbacks.on_retrain,
        args=(analysis,),
        disabled=running or not changes,
        help="Runs in the background: go on reviewing meanwhile. Cached like every stage."
        if changes
        else "Drop or relabel samples first: with no change the run would repeat the analysis.",
    )
    if state is None:
        return
    if state.running:
        progress(analysis)
        return
    if state.error is not None:
        if isinstance(state.error, OgaError):
            st.warning(str(state.error), icon=":material/info:")
        else:
            st.error(
                f"Retraining failed inside oga ({type(state.error).__name__}: {state.error}); the decisions are "
                "unchanged.",
                icon=":material/bug_report:",
            )
        return
    if state.digest != RetrainJobs.digest(analysis.dataset.ids, resources.store_for(analysis)):
        st.info(
            "This comparison is for earlier decisions: retrain to include the newer ones.", icon=":material/history:"
        )
    comparison(state.summary or {})


@st.fragment(run_every=1.0)
def progress(analysis: Analysis) -> None:
    """The running retraining's stage and progress, redrawn every second; the page reruns when
    it ends."""
    state: RetrainState | None = resources.retrain_jobs().latest(analysis.config, analysis.data_id)
    if state is None or not state.running:
        st.rerun()
        return
    stage = STAGE_LABELS.get(state.stage, state.stage or "Starting")
    st.progress(state.fraction, text=f"Retraining · {stage} … {state.seconds:.0f} s")


def comparison(summary: dict) -> None:
    """Before / after side by side."""
    acc, flagged, dec = summary["heldout_accuracy"], summary["flagged"], summary["decisions"]
    c = st.columns(4)
    if acc["before"] is not None:
        c[0].metric(
            "Held-out accuracy",
            f"{acc['after']:.1%}",
            f"{(acc['after'] - acc['before']) * 100:+.1f} points (before {acc['before']:.1%})",
            help=f"On {acc['samples']:,} held-out samples; {acc['labels']}.",
        )
    else:
        c[0].metric("Held-out accuracy", "—", help=acc["labels"])
    c[1].metric(
        "Flagged",
        f"{flagged['after']:,}",
        f"{flagged['after'] - flagged['before']:+,} (before {flagged['before']:,})",
        delta_color="inverse",
    )
    c[2].metric("Still flagged", f"{flagged['still_flagged']:,}", help="Flagged in both runs.")
    c[3].metric(
        "Newly flagged",
        f"{flagged['newly_flagged']:,}",
        f"{flagged['after_undecided']:,} not yet reviewed",
        delta_color="off",
    )
    notes = [
        f"Trained on {dec['trained_after']:,} samples (before {dec['trained_before']:,}): {dec['dropped']:,} dropped, "
        f"{dec['relabelled']:,} relabelled.",
        f"Held-out labels: {acc['labels'].removeprefix('held-out labels: ')}.",
    ]
    if acc["before"] is not None:
        notes.append(
            f"{acc['gained']:,} held-out samples right now that were wrong, {acc['lost']:,} wrong now that were "
            f"right: "
            + ("a clear change" if acc["p_value"] < 0.05 else "no clear change")
            + f" (McNemar p = {acc['p_value']:.2g})."
        )
    if "before_true_labels" in acc:
        notes.append(
            f"On the true labels (the noise was injected): {acc['before_true_labels']:.1%} → "
            f"{acc['after_true_labels']:.1%}."
        )
    notes.append(remaining.NoiseLeft(**summary["noise_left"]).line().capitalize() + ".")
    st.markdown("\n".join(f"- {escape_md(n)}" for n in notes))
    moved = pd.DataFrame(summary["changed"], columns=list(CHANGED_COLUMNS))
    if len(moved):
        st.markdown("**Moved most** · rank before and after")
        st.dataframe(moved, hide_index=True, width="stretch", height=min(36 * (len(moved) + 1) + 3, 300))

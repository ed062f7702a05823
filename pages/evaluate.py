"""Evaluate: with label noise injected the truth is known, so every score column can be measured
(precision@k, recall@k, AUROC, average precision) side by side, and so can the person's own calls.
"""

from __future__ import annotations

import math

import streamlit as st

from oga_app import figures, ui
from oga_core import summaries
from oga_core.detectors import detector_column
from oga_core.evaluate import decision_quality, detection_metrics


def _pct(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.0%}"


def evaluate(analysis) -> None:
    """Every detector, and the person's decisions, against the injected truth."""
    config = analysis.config
    truth = analysis.noise.noisy
    n_bad = int(truth.sum())
    k_budget = max(1, int(round(config.budget * len(truth))))
    st.caption(
        f"{n_bad:,} of {len(truth):,} labels were flipped on purpose ({config.noise_kind}). k = {k_budget} is the "
        f"budget ({config.budget:.1%}); k = {n_bad} is the true number of flipped labels, where precision = recall."
    )

    st.subheader("Detectors against the truth")
    metrics = detection_metrics(analysis.scores, truth, budget=config.budget)
    active = detector_column(config.detector)
    metrics.insert(0, "in use", metrics["score"].eq(active).map({True: "◀ ranking", False: ""}))
    number_cols = [c for c in metrics.columns if c not in ("score", "in use")]
    st.dataframe(
        metrics.style.format(dict.fromkeys(number_cols, "{:.3f}")).background_gradient(
            cmap="Greens", subset=number_cols, axis=0
        ),
        width="stretch",
        hide_index=True,
    )
    st.caption(
        "AUROC: chance that a flipped sample scores above a clean one. AP: average precision over the whole "
        "ranking. Computed on the raw scores (per-class ranking not applied)."
    )
    curve = summaries.precision_curve(analysis.scores, truth)
    st.plotly_chart(
        figures.precision_figure(curve, marks={"budget": k_budget, "flipped": n_bad}, active=active),
        key="precision_curve",
        config={"displaylogo": False},
    )

    st.subheader("Your decisions against the truth")
    table = ui.decided_table(analysis)
    decisions = ui.store_for(analysis).table()
    quality = decision_quality(decisions, analysis.scores)
    caught = summaries.decisions_vs_truth(table) or {}
    if not len(decisions):
        st.caption("No decisions yet: review some flagged samples and come back.")
    c = st.columns(4)
    c[0].metric(
        "Precision of your drop / relabel calls",
        _pct(quality.get("precision_of_bad_calls")),
        help=f"{quality.get('marked_bad', 0)} samples marked bad; share of them that really were flipped.",
    )
    c[1].metric(
        "Kept samples that were clean", _pct(quality.get("kept_clean_rate")), help=f"{quality.get('kept', 0)} kept"
    )
    c[2].metric(
        "Relabels that restored the true class",
        _pct(quality.get("relabel_accuracy")),
        help=f"{quality.get('relabeled', 0)} relabelled",
    )
    c[3].metric(
        "Flipped labels caught",
        f"{caught.get('caught', 0)} of {caught.get('noisy', n_bad)}",
        help="Dropped or relabelled so far.",
    )


ui.require_entry()
st.title("Evaluate")
with ui.guard(setup_link=True):
    analysis = ui.current_analysis()
    if analysis.noise is None:
        st.info(
            "Evaluation needs known truth. On the Set-up page, flip a share of labels on purpose (the demo "
            "flips 10%) and analyze again: oga keeps the true labels and measures every detector against them.",
            icon=":material/science:",
        )
        st.page_link(ui.PAGES.get("setup", "app.py"), label="Go to Set-up", icon=":material/tune:")
    else:
        evaluate(analysis)

"""Evaluate: with label noise injected the truth is known, so every score column can be measured
(precision@k, recall@k, AUROC, average precision) side by side, and so can the person's own calls.
"""

from __future__ import annotations

import math

import streamlit as st

from oga_app import entry, figures, loading, resources, state
from oga_app.messages import SETUP_PAGE
from oga_core import summaries
from oga_core.detectors import detector_column
from oga_core.evaluate import decision_quality
from oga_core.pipeline import Analysis


def _pct(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.0%}"


def render(analysis: Analysis) -> None:
    if analysis.noise is None:
        st.info(
            "Evaluation needs known truth. On the Set-up page, flip a share of labels on purpose (the demo "
            f"flips {state.DEMO_NOISE:.0%}) and analyze again: oga keeps the true labels and measures every "
            "detector against them.",
            icon=":material/science:",
        )
        st.page_link(SETUP_PAGE, label="Go to Set-up", icon=":material/tune:")
        return
    config = analysis.config
    truth = analysis.noise.noisy
    n_bad = int(truth.sum())
    k_budget = max(1, int(round(config.budget * len(truth))))
    st.caption(
        f"{n_bad:,} of {len(truth):,} labels were flipped on purpose ({config.noise_kind}). k = {k_budget} is the "
        f"budget ({config.budget:.1%}); k = {n_bad} is the true number of flipped labels, where precision = recall."
    )
    detectors(analysis, k_budget, n_bad)
    decisions(analysis, n_bad)


def detectors(analysis: Analysis, k_budget: int, n_bad: int) -> None:
    """Every score column against the injected truth: a table and the precision curves."""
    st.subheader("Detectors against the truth")
    metrics, curve = resources.views(analysis).detection()
    metrics = metrics.copy()  # the kept one is shared by every session
    active = detector_column(analysis.config.detector)
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
    st.plotly_chart(
        figures.precision_figure(curve, marks={"budget": k_budget, "flipped": n_bad}, active=active),
        key="precision_curve",
        config={"displaylogo": False},
    )


def decisions(analysis: Analysis, n_bad: int) -> None:
    """The person's keep / drop / relabel calls against the injected truth."""
    st.subheader("Your decisions against the truth")
    table = loading.decided_table(analysis)
    decided = resources.store_for(analysis).table()
    quality = decision_quality(decided, analysis.scores)
    caught = summaries.decisions_vs_truth(table) or {}
    if not len(decided):
        st.caption("No decisions yet: review some flagged samples and come back.")
    # Two by two: four long labels in one row were cut off at 1024 px beside the sidebar.
    c = [*st.columns(2), *st.columns(2)]
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


if __name__ == "__main__":  # run as a page (see oga_app.entry)
    render(entry.analysis())

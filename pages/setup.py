"""Set-up, the first page: choose the data, the model and the gradient scope, and analyse.

With nothing set up the app analyses the digits demo with 10% of labels flipped on purpose, so
a newcomer sees flagged samples at once. Earlier work is one click away (*Recent work*).
"""

from __future__ import annotations

import time

import streamlit as st

from oga_app import cards, entry, figures, form, loading, resources, runinfo, state
from oga_app.messages import escape_md, guard
from oga_core import summaries
from oga_core.config import AnalysisConfig
from oga_core.detectors import DETECTORS
from oga_core.pipeline import Analysis
from oga_core.workspace import Workspace

PREVIEW = 12  # the most suspicious samples shown as a first look


def render() -> None:
    st.title("Find the training samples that hurt your model")
    st.caption(
        "Outlier Gradient Analysis (arXiv 2405.03869): a sample whose loss gradient is an outlier is "
        "likely mislabelled or harmful. Train or load a model, rank every sample by its gradient, then "
        "review, keep, drop or relabel the flagged ones and export the cleaned data set."
    )
    current = state.stored_config()
    left, right = st.columns([2, 3], gap="large")
    with left:
        reopened = requested = None
        with guard():
            reopened = recent_work(current)
        with guard():
            requested = form.settings_form(current)
    with right:
        if reopened is not None:
            with guard():
                loading.start_analysis(reopened)
                form.renew()
                st.rerun()
        elif requested is not None:
            with guard():
                loading.start_analysis(requested)
        with guard():
            results(loading.current_analysis())


def recent_work(current: AnalysisConfig) -> AnalysisConfig | None:
    """Data sets analysed before under this app home (``Workspace.recent``), to reopen with
    their decisions; the settings to analyse when Reopen is clicked."""
    others = [w for w in Workspace.recent() if w.data != current.data]
    if not others:
        return None
    chosen = None
    with st.expander(f"Recent work ({len(others)})", icon=":material/history:"):
        for work in others:
            row = st.columns([4, 1], vertical_alignment="center")
            row[0].markdown(
                f"**{escape_md(work.data)}**  \n{work.num_samples:,} samples · {sum(work.decisions.values())} "
                f"decided · analysed {time.strftime('%Y-%m-%d %H:%M', time.localtime(work.analysed_at))}"
            )
            if row[1].button("Reopen", key=f"reopen-{work.data_id}"):
                chosen = AnalysisConfig.from_dict(work.config)
    return chosen


def results(analysis: Analysis) -> None:
    """What the analysis found: counts, the most suspicious samples, and where to go next."""
    run, config = analysis.run, analysis.config
    table = loading.decided_table(analysis)
    reviewed, flagged = summaries.review_progress(table)
    st.subheader(f"Results · {config.data}")
    truth = summaries.flagged_truth(analysis.scores)
    if config.data.startswith("demo:") and truth is not None:
        st.info(
            f"This is a demo: **{truth['noisy']:,} of {len(table):,} labels ({config.noise:.0%}) were flipped on "
            "purpose**, and oga kept the truth so the Evaluate page can score the detectors. Choose your own "
            "data on the left whenever you are ready.",
            icon=":material/science:",
        )
    # Pairs of metrics: more in a row of this column truncate their values at 1024 px beside the sidebar.
    cols = [*st.columns(2), *st.columns(2)]
    cols[0].metric("Samples", f"{len(table):,}", help=f"{analysis.dataset.num_classes} classes")
    cols[1].metric("Flagged", f"{flagged:,}", f"top {config.budget:.1%}", delta_color="off")
    cols[2].metric("Reviewed", f"{reviewed:,}", f"of {flagged:,} flagged", delta_color="off")
    hits = run.get("cache_hits", [])
    cols[3].metric(
        "Analysis time", f"{run['timings']['total']:.1f} s", "cached" if "train" in hits else None, delta_color="off"
    )
    runinfo.accuracy_metrics(run, st.columns(2))
    runinfo.health_and_notices(run)
    runinfo.noise_estimate(run)
    if truth is not None and truth["flagged"]:
        st.markdown(
            f"Of the **{truth['flagged']}** flagged samples, **{truth['flagged_noisy']}** really were flipped "
            f"(precision {truth['flagged_noisy'] / truth['flagged']:.0%}), which finds "
            f"{truth['flagged_noisy'] / max(truth['noisy'], 1):.0%} of all flipped labels in the top {config.budget:.0%}."
        )
    with st.container(horizontal=True):
        st.page_link("pages/review.py", label=f"Review the {flagged} flagged samples", icon=":material/grid_view:")
        st.page_link("pages/explore.py", label="Explore the map", icon=":material/scatter_plot:")
        st.page_link("pages/export.py", label="Export the cleaned data", icon=":material/download:")
        if truth is not None:
            st.page_link("pages/evaluate.py", label="Evaluate the detectors", icon=":material/analytics:")
    st.markdown(f"##### Most suspicious samples · {DETECTORS[config.detector].label}")
    st.caption("Rank · given label → predicted label. Decide on them in Review, or select clusters in Explore.")
    queue = summaries.review_order(table, order=resources.views(analysis).order())
    cards.preview_grid(analysis, table.iloc[queue[:PREVIEW]], columns=6)
    # The score histogram with the budget cut, as on Explore: it shows where the cut falls, and it
    # loads Plotly's script in the browser here (~2 s the first time in a tab), not on Explore's first open.
    st.plotly_chart(
        figures.score_histogram(
            resources.views(analysis).score_bins(),
            cut=summaries.budget_cut(analysis.scores),
            detector_label=DETECTORS[config.detector].label,
            log_y=False,
        ),
        key="setup-histogram",
        config={"displaylogo": False},
    )
    with st.expander("Run details"):
        st.json(
            {
                "data_id": analysis.data_id,
                "workspace": str(analysis.workspace.folder),
                "device": run["device"],
                "epochs": run["epochs"],
                "timings_s": run["timings"],
                "cache_hits": hits,
                "image_shape": run["image_shape"],
            },
            expanded=True,
        )


if __name__ == "__main__":  # run as a page (see oga_app.entry)
    entry.require_app()
    render()

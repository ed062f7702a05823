"""Explore: the 2-D map of every sample, the score histogram with the budget cut, and the
confusion of flagged samples. Box or lasso select on the map opens those samples below.

The selection is read as sample ids from the points' ``customdata`` and kept in the session, so
it survives a change of colouring (which redraws the chart) until it is cleared or replaced.
"""

from __future__ import annotations

import streamlit as st

from oga_app import figures, ui
from oga_core import summaries

SESSION = "session"
SELECTION = "explore_selection"
METHODS = {"umap": "UMAP", "pca": "PCA (instant)"}
SPACES = {"features": "model features", "gradients": "loss gradients"}


@ui.safe_callback
def _on_select() -> None:
    event = st.session_state.get("map") or {}
    points = (event.get("selection") or {}).get("points") or []
    st.session_state[SELECTION] = ui.ids_from_points(points)
    st.session_state["explore_page"] = 1


def _clear_selection() -> None:
    st.session_state[SELECTION] = []


ui.require_entry()
st.title("Explore")
with ui.guard(setup_link=True):
    analysis = ui.current_analysis()
    classes = analysis.dataset.classes
    table = ui.decided_table(analysis)

    c = st.columns([2, 3, 2, 1, 1], vertical_alignment="bottom")
    method = c[0].segmented_control(
        "Map",
        list(METHODS),
        default="umap",
        format_func=METHODS.get,
        key="map_method",
        required=True,
        persist_state=SESSION,
        help="UMAP keeps clusters apart (the first map in a new server takes ~30 s to compile); PCA is instant.",
    )
    space = c[1].segmented_control(
        "Of",
        list(SPACES),
        default="features",
        format_func=SPACES.get,
        key="map_space",
        required=True,
        persist_state=SESSION,
    )
    color_by = c[2].selectbox("Colour by", figures.COLOR_BY, key="map_color", persist_state=SESSION)
    size = c[3].number_input("Point size", 2.0, 14.0, 5.0, 1.0, key="map_point_size", persist_state=SESSION)
    log_y = c[4].toggle("Log y", key="hist_log", persist_state=SESSION, help="Histogram counts on a log scale.")

    left, right = st.columns([3, 2], gap="medium")
    with left:
        wait = "Computing the UMAP map (the first one in a new server compiles UMAP: ~30 s) …"
        with st.spinner(wait if method == "umap" else "Computing the map …"):
            coords = ui.map_coords(analysis, method, space)
        frame = summaries.map_frame(table, coords)
        st.plotly_chart(
            figures.map_figure(frame, color_by=color_by, classes=classes, point_size=size),
            key="map",
            on_select=_on_select,
            selection_mode=("points", "box", "lasso"),
            config={"displaylogo": False, "scrollZoom": True},
        )
        st.caption(
            f"{len(frame):,} samples; flagged ones drawn larger. Drag a box or lasso (toolbar) to select; "
            "double-click to clear; scroll to zoom."
        )
    with right:
        st.markdown(f"**Scores** · {ui.DETECTOR_LABELS[analysis.config.detector]}")
        st.plotly_chart(
            figures.score_histogram(table, detector_label=ui.DETECTOR_LABELS[analysis.config.detector], log_y=log_y),
            key="histogram",
            config={"displaylogo": False},
        )
        st.metric(
            "Flagged",
            f"{int(table['flagged'].sum()):,} of {len(table):,}",
            f"top {analysis.config.budget:.1%}",
            delta_color="off",
        )

    st.markdown("**Flagged samples · given label (rows) × predicted label (columns)**")
    confusion = summaries.flagged_confusion(analysis.scores, classes)
    inner = (confusion.index[:-1], confusion.columns[:-1])
    st.dataframe(
        confusion.style.background_gradient(cmap="Oranges", subset=inner, axis=None),
        width="stretch",
        height=36 * (len(confusion) + 1) + 3,  # every row visible, no inner scroll
    )
    st.caption("Off-diagonal cells are flagged samples the model disagrees with: the likely label errors.")

    selected = [sid for sid in st.session_state.get(SELECTION, []) if sid]
    rows = summaries.rows_for_ids(table, selected)
    st.subheader(f"Selection · {len(rows):,} samples")
    if not len(rows):
        st.caption("Select points on the map to open them here, with the same decisions as on Review.")
    else:
        start, stop, n_pages = summaries.page_bounds(len(rows), st.session_state.get("explore_page", 1), 20)
        top = st.columns([3, 2, 1], vertical_alignment="center")
        top[0].caption(f"Showing {start + 1}–{stop} of {len(rows):,}, highest score first")
        with top[1]:
            st.pagination(n_pages, key="explore_page", width="stretch")
        top[2].button("Clear selection", key="clear-selection", on_click=_clear_selection, icon=":material/close:")
        ui.bulk_actions(analysis, rows, key="selection", scope="in the selection")
        ui.undo_button(analysis, key="explore-undo")
        ui.sample_grid(analysis, rows.iloc[start:stop], columns=5)

"""Explore: the 2-D map of every sample, the score histogram with the budget cut, and the
confusion of flagged samples. Box or lasso select on the map opens those samples below.

The selection is read as sample ids from the points' ``customdata`` and kept in the session, so
it survives a change of colouring (which redraws the chart) until it is cleared or replaced.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from oga_app import actions, callbacks, cards, entry, figures, loading, resources
from oga_core import options, summaries
from oga_core.detectors import DETECTORS
from oga_core.pipeline import Analysis

SESSION = "session"
SELECTION = "explore_selection"
PAGE_KEY = "explore_page"
PAGE_SIZE = 20
# The first choice is the engine's default (Analysis.map_coords: UMAP of the model's features).
METHODS, SPACES = options.MAP_METHODS, options.MAP_SPACES


@callbacks.safe_callback
def _on_select() -> None:
    event = st.session_state.get("map") or {}
    st.session_state[SELECTION] = figures.ids_from_points((event.get("selection") or {}).get("points"))
    st.session_state[PAGE_KEY] = 1


def _clear_selection() -> None:
    st.session_state[SELECTION] = []


def render(analysis: Analysis) -> None:
    classes = analysis.dataset.classes
    table = loading.decided_table(analysis)
    detector = DETECTORS[analysis.config.detector].label

    c = st.columns([2, 3, 2, 1, 1], vertical_alignment="bottom")
    method = c[0].segmented_control(
        "Map",
        options.names(METHODS),
        default=METHODS[0].name,
        format_func=options.labels(METHODS).get,
        key="map_method",
        required=True,
        persist_state=SESSION,
        help="; ".join(f"{m.label}: {m.help}" for m in METHODS) + ".",
    )
    space = c[1].segmented_control(
        "Of",
        options.names(SPACES),
        default=SPACES[0].name,
        format_func=options.labels(SPACES).get,
        key="map_space",
        required=True,
        persist_state=SESSION,
        help="; ".join(f"{s.label}: {s.help}" for s in SPACES) + ".",
    )
    color_by = c[2].selectbox("Colour by", figures.COLOR_BY, key="map_color", persist_state=SESSION)
    size = c[3].number_input("Point size", 2.0, 14.0, 5.0, 1.0, key="map_point_size", persist_state=SESSION)
    log_y = c[4].toggle("Log y", key="hist_log", persist_state=SESSION, help="Histogram counts on a log scale.")

    left, right = st.columns([3, 2], gap="medium")
    with left:
        chosen = next(m for m in METHODS if m.name == method)
        with st.spinner(f"Computing the {chosen.label} map of the {options.labels(SPACES)[space]} ({chosen.help}) …"):
            coords = resources.map_coords(analysis, method, space)
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
        st.markdown(f"**Scores** · {detector}")
        st.plotly_chart(
            figures.score_histogram(table, detector_label=detector, log_y=log_y),
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
    selection(analysis, table)


def selection(analysis: Analysis, table: pd.DataFrame) -> None:
    """The samples selected on the map, as editable cards, highest score first."""
    rows = summaries.rows_for_ids(table, [sid for sid in st.session_state.get(SELECTION, []) if sid])
    st.subheader(f"Selection · {len(rows):,} samples")
    if not len(rows):
        st.caption("Select points on the map to open them here, with the same decisions as on Review.")
        return
    start, stop, n_pages = summaries.page_bounds(len(rows), st.session_state.get(PAGE_KEY, 1), PAGE_SIZE)
    top = st.columns([3, 2, 1], vertical_alignment="center")
    top[0].caption(f"Showing {start + 1}–{stop} of {len(rows):,}, highest score first")
    with top[1]:
        st.pagination(n_pages, key=PAGE_KEY, width="stretch")
    top[2].button("Clear selection", key="clear-selection", on_click=_clear_selection, icon=":material/close:")
    actions.bulk_actions(analysis, rows, key="selection", scope="in the selection")
    actions.undo_button(analysis, key="explore-undo")
    cards.sample_grid(analysis, rows.iloc[start:stop], columns=5)


if __name__ == "__main__":  # run as a page (see oga_app.entry)
    render(entry.analysis())

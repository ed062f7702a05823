"""Explore: the 2-D map of every sample, the score histogram with the budget cut, and the
confusion of flagged samples.

A click on a point shows that sample beside the map at once: its image and its card, with the
same keep / drop / relabel as on Review. A box or lasso selects a region; its samples open below,
highest score first. Past ``figures.MAX_POINTS`` samples the map is a density image of every
sample with the most suspicious flagged or decided ones marked; a region selected on it is drawn
below it as points (the most suspicious ``figures.REGION_POINTS``), to click or select from. The
UMAP map of a large data set is computed in the background (oga_app/maps.py) while the instant
PCA map stands in, labelled as such.

Selections are kept in the session as rows of the score table (a region of a million-sample map
can hold a hundred thousand samples), so they survive a change of colouring until cleared or
replaced. They are read in the charts' ``on_select`` callbacks, which run only when the person
changes a selection, with the map drawn last (``DRAWN``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from oga_app import actions, callbacks, cards, entry, figures, loading, maps, resources, similar, state
from oga_app.messages import guard
from oga_core import options, summaries
from oga_core.detectors import DETECTORS
from oga_core.issues import issue_mask
from oga_core.pipeline import Analysis

SESSION = "session"
SELECTION = "explore_selection"  # rows of the score table, highest score first
REGION = "explore_region"  # rows of the region selected on a density map
ISSUE_KEY = "explore_issue"
CLICKED = "explore_clicked"  # the sample id of the point clicked last
DRAWN = "explore_drawn"  # (method, space) of the map drawn last: what a selection's coordinates are on
PAGE_KEY = "explore_page"
PAGE_SIZE = 20
SELECT_MODES = ("points", "box", "lasso")
# The first choice is the engine's default (Analysis.map_coords: UMAP of the model's features).
METHODS, SPACES = options.MAP_METHODS, options.MAP_SPACES


def _clear_selection() -> None:
    st.session_state[SELECTION] = np.zeros(0, dtype=np.int64)
    st.session_state[REGION] = None


def _close_clicked() -> None:
    st.session_state.pop(CLICKED, None)


def render(analysis: Analysis) -> None:
    classes = analysis.dataset.classes
    table = loading.decided_table(analysis)
    detector = DETECTORS[analysis.config.detector].label

    # Two rows: the two segmented controls side by side with the rest were clipped at 1024 px.
    c = [*st.columns([2, 3], vertical_alignment="bottom"), *st.columns([2, 1, 2], vertical_alignment="bottom")]
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

    left, right = st.columns([3, 2], gap="medium")
    with left:
        coords, drawn = map_coords(analysis, method, space)
        st.session_state[DRAWN] = (drawn, space)
        style = {"color_by": color_by, "classes": classes, "point_size": size}
        the_map(analysis, table, coords, drawn, space, style)
        region(analysis, table, coords, style)
    with right:
        clicked(analysis, table)
        st.markdown(f"**Scores** · {detector}")
        log_y = st.toggle("Log y", key="hist_log", persist_state=SESSION, help="Histogram counts on a log scale.")
        st.plotly_chart(
            figures.score_histogram(
                resources.views(analysis).score_bins(),
                cut=summaries.budget_cut(analysis.scores),
                detector_label=detector,
                log_y=log_y,
            ),
            key="histogram",
            config={"displaylogo": False},
        )
        st.metric(
            "Flagged",
            f"{int(table['flagged'].sum()):,} of {len(table):,}",
            f"top {analysis.config.budget:.1%}",
            delta_color="off",
        )

    similar.panel(analysis, table, key="explore")
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


# -- the map ---------------------------------------------------------------------------------
def map_coords(analysis: Analysis, method: str, space: str) -> tuple[np.ndarray, str]:
    """The map to draw and the method it was made with: the one asked for when it is ready, or,
    while the UMAP map is computed in the background (at every size: fitting UMAP takes tens of
    seconds even on the demo), the instant PCA map with its progress and, once UMAP is ready, a
    button to switch to it (the page never changes under a person's hand by itself)."""
    jobs = resources.maps()
    labels = options.labels(METHODS)
    chosen = next(m for m in METHODS if m.name == method)
    if method != "umap":
        with st.spinner(f"Computing the {chosen.label} map of the {options.labels(SPACES)[space]} ({chosen.help}) …"):
            return jobs.get(analysis, method, space), method
    state = jobs.poll(analysis, method, space)
    if state.coords is not None:
        return state.coords, method
    if state.error is not None:
        with guard():
            raise state.error
        st.button("Try the UMAP map again", key="map-retry", on_click=jobs.forget, args=(analysis, method, space))
    else:
        n = len(analysis.dataset)
        how = f"fitted on a random {maps.BACKGROUND_FROM:,}, the rest placed" if n > maps.BACKGROUND_FROM else "all"
        st.info(
            f"The {labels[method]} map of {n:,} samples ({how}) is being computed in the background. Meanwhile "
            f"this is the **{labels['pca']} map**; a button below switches to UMAP when it is ready.",
            icon=":material/hourglass_top:",
        )
        map_progress(analysis, method, space)
    with st.spinner("Computing the instant PCA map …"):
        return jobs.get(analysis, "pca", space), "pca"


@st.fragment(run_every=2.0)
def map_progress(analysis: Analysis, method: str, space: str) -> None:
    """The background map's progress, redrawn every 2 s; once it is done, the switch to it."""
    state = resources.maps().poll(analysis, method, space)
    if state.error is not None:
        st.rerun()
    if state.coords is not None:
        if st.button("UMAP map ready · switch to it", key="map-switch", type="primary", icon=":material/swap_horiz:"):
            st.rerun()
        return
    if state.total > 1:
        text = f"Placing the samples on the fitted map: {state.done:,} of {state.total:,}"
    else:
        text = f"Fitting UMAP … {state.seconds:.0f} s"
    st.progress(state.fraction, text=text)


def the_map(analysis: Analysis, table: pd.DataFrame, coords: np.ndarray, drawn: str, space: str, style: dict) -> None:
    """Every sample as a point, or past ``figures.MAX_POINTS`` a density image with the most
    suspicious flagged or decided samples marked."""
    n = len(table)
    if n <= figures.MAX_POINTS:
        frame = summaries.map_frame(table, coords)
        figure = figures.map_figure(frame, **style)
        note = f"{n:,} samples; flagged ones drawn larger."
    else:
        marked = (table["flagged"].to_numpy(dtype=bool)) | (table["decision"].to_numpy() != summaries.UNDECIDED)
        rows = summaries.top_rows(table, np.flatnonzero(marked), figures.MARKERS)
        frame = summaries.map_frame(table.iloc[rows], coords[rows])
        density = resources.density(analysis, drawn, space, coords)
        figure = figures.map_figure(frame, density=density, **style)
        note = (
            f"{n:,} samples as a density image (darker: more samples); the {len(rows):,} most suspicious flagged "
            "or decided samples marked."
        )
    st.plotly_chart(
        figure,
        key="map",
        on_select=_on_map_select,
        selection_mode=SELECT_MODES,
        config={"displaylogo": False, "scrollZoom": True},
    )
    st.caption(
        f"{note} Click a point to see it beside the map. Box or Lasso select (toolbar) opens a region below; "
        "double-click clears it; drag to pan, scroll to zoom."
    )


def region(analysis: Analysis, table: pd.DataFrame, coords: np.ndarray, style: dict) -> None:
    """A region selected on a density map, drawn as points (its most suspicious ones)."""
    rows = st.session_state.get(REGION)
    if rows is None or not len(rows) or len(table) <= figures.MAX_POINTS:
        return
    shown = summaries.top_rows(table, rows, figures.REGION_POINTS)
    top = st.columns([4, 1], vertical_alignment="center")
    top[0].markdown(
        f"**Region · {len(rows):,} samples**"
        + (f" · the {len(shown):,} most suspicious drawn" if len(shown) < len(rows) else "")
    )
    top[1].button("Clear region", key="clear-region", on_click=_clear_selection, icon=":material/close:")
    frame = summaries.map_frame(table.iloc[shown], coords[shown])
    st.plotly_chart(
        figures.map_figure(frame, height=420, **style),
        key="map-region",
        on_select=_on_region_select,
        selection_mode=SELECT_MODES,
        config={"displaylogo": False, "scrollZoom": True},
    )


@callbacks.safe_callback
def _on_map_select() -> None:
    act_on("map", within=None)


@callbacks.safe_callback
def _on_region_select() -> None:
    act_on("map-region", within=st.session_state.get(REGION))


def act_on(key: str, *, within: np.ndarray | None) -> None:
    """A selection on the chart ``key`` changed: a single point clicked shows that sample beside
    the map; a box or lasso selects every sample inside it (of ``within``, the region, if given)
    and on a density map also becomes the region drawn below; points selected otherwise are
    selected by their ids; an emptied selection (double-click) clears."""
    chosen = dict((st.session_state.get(key) or {}).get("selection") or {})
    shape = figures.selected_region(chosen)
    ids = figures.ids_from_points(chosen.get("points"))
    if shape is None and len(ids) == 1:  # a click
        st.session_state[CLICKED] = ids[0]
        return
    analysis = resources.registry().peek(state.session_config())
    drawn, space = st.session_state.get(DRAWN) or (None, None)
    coords = resources.maps().ready(analysis, drawn, space) if analysis is not None and drawn else None
    if analysis is None or coords is None:
        return  # the page's analysis or map is gone from memory (a new analysis): nothing to select on
    table = loading.decided_table(analysis)
    if shape is not None:
        pool = np.arange(len(table)) if within is None else np.asarray(within)
        rows = pool[summaries.rows_in_region(coords[pool], **shape)]
    else:
        found = resources.views(analysis).positions().get_indexer(pd.Index(ids, dtype=object))
        rows = found[found >= 0]
    rows = summaries.top_rows(table, rows, len(rows))  # highest score first
    if key == "map" and len(table) > figures.MAX_POINTS:
        st.session_state[REGION] = rows if shape is not None and len(rows) else None
    st.session_state[SELECTION] = rows
    st.session_state.pop(PAGE_KEY, None)  # back to the first page (the widget's default, not a value set over it)


# -- the sample clicked, and the selection ---------------------------------------------------
def clicked(analysis: Analysis, table: pd.DataFrame) -> None:
    """The sample clicked on the map: its image and its card, decided as on Review."""
    sid = st.session_state.get(CLICKED)
    row = resources.views(analysis).row_of(str(sid)) if sid is not None else None
    if row is None:
        st.caption("Click a point on the map to see its image and decide on it here.")
        return
    head = st.columns([4, 1], vertical_alignment="center")
    head[0].markdown("**Clicked sample**")
    head[1].button("Close", key="close-clicked", icon=":material/close:", on_click=_close_clicked)
    record = next(table.iloc[[row]].itertuples(index=True))
    cards.card(analysis, record, str(resources.store_for(analysis).path), prefix="map-", side=cards.FOCUS_SIDE // 2)


def _select_issue(table: pd.DataFrame) -> None:
    """The issue-type box's button: every sample of that type becomes the selection."""
    issue = st.session_state.get(ISSUE_KEY)
    if issue is not None:
        rows = np.flatnonzero(issue_mask(table, issue))
        st.session_state[SELECTION] = rows[np.argsort(-table["score"].to_numpy()[rows], kind="stable")]
        st.session_state[REGION] = None


def selection(analysis: Analysis, table: pd.DataFrame) -> None:
    """The samples selected on the map, as editable cards, highest score first; an issue type
    filters them, or selects every sample of that type."""
    rows = st.session_state.get(SELECTION)
    rows = np.zeros(0, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    rows = rows[rows < len(table)]  # rows of another analysis' table never index past this one
    st.subheader(f"Selection · {len(rows):,} samples")
    issue = None
    if "issue" in table:
        f = st.columns([2, 2, 3], vertical_alignment="bottom")
        issue = f[0].selectbox(
            "Issue type",
            options.names(options.ISSUE_TYPES),
            index=None,
            format_func=options.labels(options.ISSUE_TYPES).get,
            key=ISSUE_KEY,
            placeholder="All types",
            persist_state=SESSION,
            help="Shows only the selected samples of this type; the button selects every sample of it.",
        )
        if issue is not None:
            count = int(issue_mask(table, issue).sum())
            f[1].button(
                f"Select all {count:,}",
                key="select-issue",
                icon=":material/select_all:",
                on_click=_select_issue,
                args=(table,),
                disabled=not count,
            )
            rows = rows[issue_mask(table, issue)[rows]]
    if not len(rows):
        st.caption(
            "Select points on the map to open them here, with the same decisions as on Review"
            + (", or select every sample of the issue type." if issue else ".")
        )
        return
    chosen = table.iloc[rows]
    start, stop, n_pages = summaries.page_bounds(len(rows), st.session_state.get(PAGE_KEY, 1), PAGE_SIZE)
    top = st.columns([3, 2, 1], vertical_alignment="center")
    top[0].caption(f"Showing {start + 1}–{stop} of {len(rows):,}, highest score first")
    with top[1]:
        st.pagination(n_pages, key=PAGE_KEY, width="stretch")
    top[2].button("Clear selection", key="clear-selection", on_click=_clear_selection, icon=":material/close:")
    actions.bulk_actions(analysis, chosen, key="selection", scope="in the selection")
    actions.undo_button(analysis, key="explore-undo")
    cards.sample_grid(analysis, chosen.iloc[start:stop], columns=5)


if __name__ == "__main__":  # run as a page (see oga_app.entry)
    render(entry.analysis())

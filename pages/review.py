"""Review: the flagged samples as a grid, most suspicious first; keep, drop or relabel each one.

Every click is written to SQLite before the page redraws, so nothing decided is lost to a reload,
a restart or a crash. Filters and the page number live in the session; decisions never do.
"""

from __future__ import annotations

import streamlit as st

from oga_app import actions, cards, entry, loading, resources
from oga_core import summaries
from oga_core.detectors import DETECTORS
from oga_core.pipeline import Analysis

SESSION = "session"
PAGE_KEY = "review_page"
STATE_LABELS = {
    "all": "All",
    summaries.UNDECIDED: "Undecided",
    "decided": "Decided",
    "keep": "Kept",
    "drop": "Dropped",
    "relabel": "Relabelled",
}
PAGE_SIZES = (10, 20, 40, 80)
COLUMNS = (3, 4, 5, 6, 8)


def _first_page() -> None:
    st.session_state[PAGE_KEY] = 1


def render(analysis: Analysis) -> None:
    classes = analysis.dataset.classes
    table = loading.decided_table(analysis)
    reviewed, flagged = summaries.review_progress(table)

    top = st.columns([3, 2], vertical_alignment="bottom")
    with top[0]:
        st.progress(reviewed / flagged if flagged else 0.0, text=f"**Reviewed {reviewed} of {flagged} flagged**")
    with top[1]:
        actions.undo_button(analysis)

    f = st.columns([3, 3, 2, 2, 2], vertical_alignment="bottom")
    given = f[0].multiselect(
        "Given label",
        range(len(classes)),
        format_func=lambda k: classes[k],
        key="review_given",
        placeholder="All classes",
        on_change=_first_page,
        persist_state=SESSION,
    )
    predicted = f[1].multiselect(
        "Predicted label",
        range(len(classes)),
        format_func=lambda k: classes[k],
        key="review_pred",
        placeholder="All classes",
        on_change=_first_page,
        persist_state=SESSION,
    )
    state = f[2].selectbox(
        "Decision",
        summaries.REVIEW_STATES,
        format_func=STATE_LABELS.get,
        key="review_state",
        on_change=_first_page,
        persist_state=SESSION,
    )
    page_size = f[3].selectbox(
        "Per page", PAGE_SIZES, index=1, key="review_page_size", on_change=_first_page, persist_state=SESSION
    )
    # Five columns keep each card wide enough for its Keep / Drop buttons on a laptop screen.
    columns = f[4].selectbox("Columns", COLUMNS, index=2, key="review_columns", persist_state=SESSION)
    t = st.columns(2)
    include_all = t[0].toggle(
        "Also show samples below the budget (ranked by score)",
        key="review_all",
        on_change=_first_page,
        persist_state=SESSION,
        help="The counter still counts flagged samples only.",
    )
    focus = t[1].toggle(
        "One at a time, from the keyboard",
        key="review_focus",
        persist_state=SESSION,
        help="K keep · D drop · P relabel to the prediction · ← → previous / next · Ctrl+Z undo. "
        "Each decision moves on to the next sample. With the all-layers scope, the sample's gradient "
        "norm per layer is drawn beside it.",
    )

    queue = summaries.review_order(
        table,
        include_unflagged=include_all,
        given=given,
        predicted=predicted,
        state=state,
        order=resources.views(analysis).order(),
    )
    n_pages = summaries.page_bounds(len(queue), 1, page_size)[2]
    if st.session_state.get(PAGE_KEY, 1) > n_pages:
        st.session_state[PAGE_KEY] = n_pages  # the last page emptied by a decision under a filter
    if not len(queue):
        st.info(
            "No samples match these filters." if flagged else "Nothing is flagged: raise the budget in the sidebar.",
            icon=":material/filter_alt_off:",
        )
    elif focus:
        cards.focus_view(analysis, table, queue)
    else:
        start, stop, n_pages = summaries.page_bounds(len(queue), st.session_state.get(PAGE_KEY, 1), page_size)
        rows = table.iloc[queue[start:stop]]  # only the rows on screen are taken from the table
        bar = st.columns([3, 2], vertical_alignment="center")
        bar[0].caption(
            f"Showing {start + 1}–{stop} of {len(queue):,}, sorted by {DETECTORS[analysis.config.detector].label}, "
            "largest first. Each card: the given label → the model's prediction (orange when they disagree), "
            "rank and score, sample id."
        )
        with bar[1]:
            st.pagination(n_pages, key=PAGE_KEY, width="stretch", persist_state=SESSION)
        actions.bulk_actions(analysis, rows, key="bulk")
        cards.sample_grid(analysis, rows, columns=columns)


if __name__ == "__main__":  # run as a page (see oga_app.entry)
    render(entry.analysis())

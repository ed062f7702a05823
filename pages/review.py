"""Review: the flagged samples as a grid, most suspicious first; keep, drop or relabel each one.

Every click is written to SQLite before the page redraws, so nothing decided is lost to a reload,
a restart or a crash. Filters and the page number live in the session; decisions never do.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from oga_app import actions, cards, entry, loading, resources, retraining, similar
from oga_core import options, remaining, summaries
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
ISSUE_LABELS = options.labels(options.ISSUE_TYPES)
SPOT_CHECK = "review_spot_check_ids"  # the spot-check drawn when its toggle went on (stays put while deciding)
PAGE_SIZES = (10, 20, 40, 80)
COLUMNS = (3, 4, 5, 6, 8)


def _first_page() -> None:
    st.session_state.pop(PAGE_KEY, None)  # back to the widget's default, not a value set over it


def _spot_check_changed() -> None:
    st.session_state.pop(SPOT_CHECK, None)
    _first_page()


def render(analysis: Analysis) -> None:
    classes = analysis.dataset.classes
    table = loading.decided_table(analysis)
    reviewed, flagged = summaries.review_progress(table)

    top = st.columns([3, 2], vertical_alignment="bottom")
    with top[0]:
        st.progress(reviewed / flagged if flagged else 0.0, text=f"**Reviewed {reviewed} of {flagged} flagged**")
    with top[1]:
        actions.undo_button(analysis)

    f = st.columns([3, 3, 2, 2, 2, 2], vertical_alignment="bottom")
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
    has_issues = "issue" in table
    issue = f[3].selectbox(
        "Issue type",
        options.names(options.ISSUE_TYPES),
        index=None,
        format_func=ISSUE_LABELS.get,
        key="review_issue",
        placeholder="All types",
        on_change=_first_page,
        persist_state=SESSION,
        disabled=not has_issues,
        help="; ".join(f"{c.label}: {c.help}" for c in options.ISSUE_TYPES)
        + "."
        + ("" if has_issues else " This analysis has none: analyse it again."),
    )
    page_size = f[4].selectbox(
        "Per page", PAGE_SIZES, index=1, key="review_page_size", on_change=_first_page, persist_state=SESSION
    )
    # Five columns keep each card wide enough for its Keep / Drop buttons on a laptop screen.
    columns = f[5].selectbox("Columns", COLUMNS, index=2, key="review_columns", persist_state=SESSION)
    # Two columns, short labels: three toggles side by side were cut off at 1024 px beside the sidebar.
    t = st.columns(2)
    include_all = t[0].toggle(
        "Also samples below the cut",
        key="review_all",
        on_change=_first_page,
        persist_state=SESSION,
        help="Also show the samples below the budget, ranked by score. The counter still counts flagged samples only.",
    )
    focus = t[1].toggle(
        "One at a time (keyboard)",
        key="review_focus",
        persist_state=SESSION,
        help="K keep · D drop · P relabel to the prediction · ← → previous / next · Ctrl+Z undo. "
        "Each decision moves on to the next sample. With the all-layers scope, the sample's gradient "
        "norm per layer is drawn beside it.",
    )
    spot = t[0].toggle(
        f"Spot-check {remaining.SPOT_CHECK} below the cut",
        key="review_spot",
        on_change=_spot_check_changed,
        persist_state=SESSION,
        help=f"Review {remaining.SPOT_CHECK} random samples of what the budget left out: with these decisions oga estimates how many "
        "wrong labels remain below the cut, with an interval. The other filters apply to it too.",
    )

    queue = summaries.review_order(
        table,
        include_unflagged=include_all or spot,
        given=given,
        predicted=predicted,
        state=state,
        issue=issue if has_issues else None,
        order=resources.views(analysis).order(),
    )
    if spot:
        queue = _spot_check_rows(analysis, table, queue)
        st.caption(remaining.estimate(table).line().capitalize() + ".")
    n_pages = summaries.page_bounds(len(queue), 1, page_size)[2]
    if st.session_state.get(PAGE_KEY, 1) > n_pages:
        st.session_state[PAGE_KEY] = n_pages  # the last page emptied by a decision under a filter
    similar.panel(analysis, table, key="review")
    if not len(queue):
        st.info(
            "No samples match these filters." if flagged else "Nothing is flagged: raise the budget in the sidebar.",
            icon=":material/filter_alt_off:",
        )
    elif focus:
        cards.focus_view(analysis, table, queue)
    else:
        _grid(analysis, table, queue, page_size, columns)
    with st.expander("Retrain with these decisions, and compare", icon=":material/model_training:"):
        retraining.section(analysis, key="review")


def _spot_check_rows(analysis: Analysis, table, queue: np.ndarray) -> np.ndarray:
    """The rows of ``queue`` that are in this session's spot-check (drawn once, when the toggle
    went on, so deciding one does not draw another set), in queue order."""
    ids = st.session_state.get(SPOT_CHECK)
    if ids is None:
        ids = st.session_state[SPOT_CHECK] = remaining.spot_check(table)
    views = resources.views(analysis)
    chosen = np.array([r for r in (views.row_of(i) for i in ids) if r is not None], dtype=np.int64)
    return queue[np.isin(queue, chosen)]


def _grid(analysis: Analysis, table, queue: np.ndarray, page_size: int, columns: int) -> None:
    """One page of ``queue`` as editable cards, with paging and the bulk buttons."""
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

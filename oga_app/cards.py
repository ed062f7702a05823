"""Samples on screen: thumbnails, the card grid of Review and Explore, the read-only preview of
Set-up, and one sample at a time, large, decided from the keyboard.

Every card's state is as SQLite holds it on every run (``loading.decided_table``), so an undo
or another tab's decision shows at once. Widget keys name the sample: ``card-<id>``,
``keep-<id>``, ``drop-<id>``, ``relabel-<id>`` (with a ``prefix`` where the same sample may be
drawn twice on a page, as beside the map and in the selection below it). Rows come with the
score table's index, which is the sample's position in the data set (its image).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from oga_app import callbacks, figures, resources
from oga_app.messages import escape_md
from oga_core import options, summaries
from oga_core.errors import OgaError
from oga_core.pipeline import Analysis

DECISION_BADGES = {  # decision -> (text, colour, icon)
    "keep": ("kept", "green", ":material/check:"),
    "drop": ("dropped", "red", ":material/delete:"),
    "relabel": ("relabelled", "blue", ":material/edit:"),
    summaries.UNDECIDED: ("undecided", "gray", None),
}
ISSUE_BADGE_COLORS = {"near_duplicate": "violet", "outlier": "gray", "mislabeled": "orange", "ambiguous": "yellow"}
FOCUS_SIDE = 320  # px, the one-at-a-time view's image


def image(analysis: Analysis, sample_id: str, index: int, *, side: int = summaries.THUMBNAIL_SIDE) -> None:
    """The sample's thumbnail, or a readable note if its file can no longer be read."""
    try:
        st.image(resources.thumbnail_png(analysis, sample_id, index, side), width="content")
    except OgaError as exc:
        st.warning(f"Image unreadable: {exc}", icon=":material/broken_image:")


def decision_badge(row: Any) -> None:
    """The row's decision as a coloured badge (``relabelled → <class>`` for a relabel)."""
    decision = str(getattr(row, "decision", summaries.UNDECIDED))
    text, color, icon = DECISION_BADGES.get(decision, DECISION_BADGES[summaries.UNDECIDED])
    if decision == "relabel":
        text = f"relabelled → {row.new_label_name}"
    st.badge(text, color=color, icon=icon)


def issue_badge(row: Any) -> None:
    """Why the sample looks suspicious (``oga_core.issues``), when it has an issue type."""
    issue = getattr(row, "issue", "none")
    if issue and issue != "none":
        choice = next(c for c in options.ISSUE_TYPES if c.name == issue)
        other = getattr(row, "duplicate_of", "")
        text = choice.label + (f" (of {other})" if issue == "near_duplicate" and other else "")
        st.badge(
            escape_md(text), color=ISSUE_BADGE_COLORS.get(issue, "gray"), icon=":material/report:", help=choice.help
        )


def given_and_predicted(given: str, predicted: str) -> str:
    """Markdown ``given X → pred Y``, the prediction orange when the two disagree."""
    shown = f"**{escape_md(predicted)}**"
    return f"given **{escape_md(given)}** → pred " + (shown if given == predicted else f":orange[{shown}]")


def _rows_of(rows: pd.DataFrame, columns: int) -> list[list[Any]]:
    records = list(rows.itertuples(index=True))  # row.Index: the sample's position in the data set
    return [records[lo : lo + columns] for lo in range(0, len(records), columns)]


def position(analysis: Analysis, row: Any) -> int:
    """The data set index of a table row (its index), checked against its id; looked up by id
    when a caller's frame was re-indexed."""
    index, ids = row.Index, analysis.dataset.ids
    if isinstance(index, (int, np.integer)) and 0 <= index < len(ids) and ids[index] == row.sample_id:
        return int(index)
    found = resources.views(analysis).row_of(str(row.sample_id))
    if found is None:
        raise OgaError(f"no sample '{row.sample_id}' in {analysis.config.data}")
    return found


# -- grids -----------------------------------------------------------------------------------
def sample_grid(analysis: Analysis, rows: pd.DataFrame, *, columns: int = 6, prefix: str = "") -> None:
    """Editable cards for ``rows`` (a ``loading.decided_table`` slice) in ``columns`` columns:
    Keep / Drop (the current decision drawn as primary; clicking it again takes it back) and a
    relabel box offering the prediction first. ``prefix`` keeps the widget keys of a second grid
    on the page (e.g. *More like this*) apart from the first."""
    store_path = str(resources.store_for(analysis).path)
    for line in _rows_of(rows, columns):
        for col, row in zip(st.columns(columns, gap="small"), line):
            with col:
                card(analysis, row, store_path, prefix=prefix)


def card(analysis: Analysis, row: Any, store_path: str, *, prefix: str = "", side: int | None = None) -> None:
    """One sample's editable card: image, given → predicted, rank and score, decision, Keep /
    Drop and the relabel box. ``row``: a ``loading.decided_table`` row (``itertuples``)."""
    classes = analysis.dataset.classes
    sid, given, pred = str(row.sample_id), int(row.label), int(row.pred)
    with st.container(border=True, key=f"{prefix}card-{sid}"):
        image(analysis, sid, position(analysis, row), side=side or summaries.THUMBNAIL_SIDE)
        st.markdown(given_and_predicted(classes[given], classes[pred]))
        st.caption(f"#{int(row.rank)} · score {float(row.score):.3g}  \n{escape_md(sid)}")
        issue_badge(row)
        decision_badge(row)
        # One under the other: side by side they were cut to "K…" / "D…" in a narrow card (five
        # across at 1024 px beside the sidebar, or More like this).
        for action in ("keep", "drop"):
            st.button(
                action.capitalize(),
                key=f"{prefix}{action}-{sid}",
                on_click=callbacks.on_decide,
                args=(store_path, sid, given, action),
                type="primary" if row.decision == action else "secondary",
                width="stretch",
                help=f"{action.capitalize()} this sample (click again to take it back)",
            )
        choices = summaries.relabel_choices(len(classes), given, pred)
        relabelled = row.decision == "relabel" and int(row.new_label) in choices
        box = f"{prefix}relabel-{sid}"
        st.session_state[box] = int(row.new_label) if relabelled else None  # SQLite, not the session
        st.selectbox(
            "Relabel to",
            choices,
            index=None,
            key=box,
            placeholder="Relabel to …",
            format_func=lambda k: f"→ {classes[k]}" + (" (predicted)" if k == pred else ""),
            on_change=callbacks.on_relabel,
            args=(store_path, sid, given, box),
            label_visibility="collapsed",
        )
        st.button(
            "More like this",
            key=f"{prefix}similar-{sid}",
            icon=":material/search:",
            type="tertiary",
            on_click=callbacks.on_similar,
            args=(sid,),
            help="The samples nearest to this one in the model's feature space, with bulk actions on all of them.",
        )


def preview_grid(analysis: Analysis, rows: pd.DataFrame, *, columns: int = 6) -> None:
    """Read-only thumbnails with a one-line label each (the Set-up page's first look); each
    caption's tooltip starts with the sample id."""
    classes = analysis.dataset.classes
    for line in _rows_of(rows, columns):
        for col, row in zip(st.columns(columns, gap="small"), line):
            with col:
                image(analysis, str(row.sample_id), position(analysis, row))
                st.caption(
                    f"#{int(row.rank)} · {escape_md(classes[int(row.label)])} → {escape_md(classes[int(row.pred)])}",
                    help=f"{row.sample_id}: given label → predicted label; score {float(row.score):.3g}",
                )


# -- one sample at a time --------------------------------------------------------------------
def focus_view(analysis: Analysis, table: pd.DataFrame, queue: np.ndarray) -> None:
    """One sample of ``queue`` (row positions of ``table``, a ``loading.decided_table``) large,
    decided from the keyboard: K keep, D drop, P relabel to the prediction, ← / → previous /
    next. Each decision moves on to the next sample of ``queue``. With the all-layers scope, the
    sample's gradient norm per layer is drawn beside it."""
    current = st.session_state.get(callbacks.FOCUS_KEY)
    at = resources.views(analysis).row_of(str(current)) if current is not None else None
    found = np.flatnonzero(queue == at) if at is not None else ()
    i = int(found[0]) if len(found) else 0
    row = next(table.iloc[queue[i : i + 1]].itertuples(index=True))
    sid, given, pred = str(row.sample_id), int(row.label), int(row.pred)
    classes = analysis.dataset.classes
    ids = table["sample_id"]
    nxt = str(ids.iloc[queue[i + 1]]) if i + 1 < len(queue) else None
    prev = str(ids.iloc[queue[i - 1]]) if i > 0 else None
    store_path = str(resources.store_for(analysis).path)
    left, right = st.columns([2, 3], gap="large")
    with left, st.container(border=True, key=f"card-{sid}"):
        image(analysis, sid, position(analysis, row), side=FOCUS_SIDE)
    with right:
        st.markdown(f"#### {i + 1} of {len(queue):,} · `{escape_md(sid)}`")
        st.markdown(given_and_predicted(classes[given], classes[pred]) + f" ({float(row.confidence):.0%})")
        st.caption(f"rank #{int(row.rank)} · score {float(row.score):.4g}")
        decision_badge(row)
        with st.container(horizontal=True):
            for label, action, shortcut, icon, new in (
                ("Keep", "keep", "K", ":material/check:", None),
                ("Drop", "drop", "D", ":material/delete:", None),
            ):
                st.button(
                    label,
                    key=f"focus-{action}",
                    shortcut=shortcut,
                    icon=icon,
                    on_click=callbacks.on_focus,
                    args=(store_path, sid, action, given, new, nxt),
                    type="primary" if row.decision == action else "secondary",
                )
            st.button(
                f"Relabel to {classes[pred]}",
                key="focus-predicted",
                shortcut="P",
                icon=":material/edit:",
                on_click=callbacks.on_focus,
                args=(store_path, sid, "relabel", given, pred, nxt),
                disabled=given == pred,
            )
        st.session_state[callbacks.FOCUS_RELABEL_KEY] = None  # a fresh choice for every sample shown
        st.selectbox(
            "… or relabel to",
            summaries.relabel_choices(len(classes), given, pred),
            index=None,
            key=callbacks.FOCUS_RELABEL_KEY,
            placeholder="another class",
            format_func=lambda k: classes[k] + (" (predicted)" if k == pred else ""),
            on_change=callbacks.on_focus_relabel,
            args=(store_path, sid, given, nxt),
        )
        with st.container(horizontal=True):
            for label, key, shortcut, icon, goto in (
                ("Previous", "focus-prev", "Left", ":material/arrow_back:", prev),
                ("Next", "focus-next", "Right", ":material/arrow_forward:", nxt),
            ):
                st.button(
                    label,
                    key=key,
                    shortcut=shortcut,
                    icon=icon,
                    on_click=callbacks.on_focus,
                    args=(store_path, sid, None, given, None, goto),
                    disabled=goto is None,
                )
        layer_norms(analysis, sid)


def layer_norms(analysis: Analysis, sample_id: str) -> None:
    """The sample's gradient L2 norm in each layer (all-layers scope only; else where to get it)."""
    norms = analysis.layer_norms(sample_id)
    if norms is None:
        scope = options.labels(options.SCOPES)["all"]
        st.caption(f"Gradient norm per layer: analyse with the scope *{scope}* on Set-up to see it here.")
        return
    st.markdown("**Gradient norm per layer**")
    st.plotly_chart(figures.layer_norm_figure(norms), key="layer-norms", config={"displayModeBar": False})

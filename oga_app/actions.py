"""Buttons that act on many samples at once, and Undo: each click is one undo step."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from oga_app import callbacks, resources
from oga_core import summaries
from oga_core.pipeline import Analysis


def undo_button(analysis: Analysis, *, key: str = "undo") -> None:
    store = resources.store_for(analysis)
    st.button(
        "Undo last",
        key=key,
        icon=":material/undo:",
        on_click=callbacks.on_undo,
        args=(str(store.path),),
        disabled=not store.can_undo(),
        shortcut="Ctrl+Z",
        help="Reverts the latest decision, or the latest bulk action as a whole (Ctrl+Z).",
    )


def bulk_actions(analysis: Analysis, rows: pd.DataFrame, *, key: str, scope: str = "on this page") -> None:
    """Buttons ``<key>-keep|drop|relabel|clear`` acting on every sample in ``rows`` (a
    ``loading.decided_table`` slice); each is one undo step."""
    store_path = str(resources.store_for(analysis).path)
    undecided = rows[rows["decision"] == summaries.UNDECIDED]
    disagree = rows[rows["pred"] != rows["label"]]
    decided = rows[rows["decision"] != summaries.UNDECIDED]
    keep = [(r.sample_id, "keep", int(r.label), None) for r in undecided.itertuples(index=False)]
    drop = [(r.sample_id, "drop", int(r.label), None) for r in rows.itertuples(index=False)]
    relabel = [(r.sample_id, "relabel", int(r.label), int(r.pred)) for r in disagree.itertuples(index=False)]
    clear = [(r.sample_id, "clear", int(r.label), None) for r in decided.itertuples(index=False)]
    buttons = (
        ("keep", f"Keep the undecided {scope}", ":material/check:", keep, "Kept", None),
        ("drop", f"Drop all {scope}", ":material/delete:", drop, "Dropped", None),
        (
            "relabel",
            "Relabel to predicted",
            ":material/edit:",
            relabel,
            "Relabelled to the prediction",
            "Every sample here whose prediction differs from its given label gets the predicted label.",
        ),
        ("clear", f"Clear decisions {scope}", ":material/backspace:", clear, "Cleared", None),
    )
    with st.container(horizontal=True, gap="small"):
        for name, label, icon, items, what, help_text in buttons:
            st.button(
                f"{label} ({len(items)})",
                key=f"{key}-{name}",
                icon=icon,
                on_click=callbacks.on_bulk,
                args=(store_path, items, what),
                disabled=not items,
                help=help_text,
            )

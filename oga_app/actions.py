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
    ``loading.decided_table`` slice); each is one undo step. The buttons show counts; the list
    of decisions is made only when one is clicked (a selection on a large map can hold a
    hundred thousand samples)."""
    store_path = str(resources.store_for(analysis).path)
    counts = summaries.bulk_counts(rows)
    buttons = (
        ("keep", f"Keep the undecided {scope}", ":material/check:", "Kept", None),
        ("drop", f"Drop all {scope}", ":material/delete:", "Dropped", None),
        (
            "relabel",
            "Relabel to predicted",
            ":material/edit:",
            "Relabelled to the prediction",
            "Every sample here whose prediction differs from its given label gets the predicted label.",
        ),
        ("clear", f"Clear decisions {scope}", ":material/backspace:", "Cleared", None),
    )
    with st.container(horizontal=True, gap="small"):
        for name, label, icon, what, help_text in buttons:
            st.button(
                f"{label} ({counts[name]:,})",
                key=f"{key}-{name}",
                icon=icon,
                on_click=callbacks.on_bulk_rows,
                args=(store_path, rows, name, what),
                disabled=not counts[name],
                help=help_text,
            )

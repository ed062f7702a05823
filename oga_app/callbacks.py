"""Widget callbacks: every decision is written to SQLite here, before the page redraws.

Callbacks run before the script, so what they have to say is queued with :func:`flash` and
shown by :func:`show_flash` (app.py calls it on every page). :func:`safe_callback` turns their
errors into such a message instead of a traceback. Callbacks receive the decision store's path
as text, so a widget's ``args`` stay plain values.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import streamlit as st

from oga_app import resources
from oga_core import summaries
from oga_core.decisions import Decision, recover
from oga_core.errors import OgaError

_LOG = logging.getLogger("oga.app")

FLASH_KEY = "_oga_flash"
FOCUS_KEY = "focus_sample"  # the sample the one-at-a-time view shows
FOCUS_RELABEL_KEY = "focus-relabel"


# -- messages --------------------------------------------------------------------------------
def flash(kind: Literal["success", "info", "warning", "error"], text: str) -> None:
    """Queue a message for the next run (callbacks run before the page is drawn)."""
    st.session_state.setdefault(FLASH_KEY, []).append((kind, text))


def show_flash() -> None:
    """Errors and warnings stay on the page; the rest come and go as toasts."""
    for kind, text in st.session_state.pop(FLASH_KEY, []):
        if kind == "error":
            st.error(text, icon=":material/error:")
        elif kind == "warning":
            st.warning(text, icon=":material/link_off:")
        else:
            st.toast(text, icon=":material/check_circle:" if kind == "success" else ":material/info:")


def safe_callback(fn: Callable[..., None]) -> Callable[..., None]:
    """A widget callback whose errors become a message instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except OgaError as exc:
            flash("error", str(exc))
        except Exception as exc:
            _LOG.exception("callback %s failed", fn.__name__)
            flash("error", f"Could not save that ({type(exc).__name__}: {exc}); nothing already decided was lost.")

    return wrapper


# -- one sample ------------------------------------------------------------------------------
@safe_callback
def on_decide(store_path: str, sample_id: str, original_label: int, action: str) -> None:
    store = resources.store_at(store_path)
    current = store.get(sample_id)
    # Clicking the decision a sample already has takes it back (a toggle, as in a tagging tool).
    if current is not None and current["action"] == action:
        action = "clear"
    store.decide(sample_id, action, original_label=original_label)


@safe_callback
def on_relabel(store_path: str, sample_id: str, original_label: int, key: str | None = None) -> None:
    """The card's relabel box (``key``, by default ``relabel-<id>``) changed; emptied, it takes a
    relabel back."""
    value = st.session_state.get(key or f"relabel-{sample_id}")
    store = resources.store_at(store_path)
    if value is None:
        current = store.get(sample_id)
        if current and current["action"] == "relabel":
            store.decide(sample_id, "clear", original_label=original_label)
        return
    store.decide(sample_id, "relabel", original_label=original_label, label=int(value))


@safe_callback
def on_focus(
    store_path: str, sample_id: str, action: str | None, original: int, label: int | None, goto: str | None
) -> None:
    """A button of the one-at-a-time view: decide (unless ``action`` is None), then show ``goto``."""
    if action is not None:
        resources.store_at(store_path).decide(sample_id, action, original_label=original, label=label)
    if goto is not None:
        st.session_state[FOCUS_KEY] = goto


@safe_callback
def on_focus_relabel(store_path: str, sample_id: str, original: int, goto: str | None) -> None:
    value = st.session_state.get(FOCUS_RELABEL_KEY)
    if value is not None:
        resources.store_at(store_path).decide(sample_id, "relabel", original_label=original, label=int(value))
        if goto is not None:
            st.session_state[FOCUS_KEY] = goto


# -- many samples ----------------------------------------------------------------------------
@safe_callback
def on_bulk_rows(store_path: str, rows: pd.DataFrame, action: str, what: str) -> None:
    """A bulk button: ``action`` on the rows it was drawn with (``summaries.bulk_items``), one
    batch (one undo step)."""
    items = summaries.bulk_items(rows, action)
    n = resources.store_at(store_path).decide_many(Decision(*item) for item in items)
    flash("success", f"{what}: {n:,} sample{'s' if n != 1 else ''} (one undo step)")


@safe_callback
def on_bulk_relabel_to(store_path: str, rows: pd.DataFrame, box: str, classes: list[str]) -> None:
    """Relabel every sample in ``rows`` to the class chosen in the select box ``box`` (one undo
    step); samples already of that class are kept."""
    target = st.session_state.get(box)
    if target is None:
        flash("info", "Choose the class to relabel them to first")
        return
    items = summaries.relabel_items(rows, int(target))
    n = resources.store_at(store_path).decide_many(Decision(*item) for item in items)
    flash("success", f"Relabelled to {classes[int(target)]}: {n:,} sample{'s' if n != 1 else ''} (one undo step)")


@safe_callback
def on_undo(store_path: str) -> None:
    ids = resources.store_at(store_path).undo()
    if ids:
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        flash("info", f"Undid the last decision ({shown})")
    else:
        flash("info", "Nothing to undo")


# -- more like this and retraining -----------------------------------------------------------
SIMILAR_KEY = "similar_of"  # the sample whose nearest neighbours are shown (oga_app.similar)


def on_similar(sample_id: str | None) -> None:
    """Show the samples most like ``sample_id`` (None closes the panel)."""
    if sample_id is None:
        st.session_state.pop(SIMILAR_KEY, None)
    else:
        st.session_state[SIMILAR_KEY] = sample_id


@safe_callback
def on_retrain(analysis: Any) -> None:
    """Start retraining ``analysis``' recipe with its decisions applied, in the background."""
    store = resources.store_for(analysis)
    resources.retrain_jobs().start(analysis.config, analysis.data_id, analysis.dataset.ids, store)


# -- a damaged store -------------------------------------------------------------------------
def on_recover(path: str) -> None:
    """Move a damaged decisions database aside and rebuild it (``oga recover`` in the app)."""
    try:
        done = recover(Path(path))
    except OgaError as exc:
        flash("error", str(exc))
        return
    resources.store_at.clear()  # a store opened on the damaged file must not be reused
    kept = f" The damaged file is kept as {done.aside}." if done.aside else ""
    flash(
        "success",
        f"Rebuilt {done.decisions} decision(s) from {', '.join(done.sources) or 'nothing readable'}.{kept}",
    )

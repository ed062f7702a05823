"""What goes wrong becomes a message in the page, never a traceback; and text from the data
(class names come from folder names) is shown as text, never read as markdown."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from oga_app import callbacks
from oga_core.decisions import DamagedDecisions
from oga_core.errors import OgaError

_LOG = logging.getLogger("oga.app")

SETUP_PAGE = "pages/setup.py"  # as app.py registers it, for links back to the settings
# A damaged database's message tells a CLI user what to run; in the app it is a button.
_CLI_RECOVERY = "run `oga recover --data ...` with the same data settings (in the app, press Recover)"


def escape_md(text: object) -> str:
    """Text shown inside markdown without being read as markdown."""
    return re.sub(r"([\\`*_{}\[\]<>()#+\-.!|~$:])", r"\\\1", str(text))


@contextmanager
def guard(*, setup_link: bool = False) -> Iterator[None]:
    """Show anything that goes wrong inside the block as a message in the page, not a traceback.

    OgaError is bad input a person can fix (with ``setup_link``, a link to Set-up follows, where
    the data or model can be changed); a damaged decisions database comes with a Recover button;
    anything else is a bug in oga, logged for the report. Streamlit's own rerun / stop signals
    derive from BaseException and pass through.
    """
    try:
        yield
    except DamagedDecisions as exc:
        st.error(str(exc).replace(_CLI_RECOVERY, "press Recover"), icon=":material/error:")
        st.button(
            "Recover the decisions",
            key=f"recover-{exc.path}",
            icon=":material/healing:",
            on_click=callbacks.on_recover,
            args=(str(exc.path),),
            help="Moves the damaged file aside (it is never deleted) and rebuilds the decisions from what is "
            "still readable and from the append-only event log.",
        )
    except OgaError as exc:
        st.error(str(exc), icon=":material/error:")
        if setup_link:
            st.page_link(SETUP_PAGE, label="Change the data or the model on Set-up", icon=":material/tune:")
    except Exception as exc:
        _LOG.exception("unexpected error in a page")
        st.error(
            f"Something went wrong inside oga ({type(exc).__name__}: {exc}). Decisions already made "
            "are saved. The full report is in the server's log.",
            icon=":material/bug_report:",
        )

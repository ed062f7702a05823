"""How a page file gets its analysis from app.py, and what it does when app.py did not run it.

app.py registers each file in pages/ with ``st.Page`` and runs the chosen one inside
:func:`serving`, which hands the page the analysis app.py loaded. Streamlit executes a page file
as ``__main__``, so every page file ends with::

    if __name__ == "__main__":
        render(entry.analysis())        # Set-up: entry.require_app(); render()

(importing the module, as a test may, draws nothing). A fresh server that finds a ``pages/``
folder starts in Streamlit's older folder mode until some run reaches ``st.navigation``: a
first request for, say, ``/review`` (a reload after a restart) runs pages/review.py alone,
without app.py. The page then finds nothing served and runs app.py itself, whose
``st.navigation`` switches the folder mode off and resolves the same URL to the same page; then
it stops. Unlike a rerun this keeps the click that started the run (a click lasts one run).
"""

from __future__ import annotations

import runpy
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import streamlit as st

from oga_core.pipeline import Analysis

ENTRY = Path(__file__).resolve().parent.parent / "app.py"
_NOTHING = object()  # the page runs outside app.py
# A context variable, not a global: every session's script runs in its own thread at once.
_served: ContextVar[object] = ContextVar("oga_served_analysis", default=_NOTHING)


@contextmanager
def serving(analysis: Analysis | None) -> Iterator[None]:
    """Run a page inside this block (app.py does) to hand it ``analysis`` (None for Set-up)."""
    token = _served.set(analysis)
    try:
        yield
    finally:
        _served.reset(token)


def require_app() -> None:
    """Return when app.py runs this page; otherwise run app.py in its place and stop."""
    if _served.get() is _NOTHING:
        runpy.run_path(str(ENTRY), run_name="__main__")
        st.stop()


def analysis() -> Analysis:
    """The analysis app.py loaded for this page (see :func:`require_app` when there is none)."""
    require_app()
    served = _served.get()
    if not isinstance(served, Analysis):
        raise RuntimeError("app.py serves this page no analysis: register it among the analysis pages")
    return served

"""Routing: app.py runs every page inside its ``st.navigation``, with the sidebar, also when a
fresh server is asked for a page's URL before any run reached the router (Streamlit's older
``pages/`` folder mode, see oga_app/entry.py); and the app uses Streamlit's public API only.

tests/test_browser.py proves the same with a real server restarted and opened on /export.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from helpers import APP, TIMEOUT, assert_clean, open_page

REPO = APP.parent
# Each page: its title, and what only that page draws.
PAGES = {
    "setup": ("Find the training samples that hurt your model", lambda at: at.button(key="analyze")),
    "explore": ("Explore", lambda at: at.selectbox(key="map_color")),
    "review": ("Review", lambda at: at.selectbox(key="review_state")),
    "export": ("Export", lambda at: at.radio(key="export_dropped")),
    "evaluate": ("Evaluate", lambda at: [c for c in at.get("plotly_chart") if c.key == "precision_curve"]),
}
MAP = {"map_method": "pca"}  # these tests are about routing: the instant map


def _shows(at: AppTest, page: str) -> None:
    """``at`` shows ``page`` inside app.py: its title, its own widgets and the sidebar."""
    assert_clean(at)
    title, own = PAGES[page]
    assert [t.value for t in at.title] == [title]
    assert own(at)  # a widget lookup by key raises KeyError when the widget is not there
    assert [w.key for w in at.sidebar.selectbox] == ["rank_detector"]


@pytest.mark.parametrize("page", list(PAGES))
def test_a_fresh_server_opens_each_page_url_inside_the_router(home, demo, monkeypatch, page):
    # A server process that no run has yet taken through st.navigation: Streamlit runs the page
    # file named by the URL alone (its folder mode). The flag is Streamlit's own; if an upgrade
    # renames it, monkeypatch fails here, loudly, and this scenario needs a new look.
    monkeypatch.setattr(PagesManager, "uses_pages_directory", True)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["map_method"] = MAP["map_method"]
    at.switch_page(f"pages/{page}.py")  # before the first run: the URL /<page>, by file name
    at.run()
    _shows(at, page)
    assert PagesManager.uses_pages_directory is False  # app.py's st.navigation took over
    # The next click stays on the page and inside the router.
    at.run()
    _shows(at, page)


@pytest.mark.parametrize("page", [p for p in PAGES if p != "setup"])
def test_each_page_runs_inside_the_router(home, demo, page):
    _shows(open_page(page, **MAP), page)


def _streamlit_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("streamlit"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("streamlit"):
            found.add(node.module)
    return found


def test_the_app_uses_only_streamlits_public_api():
    files = [REPO / "app.py", *(REPO / "pages").glob("*.py"), *(REPO / "oga_app").glob("*.py")]
    assert len(files) > 10
    private = {str(p.relative_to(REPO)): _streamlit_imports(p) - {"streamlit"} for p in files}
    assert {p: m for p, m in private.items() if m} == {}
    for path in files:  # no attribute reached through the package either
        assert "PagesManager" not in path.read_text() and "_mpa_v1" not in path.read_text(), path


def test_importing_a_page_module_draws_nothing():
    # Page files run as __main__ only; imported (by a test, a tool) they only define functions.
    import importlib

    for name in PAGES:
        module = importlib.import_module(f"pages.{name}")
        assert callable(module.render)

"""Picking up where the person left off (issue 12.6), through AppTest: a new session opens the
most recent work or the analysis still running in the server; the URL names the workspace, so a
link opens it; a bad link is one line of warning and a safe fallback.

tests/test_browser.py proves the same in Chromium: a tab closed while a folder trains, a new tab
that lands on that folder's analysis.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time

import pytest
from streamlit.testing.v1 import AppTest

from oga_app import resources, state
from oga_app.state import DEFAULT_CONFIG
from oga_core.config import AnalysisConfig
from oga_core.pipeline import analyze

from helpers import APP, TIMEOUT, assert_clean


def recorded(config: AnalysisConfig):
    """``config`` analysed and kept as its workspace's latest, as the app's registry does."""
    analysis = analyze(config)
    analysis.workspace.record(analysis)
    return analysis


def folder_config(root, make_images, *, n: int = 6) -> AnalysisConfig:
    return AnalysisConfig(data=f"folder:{make_images(root, {'cat': n, 'dog': n})}", epochs=1)


def set_mtime(path, when: float) -> None:
    os.utime(path, (when, when))


def new_session(*, page: str | None = None, **query: str) -> AppTest:
    """A new browser session (a reload, a new tab, a bookmark): nothing but the URL carried over."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query)
    if page:
        at.switch_page(f"pages/{page}.py")
    return at.run()


def results_of(at: AppTest) -> list[str]:
    return [s.value for s in at.subheader if s.value.startswith("Results · ")]


@pytest.fixture
def older_demo_newer_folder(home, demo, tmp_path, make_images):
    """The demo analysed and its settings saved first; a folder analysed later, its tab closed
    before the app could save the settings (what happens when a tab closes during training)."""
    demo.workspace.record(demo)
    state.save_last_config(DEFAULT_CONFIG)
    folder = recorded(folder_config(tmp_path / "imgs", make_images))
    now = time.time()
    set_mtime(state.last_config_path(), now - 600)
    set_mtime(demo.workspace.folder / "latest_run.json", now - 600)
    set_mtime(folder.workspace.folder / "latest_run.json", now - 60)
    return demo, folder


def test_a_new_session_opens_the_most_recent_work_and_names_it_in_the_url(older_demo_newer_folder):
    demo, folder = older_demo_newer_folder
    at = new_session()
    assert_clean(at)
    assert results_of(at) == [f"Results · {folder.config.data}"]
    assert at.query_params["workspace"] == folder.data_id
    # Reopening the demo (Recent work) makes it the most recent again.
    at.button(key=f"reopen-{demo.data_id}").click().run(timeout=TIMEOUT)
    assert results_of(at) == ["Results · demo:digits"] and at.query_params["workspace"] == demo.data_id
    assert results_of(new_session()) == ["Results · demo:digits"]


def test_a_link_opens_its_workspace_on_its_page(older_demo_newer_folder):
    demo, _ = older_demo_newer_folder
    at = new_session(page="review", workspace=demo.data_id)  # a bookmark of the demo's Review page
    assert_clean(at)
    assert [t.value for t in at.title] == ["Review"]
    assert "Reviewed 0 of 90 flagged" in at.get("progress")[0].proto.text
    assert at.query_params["workspace"] == demo.data_id


@pytest.mark.parametrize(
    "bad",
    [
        "0123456789abcdef0123",  # well formed, but no such workspace here
        "../evil",  # a path out of the workspace store
        "../../../../etc/passwd",
        "/etc",
        "x/../../evil",
        "..",
        "<img src=x onerror=alert(1)>**bold**",
        "a" * 5000,
        "naïve\u202eevil",
        "%00",
    ],
)
def test_a_bad_link_is_one_line_of_warning_and_opens_the_most_recent_work(older_demo_newer_folder, home, bad):
    _, folder = older_demo_newer_folder
    # A workspace-like folder beside the store: opening it would analyse a folder that does not
    # exist, an error on the page. A name is never a path, so it is never read.
    evil = home / "evil"
    evil.mkdir()
    (evil / "latest_run.json").write_text(json.dumps({"config": {"data": "folder:/nowhere/at/all"}}))
    at = new_session(workspace=bad)
    assert not at.exception and not at.error
    (warning,) = [w.value for w in at.warning]
    assert "could not be opened" in warning and "\n" not in warning and len(warning) < 300
    assert not re.search(r"(?<!\\)[<*]", warning)  # markup in the link is escaped: shown as text
    assert results_of(at) == [f"Results · {folder.config.data}"]
    assert at.query_params["workspace"] == folder.data_id  # the URL now names what is shown


def test_an_empty_link_is_no_link(older_demo_newer_folder):
    _, folder = older_demo_newer_folder
    at = new_session(workspace="")
    assert_clean(at)
    assert not at.warning and results_of(at) == [f"Results · {folder.config.data}"]


def test_a_new_session_opens_the_analysis_still_running_in_the_server(home, demo, tmp_path, make_images, monkeypatch):
    demo.workspace.record(demo)
    state.save_last_config(DEFAULT_CONFIG)  # the most recent finished work: the demo
    config = folder_config(tmp_path / "slow", make_images)
    registry = resources.registry()
    release = threading.Event()

    def held_back(config, progress=None):  # the real analysis, once the test lets it start
        release.wait(30)
        return analyze(config, progress=progress)

    monkeypatch.setattr(registry, "analyze", held_back)
    closed_tab = threading.Thread(target=lambda: registry.get(config, fresh=True), daemon=True)
    closed_tab.start()  # the first tab asked for it and went away; the job goes on in the server
    deadline = time.monotonic() + 10
    while not registry.running(config) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert registry.running_configs() == [config]
    threading.Timer(1.0, release.set).start()  # training starts while the new tab watches
    at = new_session()
    assert_clean(at)
    assert results_of(at) == [f"Results · {config.data}"]  # not the demo: the running analysis
    labels = [s.label for s in at.status]  # the job's live progress, then its outcome
    assert any(label.startswith(f"Analyzed {config.data}") for label in labels), labels
    closed_tab.join(30)

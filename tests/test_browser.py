"""End to end in a real browser: Debian's Chromium driven by playwright against `streamlit run`.

Opens the app (which analyses the digits demo on its own), drops one sample and relabels another
on the Review page, kills the server with SIGKILL and starts it again, then downloads the cleaned
CSV from the Export page and finds both decisions in it.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from oga_app import e2e

pytestmark = pytest.mark.browser
ANALYSIS_TIMEOUT = 240_000  # ms: the first open trains the demo's CNN (~15 s alone, more on a busy machine)


def main(page):
    """The page's main area (the sidebar repeats some texts, such as the review counter)."""
    return page.get_by_test_id("stMainBlockContainer")


def card_ids(page) -> list[str]:
    """Sample ids of the cards on the page, in order (from their `st-key-card-<id>` classes)."""
    classes = page.eval_on_selector_all(
        "[class*='st-key-card-']", "els => els.map(e => [...e.classList].find(c => c.startsWith('st-key-card-')))"
    )
    return [c.removeprefix("st-key-card-") for c in classes]


def test_drop_and_relabel_survive_a_killed_server(tmp_path: Path):
    home = tmp_path / "home"
    server = e2e.StreamlitServer(home, log=tmp_path / "streamlit.log").start()
    try:
        with e2e.browser() as page:
            page.goto(server.url)
            main(page).get_by_text("Results · demo:digits").wait_for(timeout=ANALYSIS_TIMEOUT)
            e2e.wait_idle(page)
            assert page.get_by_text("were flipped on purpose").count() == 1

            page.locator("[data-testid='stSidebarNav'] a", has_text="Review").click()
            main(page).get_by_text("Reviewed 0 of 90 flagged").wait_for(timeout=60_000)
            e2e.wait_idle(page)
            ids = card_ids(page)
            assert len(ids) == 20
            dropped, relabelled = ids[0], ids[1]

            page.locator(e2e.key_css(f"drop-{dropped}")).get_by_role("button").click()
            page.locator(e2e.key_css(f"card-{dropped}")).get_by_text("dropped").wait_for(timeout=30_000)
            e2e.wait_idle(page)

            page.locator(e2e.key_css(f"relabel-{relabelled}")).get_by_role("button", name="Open").click()
            option = page.get_by_role("option").first
            option.wait_for(timeout=10_000)
            chosen = option.inner_text().strip()  # "→ 4 (predicted)": the prediction is offered first
            new_label = re.fullmatch(r"→ (.+?)( \(predicted\))?", chosen).group(1)
            option.click()
            page.locator(e2e.key_css(f"card-{relabelled}")).get_by_text(f"relabelled → {new_label}").wait_for(
                timeout=30_000
            )
            e2e.wait_idle(page)
            main(page).get_by_text("Reviewed 2 of 90 flagged").wait_for(timeout=30_000)

        server.kill()  # SIGKILL: no shutdown hook runs, as in a crash
        server = e2e.StreamlitServer(home, log=tmp_path / "streamlit-2.log").start()

        with e2e.browser() as page:
            page.goto(f"{server.url}/export")
            button = page.locator(e2e.key_css("download-csv")).get_by_role("button")
            button.wait_for(timeout=ANALYSIS_TIMEOUT)
            e2e.wait_idle(page)
            # Opened straight on /export by a fresh server, the page still runs inside app.py:
            # the router's navigation, its title and its sidebar (tests/test_app_routing.py: every page).
            nav = page.locator("[data-testid='stSidebarNav'] a").all_inner_texts()
            assert [t.split()[-1] for t in nav] == ["Set-up", "Explore", "Review", "Export", "Evaluate"]
            assert main(page).get_by_role("heading", name="Export").count() == 1
            assert page.get_by_test_id("stSidebar").get_by_text("Ranking").count() == 1
            with page.expect_download(timeout=60_000) as download:
                button.click()
            text = Path(download.value.path()).read_text()
    finally:
        server.kill()

    rows = {r["sample_id"]: r for r in csv.DictReader(io.StringIO(text))}
    assert len(rows) == 1797 - 1
    assert dropped not in rows
    assert rows[relabelled]["action"] == "relabel"
    assert rows[relabelled]["label"] == new_label
    assert rows[relabelled]["original_label"] != new_label

"""End to end in a real browser: Debian's Chromium driven by playwright against `streamlit run`.

Opens the app (which analyses the digits demo on its own), drops one sample and relabels another
on the Review page, clicks a point of the Explore map and finds that sample's card beside it,
kills the server with SIGKILL and starts it again, then downloads the cleaned CSV from the Export
page and finds both decisions in it. Then: a tab closed while an image folder trains, and a new
tab that lands on that folder's analysis.
"""

from __future__ import annotations

import csv
import io
import json
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

            chosen = e2e.choose_option(page, f"relabel-{relabelled}")  # "→ 4 (predicted)": the prediction first
            new_label = re.fullmatch(r"→ (.+?)( \(predicted\))?", chosen).group(1)
            page.locator(e2e.key_css(f"card-{relabelled}")).get_by_text(f"relabelled → {new_label}").wait_for(
                timeout=30_000
            )
            e2e.wait_idle(page)
            main(page).get_by_text("Reviewed 2 of 90 flagged").wait_for(timeout=30_000)

            # Explore: a click on a point of the map shows that sample's card beside the map at once.
            page.locator("[data-testid='stSidebarNav'] a", has_text="Explore").click()
            main(page).get_by_text("Selection · 0 samples").wait_for(timeout=ANALYSIS_TIMEOUT)  # UMAP compiles
            e2e.wait_idle(page)
            page.locator(e2e.key_css("map_method")).get_by_text("PCA (instant)").click()
            e2e.wait_idle(page)
            point = e2e.chart_point(page, "map", skip=[dropped, relabelled])
            page.mouse.click(point["x"], point["y"])
            card = page.locator(e2e.key_css(f"map-card-{point['id']}"))
            card.wait_for(timeout=30_000)
            e2e.wait_idle(page)
            assert card.locator("img").count() == 1 and card.get_by_text(point["id"]).count() == 1
            assert main(page).get_by_text("Selection · 0 samples").count() == 1  # a click opens no selection
            page.locator(e2e.key_css(f"map-keep-{point['id']}")).get_by_role("button").click()
            card.get_by_text("kept").wait_for(timeout=30_000)  # decided from the card, as on Review
            e2e.wait_idle(page)

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


def test_a_tab_closed_during_an_analysis_reopens_on_it(tmp_path: Path, make_images):
    home = tmp_path / "home"
    small = make_images(tmp_path / "small", {"cat": 6, "dog": 6})
    big = make_images(tmp_path / "big", {"cat": 300, "dog": 300}, size=16)
    # Earlier work: a small folder (quick to open, so this test does not train the demo first).
    (home / "app").mkdir(parents=True)
    (home / "app" / "last_config.json").write_text(json.dumps({"data": f"folder:{small}", "epochs": 1}))
    server = e2e.StreamlitServer(home, log=tmp_path / "streamlit.log").start()
    try:
        with e2e.browser() as page:
            page.goto(server.url)
            main(page).get_by_text(f"Results · folder:{small}").wait_for(timeout=ANALYSIS_TIMEOUT)
            e2e.wait_idle(page)
            for key, value in (("setup_folder", str(big)), ("setup_epochs_auto", "4")):
                field = page.locator(e2e.key_css(key)).locator("input")
                field.fill(value)
                field.press("Enter")
                e2e.wait_idle(page)
            page.locator(e2e.key_css("analyze")).get_by_role("button").click()
            main(page).get_by_text(f"Analyzing folder:{big}").wait_for(timeout=60_000)
            again = page.context.new_page()
            page.close()  # the tab goes away while the folder trains

            again.goto(server.url)  # a new tab: a new session, nothing but the server carried over
            main(again).get_by_text(f"folder:{big}").first.wait_for(timeout=60_000)  # its progress or results
            main(again).get_by_text(f"Results · folder:{big}").wait_for(timeout=ANALYSIS_TIMEOUT)
            e2e.wait_idle(again)
            assert main(again).get_by_text("Results · demo:digits").count() == 0
            assert "workspace=" in again.url  # the URL names it: a bookmark or a reload lands here too
            again.reload()
            main(again).get_by_text(f"Results · folder:{big}").wait_for(timeout=ANALYSIS_TIMEOUT)
    finally:
        server.kill()

"""Screenshots of every page of the app for the README: ``python docs/make_screenshots.py``.

Starts ``streamlit run app.py`` with a fresh app home, lets it analyse the digits demo, makes a
few decisions through the UI, box-selects a corner of the UMAP map, and saves
docs/screenshots/{setup,explore,review,review-focus,export,evaluate}.png at 1480 px wide, then every
page again at 1024 px as ``<page>-1024.png`` (the narrow laptop screen the layout test checks).
About two minutes on 2 CPU cores (the demo trains, UMAP compiles in the background). Needs
/usr/bin/chromium and the playwright package.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from oga_app import e2e  # noqa: E402

WIDTH, HEIGHT = 1480, 1250


def shoot(page, name: str, out: Path, *, height: int = HEIGHT, width: int = WIDTH) -> None:
    page.set_viewport_size({"width": width, "height": height})
    page.mouse.move(width // 2, 8)  # no tooltip from the last click, no hover on the sidebar
    e2e.wait_idle(page, timeout=240_000)
    page.screenshot(path=str(out / f"{name}.png"))
    print(f"wrote {out / f'{name}.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--home", type=Path, help="app home to use (default: a fresh temporary folder)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    home = args.home or Path(tempfile.mkdtemp(prefix="oga-shots-"))
    main_area = "[data-testid='stMainBlockContainer']"

    with e2e.server(home, threads=2) as srv, e2e.browser(width=WIDTH, height=HEIGHT) as page:
        page.goto(srv.url)
        page.locator(main_area).get_by_text("Results · demo:digits").wait_for(timeout=300_000)
        shoot(page, "setup", args.out)

        page.goto(f"{srv.url}/review")
        e2e.wait_idle(page, timeout=240_000)
        cards = page.eval_on_selector_all(
            "[class*='st-key-card-']", "els => els.map(e => [...e.classList].find(c => c.startsWith('st-key-card-')))"
        )
        ids = [c.removeprefix("st-key-card-") for c in cards]
        for sid in ids[:2]:
            page.locator(e2e.key_css(f"drop-{sid}")).get_by_role("button").click()
            e2e.wait_idle(page)
        for sid in ids[2:4]:
            e2e.choose_option(page, f"relabel-{sid}")
            e2e.wait_idle(page)
        page.locator(e2e.key_css(f"keep-{ids[4]}")).get_by_role("button").click()
        shoot(page, "review", args.out, height=1400)
        page.locator(e2e.key_css("review_focus")).locator("label").first.click()
        e2e.wait_idle(page)
        page.get_by_role("heading", name="Review").click()  # focus the page, not the toggle
        page.keyboard.press("ArrowRight")  # the keyboard drives this view: → next sample
        e2e.wait_idle(page)
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.mouse.move(5, 5)
        e2e.wait_idle(page)
        shoot(page, "review-focus", args.out, height=900)

        page.goto(f"{srv.url}/explore")
        page.locator(e2e.key_css("map")).wait_for(timeout=240_000)
        e2e.wait_idle(page, timeout=240_000)
        switch = page.locator(e2e.key_css("map-switch")).get_by_role("button")
        if page.locator(e2e.key_css("map-switch")).count() or page.get_by_text("Fitting UMAP").count():
            switch.wait_for(timeout=240_000)  # the UMAP map, computed in the background: switch to it
            switch.click()
            page.locator(e2e.key_css("map-switch")).wait_for(state="detached", timeout=60_000)
            e2e.wait_idle(page, timeout=240_000)
        # Box-select a cluster: drag across part of the plot area, as a person would.
        box = page.locator(f"{e2e.key_css('map')} .nsewdrag").first.bounding_box()
        x0, y0 = box["x"] + box["width"] * 0.05, box["y"] + box["height"] * 0.05
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x0 + box["width"] * 0.3, y0 + box["height"] * 0.3, steps=12)
        page.mouse.up()
        e2e.wait_idle(page)
        shoot(page, "explore", args.out, height=2050)

        page.goto(f"{srv.url}/export")
        shoot(page, "export", args.out)
        page.goto(f"{srv.url}/evaluate")
        shoot(page, "evaluate", args.out)

        for name in ("setup", "explore", "review", "export", "evaluate"):
            page.goto(f"{srv.url}/{name}")
            page.locator(main_area).wait_for(timeout=240_000)
            shoot(page, f"{name}-1024", args.out, width=1024, height=1100)


if __name__ == "__main__":
    main()

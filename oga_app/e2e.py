"""Run the app in a real Streamlit server and drive it from Chromium (browser test, screenshots).

Chromium is Debian's ``/usr/bin/chromium`` driven through the ``playwright`` Python package;
``playwright install`` is never used (it downloads a browser). Neither is imported by the app.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("OGA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StreamlitServer:
    """``streamlit run app.py`` on 127.0.0.1 in its own process group, with ``env`` added.

    ``start`` waits for ``/_stcore/health``; ``kill`` ends the process group with SIGKILL (what
    a crash or ``kill -9`` does), ``stop`` with SIGTERM. Output goes to ``log``.
    """

    def __init__(self, home: Path, *, port: int | None = None, log: Path | None = None, threads: int = 1) -> None:
        self.home = Path(home)
        self.port = port or free_port()
        self.log = Path(log) if log else self.home / "streamlit.log"
        self.env = {
            **os.environ,
            "OGA_HOME": str(self.home),
            "OGA_THREADS": str(threads),
            "OGA_PREFETCH_MAP": "1",  # as a person's server does: Explore's map starts after the analysis
            "PYTHONUNBUFFERED": "1",
        }
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> StreamlitServer:
        cmd = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.headless=true",
            "--server.address=127.0.0.1",
            f"--server.port={self.port}",
            "--browser.gatherUsageStats=false",
        ]
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"streamlit exited with {self.proc.returncode}; log:\n{self.log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        self.kill()
        raise TimeoutError(f"streamlit did not answer /_stcore/health within {timeout} s")

    def _signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)


@contextmanager
def server(home: Path, **kwargs: object) -> Iterator[StreamlitServer]:
    s = StreamlitServer(home, **kwargs).start()  # type: ignore[arg-type]
    try:
        yield s
    finally:
        s.stop()


@contextmanager
def browser(*, width: int = 1480, height: int = 1000) -> Iterator[object]:
    """A playwright page in headless Chromium (sync API)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
            yield context.new_page()
        finally:
            chromium.close()


def wait_idle(page: object, timeout: float = 120_000) -> None:
    """Wait until the script run in the browser has finished (no 'running' indicator)."""
    page.wait_for_timeout(300)  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state') === 'notRunning'",
        timeout=timeout,
    )
    # Widgets are drawn lazily after the run: wait for their skeletons and for images to load.
    page.wait_for_function(  # type: ignore[attr-defined]
        '() => !document.querySelector(\'[data-testid="stSkeletonElement"], [data-testid="stSkeleton"]\')'
        " && [...document.images].every(i => i.complete)",
        timeout=timeout,
    )
    page.wait_for_timeout(300)  # type: ignore[attr-defined]


def settled(locator: object, *, timeout: float = 20.0) -> object:
    """``locator`` once it has stopped moving (its box the same over 300 ms): cards above it load
    their images after the script run, and a click aimed before they land hits the wrong place."""
    import time

    end, last = time.monotonic() + timeout, None
    while time.monotonic() < end:
        box = locator.bounding_box()  # type: ignore[attr-defined]
        if box is not None and box == last:
            return locator
        last = box
        locator.page.wait_for_timeout(300)  # type: ignore[attr-defined]
    return locator


def choose_option(page: object, box_key: str, *, keyboard: bool = False) -> str:
    """Choose the first option of the select box ``box_key`` as a person does; its text. Mouse: a
    click on the box, a click on its first option. Keyboard: the box focused (a click), then the
    arrow key (it opens the list, or moves to the first option of an open one) and Enter.

    Measured in Chromium: after some runs (Explore opened before, another select box used)
    Streamlit's combobox may take the first click on a box as focus only, opening no list; a
    second click, or the arrow key, opens it. A minimal page of select boxes does not show it, so
    it is the interplay with something on oga's pages, not found yet: the mouse path clicks again
    when the list did not open. Options are looked for among the visible ones: an earlier list
    stays in the page, hidden, and its options come first."""
    box = settled(page.locator(key_css(box_key)).locator("input"))  # type: ignore[attr-defined]
    box.click()  # type: ignore[attr-defined]
    if keyboard:
        page.keyboard.press("ArrowDown")  # type: ignore[attr-defined]
        option = page.locator("[role='option'][data-focused='true']:visible").first  # type: ignore[attr-defined]
        option.wait_for(timeout=10_000)
        chosen = option.inner_text().strip()
        page.keyboard.press("Enter")  # type: ignore[attr-defined]
        return chosen
    option = page.locator("[role='option']:visible").first  # type: ignore[attr-defined]
    try:
        option.wait_for(timeout=1_500)
    except Exception:  # the click only focused the box (see above): a person clicks again
        box.click()  # type: ignore[attr-defined]
        option.wait_for(timeout=10_000)
    chosen = option.inner_text().strip()
    option.click()
    return chosen


def key_css(key: str) -> str:
    """The CSS selector of the element Streamlit renders for a widget or container ``key``."""
    # The frontend writes `st-key-` + the key with every character outside [A-Za-z0-9_-] as '-'.
    return ".st-key-" + re.sub(r"[^a-zA-Z0-9_-]", "-", key.strip())


# Where a Plotly chart drew a point, in page pixels: the chart's own axes map data to pixels from
# the corner of its plot area (the drag layer). Points are searched from the last drawn (on top:
# the map draws the most suspicious samples last), skipping the ids given.
_POINT_JS = """([key, skip]) => {
  const box = document.querySelector(key);
  const gd = box && box.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullData) return null;
  const traces = gd._fullData.filter(t => t.customdata && t.customdata.length);
  for (let k = traces.length - 1; k >= 0; k--) {
    const t = traces[k];
    for (let i = t.x.length - 1; i >= 0; i--) {
      if (skip.includes(String(t.customdata[i]))) continue;
      const area = gd.querySelector('.nsewdrag').getBoundingClientRect();
      return {x: area.left + gd._fullLayout.xaxis.l2p(t.x[i]), y: area.top + gd._fullLayout.yaxis.l2p(t.y[i]),
              id: String(t.customdata[i])};
    }
  }
  return null;
}"""


def chart_point(page: object, key: str, *, skip: list[str] = ()) -> dict:
    """``{"x", "y", "id"}``: where the chart of widget ``key`` drew its topmost point whose sample
    id is not in ``skip``, in page pixels (for ``page.mouse.click``), and that id."""
    args = [key_css(key), list(skip)]
    page.wait_for_function(f"(args) => ({_POINT_JS})(args) !== null", arg=args, timeout=60_000)  # type: ignore[attr-defined]
    return page.evaluate(_POINT_JS, args)  # type: ignore[attr-defined]


# Text cut off by its box: an element (in a button, a badge, a segmented control, a select box's
# value or a widget label) whose content is wider than the box shows. Streamlit cuts such text with
# an ellipsis (overflow hidden), so scrollWidth > clientWidth is exactly "a person cannot read it".
_TRUNCATED_JS = """() => {
  const roots = document.querySelectorAll(
    'button, [data-testid="stBadge"], [data-baseweb="tag"], [data-baseweb="select"] [value], ' +
    '[data-testid="stWidgetLabel"], [data-testid="stMetricLabel"], [data-testid="stMetricValue"]');
  const cut = [];
  for (const root of roots) {
    if (!root.offsetParent) continue;  // not displayed
    for (const el of [root, ...root.querySelectorAll('*')]) {
      if (!el.offsetParent || el.clientWidth === 0) continue;
      const style = getComputedStyle(el);
      if (style.overflowX === 'visible' && style.textOverflow !== 'ellipsis') continue;
      // An ellipsis is drawn as soon as the text is one pixel wider than its box; other clipping
      // is allowed a pixel of rounding.
      if (el.scrollWidth > el.clientWidth + (style.textOverflow === 'ellipsis' ? 0 : 1)) {
        const text = (root.innerText || root.getAttribute('value') || '').trim().replace(/\\s+/g, ' ');
        cut.push(text.slice(0, 60) + ' [' + el.scrollWidth + ' > ' + el.clientWidth + ' px]');
        break;
      }
    }
  }
  // A segmented control (a group of buttons) clips the buttons that do not fit: each must lie
  // inside the group's box.
  for (const group of document.querySelectorAll('[data-testid="stButtonGroup"]')) {
    if (!group.offsetParent) continue;
    const box = group.getBoundingClientRect();
    for (const b of group.querySelectorAll('button')) {
      const r = b.getBoundingClientRect();
      if (r.right > box.right + 1 || r.left < box.left - 1) {
        cut.push((b.innerText || '').trim().slice(0, 60) + ' [outside its group by ' + Math.round(r.right - box.right) + ' px]');
      }
    }
  }
  return [...new Set(cut)];
}"""


def truncated_texts(page: object) -> list[str]:
    """The texts of buttons, badges, labels and select values the page shows cut off."""
    return page.evaluate(_TRUNCATED_JS)  # type: ignore[attr-defined]

"""The app at scale: seconds from a click to the redrawn page as the data grows to 1 M samples.

The measuring is ``benchmarks/app_scale.py`` (it drives ``app.py`` with Streamlit's AppTest, which
the engine never imports), run here as a child process of the checkout; this module keeps its
numbers in the report: :func:`run_app` (``oga bench --parts app``), :func:`render` (the report's
section) and :func:`headline` (README's line).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from oga_core.bench.common import child_env, log
from oga_core.bench.markdown import fmt_num, fmt_ratio, table
from oga_core.bench.settings import AppSettings
from oga_core.errors import OgaError

SCRIPT = Path(__file__).resolve().parent.parent.parent / "benchmarks" / "app_scale.py"
ACTIONS = {  # what each timed action is, in the order of the table
    "setup": "open Set-up",
    "review": "open Review (first page)",
    "next_page": "next page",
    "decide": "a decision",
    "undo": "undo",
    "export": "open Export",
    "evaluate": "open Evaluate",
    "explore": "open Explore (PCA map)",
    "click": "click a map point (its card)",
    "region": "box over a region of the map",
}


def run_app(settings: AppSettings) -> dict[str, Any]:
    """Run ``benchmarks/app_scale.py`` with ``settings`` in a child process; its part dict."""
    if not SCRIPT.is_file():
        raise OgaError(f"the app part needs a checkout of oga: {SCRIPT} is missing")
    with tempfile.TemporaryDirectory(prefix="oga-bench-app-") as work:
        out = Path(work) / "app.json"
        cmd = [sys.executable, str(SCRIPT), "--sizes", ",".join(map(str, settings.sizes))]
        cmd += ["--repeats", str(settings.repeats), "--json", str(out)]
        log(f"app part: {' '.join(cmd[1:])}")
        done = subprocess.run(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0 or not out.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
            raise OgaError(f"the app part's child exited with {done.returncode}: {last}")
        return json.loads(out.read_text())


def _measured(part: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [s for s in (part or {}).get("sizes", []) if "error" not in s]


def render(part: dict[str, Any] | None) -> str:
    """The report's section: median seconds per action and size, and the ratio to the baseline."""
    sizes = _measured(part)
    if not sizes:
        return ""
    base = sizes[0]
    header = ["action"] + [f"{s['n']:,}" for s in sizes] + [f"× at {s['n']:,}" for s in sizes[1:]]
    rows = []
    for action, label in ACTIONS.items():
        if not all(action in s["actions"] for s in sizes):
            continue
        medians = [s["actions"][action]["median"] for s in sizes]
        b = medians[0]
        rows.append([label, *(fmt_num(m) for m in medians), *(fmt_ratio(m / b if b else None) for m in medians[1:])])
    firsts = ", ".join(
        f"{s['n']:,}: {fmt_num(s['actions']['explore']['first'])} s" for s in sizes if "explore" in s["actions"]
    )
    evals = ", ".join(
        f"{s['n']:,}: {fmt_num(s['actions']['evaluate']['first'])} s" for s in sizes if "evaluate" in s["actions"]
    )
    charts = ", ".join(
        f"{s['n']:,}: {fmt_num(s['explore_charts_kib'])} KiB" for s in sizes if "explore_charts_kib" in s
    )
    failed = [s for s in (part or {}).get("sizes", []) if "error" in s]
    st = part["settings"]
    return "\n".join(
        [
            "## The app at scale",
            "",
            f"Seconds from a click to the redrawn page (the script run Streamlit's AppTest waits for; drawing "
            f"in the browser is not included), median of {st['repeats']} runs after a first that fills the "
            f"caches, on synthetic analyses (`oga_core.synthetic`) of {', '.join(f'{s:,}' for s in st['sizes'])} "
            f"samples held in one process; ratios against {base['n']:,} samples measured in the same process. "
            "Made by `benchmarks/app_scale.py`.",
            "",
            table(header, rows),
            "",
            f"First open of Explore (computes the PCA map): {firsts}. First open of Evaluate (every score's "
            f"metrics, then kept for the ranking): {evals}."
            + (f" Explore's charts as sent to the browser: {charts}." if charts else ""),
            *(f"- {s['n']:,} samples: not measured ({s['error']})." for s in failed),
            "",
        ]
    )


def headline(part: dict[str, Any] | None) -> list[str]:
    """README's line: the slowest action at the largest size."""
    sizes = _measured(part)
    if not sizes:
        return []
    top = sizes[-1]
    action, worst = max(((a, v["median"]) for a, v in top["actions"].items()), key=lambda item: item[1])
    return [f"- The app at {top['n']:,} samples: every click redraws within {fmt_num(worst)} s ({ACTIONS[action]})."]

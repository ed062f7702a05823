"""The app at scale: seconds from a click to the redrawn page at 1.8 k, 100 k and 1 M samples.

    python benchmarks/app_scale.py [--quick] [--sizes 1797,100000,1000000] [--repeats 3] [--json app.json]

Each size is a synthetic analysis (``oga_core.synthetic``: real arrays, no training) held in the
app's registry (``AnalysisRegistry.hold``); Streamlit's AppTest then drives ``app.py`` in this
process as a browser session would: open Set-up, Review (its first page), the next page, a
decision, undo, Export, Evaluate, Explore (the instant PCA map; the UMAP map is computed in the background
and not timed here), a click on a map point (its card beside the map) and a box over a region of
the map (its samples below; past 60,000 samples also drawn as points). The size of Explore's
charts as sent to the browser is recorded too. A time is the whole script run that follows the click, as the
server spends it; drawing in the browser is not included. Each action is timed ``repeats`` times
after its first; the first is reported apart (it fills the caches). Every size runs in this one
process, so the ratios against the first size (the baseline) share the machine's load. Prints
the markdown section; ``oga bench --parts app`` runs this script and keeps the numbers in the
report (``oga_core.bench.app``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # runnable from a checkout without installing

APP = REPO / "app.py"
TIMEOUT = 1800  # s: the slowest run AppTest waits for (an unoptimised 1 M page takes tens of seconds)
ACTIONS = ("setup", "review", "next_page", "decide", "undo", "export", "evaluate", "explore", "click", "region")


def _check(at: Any, what: str) -> None:
    if at.exception:
        raise RuntimeError(f"{what}: {at.exception[0].value}")
    if at.error:
        raise RuntimeError(f"{what}: {at.error[0].value}")


def _timed(step: Any, what: str) -> float:
    start = time.perf_counter()
    at = step()
    took = time.perf_counter() - start
    _check(at, what)
    return took


def _select(at: Any, key: str, points: list[dict], box: list[float] | None = None) -> Any:
    """A selection on the chart ``key`` as the browser sends it (AppTest has no accessor for a
    chart's selection: tests/helpers.py does the same)."""
    (chart,) = [c for c in at.get("plotly_chart") if c.key == key]
    states = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id = chart.proto.id
    boxes = [] if box is None else [{"xref": "x", "yref": "y", "x": box[:2], "y": box[2:]}]
    selection = {"points": points, "point_indices": [p["point_index"] for p in points], "box": boxes, "lasso": []}
    state.string_value = json.dumps({"selection": selection})
    return at._run(states)


def _a_point(at: Any, nth: int) -> dict:
    """The ``nth`` point drawn on the map (a marked one on a density map), as a click reports it."""
    (chart,) = [c for c in at.get("plotly_chart") if c.key == "map"]
    trace = next(t for t in json.loads(chart.proto.spec)["data"] if t.get("customdata"))
    values = {k: _array(trace[k]) for k in ("customdata", "x", "y")}
    i = nth % len(values["customdata"])
    return {"curve_number": 0, "point_number": i, "point_index": i, **{k: v[i] for k, v in values.items()}}


def _array(value: Any) -> list:
    if isinstance(value, dict) and "bdata" in value:  # Plotly's typed arrays
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return list(value)


def _first_card(at: Any) -> str:
    return next(b.key.removeprefix("drop-") for b in at.button if b.key and b.key.startswith("drop-"))


def measure_size(n: int, repeats: int) -> dict[str, Any]:
    """Build and hold a synthetic analysis of ``n`` samples, then time every action."""
    from streamlit.testing.v1 import AppTest

    from oga_app import resources, state
    from oga_core.synthetic import synthetic_analysis

    start = time.perf_counter()
    analysis = synthetic_analysis(n)
    built = time.perf_counter() - start
    resources.registry().hold(analysis)

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state[state.CONFIG_KEY] = analysis.config  # this session's analysis: the held one
    at.session_state["map_method"] = "pca"  # the instant map; UMAP is background work
    times: dict[str, list[float]] = {a: [] for a in ACTIONS}
    coords = analysis.map_coords(method="pca")
    payload = 0
    for r in range(repeats + 1):
        times["setup"].append(_timed(lambda: at.switch_page("pages/setup.py").run(), "Set-up"))
        times["review"].append(_timed(lambda: at.switch_page("pages/review.py").run(), "Review"))
        for page in (2, 1):
            times["next_page"].append(_timed(lambda p=page: at.get("pagination")[0].set_value(p).run(), "paging"))
        sid = _first_card(at)
        times["decide"].append(_timed(lambda s=sid: at.button(key=f"drop-{s}").click().run(), "a decision"))
        times["undo"].append(_timed(lambda: at.button(key="undo").click().run(), "undo"))
        times["export"].append(_timed(lambda: at.switch_page("pages/export.py").run(), "Export"))
        times["evaluate"].append(_timed(lambda: at.switch_page("pages/evaluate.py").run(), "Evaluate"))
        times["explore"].append(_timed(lambda: at.switch_page("pages/explore.py").run(), "Explore"))
        payload = sum(len(c.proto.spec) for c in at.get("plotly_chart"))
        point = _a_point(at, r)
        times["click"].append(_timed(lambda p=point: _select(at, "map", [p]), "a click on the map"))
        # A box over a fifth of the map each way, moved every repeat (an unchanged one is no event).
        lo = 0.3 + 0.05 * r
        box = [*np.quantile(coords[:, 0], [lo, lo + 0.2]), *np.quantile(coords[:, 1], [lo, lo + 0.2])]
        times["region"].append(_timed(lambda b=[float(v) for v in box]: _select(at, "map", [], b), "a region"))
    del analysis, coords
    return {
        "n": n,
        "build_seconds": round(built, 3),
        "explore_charts_kib": round(payload / 1024, 1),
        "actions": {
            a: {"first": round(t[0], 4), "median": round(statistics.median(t[1:] or t), 4), "runs": len(t)}
            for a, t in times.items()
        },
    }


def run(sizes: list[int], repeats: int) -> dict[str, Any]:
    """Every size in this process (the first is the baseline of the ratios); one part dict."""
    import torch

    from oga_core.bench.common import log, machine_info, now_iso

    home = tempfile.mkdtemp(prefix="oga-app-bench-")
    os.environ["OGA_HOME"] = home  # decisions and maps of the synthetic data go here, never to ~/.oga
    results = []
    for n in sizes:
        log(f"app at {n:,} samples")
        try:
            results.append(measure_size(n, repeats))
        except Exception as exc:  # a size that fails is reported, the others still measured
            results.append({"n": n, "error": f"{type(exc).__name__}: {exc}"[:300]})
    return {
        "measured_at": now_iso(),
        "machine": machine_info(torch.device("cpu")),
        "settings": {"sizes": sizes, "repeats": repeats, "map": "pca"},
        "sizes": results,
    }


def main() -> None:
    from oga_core.bench import app
    from oga_core.bench.settings import AppSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small CI setting")
    parser.add_argument("--sizes", help="comma-separated sample counts (default: the part's settings)")
    parser.add_argument("--repeats", type=int, help="timed runs of each action after its first")
    parser.add_argument("--json", type=Path, help="also write this part's raw results here")
    args = parser.parse_args()
    settings = AppSettings.for_run(quick=args.quick)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(settings.sizes)
    part = run(sizes, args.repeats if args.repeats is not None else settings.repeats)
    if args.json is not None:
        from oga_core.store import write_json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, part)
    print(app.render(part))


if __name__ == "__main__":
    main()

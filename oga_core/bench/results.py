"""The results file of ``oga bench`` (``<out>.json``): every raw number the report is made of.

``{"schema", "mode": "quick" | "full", "updated_at", "quality": part, "speed": {device type:
part}, "scaling": part, "app": part}``; a part holds its settings, the machine and when it was measured. A run
of some parts merges into the existing file of the same mode; the speed part is kept per device
type, so a GPU run made elsewhere adds a column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oga_core.bench.common import log
from oga_core.errors import OgaError
from oga_core.store import read_json

SCHEMA = 1  # the file's layout; the quality runs carry their own (quality.RUN_SCHEMA)
PARTS = ("quality", "photos", "speed", "scaling", "app")


def json_path_for(out: Path) -> Path:
    """``docs/benchmarks.md`` -> ``docs/benchmarks.json``."""
    return Path(out).with_suffix(".json")


def empty(mode: str) -> dict[str, Any]:
    """A results set with nothing measured yet."""
    return {"schema": SCHEMA, "mode": mode, "speed": {}}


def read_results(path: Path) -> dict[str, Any]:
    """The results at ``path``; OgaError (one line) when missing, unreadable or of another schema."""
    try:
        results = read_json(path)
    except FileNotFoundError:
        raise OgaError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise OgaError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(results, dict) or results.get("schema") != SCHEMA or results.get("mode") not in ("quick", "full"):
        raise OgaError(f"{path} is not an oga bench results file of schema {SCHEMA}")
    results.setdefault("speed", {})
    return results


def load_results(path: Path, mode: str) -> dict[str, Any]:
    """The results already at ``path`` if they are of the same ``mode``, else an empty set."""
    if not path.is_file():
        return empty(mode)
    try:
        old = read_results(path)
    except OgaError as exc:
        log(f"{exc}: starting a new results file")
        return empty(mode)
    if old["mode"] != mode:
        log(f"{path} holds {old['mode']} results; this is a {mode} run: starting a new results file")
        return empty(mode)
    return old


def merge_results(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Overlay ``other``'s parts on ``into`` (speed per device type); OgaError across modes."""
    if other.get("mode") != into.get("mode"):
        raise OgaError(
            f"cannot merge {other.get('mode')} results into {into.get('mode')} results (run both in the same mode)"
        )
    for key in ("quality", "photos"):
        mine, theirs = into.get(key), other.get(key)
        if mine and theirs and mine.get("signature") == theirs.get("signature") and mine.get("runs"):
            # shards of one grid (``--shard``), or a run of some of its settings: the union of
            # their runs, in the order of the union of their grids (a part never loses a setting
            # of the grid it was measured for, so an unfinished grid stays incomplete)
            keys = {_run_key(r) for r in theirs["runs"]}
            runs = [r for r in mine["runs"] if _run_key(r) not in keys] + theirs["runs"]
            grid = [
                list(k)
                for k in dict.fromkeys(tuple(k) for k in [*(mine.get("grid") or []), *(theirs.get("grid") or [])])
            ]
            order = {tuple(k): i for i, k in enumerate(grid)}
            runs.sort(key=lambda r: order.get(_run_key(r), len(order)))
            done = {_run_key(r) for r in runs}
            into[key] = {
                **theirs,
                "grid": grid,
                "runs": runs,
                "complete": bool(order) and all(k in done for k in order),
            }
        elif theirs:
            into[key] = theirs
    for name in ("scaling", "app"):
        if other.get(name):
            into[name] = other[name]
    for device, speed in (other.get("speed") or {}).items():
        into.setdefault("speed", {})[device] = speed
    return into


def _run_key(run: dict[str, Any]) -> tuple:
    return (run["dataset"], run["kind"], run["rate"], run["seed"])

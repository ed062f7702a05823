"""``oga bench``: what OGA is for, measured — detection quality, speed and memory, scaling.

    oga bench [--quick] [--parts quality,speed,scaling] [--device auto|cpu|cuda] [--out docs/benchmarks.md]
    oga bench --merge OTHER.json [--out docs/benchmarks.md]

Writes ``<out>.json`` (every raw number), ``<out>`` (markdown generated from that JSON, never by
hand) and ``<out stem>_auroc.png`` beside it. A run of some parts merges into the existing JSON of
the same mode (quick or full); the speed part is stored per device type, so a GPU run (made
elsewhere, e.g. ``benchmarks/gpu_speed.sh``) adds a GPU column with ``--merge``. A full run whose
report is ``docs/benchmarks.md`` also refreshes README's block between ``<!-- oga-bench:start -->``
and ``<!-- oga-bench:end -->``.

Modules: :mod:`~oga_core.bench.quality`, :mod:`~oga_core.bench.speed`,
:mod:`~oga_core.bench.scaling` (each runnable on its own through ``benchmarks/*.py``),
:mod:`~oga_core.bench.report` (markdown, plot, README block), :mod:`~oga_core.bench.common`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from oga_core.errors import OgaError

PARTS = ("quality", "speed", "scaling")
SCHEMA = 1


def add_arguments(b: argparse.ArgumentParser) -> None:
    """The options of ``oga bench``."""
    b.add_argument("--quick", action="store_true", help="one small setting (for CI): a few minutes on 2 CPU cores")
    b.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"), help="markdown report to write")
    b.add_argument("--device", default="auto")
    b.add_argument("--parts", default="quality,speed,scaling", help="comma-separated subset of quality,speed,scaling")
    b.add_argument(
        "--merge",
        type=Path,
        metavar="JSON",
        help="merge another run's results (e.g. a GPU speed run) into --out's, then rewrite the report",
    )


def parse_parts(text: str) -> list[str]:
    """``"quality,speed"`` -> ``["quality", "speed"]``; OgaError for an unknown part."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise OgaError(f"unknown bench part(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(PARTS)}")
    return parts


def json_path_for(out: Path) -> Path:
    return Path(out).with_suffix(".json")


def load_results(path: Path, mode: str) -> dict[str, Any]:
    """The results already at ``path`` if they are of the same ``mode``, else an empty set."""
    from oga_core.bench.common import log
    from oga_core.store import read_json

    fresh = {"schema": SCHEMA, "mode": mode, "speed": {}}
    if not path.is_file():
        return fresh
    try:
        old = read_json(path)
    except (OSError, ValueError):
        log(f"{path} is not readable JSON: starting a new results file")
        return fresh
    if old.get("mode") != mode or old.get("schema") != SCHEMA:
        log(f"{path} holds {old.get('mode')} results; this is a {mode} run: starting a new results file")
        return fresh
    old.setdefault("speed", {})
    return old


def merge_results(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Overlay ``other``'s parts on ``into`` (speed per device type); OgaError across modes."""
    if other.get("mode") != into.get("mode"):
        raise OgaError(
            f"cannot merge {other.get('mode')} results into {into.get('mode')} results (run both in the same mode)"
        )
    for part in ("quality", "scaling"):
        if other.get(part):
            into[part] = other[part]
    for device, speed in (other.get("speed") or {}).items():
        into.setdefault("speed", {})[device] = speed
    return into


def write_report(results: dict[str, Any], out: Path) -> None:
    """``out`` (markdown), ``<out>.json`` and the plot; README's block after a full run into docs/."""
    from oga_core.bench import report
    from oga_core.bench.common import log, now_iso
    from oga_core.store import write_json

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results["updated_at"] = now_iso()
    json_path = json_path_for(out)
    write_json(json_path, results)
    plot = out.with_name(f"{out.stem}_auroc.png")
    has_plot = bool(results.get("quality")) and report.plot_quality(results["quality"], plot)
    out.write_text(report.render(results, plot_name=plot.name if has_plot else None, json_name=json_path.name))
    log(f"wrote {out} and {json_path}" + (f" and {plot}" if has_plot else ""))
    readme = out.resolve().parent.parent / "README.md"
    if results.get("mode") == "full" and out.parent.name == "docs":
        link = f"{out.parent.name}/{out.name}"
        if report.update_readme(readme, report.headline(results, link)):
            log(f"updated the benchmark block of {readme}")


def run(parts: list[str], *, quick: bool, out: Path, device: str = "auto") -> dict[str, Any]:
    """Run ``parts`` and write the report; returns the (merged) results."""
    import torch

    from oga_core.bench.common import log
    from oga_core.train import resolve_device

    dev = resolve_device(device)
    mode = "quick" if quick else "full"
    json_path = json_path_for(out)
    results = load_results(json_path, mode)
    log(f"{mode} run of {', '.join(parts)} on {dev} with {torch.get_num_threads()} torch thread(s)")
    if "quality" in parts:
        from oga_core.bench.quality import QualitySettings, run_quality

        settings = QualitySettings.quick() if quick else QualitySettings()

        def checkpoint(part: dict[str, Any]) -> None:  # an interrupted run resumes from here
            results["quality"] = part
            write_report(results, out)

        results["quality"] = run_quality(settings, dev, previous=results.get("quality"), checkpoint=checkpoint)
        write_report(results, out)
    if "speed" in parts:
        from oga_core.bench.speed import SpeedSettings, run_speed

        results.setdefault("speed", {})[dev.type] = run_speed(
            SpeedSettings.quick() if quick else SpeedSettings.full(dev.type), dev
        )
        write_report(results, out)
    if "scaling" in parts:
        from oga_core.bench.scaling import ScalingSettings, run_scaling

        results["scaling"] = run_scaling(ScalingSettings.quick() if quick else ScalingSettings(), dev)
        write_report(results, out)
    return results


def main(args: argparse.Namespace) -> int:
    """Entry of ``oga bench`` (see the module docstring)."""
    from oga_core.store import read_json

    out = Path(args.out)
    merge = getattr(args, "merge", None)
    if merge is not None:
        merge = Path(merge)
        if not merge.is_file():
            raise OgaError(f"--merge {merge}: no such file")
        other = read_json(merge)
        results = load_results(json_path_for(out), other.get("mode", "full"))
        write_report(merge_results(results, other), out)
        return 0
    run(parse_parts(args.parts), quick=args.quick, out=out, device=args.device)
    return 0

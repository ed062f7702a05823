"""``oga bench``: what OGA is for, measured — detection quality, speed and memory, scaling.

    oga bench [--quick] [--parts quality,photos,speed,scaling,app] [--device auto|cpu|cuda] [--out FILE.md]
    oga bench --merge OTHER.json [--out FILE.md]
    oga bench --render [--out FILE.md]

Writes ``<out>.json`` (every raw number), ``<out>`` (markdown generated from that JSON, never by
hand) and ``<out stem>_auroc.png`` beside it; ``--out`` defaults to ``oga-bench/benchmarks.md``
under the current folder, for every run, so a run never touches a checkout's files unasked.

The committed report is ``docs/benchmarks.md`` (any ``--out`` in a folder named ``docs``): only a
full run writes there, and a full run, merge or render there also refreshes README's block
between ``<!-- oga-bench:start -->`` and ``<!-- oga-bench:end -->`` (README beside ``docs/``). A
quick run, or a merge or render of quick results, into ``docs/`` is refused with one line.

``--render`` measures nothing: it rewrites the page and plot from ``<out>.json`` as it is (the JSON
is not rewritten), so a change of the renderer regenerates ``docs/benchmarks.md``.

Modules: :mod:`~oga_core.bench.quality`, :mod:`~oga_core.bench.speed`,
:mod:`~oga_core.bench.scaling`, :mod:`~oga_core.bench.app` (each measures, renders its section and its README lines; each is
runnable on its own through ``benchmarks/*.py``), :mod:`~oga_core.bench.report` (the page, the
files, README), :mod:`~oga_core.bench.results` (the JSON), :mod:`~oga_core.bench.verdicts`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from oga_core.errors import OgaError

PARTS = ("quality", "photos", "speed", "scaling", "app")
DEFAULT_OUT = Path("oga-bench/benchmarks.md")


def add_arguments(b: argparse.ArgumentParser) -> None:
    """The options of ``oga bench``."""
    b.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"markdown report to write, with its .json and plot beside it (default {DEFAULT_OUT}); "
        "--out docs/benchmarks.md: the committed report and README's block (full runs only)",
    )
    b.add_argument("--device", default="auto", help="auto | cpu | cuda")
    b.add_argument(
        "--shard",
        default="1/1",
        metavar="K/N",
        help="run only the K-th of N interleaved slices of the quality grid (several processes or machines; "
        "--merge their .json files into one report afterwards)",
    )
    b.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    mode = b.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="one small setting (for CI): a few minutes on 2 CPU cores")
    mode.add_argument(
        "--merge",
        type=Path,
        metavar="JSON",
        help="merge another run's results (e.g. a GPU speed run) into --out's, then rewrite the report",
    )
    mode.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: rewrite --out and its plot from --out's .json (after a change of the renderer)",
    )


def parse_parts(text: str) -> list[str]:
    """``"quality,speed"`` -> ``["quality", "speed"]``; OgaError for an unknown part."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise OgaError(f"unknown bench part(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(PARTS)}")
    return parts


# -- where results may go --------------------------------------------------------------------
def is_committed(out: Path) -> bool:
    """Whether ``out`` is a committed report: a page in a folder named ``docs``."""
    return Path(out).resolve().parent.name == "docs"


def check_destination(out: Path, mode: str) -> None:
    """OgaError unless ``mode`` results may be written to ``out``: quick ones never go to docs/."""
    if mode != "full" and is_committed(out):
        raise OgaError(
            f"--out {out}: {mode} results never replace the committed report in docs/ (full runs only); "
            f"leave --out at its default ({DEFAULT_OUT}) or choose a folder not named docs"
        )


def publish(results: dict[str, Any], out: Path) -> None:
    """README's block from full results whose report is committed (README beside ``docs/``)."""
    from oga_core.bench import report  # lazy: the parts import torch; `oga --help` must start fast
    from oga_core.bench.common import log

    if results.get("mode") != "full" or not is_committed(out):
        return
    readme = Path(out).resolve().parent.parent / "README.md"
    link = f"{Path(out).resolve().parent.name}/{Path(out).name}"
    if report.update_readme(readme, report.headline(results, link)):
        log(f"updated the benchmark block of {readme}")


# -- the three ways to run -------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    """``"2/3"`` -> ``(1, 3)`` (0-based slice, count); OgaError otherwise."""
    k, _, n = text.partition("/")
    if not (k.isdecimal() and n.isdecimal() and 1 <= int(k) <= int(n)):
        raise OgaError(f"--shard must be K/N with 1 <= K <= N, not '{text}'")
    return int(k) - 1, int(n)


def run(
    parts: list[str], *, quick: bool, out: Path, device: str = "auto", shard: tuple[int, int] = (0, 1)
) -> dict[str, Any]:
    """Measure ``parts`` and write the report after each (a crash keeps what was measured);
    returns the (merged) results."""
    mode = "quick" if quick else "full"
    check_destination(out, mode)  # before anything slow
    # lazy: these import torch; `oga --help` must start fast
    import torch

    from oga_core.bench import report
    from oga_core.bench.common import log
    from oga_core.bench.quality import run_quality
    from oga_core.bench.results import json_path_for, load_results
    from oga_core.bench.scaling import run_scaling
    from oga_core.bench.settings import QualitySettings, ScalingSettings, SpeedSettings
    from oga_core.bench.speed import run_speed
    from oga_core.train import resolve_device

    dev = resolve_device(device)
    results = load_results(json_path_for(out), mode)
    log(f"{mode} run of {', '.join(parts)} on {dev} with {torch.get_num_threads()} torch thread(s)")

    def save() -> None:
        report.write_report(results, out)

    if "quality" in parts:

        def checkpoint(part: dict[str, Any]) -> None:  # an interrupted run resumes from here
            results["quality"] = part
            save()

        grid = QualitySettings.for_run(quick=quick)
        results["quality"] = run_quality(grid, dev, previous=results.get("quality"), checkpoint=checkpoint, shard=shard)
        save()
    if "photos" in parts:

        def photo_checkpoint(part: dict[str, Any]) -> None:
            results["photos"] = part
            save()

        grid = QualitySettings.photos(quick=quick)
        results["photos"] = run_quality(
            grid, dev, previous=results.get("photos"), checkpoint=photo_checkpoint, shard=shard
        )
        save()
    if "speed" in parts:
        cases = SpeedSettings.for_run(quick=quick, device_type=dev.type)
        results.setdefault("speed", {})[dev.type] = run_speed(cases, dev)
        save()
    if "scaling" in parts:
        results["scaling"] = run_scaling(ScalingSettings.for_run(quick=quick), dev)
        save()
    if "app" in parts:
        from oga_core.bench.app import run_app
        from oga_core.bench.settings import AppSettings

        results["app"] = run_app(AppSettings.for_run(quick=quick))
        save()
    publish(results, out)
    return results


def merge(other_path: Path, *, out: Path) -> dict[str, Any]:
    """Merge the results at ``other_path`` into ``out``'s and write the report."""
    from oga_core.bench import report  # lazy: the parts import torch; `oga --help` must start fast
    from oga_core.bench.results import json_path_for, load_results, merge_results, read_results

    other = read_results(other_path)
    check_destination(out, other["mode"])
    results = merge_results(load_results(json_path_for(out), other["mode"]), other)
    report.write_report(results, out)
    publish(results, out)
    return results


def render(*, out: Path) -> dict[str, Any]:
    """Rewrite ``out`` and its plot from ``<out>.json`` without measuring or rewriting the JSON."""
    from oga_core.bench import report  # lazy: the parts import torch; `oga --help` must start fast
    from oga_core.bench.common import log
    from oga_core.bench.results import json_path_for, read_results

    if not json_path_for(out).is_file():
        raise OgaError(f"--render: {json_path_for(out)} does not exist (it is what --render renders from)")
    results = read_results(json_path_for(out))
    check_destination(out, results["mode"])
    written = report.write_page(results, out)
    log(f"rendered {' and '.join(map(str, written))} from {json_path_for(out)}")
    publish(results, out)
    return results


def main(args: argparse.Namespace) -> int:
    """Entry of ``oga bench`` (see the module docstring)."""
    out = Path(args.out)
    if args.render:
        render(out=out)
    elif args.merge is not None:
        merge(Path(args.merge), out=out)
    else:
        shard = parse_shard(args.shard)
        run(parse_parts(args.parts), quick=args.quick, out=out, device=args.device, shard=shard)
    return 0

"""Scaling: time and peak memory of ``oga analyze`` as the data grows, and of the UMAP map.

Synthetic 1x28x28 images (learnable class templates + noise, see
:func:`oga_core.bench.common.synthetic_images`) are written as torchvision's MNIST raw files, and
``oga analyze --data torchvision:MNIST:ROOT`` runs in a fresh process per size: the wall time is
the command's, stage times come from its ``run.json``, the peak memory is the child's own peak RSS
(``VmHWM`` at exit). Training is ``epochs`` epochs (1 by default: its cost is linear in epochs; the
point is the growth with N). The UMAP map of the model's features is timed separately in another
process that loads the analysis from the cache, after a small warm-up fit that pays numba's JIT.
:func:`render` and :func:`headline` turn the part into the report's section and README's line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from oga_core.bench.common import child_env, log, machine_info, now_iso, synthetic_images, write_mnist_idx
from oga_core.bench.markdown import fmt_num, fmt_ratio, table
from oga_core.bench.settings import ScalingSettings


def _run_child(cmd: list[str], env: dict[str, str], log_path: Path, timeout: float = 7200) -> tuple[int, float]:
    """Run ``cmd`` with its output in ``log_path``; (exit status, wall seconds).

    The peak memory is not taken from ``wait4``/``RUSAGE_CHILDREN``: Linux carries a process's
    peak RSS across ``fork``/``vfork`` + ``exec``, so a child of a large parent would report the
    parent's peak. The children report their own ``VmHWM`` (a fresh counter after ``exec``)."""
    with open(log_path, "w") as out:
        start = time.perf_counter()
        try:
            status = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            status = -9
        return status, time.perf_counter() - start


def _last_json(path: Path) -> dict[str, Any]:
    """The last line of a child's output that is a JSON object."""
    for line in reversed(path.read_text(errors="replace").strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON line in {path}")


def _tail(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1][:300] if lines else "no output"


def measure_size(n: int, settings: ScalingSettings, device: torch.device, work: Path) -> dict[str, Any]:
    """``oga analyze`` on ``n`` synthetic images, then (if asked) the UMAP map; one dict."""
    root = write_mnist_idx(work / f"data{n}", *synthetic_images(n, (1, 28, 28), seed=1))
    home = work / f"home{n}"
    env = child_env(OGA_HOME=str(home), OGA_THREADS=str(torch.get_num_threads()))
    out_dir = work / f"out{n}"
    spec = json.dumps(
        {"data": f"torchvision:MNIST:{root}", "epochs": settings.epochs, "device": device.type, "out": str(out_dir)}
    )
    cmd = [sys.executable, "-m", "oga_core.bench.scaling", "analyze", spec]
    status, wall = _run_child(cmd, env, work / f"analyze{n}.log")
    if status != 0:
        return {"n": n, "error": f"oga analyze exited {status}: {_tail(work / f'analyze{n}.log')}"}
    peak = _last_json(work / f"analyze{n}.log")["peak_rss_mib"]
    run = json.loads((out_dir / "run.json").read_text())
    result: dict[str, Any] = {
        "n": n,
        "analyze_wall_seconds": wall,
        "analyze_peak_rss_mib": round(peak, 1),
        "stages": run["timings"],
        "train_accuracy": run.get("train_accuracy"),
    }
    log(f"scaling {n}: analyze {wall:.1f} s wall, peak RSS {peak:.0f} MiB")
    if settings.umap:
        spec = json.dumps({"data": f"torchvision:MNIST:{root}", "epochs": settings.epochs, "device": device.type})
        umap_cmd = [sys.executable, "-m", "oga_core.bench.scaling", "umap", spec]
        status, _ = _run_child(umap_cmd, env, work / f"umap{n}.log")
        if status != 0:
            result["umap_error"] = _tail(work / f"umap{n}.log")
        else:
            umap = _last_json(work / f"umap{n}.log")
            result.update({f"umap_{k}": v for k, v in umap.items()})
            log(f"scaling {n}: UMAP {umap['seconds']:.1f} s, +{umap['extra_mib']} MiB")
    return result


def _umap_main(spec_text: str) -> None:
    """Child: load the analysis (a cache hit), warm UMAP up on 300 points, time the full map."""
    import numpy as np

    from oga_core.bench.common import peak_memory
    from oga_core.config import AnalysisConfig
    from oga_core.embedding import embed_2d
    from oga_core.pipeline import analyze

    threads = os.environ.get("OGA_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    spec = json.loads(spec_text)
    analysis = analyze(AnalysisConfig(data=spec["data"], epochs=spec["epochs"], device=spec["device"]))
    features = analysis.stats.features
    embed_2d(np.random.default_rng(0).normal(size=(300, features.shape[1])), method="umap")  # numba JIT
    with peak_memory(torch.device("cpu")) as mem:
        start = time.perf_counter()
        analysis.map_coords(method="umap", space="features")
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, **mem}))


def run_scaling(settings: ScalingSettings, device: torch.device) -> dict[str, Any]:
    """Every size of ``settings``: ``{"machine", "measured_at", "settings", "sizes": [...]}``."""
    part: dict[str, Any] = {
        "machine": machine_info(device),
        "measured_at": now_iso(),
        "settings": asdict(settings),
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="oga-bench-scaling-") as tmp:
        for n in settings.sizes:
            part["sizes"].append(measure_size(n, settings, device, Path(tmp)))
    return part


def _analyze_main(spec_text: str) -> int:
    """Child: what ``oga analyze`` does (analyze, record, write results), then this process's peak
    RSS as a JSON line."""
    from oga_core.bench.common import peak_rss_mib
    from oga_core.config import AnalysisConfig
    from oga_core.pipeline import analyze, write_results

    threads = os.environ.get("OGA_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    spec = json.loads(spec_text)
    analysis = analyze(AnalysisConfig(data=spec["data"], epochs=spec["epochs"], device=spec["device"]))
    analysis.workspace.record(analysis)
    write_results(analysis, Path(spec["out"]))
    print(json.dumps({"peak_rss_mib": peak_rss_mib()}), flush=True)
    return 0


# -- the report section ----------------------------------------------------------------------
def _row(s: dict[str, Any], first: dict[str, Any] | None) -> list[str]:
    """One size: wall time, growth against the first size, per 1k samples, stages, memory, UMAP."""
    if "error" in s:
        return [f"{s['n']:,}", f"failed: {s['error']}"] + [""] * 8
    g = s["stages"]
    per_k = s["analyze_wall_seconds"] / s["n"] * 1000
    growth = s["analyze_wall_seconds"] / first["analyze_wall_seconds"] if first else None
    stages = (g.get("data", 0) + g.get("decode", 0), g.get("train"), g.get("gradients"), g.get("scores"))
    return [
        f"{s['n']:,}",
        f"{fmt_num(s['analyze_wall_seconds'])} s",
        f"{fmt_ratio(growth)} for {s['n'] / first['n']:.3g}x data" if first else "-",
        f"{fmt_num(per_k)} s",
        " / ".join(fmt_num(x) for x in stages),
        f"{fmt_num(s['analyze_peak_rss_mib'])} MiB",
        f"{fmt_num(s.get('umap_seconds'))} s" if "umap_seconds" in s else s.get("umap_error", "not measured"),
        f"{fmt_num(s.get('umap_extra_mib'))} MiB" if "umap_extra_mib" in s else "-",
    ]


def render(part: dict[str, Any] | None) -> str:
    """The "Scaling" section."""
    if not part or not part.get("sizes"):
        return "## Scaling\n\nNot measured in this run.\n"
    st = part["settings"]
    first = next((s for s in part["sizes"] if "error" not in s), None)
    header = [
        "samples",
        "`oga analyze` wall",
        "growth",
        "per 1k samples",
        "data / train / gradients / scores (s)",
        "peak RSS",
        "UMAP map",
        "UMAP extra memory",
    ]
    return "\n".join(
        [
            "## Scaling",
            "",
            f"`oga analyze --data torchvision:MNIST:ROOT --epochs {st['epochs']}` on synthetic 1x28x28 "
            "images written as MNIST files, one fresh process per size (so the wall time includes "
            "starting Python and importing torch). Stage seconds come from the command's `run.json`; "
            "peak memory is the process's peak RSS. Training is "
            f"{st['epochs']} epoch(s) of the small CNN (linear in epochs). The UMAP map of the model's "
            "features is timed in a separate process after a warm-up fit that pays numba's JIT; its "
            "memory is the peak RSS above the process's resident set before the map.",
            "",
            table(header, [_row(s, first) for s in part["sizes"]]),
            "",
        ]
    )


def headline(part: dict[str, Any] | None) -> list[str]:
    """README's scaling line: seconds and peak memory of ``oga analyze`` per size."""
    done = [s for s in (part or {}).get("sizes", []) if "error" not in s]
    if not done:
        return []
    epochs = part["settings"]["epochs"]
    return [
        f"- `oga analyze` ({epochs} epoch{'' if epochs == 1 else 's'}): "
        + "; ".join(
            f"{s['n']:,} samples {fmt_num(s['analyze_wall_seconds'])} s, {fmt_num(s['analyze_peak_rss_mib'])} MiB"
            for s in done
        )
        + "."
    ]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "umap":
        _umap_main(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "analyze":
        raise SystemExit(_analyze_main(sys.argv[2]))
    else:
        print(
            "usage: python -m oga_core.bench.scaling (umap | analyze) SPEC_JSON: internal children",
            file=sys.stderr,
        )
        raise SystemExit(2)

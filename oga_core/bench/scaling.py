"""Scaling: time and peak memory of ``oga analyze`` as the data grows (to 1 M samples), of the
UMAP map, of decoding image files in parallel, and of scoring across two processes.

1x28x28 images made from the MNIST digits that ship with the dependencies, shifted at random
(:func:`oga_core.bench.common.shifted_digits`), are written as torchvision's MNIST raw files, and
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

from oga_core.bench.common import child_env, log, machine_info, now_iso, shifted_digits, write_mnist_idx
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
    root = write_mnist_idx(work / f"data{n}", *shifted_digits(n, seed=1))
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
    if settings.umap and n <= settings.umap_max:
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
        part["decode"] = measure_decoding(settings.decode_images, Path(tmp))
        if settings.distributed_n:
            part["distributed"] = measure_distributed(settings.distributed_n, settings, device, Path(tmp))
    return part


def measure_decoding(count: int, work: Path) -> dict[str, Any]:
    """Images per second decoding ``count`` 64x64 RGB PNG files (resized to 32 px) in this
    process, and with one worker process per core (``--workers``)."""
    import numpy as np
    from PIL import Image

    from oga_core.data import load_source

    root = work / "decode"
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"c{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")
    dataset = load_source(f"folder:{root}", image_size=32)
    cores = os.cpu_count() or 1
    result: dict[str, Any] = {"images": count, "cores": cores}
    for name, workers in (("in_process", 0), ("one_worker", 1), ("all_cores", cores)):
        start = time.perf_counter()
        dataset.decode(workers=workers, out=work / f"decode_{name}.npy")
        result[f"{name}_images_per_second"] = count / (time.perf_counter() - start)
    log(
        f"decoding {count} PNGs: {result['in_process_images_per_second']:.0f}/s in process, "
        f"{result['all_cores_images_per_second']:.0f}/s with {cores} workers"
    )
    return result


def measure_distributed(n: int, settings: ScalingSettings, device: torch.device, work: Path) -> dict[str, Any]:
    """The scoring stage (``gradients``: a forward pass and the closed form) of a checkpoint over
    ``n`` samples, in one process and across two (``torchrun --nproc-per-node 2``, gloo)."""
    root = work / f"data{n}"
    if not root.is_dir():
        root = write_mnist_idx(root, *shifted_digits(n, seed=1))
    checkpoint = work / f"out{n}" / "model.pt"
    if not checkpoint.is_file():
        return {"n": n, "error": f"no checkpoint of the {n:,}-sample analysis to score"}
    result: dict[str, Any] = {"n": n}
    base = ["-m", "oga_core.cli", "analyze", "--data", f"torchvision:MNIST:{root}", "--checkpoint", str(checkpoint)]
    base += ["--epochs", "0", "--device", device.type, "--quiet"]
    runs = {
        "one_process": [sys.executable, *base, "--out", str(work / "dist1")],
        "two_processes": [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            *base,
            "--out",
            str(work / "dist2"),
        ],
    }
    for name, cmd in runs.items():
        env = child_env(OGA_HOME=str(work / f"home_{name}"), OGA_THREADS="1", OMP_NUM_THREADS="1")
        status, wall = _run_child(cmd, env, work / f"{name}.log")
        if status != 0:
            result[f"{name}_error"] = _tail(work / f"{name}.log")
            continue
        out = work / ("dist1" if name == "one_process" else "dist2")
        run = json.loads((out / "run.json").read_text())
        per_rank = run.get("timings_per_rank") or [run["timings"]]
        result[name] = {
            "wall_seconds": wall,
            "gradients_seconds": max(t["gradients"] for t in per_rank),
            "scores_seconds": max(t["scores"] for t in per_rank),
        }
    if "one_process" in result and "two_processes" in result:
        result["gradients_speedup"] = (
            result["one_process"]["gradients_seconds"] / result["two_processes"]["gradients_seconds"]
        )
        log(f"scoring {n:,} samples: {result['gradients_speedup']:.2f}x faster on 2 processes")
    return result


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
            f"`oga analyze --data torchvision:MNIST:ROOT --epochs {st['epochs']}` on 1x28x28 "
            + (
                "images made from the bundled MNIST digits with random shifts"
                if st.get("images") == "shifted MNIST digits"
                else "synthetic class-template images (measured by an earlier oga)"
            )
            + ", written as MNIST files, one fresh process per size (so the wall time includes "
            "starting Python and importing torch). Stage seconds come from the command's `run.json`; "
            "peak memory is the process's peak RSS. Training is "
            f"{st['epochs']} epoch(s) of `{st.get('model', 'small_cnn')}` (linear in epochs). The UMAP map of "
            "the model's features (fitted on 20,000 points, the rest placed) is timed"
            + (f" up to {st['umap_max']:,} samples" if "umap_max" in st else "")
            + " in a separate process after a warm-up fit that pays numba's JIT; its memory is the peak RSS "
            "above the process's resident set before the map.",
            "",
            table(header, [_row(s, first) for s in part["sizes"]]),
            "",
            *_decode_lines(part),
            *_distributed_lines(part),
        ]
    )


def _decode_lines(part: dict[str, Any]) -> list[str]:
    d = part.get("decode")
    if not d:
        return []
    return [
        "### Decoding image files",
        "",
        f"{d['images']:,} 64x64 RGB PNG files decoded and resized to 32 px (`LabeledImages.decode` into a "
        f"pixel file, as `oga analyze` does): {fmt_num(d['in_process_images_per_second'])} images/s in the "
        f"analysing process, {fmt_num(d['one_worker_images_per_second'])} with 1 worker process, "
        f"{fmt_num(d['all_cores_images_per_second'])} with {d['cores']} worker processes (one per core; "
        "`--workers`, default from 2,000 files).",
        "",
    ]


def _distributed_lines(part: dict[str, Any]) -> list[str]:
    d = part.get("distributed")
    if not d:
        return []
    if "gradients_speedup" not in d:
        return ["### Scoring across processes", "", f"Not measured: {d}.", ""]
    one, two = d["one_process"], d["two_processes"]
    return [
        "### Scoring across processes",
        "",
        f"The scoring stage (`gradients`: a forward pass and the last layer's closed form) of a checkpoint "
        f"over {d['n']:,} samples: {fmt_num(one['gradients_seconds'])} s in one process, "
        f"{fmt_num(two['gradients_seconds'])} s across two (`torchrun --nproc-per-node 2`, gloo, one thread "
        f"each; the slower rank): {fmt_ratio(d['gradients_speedup'])} faster. Whole command: "
        f"{fmt_num(one['wall_seconds'])} s against {fmt_num(two['wall_seconds'])} s (starting two processes "
        "and gathering the scores included).",
        "",
    ]


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

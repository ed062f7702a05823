"""Shared pieces of ``oga bench``: the machine, timing, peak memory, synthetic images.

Times are wall-clock seconds from ``time.perf_counter``; on CUDA every timed call ends with
``torch.cuda.synchronize()`` so queued kernels are counted. Memory is in MiB: on CPU the peak
resident set (``VmHWM``) of a process, reset before the measured step; on CUDA
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

MIB = 1024 * 1024


def now_iso() -> str:
    """The current UTC time, to the second (stamps every measured part)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, memory, torch, threads, GPU."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "device": device.type,
    }
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)  # how busy the machine was
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Median seconds of ``repeats`` measured runs (warm-up runs excluded), and every run."""

    seconds: float
    runs: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 5), "runs": [round(r, 5) for r in self.runs]}


def timed(
    fn: Callable[[], Any], device: torch.device, *, repeats: int = 3, warmup: Callable[[], Any] | None = None
) -> Timing:
    """Run ``warmup`` (default: ``fn`` itself) once unmeasured, then ``fn`` ``repeats`` times.

    The warm-up pays one-off costs (allocator growth, kernel selection, lazy imports, cuDNN
    autotuning); a warm-up on a small slice of the data does that at a fraction of the cost.
    """
    (warmup or fn)()
    sync(device)
    runs = []
    for _ in range(max(1, repeats)):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        runs.append(time.perf_counter() - start)
    return Timing(statistics.median(runs), runs)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


# -- peak memory -----------------------------------------------------------------------------
def _status_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float | None:
    """This process's resident set now, MiB (None off Linux)."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0: ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float | None:
    """This process's peak resident set since start or the last :func:`reset_peak_rss`, MiB."""
    kib = _status_kib("VmHWM")
    if kib is None:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return kib / 1024


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float | None]]:
    """Measure the extra memory a block needs: ``{"base_mib", "peak_mib", "extra_mib"}``.

    CUDA: allocated tensor memory (``max_memory_allocated`` minus what was allocated before).
    CPU: peak RSS of this process minus RSS before (meaningful only in a fresh process that does
    one thing, which is how ``speed`` uses it).
    """
    out: dict[str, float | None] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) / MIB
        yield out
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / MIB
    else:
        import gc

        gc.collect()
        reset_peak_rss()
        base = rss_mib()
        yield out
        peak = peak_rss_mib()
    out["base_mib"] = None if base is None else round(base, 1)
    out["peak_mib"] = None if peak is None else round(peak, 1)
    out["extra_mib"] = None if base is None or peak is None else round(max(peak - base, 0.0), 1)


# -- synthetic images ------------------------------------------------------------------------
def synthetic_images(
    n: int, shape: tuple[int, int, int], *, num_classes: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` learnable uint8 images ``(n, C, H, W)`` and int64 labels ``(n,)``, deterministic.

    Each class has a smooth random template; an image is its class template at a random
    brightness plus pixel noise, so a small CNN learns them in an epoch (scaling and speed need
    realistic training, not realistic pictures). Generated in blocks: 100 k images stay cheap.
    """
    c, h, w = shape
    rng = np.random.default_rng(seed)
    coarse = rng.random((num_classes, c, max(2, h // 4), max(2, w // 4)), dtype=np.float32)
    templates = torch.nn.functional.interpolate(
        torch.from_numpy(coarse), size=(h, w), mode="bilinear", align_corners=False
    )
    templates = templates.numpy() * 200.0
    labels = (np.arange(n) % num_classes).astype(np.int64)
    rng.shuffle(labels)
    out = np.empty((n, c, h, w), dtype=np.uint8)
    block = 8192
    for lo in range(0, n, block):
        y = labels[lo : lo + block]
        scale = rng.uniform(0.6, 1.2, size=(len(y), 1, 1, 1)).astype(np.float32)
        noise = rng.normal(0.0, 25.0, size=(len(y), c, h, w)).astype(np.float32)
        out[lo : lo + block] = np.clip(templates[y] * scale + noise, 0, 255).astype(np.uint8)
    return out, labels


def shifted_digits(n: int, *, seed: int = 0, shift: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 ``(n, 1, 28, 28)`` images and labels made from the 5,000 MNIST digits that ship
    with oga's dependencies (``demo:mnist5k``): each a random digit moved by up to ``shift`` pixels
    each way, at a random brightness, with a little noise. Nothing is downloaded; 1 M images take
    about a minute, generated in blocks."""
    from oga_core.demos import mnist5k

    base, base_labels, _ = mnist5k()
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(base), n)
    out = np.empty((n, 1, 28, 28), dtype=np.uint8)
    block = 20_000
    padded = np.pad(base[:, 0], ((0, 0), (shift, shift), (shift, shift)))
    for lo in range(0, n, block):
        idx = pick[lo : lo + block]
        dy, dx = rng.integers(0, 2 * shift + 1, (2, len(idx)))
        rows = (np.arange(28)[None, :] + dy[:, None])[:, :, None]
        cols = (np.arange(28)[None, :] + dx[:, None])[:, None, :]
        moved = padded[idx[:, None, None], rows, cols].astype(np.float32)
        moved = moved * rng.uniform(0.7, 1.0, (len(idx), 1, 1)) + rng.normal(0, 8, moved.shape)
        out[lo : lo + block, 0] = np.clip(moved, 0, 255).astype(np.uint8)
    return out, base_labels[pick].astype(np.int64)


def write_mnist_idx(root: Path, pixels: np.ndarray, labels: np.ndarray) -> Path:
    """Write ``pixels (N, 1, 28, 28)`` uint8 and ``labels`` as torchvision's MNIST raw files.

    So that ``oga analyze --data torchvision:MNIST:ROOT`` reads synthetic data exactly as it would
    read MNIST (torchvision only checks that the four files exist). The test split gets 10 images.
    Returns ``root``.
    """
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    n, _, h, w = pixels.shape

    def images(path: Path, px: np.ndarray) -> None:
        header = np.array([2051, len(px), h, w], dtype=">i4").tobytes()
        path.write_bytes(header + np.ascontiguousarray(px[:, 0], dtype=np.uint8).tobytes())

    def targets(path: Path, y: np.ndarray) -> None:
        path.write_bytes(np.array([2049, len(y)], dtype=">i4").tobytes() + y.astype(np.uint8).tobytes())

    images(raw / "train-images-idx3-ubyte", pixels)
    targets(raw / "train-labels-idx1-ubyte", labels)
    images(raw / "t10k-images-idx3-ubyte", pixels[:10])
    targets(raw / "t10k-labels-idx1-ubyte", labels[:10])
    return Path(root)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a measuring child process (``python -m oga_core.bench...``): this one's,
    plus ``extra``, with this package's folder first on ``PYTHONPATH`` so the child runs the code
    the parent runs, whatever the current folder and whatever else is installed."""
    root = str(Path(__file__).resolve().parent.parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, **extra, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def log(message: str) -> None:
    """Progress on stderr (the tables go to stdout / the report)."""
    import sys

    print(f"oga bench: {message}", file=sys.stderr, flush=True)

"""The cache, timed: a cold ``analyze``, the identical second call, and a change of detector (in
memory with ``Analysis.rescore``; from the disk cache with a new ``analyze``). Runs in a
throw-away ``OGA_HOME`` so the bench neither reads nor pollutes the person's cache."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from oga_core.bench.common import log
from oga_core.bench.settings import SpeedSettings
from oga_core.config import AnalysisConfig
from oga_core.pipeline import analyze


@contextmanager
def _temporary_home() -> Iterator[Path]:
    """A throw-away OGA_HOME for the block."""
    old = os.environ.get("OGA_HOME")
    with tempfile.TemporaryDirectory(prefix="oga-bench-") as home:
        os.environ["OGA_HOME"] = home
        try:
            yield Path(home)
        finally:
            if old is None:
                os.environ.pop("OGA_HOME", None)
            else:
                os.environ["OGA_HOME"] = old


def measure_cache(settings: SpeedSettings, device: torch.device) -> dict[str, Any]:
    """``{"data", "n", "epochs", "cold_seconds", "hit_seconds", "rescore_seconds",
    "detector_change_seconds", "hit_stages", "cold_timings"}``, or ``{"error"}``."""
    data = settings.cache_data
    with _temporary_home():
        for candidate in (data, "demo:digits"):
            config = AnalysisConfig(
                data=candidate, noise=0.2, epochs=settings.cache_epochs, device=device.type, detector="l1"
            )
            try:
                start = time.perf_counter()
                first = analyze(config)
                cold = time.perf_counter() - start
                data = candidate
                break
            except Exception as exc:  # e.g. mlxtend or pyarrow missing on a bare GPU machine
                error = f"{type(exc).__name__}: {exc}"
                log(f"cache part: {candidate} failed ({error})")
        else:
            return {"error": error}
        start = time.perf_counter()
        second = analyze(config)
        hit = time.perf_counter() - start
        start = time.perf_counter()
        first.rescore(detector="iforest")
        rescore = time.perf_counter() - start
        start = time.perf_counter()
        analyze(dataclasses.replace(config, detector="iforest"))
        new_detector = time.perf_counter() - start
    out = {
        "data": data,
        "n": int(len(first.dataset)),
        "epochs": first.run["epochs"],
        "cold_seconds": cold,
        "hit_seconds": hit,
        "rescore_seconds": rescore,
        "detector_change_seconds": new_detector,
        "hit_stages": second.run["cache_hits"],
        "cold_timings": first.run["timings"],
    }
    log(f"cache: cold {cold:.1f} s, hit {hit:.2f} s, rescore {rescore:.3f} s, new detector {new_detector:.2f} s")
    return out

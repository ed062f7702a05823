"""2-D maps computed in worker threads, with progress, for every session (docs/architecture.md,
"The app at scale").

A UMAP map of a million samples takes minutes on a CPU even fitted on a sample (the rest placed
with ``transform``, see ``oga_core.embedding``). The page must not wait for it, and a person who
leaves Explore must not lose it, so the map is computed here, once per analysis, method and space,
the way the registry computes analyses: a worker thread belonging to the server, polled by the
pages. The page draws the instant PCA map meanwhile, clearly labelled, with the job's progress.
Finished maps are kept in memory (and on disk by ``Analysis.map_coords``). No Streamlit here.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from oga_core.analysis import Analysis

# Beyond this many samples UMAP is fitted on a random sample and the rest placed (the engine's
# fitting sample, ``embedding.embed_2d``'s max_fit). Every UMAP map is computed in the background.
BACKGROUND_FROM = 20_000
CAPACITY = 8  # maps kept in memory: 8 MB each at a million samples


@dataclass(frozen=True)
class MapState:
    """Where one map stands: ``coords`` ``(N, 2)`` when ready; else the job's progress (``done``
    of ``total`` samples placed; 0 of 0 while it is still fitting) or the ``error`` it ended with."""

    coords: np.ndarray | None
    done: int = 0
    total: int = 0
    seconds: float = 0.0
    error: BaseException | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


class _Job:
    def __init__(self) -> None:
        self.finished = threading.Event()
        self.started = time.monotonic()
        self.progress = (0, 0)
        self.error: BaseException | None = None

    def report(self, done: int, total: int) -> None:
        self.progress = (int(done), int(total))  # one tuple assignment: atomic for the poller


class MapJobs:
    """Maps by ``(analysis' gradients, method, space, seed)``: in memory, or being computed."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._ready: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._jobs: dict[tuple, _Job] = {}

    @staticmethod
    def key(analysis: Analysis, method: str, space: str) -> tuple:
        return (analysis.keys.get("gradients", analysis.data_id), method, space, analysis.config.seed)

    def ready(self, analysis: Analysis, method: str, space: str) -> np.ndarray | None:
        """The map if it is in memory, else None (never computes)."""
        key = self.key(analysis, method, space)
        with self._lock:
            found = self._ready.get(key)
            if found is not None:
                self._ready.move_to_end(key)
            return found

    def poll(self, analysis: Analysis, method: str, space: str, *, wait: float = 0.0) -> MapState:
        """The map, or the progress of its job (started here if none runs); waits up to ``wait``
        seconds for it. A job that failed keeps reporting its error (a page polling every few
        seconds must not start it again and again) until :meth:`forget`."""
        key = self.key(analysis, method, space)
        with self._lock:
            found = self._ready.get(key)
            if found is not None:
                self._ready.move_to_end(key)
                return MapState(found)
            job = self._jobs.get(key)
            if job is None:
                job = self._jobs[key] = _Job()
                threading.Thread(
                    target=self._work, args=(key, job, analysis, method, space), name="oga-map", daemon=True
                ).start()
        job.finished.wait(wait)
        with self._lock:
            found = self._ready.get(key)
            if found is not None:
                return MapState(found)
        done, total = job.progress
        return MapState(None, done, total, time.monotonic() - job.started, job.error)

    def prefetch(self, analysis: Analysis) -> None:
        """Start Explore's default map (UMAP of the features) in the background right after an
        analysis, unless ``$OGA_PREFETCH_MAP`` is 0: it also pays numba's compilation (~15 s in a
        new process) before anyone opens Explore. Returns at once."""
        if os.environ.get("OGA_PREFETCH_MAP", "1") != "0":
            self.poll(analysis, "umap", "features")

    def get(self, analysis: Analysis, method: str, space: str) -> np.ndarray:
        """The map, computed if needed while the caller waits; raises what the job raised (and
        forgets it, so the next call tries again)."""
        while True:
            state = self.poll(analysis, method, space, wait=0.5)
            if state.coords is not None:
                return state.coords
            if state.error is not None:
                self.forget(analysis, method, space)
                raise state.error

    def forget(self, analysis: Analysis, method: str, space: str) -> None:
        """Drop a failed job, so that the next poll starts the map again."""
        key = self.key(analysis, method, space)
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.finished.is_set():
                self._jobs.pop(key)

    def _work(self, key: tuple, job: _Job, analysis: Analysis, method: str, space: str) -> None:
        try:
            coords = analysis.map_coords(method=method, space=space, progress=job.report)
        except BaseException as exc:  # handed to the next poll
            job.error = exc
        else:
            with self._lock:
                self._ready[key] = coords
                while len(self._ready) > self.capacity:
                    self._ready.popitem(last=False)
                self._jobs.pop(key, None)
        finally:
            job.finished.set()

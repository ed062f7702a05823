"""The analyses a server holds in memory, shared by every session and page.

No Streamlit here: the registry is plain threads and locks, so it can be tested without a
session; :func:`oga_app.resources.registry` keeps one per server process.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from oga_core.config import AnalysisConfig
from oga_core.pipeline import Analysis
from oga_core.pipeline import analyze as run_analyze

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class _Job:
    """One analysis running in a worker thread; progress is polled by whoever waits for it."""

    def __init__(self, config: AnalysisConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        self.done = threading.Event()
        self.result: Analysis | None = None
        self.error: BaseException | None = None
        self._progress: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def report(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            self._progress[stage] = (done, total)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            return dict(self._progress)


class AnalysisRegistry:
    """Analyses held in memory for every session, keyed by their unranked config.

    ``get`` starts ``analyze`` in a worker thread at most once per unranked config and waits for
    it, relaying its progress. The work belongs to the server, not to the page: a person who
    clicks to another page (which stops the page's script) or reloads does not abort training,
    and a second session asking for the same data waits on the same job. Results come back
    ranked as asked via ``Analysis.rescore``. Holds ``capacity`` analyses; the disk cache makes
    an evicted one quick to load again. ``record(analysis)`` keeps each finished or re-ranked
    analysis as its workspace's latest (by default ``Workspace.record``), so ``oga export`` and
    *Recent work* see what the person saw. ``analyze`` is :func:`oga_core.pipeline.analyze`
    unless a test passes a stand-in.
    """

    def __init__(
        self,
        capacity: int = 3,
        *,
        record: Callable[[Analysis], object] | None = None,
        analyze: Callable[..., Analysis] = run_analyze,
    ) -> None:
        self.capacity = capacity
        self.record = record or (lambda analysis: analysis.workspace.record(analysis))
        self.analyze = analyze
        self._lock = threading.Lock()
        self._jobs: dict[AnalysisConfig, _Job] = {}
        self._ready: OrderedDict[AnalysisConfig, Analysis] = OrderedDict()
        self._ranked: OrderedDict[AnalysisConfig, Analysis] = OrderedDict()

    def peek(self, config: AnalysisConfig) -> Analysis | None:
        """The analysis for ``config`` if it is in memory, else None (never computes)."""
        base = config.unranked()
        with self._lock:
            found = self._ready.get(base)
            if found is not None:
                self._ready.move_to_end(base)
        return None if found is None else self._rank(found, config)

    def hold(self, analysis: Analysis) -> Analysis:
        """Keep a ready ``analysis`` in memory as if it had been computed here, so sessions find
        it by its config (a synthetic analysis for benchmarks and tests, an analysis computed
        elsewhere); it counts against ``capacity`` like any other. Records nothing."""
        base = analysis.config.unranked()
        with self._lock:
            self._ready[base] = analysis
            self._ready.move_to_end(base)
            for key in [k for k in self._ranked if k.unranked() == base]:
                del self._ranked[key]  # rankings of what was held before under this config
            while len(self._ready) > self.capacity:
                self._ready.popitem(last=False)
                self._ranked.clear()
        return analysis

    def running(self, config: AnalysisConfig) -> bool:
        with self._lock:
            return config.unranked() in self._jobs

    def running_configs(self) -> list[AnalysisConfig]:
        """The settings of every analysis running now, the most recently started first (ranked
        as whoever started it asked): what a new session opens while training goes on."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda job: -job.started)
        return [job.config for job in jobs]

    def get(self, config: AnalysisConfig, progress: Progress | None = None, *, fresh: bool = False) -> Analysis:
        """The analysis for ``config``, computed (or loaded from the disk cache) if needed.

        ``progress(stage, done, total)`` is called from the caller's thread as the job advances.
        ``fresh``: ignore the copy in memory and run ``analyze`` again, so files added, edited or
        removed on disk since (or a checkpoint overwritten in place) are seen; unchanged steps
        still come from the disk cache. Raises what ``analyze`` raised (OgaError for bad input).
        """
        base = config.unranked()
        if fresh:
            with self._lock:
                self._ready.pop(base, None)
                for key in [k for k in self._ranked if k.unranked() == base]:
                    del self._ranked[key]
        found = self.peek(config)
        if found is not None:
            return found
        with self._lock:
            job = self._jobs.get(base)
            if job is None:
                job = self._jobs[base] = _Job(config)
                threading.Thread(target=self._work, args=(base, job), name="oga-analyze", daemon=True).start()
        seen: dict[str, tuple[int, int]] = {}
        while True:
            finished = job.done.wait(0.1)
            if progress is not None:
                for stage, state in job.snapshot().items():
                    if seen.get(stage) != state:
                        seen[stage] = state
                        progress(stage, *state)
            if finished:
                break
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return self._rank(job.result, config)

    def _work(self, base: AnalysisConfig, job: _Job) -> None:
        try:
            analysis = self.analyze(job.config, progress=job.report)
            self.record(analysis)
        except BaseException as exc:  # handed to every waiter; a later request starts afresh
            job.error = exc
        else:
            job.result = analysis
            with self._lock:
                self._ready[base] = analysis
                while len(self._ready) > self.capacity:
                    self._ready.popitem(last=False)
                    self._ranked.clear()
        finally:
            with self._lock:
                self._jobs.pop(base, None)
            job.done.set()

    def _rank(self, analysis: Analysis, config: AnalysisConfig) -> Analysis:
        if analysis.config == config:
            return analysis
        with self._lock:
            found = self._ranked.get(config)
        if found is not None and found.data_id == analysis.data_id:
            return found
        ranked = analysis.rescore(detector=config.detector, budget=config.budget, per_class=config.per_class)
        self.record(ranked)  # so `oga export` scores rows by the ranking the person looked at
        with self._lock:
            self._ranked[config] = ranked
            while len(self._ranked) > 16:
                self._ranked.popitem(last=False)
        return ranked

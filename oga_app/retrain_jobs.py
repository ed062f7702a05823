"""Retraining with the decisions applied, in worker threads that belong to the server.

A retraining run is a training run (seconds on the demo, minutes on real data): the page that
asked for it must not wait, and a person who goes on reviewing or reloads must not lose it. So it
runs here, once per analysis and set of decisions, polled by the pages, the way
:mod:`oga_app.maps` computes maps. The after-run is cached by :func:`oga_core.retrain.retrain`
like every stage, so asking again for the same decisions is quick even after a restart. No
Streamlit here.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from oga_core.config import AnalysisConfig
from oga_core.decisions import DecisionStore
from oga_core.retrain import decisions_digest, retrain

CAPACITY = 4  # finished comparisons kept in memory (their summaries; the runs are in the cache)


@dataclass(frozen=True)
class RetrainState:
    """Where one retraining stands. ``summary``: :func:`oga_core.retrain.retrain`'s summary when
    done; else ``stage`` with ``done`` of ``total`` steps, or the ``error`` it ended with.
    ``digest``: the decisions it applied (:func:`oga_core.retrain.decisions_digest`)."""

    digest: str
    summary: dict | None = None
    stage: str = ""
    done: int = 0
    total: int = 0
    seconds: float = 0.0
    error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self.summary is None and self.error is None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


class _Job:
    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.started = time.monotonic()
        self.progress = ("", 0, 0)
        self.summary: dict | None = None
        self.error: BaseException | None = None

    def report(self, stage: str, done: int, total: int) -> None:
        self.progress = (stage, int(done), int(total))  # one tuple assignment: atomic for the poller

    def state(self) -> RetrainState:
        stage, done, total = self.progress
        return RetrainState(self.digest, self.summary, stage, done, total, time.monotonic() - self.started, self.error)


class RetrainJobs:
    """Retraining runs by ``(data id, config, decisions digest)``; per analysis the latest one is
    remembered, so a page shows the last comparison even after a new decision made it stale."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._jobs: OrderedDict[tuple, _Job] = OrderedDict()
        self._latest: dict[tuple, tuple] = {}

    @staticmethod
    def digest(ids: list[str], store: DecisionStore) -> str:
        """The digest of the decisions a retraining of this analysis would apply now."""
        return decisions_digest(store.table(), ids)

    def start(self, config: AnalysisConfig, data_id: str, ids: list[str], store: DecisionStore) -> RetrainState:
        """Start retraining with the store's decisions as they are now (unless the same one runs
        or ran); returns its state. Errors (e.g. nothing to apply) come back in the state."""
        decisions = store.table()
        digest = decisions_digest(decisions, ids)
        key = (data_id, config, digest)
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.error is not None:
                self._jobs.pop(key)  # a failed run is tried again when asked again
                job = None
            if job is None:
                job = self._jobs[key] = _Job(digest)
                threading.Thread(
                    target=self._work, args=(job, config, decisions), name="oga-retrain", daemon=True
                ).start()
            self._jobs.move_to_end(key)
            self._latest[(data_id, config)] = key
            self._trim()
            return job.state()

    def latest(self, config: AnalysisConfig, data_id: str) -> RetrainState | None:
        """The last retraining asked for this analysis (running, done or failed), or None."""
        with self._lock:
            key = self._latest.get((data_id, config))
            job = self._jobs.get(key) if key else None
            return job.state() if job is not None else None

    def wait(self, config: AnalysisConfig, data_id: str, timeout: float | None = None) -> RetrainState | None:
        """Wait up to ``timeout`` seconds for the latest run of this analysis (tests, the CLI)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.latest(config, data_id)
            if state is None or not state.running:
                return state
            if deadline is not None and time.monotonic() > deadline:
                return state
            time.sleep(0.1)

    def _trim(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.summary is not None or j.error is not None]
        live = set(self._latest.values())
        for key in finished:
            if len(self._jobs) <= self.capacity:
                break
            if key not in live:
                self._jobs.pop(key)

    def _work(self, job: _Job, config: AnalysisConfig, decisions) -> None:
        try:
            job.summary = retrain(config, decisions, progress=job.report).summary
        except BaseException as exc:  # handed to the next poll
            job.error = exc

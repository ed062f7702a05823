"""Progress reporting and per-stage timing, shared by every long step.

``Progress(done, total)`` reports one step's advance; ``StageProgress(stage, done, total)`` the
same for a named stage of an analysis (see :data:`oga_core.options.STAGES`). Notices are things
a person should hear about that did not stop the work (a cache entry that was unreadable and got
recomputed, say); they go to the ``oga`` logger, which the CLI prints as ``oga: note: ...``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

Progress = Callable[[int, int], None]
StageProgress = Callable[[str, int, int], None]

LOG = logging.getLogger("oga")


class Stages:
    """Timings per stage, cache hits, notices and the progress callback, in one place.

    ``begin(name)`` returns the stage's ``Progress``; ``end(hit=...)`` records its time. Every
    stage ends with ``progress(name, 1, 1)``, so a listener can close its bar.
    """

    def __init__(self, progress: StageProgress | None = None) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.cache_hits: list[str] = []
        self.notices: list[str] = []
        self._start = 0.0
        self._name = ""

    def begin(self, name: str) -> Progress:
        self._name, self._start = name, time.perf_counter()
        if self.progress:
            self.progress(name, 0, 1)
        return lambda done, total: self.progress(name, done, total) if self.progress else None

    def end(self, *, hit: bool = False) -> None:
        self.timings[self._name] = round(time.perf_counter() - self._start, 4)
        if hit:
            self.cache_hits.append(self._name)
        if self.progress:
            self.progress(self._name, 1, 1)

    def notice(self, text: str) -> None:
        """Something a person should know that did not stop the work."""
        self.notices.append(text)
        LOG.warning(text)

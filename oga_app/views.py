"""What the pages derive from one analysis, kept so that a rerun costs what the page shows, not
what the data set holds (docs/architecture.md, "The app at scale").

A click on Review reruns the whole page script. At a million samples, joining the decisions
onto the score table by id, sorting the queue and mapping ids to rows took about a second each
time; here each is computed once per analysis (the id index, the score order) or once per
change of the decisions (the joined table, keyed by :meth:`DecisionStore.version`). No
Streamlit: ``oga_app.resources.views`` keeps one per analysis for the server process.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd

from oga_core import summaries
from oga_core.decisions import DecisionStore
from oga_core.evaluate import detection_metrics
from oga_core.pipeline import Analysis


class AnalysisViews:
    """Derived views of ``analysis`` (its score table is in dataset order, as
    :func:`oga_core.pipeline.score_table` makes it). Shared by every session: nothing returned
    may be modified."""

    def __init__(self, analysis: Analysis) -> None:
        self.analysis = analysis
        self._lock = threading.Lock()
        self._positions: pd.Index | None = None
        self._order: np.ndarray | None = None
        self._bins: pd.DataFrame | None = None
        self._detection: tuple[pd.DataFrame, pd.DataFrame] | None = None
        self._decided: tuple[tuple[int, int], pd.DataFrame] | None = None
        self._progress: tuple[tuple[int, int], tuple[int, int, dict[str, int]]] | None = None

    def positions(self) -> pd.Index:
        """Sample id -> row, as an index whose hash table is built on first use and then kept."""
        with self._lock:
            if self._positions is None:
                # The dataset's own id strings (no copy of a million strings); rows = dataset order.
                self._positions = pd.Index(self.analysis.dataset.ids, dtype=object)
                self._positions.get_indexer(self._positions[:1])  # builds the hash table now, under the lock
            return self._positions

    def row_of(self, sample_id: str) -> int | None:
        """The row (dataset index) of ``sample_id``, None if it is not in the data."""
        row = int(self.positions().get_indexer(pd.Index([sample_id], dtype=object))[0])
        return None if row < 0 else row

    def order(self) -> np.ndarray:
        """Rows by score, highest first (this analysis' ranking)."""
        with self._lock:
            if self._order is None:
                self._order = summaries.score_order(self.analysis.scores)
            return self._order

    def score_bins(self) -> pd.DataFrame:
        """The score histogram's counts (``summaries.score_bins``) of this ranking."""
        with self._lock:
            if self._bins is None:
                self._bins = summaries.score_bins(self.analysis.scores)
            return self._bins

    def detection(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Every score against the known truth: ``(evaluate.detection_metrics, summaries.precision_curve)``
        (seconds at a million samples; they depend on the ranking alone, not on decisions)."""
        with self._lock:
            if self._detection is None:
                scores, truth = self.analysis.scores, self.analysis.noise.noisy
                metrics = detection_metrics(scores, truth, budget=self.analysis.config.budget)
                self._detection = (metrics, summaries.precision_curve(scores, truth))
            return self._detection

    def decided(self, store: DecisionStore) -> pd.DataFrame:
        """The score table with the current decisions joined on; read from SQLite again only
        when the store's version changed (a decision, an undo, another tab's click)."""
        return self._decided_at(store)[1]

    def _decided_at(self, store: DecisionStore) -> tuple[tuple[int, int], pd.DataFrame]:
        version = store.version()
        with self._lock:
            if self._decided is not None and self._decided[0] == version:
                return self._decided
        # Read after the version: a decision made in between gives a newer table under an older
        # version, which the next call replaces; never an older table under a newer version.
        table = summaries.with_decisions(
            self.analysis.scores, store.table(), self.analysis.dataset.classes, positions=self.positions()
        )
        with self._lock:
            self._decided = (version, table)
        return version, table

    def progress(self, store: DecisionStore) -> tuple[int, int, dict[str, int]]:
        """``(reviewed, flagged, {action: count})`` of :meth:`decided`, counted once per version."""
        version, table = self._decided_at(store)
        with self._lock:
            if self._progress is not None and self._progress[0] == version:
                return self._progress[1]
        reviewed, flagged = summaries.review_progress(table)
        decision = table["decision"].to_numpy()
        counts = {action: int((decision == action).sum()) for action in ("keep", "drop", "relabel")}
        with self._lock:
            self._progress = (version, (reviewed, flagged, counts))
        return reviewed, flagged, counts

"""A workspace: everything oga keeps about one analysed data set, in one folder.

``$OGA_HOME/workspaces/<data id>/`` (docs/architecture.md, "Files")::

    decisions.sqlite       the person's keep / drop / relabel decisions (oga_core.decisions)
    source.json            the data settings that name this data set (source, injected noise)
    latest_scores.parquet  the latest analysis' score table, as last ranked
    latest_run.json        the latest analysis' run record (settings, timings, accuracy)

The data id is the content fingerprint of the data plus any injected noise, so decisions follow
the data, not the model: they reattach whenever the same data is analysed with any settings. An
analysis itself records nothing; whoever runs it (the CLI, the app) calls :meth:`Workspace.record`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from oga_core.config import AnalysisConfig
from oga_core.data import LabeledImages, index_of
from oga_core.decisions import Decision, DecisionStore, Recovery, recover
from oga_core.errors import OgaError
from oga_core.files import atomic_path
from oga_core.progress import LOG
from oga_core.store import oga_home, read_json, write_json


class Recordable(Protocol):
    """What :meth:`Workspace.record` reads of an analysis (``oga_core.pipeline.Analysis``)."""

    config: AnalysisConfig
    dataset: LabeledImages
    scores: pd.DataFrame
    run: dict[str, Any]


@dataclass(frozen=True)
class RecentWork:
    """One earlier analysis, for the app's *Recent work*: its settings as a dict that
    ``AnalysisConfig.from_dict`` accepts, when it was analysed (epoch s) and its decision counts."""

    data_id: str
    data: str
    config: dict[str, Any]
    num_samples: int
    analysed_at: float
    decisions: dict[str, int]


class Workspace:
    """The folder of one analysed data set under the app home ``home`` (default ``$OGA_HOME``)."""

    def __init__(self, data_id: str, *, home: Path | None = None) -> None:
        self.data_id = data_id
        self.home = Path(home) if home is not None else oga_home()
        self.folder = self.home / "workspaces" / data_id

    def __repr__(self) -> str:
        return f"Workspace({self.data_id!r}, home={str(self.home)!r})"

    @property
    def decisions_path(self) -> Path:
        return self.folder / "decisions.sqlite"

    def decisions(self) -> DecisionStore:
        """The decision store (created on first use); DamagedDecisions if it cannot be read."""
        return DecisionStore(self.decisions_path)

    def recover_decisions(self) -> Recovery:
        """Move a damaged decision store aside and rebuild it (see :func:`oga_core.decisions.recover`)."""
        return recover(self.decisions_path)

    # -- the latest analysis -----------------------------------------------------------------
    def latest_scores(self) -> pd.DataFrame | None:
        """The score table of the latest analysis, or None (never analysed, or unreadable: the
        decisions matter, scores can be computed again)."""
        path = self.folder / "latest_scores.parquet"
        if not path.is_file():
            return None
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # a file torn by a crash or a full disk
            LOG.warning("ignoring unreadable %s (%s); analyse the data again", path, type(exc).__name__)
            return None

    def latest_run(self) -> dict[str, Any] | None:
        try:
            return read_json(self.folder / "latest_run.json")
        except (OSError, ValueError):
            return None

    def register(self, settings: Mapping[str, Any], dataset: LabeledImages) -> int:
        """Make sure the workspace exists for this data set: write ``source.json`` and, when its
        decision store is new, adopt the decisions of an earlier version of the same source.
        Returns how many decisions were carried over (0 mostly)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        source = {**settings, "data_id": self.data_id, "classes": dataset.classes}
        try:
            unchanged = read_json(self.folder / "source.json") == source
        except (OSError, ValueError):
            unchanged = False
        if not unchanged:  # most commands find it as written: no write, nothing to fail
            write_json(self.folder / "source.json", source)
        return self._adopt_earlier_decisions(settings, dataset)

    def record(self, analysis: Recordable) -> int:
        """Keep ``analysis`` as the latest (for ``oga export`` and the app's *Recent work*);
        returns how many decisions were carried over from an earlier version of the data."""
        carried = self.register(analysis.config.data_settings(), analysis.dataset)
        if carried:
            analysis.run["decisions_carried_over"] = carried
        with atomic_path(self.folder / "latest_scores.parquet") as tmp:
            analysis.scores.to_parquet(tmp)
        write_json(self.folder / "latest_run.json", analysis.run)
        return carried

    # -- earlier versions of the same data ---------------------------------------------------
    def _adopt_earlier_decisions(self, settings: Mapping[str, Any], dataset: LabeledImages) -> int:
        """Carry decisions over when the same source changed on disk.

        Adding, fixing or removing one file changes the data id and so the workspace. When this
        workspace has no decision history and an earlier workspace holds decisions for the same
        source with the same noise settings, the most recently changed one is copied over,
        sample by sample, for every sample still present with the same given label (a decision
        about another label is not carried). The copy is one batch: one undo takes it back.
        """
        store = self.decisions()
        if not store.is_new():
            return 0
        earlier = []
        for other in (self.home / "workspaces").iterdir():
            db = other / "decisions.sqlite"
            if other == self.folder or not db.is_file() or not (other / "source.json").is_file():
                continue
            try:
                same = {k: v for k, v in read_json(other / "source.json").items() if k in settings} == dict(settings)
            except (OSError, ValueError):
                continue
            if same:
                earlier.append((db.stat().st_mtime, db))
        if not earlier:
            return 0
        table = DecisionStore(max(earlier)[1]).table()
        position = index_of(dataset.ids)
        carried = [
            Decision(sid, action, int(original), int(label))
            for sid, action, label, original in table[["sample_id", "action", "label", "original_label"]].itertuples(
                index=False
            )
            if sid in position
            and int(dataset.labels[position[sid]]) == int(original)
            and 0 <= int(label) < dataset.num_classes
        ]
        return store.decide_many(carried)

    # -- every workspace ---------------------------------------------------------------------
    @staticmethod
    def recent(home: Path | None = None, *, limit: int = 8) -> list[RecentWork]:
        """Data sets analysed under ``home``, most recent first; workspaces without a readable
        ``latest_run.json`` are skipped."""
        home = Path(home) if home is not None else oga_home()
        found = [w for w in map(_recent_work, (home / "workspaces").glob("*/latest_run.json")) if w is not None]
        found.sort(key=lambda w: -w.analysed_at)
        return found[:limit]

    @staticmethod
    def lookup(data_id: str, home: Path | None = None) -> RecentWork:
        """The workspace named ``data_id`` under ``home`` (as a link or bookmark names it), or
        OgaError, one line, when the name is not one oga gives (only letters, digits, ``_`` and
        ``-``: never a path, so nothing outside the workspace store is ever read) or no analysed
        workspace has it."""
        text = str(data_id)
        if not _DATA_ID.fullmatch(text):
            shown = text if len(text) <= 40 else text[:40] + "…"
            raise OgaError(f"{shown!r} is not a workspace name (oga names them with letters, digits, _ and -)")
        home = Path(home) if home is not None else oga_home()
        work = _recent_work(home / "workspaces" / text / "latest_run.json")
        if work is None:
            raise OgaError(f"there is no analysed workspace {text!r} here")
        return work


_DATA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def _recent_work(run_file: Path) -> RecentWork | None:
    """The workspace whose ``latest_run.json`` is ``run_file``, None if that is unreadable."""
    try:
        run = json.loads(run_file.read_text(encoding="utf-8"))
        config = dict(run["config"])
        when = run_file.stat().st_mtime
    except (OSError, ValueError, KeyError, TypeError):
        return None
    workspace = Workspace(run_file.parent.name, home=run_file.parent.parent.parent)
    counts = workspace.decisions().counts() if workspace.decisions_path.is_file() else {}
    return RecentWork(
        data_id=workspace.data_id,
        data=str(config.get("data", "?")),
        config=config,
        num_samples=int(run.get("num_samples", 0)),
        analysed_at=when,
        decisions=counts,
    )

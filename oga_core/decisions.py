"""A person's keep / drop / relabel decisions: SQLite in WAL mode, with an append-only event log.

Two tables:

    decisions(sample_id PK, action, label, original_label, updated_at)   the current state
    events(id, time, batch, sample_id, action, original_label, old_action, old_label, new_label, undoes)

Every call is one transaction committed with ``synchronous=FULL`` before it returns, so a decision
the app has acknowledged survives a page reload, a server restart and a killed process. Events
are never updated or deleted: an undo is itself an event that restores the state before the
latest batch not yet undone (a bulk action on a page is one batch and is undone as one).

A store belongs to one analysed data set (its :class:`~oga_core.workspace.Workspace`), so decisions
reattach whenever the same data is analysed again with any model, scope, detector or budget.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from oga_core.errors import OgaError

ACTIONS = ("keep", "drop", "relabel")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    sample_id TEXT PRIMARY KEY,
    action TEXT NOT NULL CHECK (action IN ('keep', 'drop', 'relabel')),
    label INTEGER NOT NULL,
    original_label INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    batch INTEGER NOT NULL,
    sample_id TEXT,
    action TEXT NOT NULL,
    original_label INTEGER,
    old_action TEXT,
    old_label INTEGER,
    new_label INTEGER,
    undoes INTEGER
);
CREATE INDEX IF NOT EXISTS events_batch ON events(batch);
"""


@dataclass(frozen=True)
class Decision:
    """One sample's decision. action 'clear' (only as input) forgets it.

    label: the class index the sample should have after cleaning (the original for keep/drop).
    """

    sample_id: str
    action: str
    original_label: int
    label: int | None = None


class DecisionStore:
    """Decisions of one data set in ``path`` (a SQLite file, created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per operation: Streamlit calls from several threads, and sqlite3
        # connections must not cross threads. Opening one costs ~0.1 ms.
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            yield con
        finally:
            con.close()

    # -- writing -----------------------------------------------------------------------------
    def decide(self, sample_id: str, action: str, *, original_label: int, label: int | None = None) -> None:
        """Record one decision (keep, drop, relabel to ``label``, or clear)."""
        self.decide_many([Decision(sample_id, action, original_label, label)])

    def decide_many(self, decisions: Iterable[Decision]) -> int:
        """Record several decisions as one batch (one undo step); returns how many."""
        items = list(decisions)
        for d in items:
            if d.action not in ACTIONS + ("clear",):
                raise OgaError(f"unknown action '{d.action}': use keep, drop, relabel or clear")
            if d.action == "relabel" and d.label is None:
                raise OgaError(f"relabel of {d.sample_id} needs a new label")
        if not items:
            return 0
        now = time.time()
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                batch = self._next_batch(con)
                for d in items:
                    old = con.execute(
                        "SELECT action, label FROM decisions WHERE sample_id = ?", (d.sample_id,)
                    ).fetchone()
                    old_action, old_label = old if old else (None, int(d.original_label))
                    if d.action == "clear":
                        new_label = int(d.original_label)
                        con.execute("DELETE FROM decisions WHERE sample_id = ?", (d.sample_id,))
                    else:
                        new_label = int(d.label) if d.action == "relabel" else int(d.original_label)
                        con.execute(
                            "INSERT INTO decisions VALUES (?, ?, ?, ?, ?) ON CONFLICT(sample_id) DO UPDATE SET "
                            "action = excluded.action, label = excluded.label, updated_at = excluded.updated_at",
                            (d.sample_id, d.action, new_label, int(d.original_label), now),
                        )
                    con.execute(
                        "INSERT INTO events (time, batch, sample_id, action, original_label, old_action, old_label, new_label) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (now, batch, d.sample_id, d.action, int(d.original_label), old_action, old_label, new_label),
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return len(items)

    def undo(self) -> list[str]:
        """Revert the latest batch not yet undone; returns the sample ids it touched ([] if none)."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                target = con.execute(
                    "SELECT MAX(batch) FROM events WHERE action != 'undo' AND batch NOT IN "
                    "(SELECT undoes FROM events WHERE action = 'undo' AND undoes IS NOT NULL)"
                ).fetchone()[0]
                if target is None:
                    con.execute("ROLLBACK")
                    return []
                rows = con.execute(
                    "SELECT sample_id, original_label, old_action, old_label, new_label FROM events "
                    "WHERE batch = ? ORDER BY id DESC",
                    (target,),
                ).fetchall()
                batch, now = self._next_batch(con), time.time()
                for sample_id, original_label, old_action, old_label, new_label in rows:
                    if old_action is None:
                        con.execute("DELETE FROM decisions WHERE sample_id = ?", (sample_id,))
                    else:
                        con.execute(
                            "INSERT INTO decisions VALUES (?, ?, ?, ?, ?) ON CONFLICT(sample_id) DO UPDATE SET "
                            "action = excluded.action, label = excluded.label, updated_at = excluded.updated_at",
                            (sample_id, old_action, old_label, original_label, now),
                        )
                    con.execute(
                        "INSERT INTO events (time, batch, sample_id, action, original_label, old_action, old_label, "
                        "new_label, undoes) VALUES (?, ?, ?, 'undo', ?, NULL, ?, ?, ?)",
                        (now, batch, sample_id, original_label, new_label, old_label, target),
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return [r[0] for r in rows][::-1]

    @staticmethod
    def _next_batch(con: sqlite3.Connection) -> int:
        return int(con.execute("SELECT COALESCE(MAX(batch), 0) + 1 FROM events").fetchone()[0])

    # -- reading -----------------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        """Current decisions: sample_id, action, label, original_label, updated_at (epoch s)."""
        with self._connect() as con:
            return pd.read_sql_query(
                "SELECT sample_id, action, label, original_label, updated_at FROM decisions ORDER BY updated_at, sample_id",
                con,
            )

    def events(self) -> pd.DataFrame:
        """The whole append-only log, oldest first."""
        with self._connect() as con:
            return pd.read_sql_query("SELECT * FROM events ORDER BY id", con)

    def get(self, sample_id: str) -> dict | None:
        with self._connect() as con:
            row = con.execute(
                "SELECT action, label, original_label FROM decisions WHERE sample_id = ?", (sample_id,)
            ).fetchone()
        return None if row is None else {"action": row[0], "label": row[1], "original_label": row[2]}

    def is_new(self) -> bool:
        """True while nothing was ever decided here (the event log is empty)."""
        with self._connect() as con:
            return con.execute("SELECT 1 FROM events LIMIT 1").fetchone() is None

    def can_undo(self) -> bool:
        with self._connect() as con:
            return (
                con.execute(
                    "SELECT 1 FROM events WHERE action != 'undo' AND batch NOT IN "
                    "(SELECT undoes FROM events WHERE action = 'undo' AND undoes IS NOT NULL) LIMIT 1"
                ).fetchone()
                is not None
            )

    def counts(self) -> dict[str, int]:
        """How many samples have each action."""
        with self._connect() as con:
            rows = con.execute("SELECT action, COUNT(*) FROM decisions GROUP BY action").fetchall()
        return dict.fromkeys(ACTIONS, 0) | {a: int(n) for a, n in rows}

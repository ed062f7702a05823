"""A person's keep / drop / relabel decisions: SQLite in WAL mode, with an append-only event log.

Two tables:

    decisions(sample_id PK, action, label, original_label, updated_at)   the current state
    events(id, time, batch, sample_id, action, original_label, old_action, old_label, new_label, undoes)

Every call is one transaction committed with ``synchronous=FULL`` before it returns, so a decision
the app has acknowledged survives a page reload, a server restart and a killed process. Events
are never updated or deleted: an undo is itself an event that restores the state before the
latest batch not yet undone (a bulk action on a page is one batch and is undone as one).

Each committed batch of events is also appended to ``decisions.events.jsonl`` beside the database
(one JSON object per event, synced to disk). If the database is ever damaged, oga says so, leaves
the file untouched and offers :func:`recover`, which moves it aside (never deletes it) and rebuilds
the decisions from what SQLite can still read (``sqlite3 .recover`` when the command is installed)
and from that log. A read-only database can still be read; writing to it is one clear error.

A store belongs to one analysed data set (its :class:`~oga_core.workspace.Workspace`), so decisions
reattach whenever the same data is analysed again with any model, scope, detector or budget.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from oga_core.errors import OgaError
from oga_core.files import fsync_path
from oga_core.progress import LOG

ACTIONS = ("keep", "drop", "relabel")
EVENT_COLUMNS = (
    "id",
    "time",
    "batch",
    "sample_id",
    "action",
    "original_label",
    "old_action",
    "old_label",
    "new_label",
    "undoes",
)
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


class DecisionsError(OgaError):
    """The decisions database cannot be used as it is: damaged, or not writable."""


class DamagedDecisions(DecisionsError):
    """SQLite cannot read the decisions database; :func:`recover` rebuilds what can be read."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(
            f"the decisions database {path} is damaged ({reason}). It was left as it is; oga can move it aside "
            "and rebuild the decisions from what is still readable and from its event log: run `oga recover "
            "--data ...` with the same data settings (in the app, press Recover)"
        )


def _log_path(db: Path) -> Path:
    return db.with_name(db.stem + ".events.jsonl")


class DecisionStore:
    """Decisions of one data set in ``path`` (a SQLite file, created on first use).

    DamagedDecisions when the file is not a readable SQLite database; DecisionsError (one line)
    when a write meets a read-only file or folder. Reads of a read-only database work.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.read_only = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DecisionsError(f"cannot create the folder of {self.path}: {exc.strerror or exc}") from None
        try:
            with self._connect() as con:
                con.executescript(_SCHEMA)
        except DecisionsError:
            if not (self.path.is_file() and os.access(self.path, os.R_OK)):
                raise
            self.read_only = True  # readable as it is: reads use an immutable connection
            with self._connect() as con:
                con.execute("SELECT 1 FROM decisions LIMIT 1")

    @property
    def log_path(self) -> Path:
        """The append-only JSON-lines copy of the event log."""
        return _log_path(self.path)

    def _explain(self, exc: sqlite3.Error) -> DecisionsError:
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and any(
            m in text for m in ("not a database", "malformed", "file is encrypted", "disk image")
        ):
            return DamagedDecisions(self.path, text)
        if any(m in text for m in ("readonly", "read-only", "unable to open", "disk I/O", "permission")):
            return DecisionsError(
                f"cannot save decisions in {self.path}: the file or its folder is read-only or unavailable "
                f"({text}); fix its permissions (decisions made so far are intact)"
            )
        return DecisionsError(f"the decisions database {self.path} failed: {text}")

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        # A connection per operation: Streamlit calls from several threads, and sqlite3
        # connections must not cross threads. Opening one costs ~0.1 ms.
        if self.read_only and write:
            raise DecisionsError(
                f"cannot save decisions in {self.path}: the file or its folder is read-only; fix its permissions "
                "(decisions made so far are intact)"
            )
        try:
            if self.read_only:
                con = sqlite3.connect(f"file:{self.path}?immutable=1", uri=True, isolation_level=None)
            else:
                con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._explain(exc) from None
        try:
            if not self.read_only:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=FULL")
            yield con
        except sqlite3.Error as exc:
            raise self._explain(exc) from None
        finally:
            con.close()

    def _append_log(self, con: sqlite3.Connection, batch: int) -> None:
        """Mirror one committed batch into the JSON-lines log (a failure is a warning: the
        decision itself is safe in SQLite)."""
        rows = con.execute(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE batch = ? ORDER BY id", (batch,))
        lines = "".join(json.dumps(dict(zip(EVENT_COLUMNS, row))) + "\n" for row in rows)
        try:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(lines)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            LOG.warning("could not append to the decision log %s: %s", self.log_path, exc.strerror or exc)

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
        with self._connect(write=True) as con:
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
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            self._append_log(con, batch)
        return len(items)

    def undo(self) -> list[str]:
        """Revert the latest batch not yet undone; returns the sample ids it touched ([] if none)."""
        with self._connect(write=True) as con:
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
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            self._append_log(con, batch)
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

    def events(self, *, last: int | None = None) -> pd.DataFrame:
        """The append-only log, oldest first: all of it, or only its ``last`` events."""
        with self._connect() as con:
            if last is None:
                return pd.read_sql_query("SELECT * FROM events ORDER BY id", con)
            # The newest by the primary key, then oldest first: no scan of a log of a million events.
            return pd.read_sql_query(
                "SELECT * FROM (SELECT * FROM events ORDER BY id DESC LIMIT ?) ORDER BY id", con, params=(int(last),)
            )

    def version(self) -> tuple[int, int]:
        """A value that changes whenever the decisions may have: the newest event's id (events are
        append-only and every change, an undo included, is one; ids are never reused) and the
        file's inode (a recovered store is a new file). Cheap (one indexed lookup), so views of
        the decisions can be cached by it and re-read only after a change."""
        with self._connect() as con:
            newest = con.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        try:
            inode = self.path.stat().st_ino
        except OSError:
            inode = 0
        return int(inode), int(newest)

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


# -- recovery of a damaged database ----------------------------------------------------------
@dataclass(frozen=True)
class Recovery:
    """What :func:`recover` did: where the damaged file now is, how many events and decisions the
    new database holds, and where they came from."""

    aside: Path | None
    events: int
    decisions: int
    sources: tuple[str, ...]


def _salvage_rows(db: Path, table: str, columns: tuple[str, ...]) -> list[dict]:
    """Every row of ``table`` that SQLite can still read, one rowid range at a time, so a damaged
    page loses only its own rows; [] when the file cannot be opened at all."""
    rows: list[dict] = []
    try:
        con = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
    except sqlite3.Error:
        return rows
    try:
        try:
            top = con.execute(f"SELECT MAX(rowid) FROM {table}").fetchone()[0] or 0
        except sqlite3.Error:
            top = 1 << 20  # the index is unreadable: probe rowids blindly up to a bound
        step = 256
        for lo in range(0, top + 1, step):
            try:
                found = con.execute(
                    f"SELECT {', '.join(columns)} FROM {table} WHERE rowid BETWEEN ? AND ?", (lo, lo + step - 1)
                ).fetchall()
            except sqlite3.Error:
                found = []
                for rowid in range(lo, lo + step):
                    try:
                        found += con.execute(
                            f"SELECT {', '.join(columns)} FROM {table} WHERE rowid = ?", (rowid,)
                        ).fetchall()
                    except sqlite3.Error:
                        continue
            rows.extend(dict(zip(columns, r)) for r in found)
    finally:
        con.close()
    return rows


def _sqlite_recover(db: Path, work: Path) -> Path | None:
    """``sqlite3 DB .recover`` into a fresh database (the sqlite3 command's page-level recovery),
    or None when the command is not installed or fails."""
    exe = shutil.which("sqlite3")
    if exe is None:
        return None
    out = work / "recovered.sqlite"
    try:
        dump = subprocess.run([exe, str(db), ".recover"], capture_output=True, timeout=600, check=False)
        if dump.returncode != 0 or not dump.stdout:
            return None
        subprocess.run([exe, str(out)], input=dump.stdout, capture_output=True, timeout=600, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out if out.is_file() else None


def _read_log(path: Path) -> list[dict]:
    """The JSON-lines event log; a line torn by a crash is skipped."""
    events = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return events
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and set(EVENT_COLUMNS) <= set(event):
            events.append(event)
    return events


def replay(events: Iterable[dict]) -> dict[str, tuple[str, int, int]]:
    """The decisions ``{sample_id: (action, label, original_label)}`` that a log of events
    (oldest first, as the ``events`` table stores them) leads to."""
    state: dict[str, tuple[str, int, int]] = {}
    by_batch: dict[tuple[int, str], dict] = {}
    for e in events:
        sid, original = e["sample_id"], int(e["original_label"])
        if e["action"] in ACTIONS:
            state[sid] = (e["action"], int(e["new_label"]), original)
            by_batch.setdefault((int(e["batch"]), sid), e)  # the first event: the state before the batch
        elif e["action"] == "clear":
            state.pop(sid, None)
            by_batch.setdefault((int(e["batch"]), sid), e)
        elif e["action"] == "undo" and e["undoes"] is not None:
            undone = by_batch.get((int(e["undoes"]), sid))
            if undone is None:
                continue  # the undone event was lost with the damage: the later state stands
            if undone["old_action"] is None:
                state.pop(sid, None)
            else:
                state[sid] = (undone["old_action"], int(undone["old_label"]), original)
    return state


def recover(path: Path) -> Recovery:
    """Move a damaged decisions database aside (``<name>.damaged-<time>``, with its -wal and -shm
    files; nothing is deleted) and build a new one at ``path`` from every event that SQLite, the
    ``sqlite3 .recover`` command or the JSON-lines log can still give. The decisions are the replay
    of those events; rows of the damaged ``decisions`` table that survived win over the replay."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}") if path.exists() else None
    if aside is not None:
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{path}{suffix}").exists():
                os.replace(f"{path}{suffix}", f"{aside}{suffix}")
        fsync_path(path.parent)
    events: dict[int, dict] = {}
    current: dict[str, tuple[str, int, int]] = {}
    sources = []
    with tempfile.TemporaryDirectory(prefix="oga-recover-") as tmp:
        candidates = [aside] if aside is not None else []
        rescued = _sqlite_recover(aside, Path(tmp)) if aside is not None else None
        if rescued is not None:
            candidates.append(rescued)
        for db in candidates:
            found = _salvage_rows(db, "events", EVENT_COLUMNS)
            rows = _salvage_rows(db, "decisions", ("sample_id", "action", "label", "original_label"))
            if found or rows:
                sources.append("sqlite3 .recover" if db == rescued else "the damaged database")
            for e in found:
                events.setdefault(int(e["id"]), e)
            for r in rows:
                if r["action"] in ACTIONS:
                    current[r["sample_id"]] = (r["action"], int(r["label"]), int(r["original_label"]))
    logged = _read_log(_log_path(path))
    if logged:
        sources.append("the event log")
    for e in logged:
        events.setdefault(int(e["id"]), e)
    ordered = [events[k] for k in sorted(events)]
    state = {**replay(ordered), **current}
    store = DecisionStore(path)
    now = time.time()
    with store._connect(write=True) as con:
        con.execute("BEGIN IMMEDIATE")
        con.executemany(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})",
            [tuple(e[c] for c in EVENT_COLUMNS) for e in ordered],
        )
        con.executemany(
            "INSERT INTO decisions VALUES (?, ?, ?, ?, ?)",
            [(sid, action, label, original, now) for sid, (action, label, original) in sorted(state.items())],
        )
        con.execute("COMMIT")
    return Recovery(aside, len(ordered), len(state), tuple(dict.fromkeys(sources)))

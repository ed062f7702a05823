"""oga_core/decisions.py: keep / drop / relabel / clear, batches and undo, an append-only log,
reattachment by data id, and durability when the writing process is killed."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from oga_core.decisions import Decision, DecisionStore
from oga_core.errors import OgaError


@pytest.fixture
def store(tmp_path) -> DecisionStore:
    return DecisionStore(tmp_path / "ws" / "decisions.sqlite")


def _state(store: DecisionStore) -> dict[str, tuple[str, int]]:
    return {r.sample_id: (r.action, r.label) for r in store.table().itertuples()}


def _raw_events(store: DecisionStore) -> list[tuple]:
    with sqlite3.connect(store.path) as con:
        return con.execute("SELECT * FROM events ORDER BY id").fetchall()


def test_keep_drop_relabel_clear(store):
    store.decide("a", "keep", original_label=1)
    store.decide("b", "drop", original_label=2)
    store.decide("c", "relabel", original_label=0, label=3)
    assert _state(store) == {"a": ("keep", 1), "b": ("drop", 2), "c": ("relabel", 3)}
    assert store.get("c") == {"action": "relabel", "label": 3, "original_label": 0}
    assert store.get("zzz") is None
    assert store.counts() == {"keep": 1, "drop": 1, "relabel": 1}

    store.decide("a", "relabel", original_label=1, label=4)  # a new decision replaces the old
    store.decide("b", "clear", original_label=2)
    assert _state(store) == {"a": ("relabel", 4), "c": ("relabel", 3)}
    assert store.counts() == {"keep": 0, "drop": 0, "relabel": 2}
    assert store.table()["original_label"].tolist() == [0, 1]  # c then a, by update time

    with pytest.raises(OgaError, match="unknown action 'delete'"):
        store.decide("a", "delete", original_label=1)
    with pytest.raises(OgaError, match="needs a new label"):
        store.decide("a", "relabel", original_label=1)
    assert store.decide_many([]) == 0
    assert _state(store) == {"a": ("relabel", 4), "c": ("relabel", 3)}  # refused input changed nothing


def test_bulk_batch_is_undone_as_one(store):
    store.decide("x", "keep", original_label=0)
    n = store.decide_many([Decision(f"s{i}", "drop", i % 3) for i in range(5)] + [Decision("x", "relabel", 0, 2)])
    assert n == 6 and store.counts() == {"keep": 0, "drop": 5, "relabel": 1}
    assert len(set(store.events()["batch"])) == 2
    undone = store.undo()
    assert sorted(undone) == ["s0", "s1", "s2", "s3", "s4", "x"]
    assert _state(store) == {"x": ("keep", 0)}  # the whole batch reverted, the earlier decision kept


def test_undo_chain(store):
    store.decide("a", "drop", original_label=0)  # batch 1
    store.decide("a", "relabel", original_label=0, label=5)  # batch 2
    store.decide("b", "keep", original_label=1)  # batch 3
    store.decide("a", "clear", original_label=0)  # batch 4
    assert _state(store) == {"b": ("keep", 1)}
    assert store.undo() == ["a"]
    assert _state(store) == {"a": ("relabel", 5), "b": ("keep", 1)}
    assert store.undo() == ["b"]
    assert _state(store) == {"a": ("relabel", 5)}
    store.decide("c", "drop", original_label=2)  # a new decision between undos
    assert store.undo() == ["c"]
    assert store.undo() == ["a"]
    assert _state(store) == {"a": ("drop", 0)}
    assert store.can_undo()
    assert store.undo() == ["a"]
    assert _state(store) == {} and not store.can_undo()
    assert store.undo() == []


def test_same_sample_twice_in_one_batch_undoes_to_the_start(store):
    store.decide("a", "keep", original_label=0)
    store.decide_many([Decision("a", "drop", 0), Decision("a", "relabel", 0, 2)])
    assert _state(store) == {"a": ("relabel", 2)}
    store.undo()
    assert _state(store) == {"a": ("keep", 0)}


def test_events_are_append_only(store):
    store.decide("a", "drop", original_label=0)
    store.decide_many([Decision("b", "relabel", 1, 2), Decision("c", "keep", 2)])
    first = store.events()
    raw_first = _raw_events(store)
    assert len(raw_first) == 3 and first["action"].tolist() == ["drop", "relabel", "keep"]
    assert first[["old_action", "old_label", "new_label"]].iloc[1].tolist() == [None, 1, 2]
    store.undo()
    store.decide("a", "clear", original_label=0)
    store.undo()
    store.undo()
    after = store.events()
    assert len(after) == len(first) + 2 + 1 + 1 + 1  # undo(2 rows), clear, undo(clear), undo(drop)
    # every earlier row is still there, unchanged: the log is only ever appended to
    assert _raw_events(store)[: len(first)] == raw_first
    assert after["id"].is_monotonic_increasing and after["id"].is_unique
    undos = after[after["action"] == "undo"]
    assert undos["undoes"].astype(int).tolist() == [2, 2, 4, 1]
    assert _state(store) == {}


def test_reopened_store_sees_every_decision(store):
    store.decide("a", "relabel", original_label=0, label=1)
    again = DecisionStore(store.path)
    assert _state(again) == {"a": ("relabel", 1)}
    assert again.undo() == ["a"] and _state(store) == {}


def test_decisions_reattach_across_analyses_of_the_same_data(digits_analysis):
    from oga_core.pipeline import analyze

    store = digits_analysis.workspace.decisions()
    assert store.path == digits_analysis.workspace.folder / "decisions.sqlite"
    first = digits_analysis.scores.iloc[0]
    store.decide(
        first["sample_id"], "relabel", original_label=int(first["label"]), label=(int(first["label"]) + 1) % 10
    )
    # another model setting, scope, detector and budget on the same (noised) data: same data id
    other = analyze(
        dataclasses.replace(digits_analysis.config, epochs=1, batch_size=256, scope="last", detector="loss", budget=0.1)
    )
    assert other.data_id == digits_analysis.data_id and other.keys["model"] != digits_analysis.keys["model"]
    reopened = other.workspace.decisions()
    assert reopened.get(first["sample_id"])["action"] == "relabel"
    # other noise is other data: its own, empty store
    noisier = dataclasses.replace(digits_analysis.config, noise=0.3, epochs=0)
    from oga_core.pipeline import load_data
    from oga_core.store import Cache

    assert load_data(noisier, Cache()).data_id != digits_analysis.data_id
    reopened.undo()


WRITER = textwrap.dedent(
    """
    import sys
    from oga_core.decisions import DecisionStore

    store = DecisionStore(sys.argv[1])
    for i in range(100000):
        store.decide(f"s{i:06d}", "relabel" if i % 3 else "drop", original_label=i % 7, label=(i + 1) % 7)
        print(f"s{i:06d}", flush=True)  # reported only after decide() returned
    """
)


def test_every_reported_decision_survives_sigkill(tmp_path):
    path = tmp_path / "decisions.sqlite"
    DecisionStore(path)  # schema first, so the writer starts committing at once
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    reported = []
    deadline = time.monotonic() + 60
    try:
        while len(reported) < 40 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            reported.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)  # mid-way: it is committing the next one right now
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    reported += rest.split()
    assert proc.returncode == -signal.SIGKILL
    assert len(reported) >= 40, err
    store = DecisionStore(path)
    state = _state(store)
    missing = [sid for sid in reported if sid not in state]
    assert not missing, missing
    for sid in reported:
        i = int(sid[1:])
        assert state[sid] == (("relabel", (i + 1) % 7) if i % 3 else ("drop", i % 7))
    assert len(state) - len(reported) in (0, 1)  # at most the one committed but not yet printed
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT COUNT(*) FROM events").fetchone()[0] == len(state)

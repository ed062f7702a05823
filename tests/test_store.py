"""oga_core/store.py: content-keyed cache entries that are whole or absent, arrays, JSON, home."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oga_core.store import Cache, cache_key, load_array, oga_home, read_json, save_arrays, write_json


def test_cache_key_is_a_content_hash():
    assert cache_key(a=1, b="x") == cache_key(b="x", a=1)  # keyword order does not matter
    assert cache_key(a=1, b="x") != cache_key(a=2, b="x")
    assert cache_key(a=1) != cache_key(a="1")
    assert cache_key(p=Path("/x"), t=(1, 2)) == cache_key(p="/x", t=[1, 2])
    assert len(cache_key(a=1)) == 24 and int(cache_key(a=1), 16) >= 0


def test_entry_is_published_only_when_the_block_ends_cleanly(tmp_path):
    cache = Cache(tmp_path / "c")
    assert cache.get("step", "k") is None
    with cache.entry("step", "k") as folder:
        save_arrays(folder, x=np.arange(3), skipped=None)
        assert cache.get("step", "k") is None  # not visible while being written
    hit = cache.get("step", "k")
    assert hit == tmp_path / "c" / "step" / "k"
    np.testing.assert_array_equal(load_array(hit, "x"), np.arange(3))
    assert load_array(hit, "skipped") is None

    with pytest.raises(RuntimeError), cache.entry("step", "broken") as folder:
        save_arrays(folder, x=np.ones(2))
        raise RuntimeError("crash mid-write")
    assert cache.get("step", "broken") is None
    assert sorted(p.name for p in (tmp_path / "c" / "step").iterdir()) == ["k"]  # no temp folder left


def test_incomplete_leftovers_are_replaced(tmp_path):
    cache = Cache(tmp_path)
    leftover = cache.path("s", "k")
    leftover.mkdir(parents=True)
    (leftover / "half.npy").write_bytes(b"partial")
    assert cache.get("s", "k") is None  # no .complete marker
    with cache.entry("s", "k") as folder:
        save_arrays(folder, y=np.zeros(2))
    assert not (leftover / "half.npy").exists() and load_array(cache.get("s", "k"), "y").tolist() == [0, 0]
    cache.clear()
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_arrays_load_memory_mapped(tmp_path):
    save_arrays(tmp_path, a=np.arange(12, dtype=np.float32).reshape(3, 4))
    m = load_array(tmp_path, "a", mmap=True)
    assert isinstance(m, np.memmap) and m.shape == (3, 4) and float(m[2, 3]) == 11.0


def test_json_round_trip_with_numpy_and_paths(tmp_path):
    path = tmp_path / "sub" / "run.json"
    write_json(path, {"n": np.int64(3), "x": np.float32(0.5), "arr": np.arange(3), "p": Path("/a/b")})
    assert read_json(path) == {"n": 3, "x": 0.5, "arr": [0, 1, 2], "p": "/a/b"}
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]  # the temp file was renamed
    with pytest.raises(TypeError, match="not JSON serialisable"):
        write_json(path, {"bad": object()})
    assert read_json(path)["n"] == 3  # a failed write leaves the old file intact


def test_oga_home_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OGA_HOME", str(tmp_path / "h"))
    assert oga_home() == tmp_path / "h"
    assert Cache().root == tmp_path / "h" / "cache"
    monkeypatch.delenv("OGA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert oga_home() == tmp_path / ".oga"

"""Merging the shards of one quality grid (``oga bench --shard K/N`` then ``--merge``): the union
of their runs in grid order, complete only when every run of the grid is there, and the same after
the parts went through JSON (lists, not tuples) as they do on disk."""

from __future__ import annotations

import json

from oga_core.bench.results import merge_results
from oga_core.bench.settings import QualitySettings


def _part(grid: list, runs: list) -> dict:
    return {"signature": {"s": 1}, "grid": grid, "runs": runs, "complete": True}


def _run(key: list) -> dict:
    return {"dataset": key[0], "kind": key[1], "rate": key[2], "seed": key[3], "metrics": {}}


def test_shards_merge_into_the_grid_in_order_after_a_json_round_trip():
    grid = [[d, r, k, rate, s] for d, r, k, rate, s in QualitySettings().grid()]
    grid = [[d if r == "usual" else f"{d} memorise", k, rate, s] for d, r, k, rate, s in grid]
    one, two = grid[0::2], grid[1::2]
    a = json.loads(json.dumps({"mode": "full", "quality": _part(grid, [_run(k) for k in one])}))
    b = json.loads(json.dumps({"mode": "full", "quality": _part(grid, [_run(k) for k in two])}))
    merged = merge_results(a, b)["quality"]
    assert [[r["dataset"], r["kind"], r["rate"], r["seed"]] for r in merged["runs"]] == grid
    assert merged["complete"]


def test_a_missing_run_leaves_the_merge_incomplete():
    grid = [["demo:digits", "symmetric", 0.2, s] for s in range(3)]
    a = json.loads(json.dumps({"mode": "full", "quality": _part(grid, [_run(grid[0])])}))
    b = json.loads(json.dumps({"mode": "full", "quality": _part(grid, [_run(grid[2])])}))
    merged = merge_results(a, b)["quality"]
    assert len(merged["runs"]) == 2 and not merged["complete"]


def test_a_run_of_some_settings_keeps_the_full_grid_and_its_gaps():
    """Merging a run of a few missing settings (its own, shorter grid) into an unfinished full
    grid: the full grid stays, its runs are added, and the part is complete only once every
    setting of the full grid has a run."""
    grid = [["demo:digits", "symmetric", 0.2, s] for s in range(4)]
    full = json.loads(json.dumps({"mode": "full", "quality": _part(grid, [_run(grid[0])])}))
    full["quality"]["complete"] = False
    some = json.loads(json.dumps({"mode": "full", "quality": _part(grid[2:3], [_run(grid[2])])}))
    merged = merge_results(full, some)["quality"]
    assert merged["grid"] == grid and len(merged["runs"]) == 2 and not merged["complete"]
    rest = json.loads(
        json.dumps({"mode": "full", "quality": _part([grid[3], grid[1]], [_run(grid[3]), _run(grid[1])])})
    )
    merged = merge_results({"mode": "full", "quality": merged}, rest)["quality"]
    assert merged["grid"] == grid and merged["complete"]
    assert [r["seed"] for r in merged["runs"]] == [0, 1, 2, 3]


def test_the_full_grid_runs_memorising_at_one_seed_on_structured_flips_only():
    grid = QualitySettings().grid()
    memorise = [g for g in grid if g[1] == "memorise"]
    assert memorise and all(seed == 0 and kind in ("pair", "lookalike") for _, _, kind, _, seed in memorise)
    assert {d for d, *_ in memorise} == set(QualitySettings().datasets)
    assert QualitySettings.for_run(quick=True).grid() == [("demo:digits", "usual", "symmetric", 0.2, 0)]

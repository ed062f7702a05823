"""benchmarks/curation.py and benchmarks/neighbors.py --quick: they run in CI time, print their
tables, write nothing but --json (no docs/, no $OGA_HOME cache or workspace), and their numbers
are in range. Nothing about time or gains is asserted (CI machines vary; the quick setting trains
4 epochs)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oga_core.bench import curation, neighbors

REPO = Path(__file__).resolve().parent.parent


def _digests() -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((REPO / "docs").iterdir()) if p.is_file()
    }


@pytest.mark.parametrize("script", ["curation", "neighbors"])
def test_quick_scripts_write_only_their_json(script, tmp_path):
    before = _digests()
    home = tmp_path / "home"
    env = {**os.environ, "OGA_HOME": str(home), "OGA_THREADS": "1"}
    out = tmp_path / f"{script}.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{script}.py"), "--quick", "--json", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| " in done.stdout and "Traceback" not in done.stderr
    assert _digests() == before
    assert {p.name for p in tmp_path.iterdir()} <= {"home", out.name}
    assert not (home / "workspaces").exists() and not list((home / "cache").glob("*/*"))
    part = json.loads(out.read_text())
    if script == "curation":
        (run,) = part["runs"]
        assert set(run["heldout_accuracy_true_labels"]) == set(curation.VARIANTS)
        assert all(0.0 <= v <= 1.0 for v in run["heldout_accuracy_true_labels"].values())
        assert run["n_heldout"] == 180 and run["k"] == 90 and 0.5 < run["precision_top_k"] <= 1.0
        for variant in curation.VARIANTS[1:]:
            assert run["product_summary"][variant]["samples"] <= 180
        assert "| oracle |" in done.stdout and "gain: relabel top k" in done.stdout
    else:
        (row,) = part["sizes"]
        assert row["n"] == 5000 and row["exact_query_ms"] > 0 and "pynndescent_build_s" not in row
        assert [g["dims"] for g in part["graph"]] == [10, 128]


def test_decisions_of_each_variant(digits_analysis):
    s = digits_analysis.scores
    drop = curation.decisions_for(s, "drop top k")
    assert len(drop) == 90 and set(drop["action"]) == {"drop"}
    relabel = curation.decisions_for(s, "relabel top k")
    flagged = s[s["flagged"]].set_index("sample_id")
    changed = relabel[relabel["action"] == "relabel"]
    assert (changed["label"].to_numpy() == flagged.loc[changed["sample_id"], "pred"].to_numpy()).all()
    kept = flagged.loc[relabel.loc[relabel["action"] == "keep", "sample_id"]]
    assert (kept["pred"] == kept["label"]).all()
    oracle = curation.decisions_for(s, "oracle")
    assert set(oracle["sample_id"]) == set(s.loc[s["noisy"], "sample_id"])
    assert neighbors.NeighborSettings.for_run(quick=True).pynndescent is False

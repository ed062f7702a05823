"""`oga bench --quick` end to end: the report and its JSON exist, hold every table and score
column, and the numbers are in range. Nothing about time is asserted (CI machines vary)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from oga_core.bench.columns import COLUMNS, NAMES
from oga_core.bench.quality import METRICS


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One quick run (all three parts) through the CLI, shared by the tests of this module."""
    from oga_core.cli import main

    out = tmp_path_factory.mktemp("bench") / "bench.md"
    assert main(["bench", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    return out, json.loads(out.with_suffix(".json").read_text())


def test_report_files_and_sections(quick_bench):
    out, results = quick_bench
    text = out.read_text()
    assert results["mode"] == "quick"
    for heading in (
        "## Machine",
        "## Detection quality",
        "### AUROC",
        "### Average precision",
        "## Speed and memory",
        "### The cache",
        "## Scaling",
        "Where OGA does not win",
    ):
        assert heading in text, heading
    for col in NAMES:  # every score column, cleanlab and random included, is in the tables
        assert f"`{col}`" in text
    plot = out.with_name("bench_auroc.png")
    assert plot.is_file() and plot.read_bytes()[:4] == b"\x89PNG"
    assert f"]({plot.name})" in text
    assert "GPU (CUDA): not measured" in text  # no GPU run was merged: said, not left blank


def test_quality_numbers(quick_bench):
    _, results = quick_bench
    runs = results["quality"]["runs"]
    assert len(runs) == 1 and results["quality"]["complete"]
    run = runs[0]
    assert set(run["metrics"]) == set(NAMES)
    for col, metrics in run["metrics"].items():
        assert set(metrics) == set(METRICS)
        for name, value in metrics.items():
            assert 0.0 <= value <= 1.0, (col, name, value)
    for name, acc in run["test_accuracy"].items():
        assert 0.0 <= acc <= 1.0, name
    assert {"none", "oracle", "oga_l1", "cleanlab", "random"} <= set(run["test_accuracy"])
    # Known-good behaviour: on 20% symmetric digits the gradient norm finds flipped labels far
    # better than chance, and so does confident learning; random scores sit near 0.5.
    assert run["metrics"]["oga_l1"]["auroc"] > 0.7
    assert run["metrics"]["cleanlab"]["auroc"] > 0.7
    assert abs(run["metrics"]["random"]["auroc"] - 0.5) < 0.15
    assert run["metrics"]["oga_l1"]["auroc"] > run["metrics"]["random"]["auroc"] + 0.15
    found = run["cleanlab_find_label_issues"]
    assert found["flagged"] > 0 and 0 <= found["recall"] <= 1


def test_speed_and_scaling_numbers(quick_bench):
    _, results = quick_bench
    speed = results["speed"]["cpu"]
    assert set(speed["models"]) == {"small_cnn", "resnet18"}
    for model, case in speed["models"].items():
        for key, row in case["rows"].items():
            assert row.get("seconds") is not None and row["seconds"] > 0, (model, key, row)
        for key, value in case["ratios"].items():
            if value is not None:
                assert value > 0 and math.isfinite(value), (model, key)
        assert case["ratios"]["last_norms_over_inference"] is not None
        assert case["ratios"]["speedup_ghost_vs_loop"] is not None
        for ref, oga in (("loop_all", "ghost_all"), ("vmap_last", "last_norms")):
            row = case["rows"][ref]  # paired: OGA timed again on the reference's own samples
            assert row["measured_on"] <= case["rows"][oga]["n"] and row["oga_seconds_same_samples"] > 0
        paired = case["rows"]["loop_all"]
        assert case["ratios"]["speedup_ghost_vs_loop"] == pytest.approx(
            paired["measured_seconds"] / paired["oga_seconds_same_samples"]
        )
    small = speed["models"]["small_cnn"]
    assert small["ratios"]["ghost_all_memory_over_train_epoch"] > 0
    assert small["memory"]["ghost_all"]["extra_mib"] >= 0
    cache = speed["cache"]
    assert cache["hit_stages"] == ["decode", "train", "gradients", "scores"]
    assert cache["hit_seconds"] > 0 and cache["rescore_seconds"] > 0
    sizes = results["scaling"]["sizes"]
    assert [s["n"] for s in sizes] == [2000]
    assert sizes[0]["analyze_wall_seconds"] > 0 and sizes[0]["analyze_peak_rss_mib"] > 0


def test_merge_adds_a_gpu_column(quick_bench, tmp_path):
    """A speed run from another machine (here: the CPU part relabelled cuda) merges as a column."""
    from oga_core.cli import main

    out, results = quick_bench
    other = {"schema": results["schema"], "mode": "quick", "speed": {"cuda": results["speed"]["cpu"]}}
    other_path = tmp_path / "gpu.json"
    other_path.write_text(json.dumps(other))
    target = tmp_path / "merged.md"
    target.with_suffix(".json").write_text(json.dumps(results))
    assert main(["bench", "--merge", str(other_path), "--out", str(target)]) == 0
    merged = json.loads(target.with_suffix(".json").read_text())
    assert set(merged["speed"]) == {"cpu", "cuda"} and merged["quality"] == results["quality"]
    assert "GPU (CUDA): not measured" not in target.read_text()


def test_bad_part_is_one_line_error(capsys):
    from oga_core.cli import main

    assert main(["bench", "--parts", "quality,nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err


def test_columns_are_declared_once():
    """Every quality column names where its scores come from, and the retrained ones exist."""
    from oga_core.bench.peers import PEERS
    from oga_core.bench.settings import QualitySettings
    from oga_core.detectors import DETECTORS, SCORE_COLUMNS

    assert len(set(NAMES)) == len(NAMES)
    for c in COLUMNS:
        if c.source == "peer":
            assert c.key in PEERS, c
        else:
            assert c.source in ("last", "all") and c.key in SCORE_COLUMNS, c
            assert c.family == next(d.family for d in DETECTORS.values() if d.column == c.key)
    for quick in (False, True):
        assert set(QualitySettings.for_run(quick=quick).retrain) <= set(NAMES)


def test_interrupted_quality_run_resumes(quick_bench, monkeypatch):
    """An interrupted quality part (complete=False) reuses its finished runs instead of retraining."""
    import torch

    from oga_core.bench import quality
    from oga_core.bench.settings import QualitySettings

    _, results = quick_bench
    previous = json.loads(json.dumps({**results["quality"], "complete": False}))
    monkeypatch.setattr(quality, "run_setting", lambda *a, **k: pytest.fail("a finished run was recomputed"))
    part = quality.run_quality(QualitySettings.for_run(quick=True), torch.device("cpu"), previous=previous)
    assert part["complete"] and part["runs"] == previous["runs"]


def test_readme_block_is_generated(quick_bench, tmp_path):
    from oga_core.bench.report import README_END, README_START, headline, update_readme

    _, results = quick_bench
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold numbers\n{README_END}\noutro\n")
    assert update_readme(readme, headline(results, "docs/benchmarks.md"))
    text = readme.read_text()
    assert "old numbers" not in text and "AUROC" in text and "inference pass" in text
    assert text.startswith("intro\n") and text.endswith("outro\n")
    assert not update_readme(tmp_path / "missing.md", "x")


def test_the_committed_report_is_its_json_rendered():
    """docs/benchmarks.md is exactly what the renderer makes of docs/benchmarks.json."""
    from oga_core.bench import report

    repo = Path(__file__).resolve().parent.parent
    results = json.loads((repo / "docs" / "benchmarks.json").read_text())
    page = report.render(results, plot_name="benchmarks_auroc.png", json_name="benchmarks.json")
    assert page == (repo / "docs" / "benchmarks.md").read_text()

"""`oga bench --quick` end to end: the report and its JSON exist, hold every table and score
column, and the numbers are in range; the run leaves a checkout's committed report, README and
`git status` alone; `--render` remakes a page byte for byte. Nothing about time is asserted (CI
machines vary)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from oga_core.bench.columns import COLUMNS, NAMES
from oga_core.bench.quality import METRICS

REPO = Path(__file__).resolve().parent.parent
# What a checkout holds that a benchmark run could wrongly overwrite.
COMMITTED = ("README.md", ".gitignore", "docs/benchmarks.md", "docs/benchmarks.json", "docs/benchmarks_auroc.png")


def _digests(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in COMMITTED}


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in checkout: README, .gitignore and the committed report, under git when there is one."""
    root = tmp_path_factory.mktemp("checkout")
    for name in COMMITTED:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, root / name)
    if shutil.which("git"):
        _git(root, "init", "-q")
        _git(root, "add", ".")
        _git(root, "commit", "-q", "-m", "committed report")
    return root


@pytest.fixture(scope="module")
def quick_bench(checkout: Path) -> tuple[Path, dict]:
    """One quick run (every part) through the CLI with the default --out, from inside the
    stand-in checkout, shared by the tests of this module."""
    from oga_core.cli import main

    before = _digests(checkout)
    old = Path.cwd()
    os.chdir(checkout)
    try:
        assert main(["bench", "--quick", "--device", "cpu"]) == 0
    finally:
        os.chdir(old)
    assert _digests(checkout) == before
    out = checkout / "oga-bench" / "benchmarks.md"
    return out, json.loads(out.with_suffix(".json").read_text())


def test_quick_run_leaves_the_checkout_clean(checkout, quick_bench):
    """The issue's goal: `oga bench --quick` leaves `git status` clean (docs/ and README untouched)."""
    out, _ = quick_bench
    assert out.is_file() and out.parent.name == "oga-bench"
    assert {p.name for p in (checkout / "docs").iterdir()} == {n.split("/")[1] for n in COMMITTED if "/" in n}
    if shutil.which("git"):
        assert _git(checkout, "status", "--porcelain") == ""


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
        "## The app at scale",
        "Where OGA does not win",
        "The default ranking against its peers",
        "Every score against the same goal",
        "### Cost",
        "its health check",
    ):
        assert heading in text, heading
    for col in NAMES:  # every score column, cleanlab and random included, is in the tables
        assert f"`{col}`" in text
    plot = out.with_name("benchmarks_auroc.png")
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
    assert 0.0 <= run["test_accuracy"] <= 1.0 and run["n_heldout"] > 0 and run["epochs"] == 4
    assert run["health"]["verdict"] in ("ok", "underfit", "memorise")
    t = run["seconds"]
    assert t["train_plain"] > 0 and t["train_recording"] > 0 and t["cross_validation"] > 0
    # Known-good behaviour: on 20% symmetric digits the scores find flipped labels far better than
    # chance, and so does confident learning; random scores sit near 0.5.
    for col in ("oga_l1", "oga_l2_traj", "margin_tracin", "aum", "cleanlab_nm"):
        assert run["metrics"][col]["auroc"] > 0.7, col
    assert abs(run["metrics"]["random"]["auroc"] - 0.5) < 0.15
    assert run["metrics"]["oga_l1"]["auroc"] > run["metrics"]["random"]["auroc"] + 0.15
    found = run["cleanlab_find_label_issues"]
    assert found["flagged"] > 0 and 0 <= found["recall"] <= 1


def test_speed_and_scaling_numbers(quick_bench):
    _, results = quick_bench
    speed = results["speed"]["cpu"]
    assert set(speed["models"]) == {"cnn", "resnet18"}
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
    small = speed["models"]["cnn"]
    assert small["ratios"]["ghost_all_memory_over_train_epoch"] > 0
    assert small["memory"]["ghost_all"]["extra_mib"] >= 0
    cache = speed["cache"]
    assert cache["hit_stages"] == ["decode", "train", "gradients", "scores"]
    assert cache["hit_seconds"] > 0 and cache["rescore_seconds"] > 0
    sizes = results["scaling"]["sizes"]
    assert [s["n"] for s in sizes] == [2000]
    assert sizes[0]["analyze_wall_seconds"] > 0 and sizes[0]["analyze_peak_rss_mib"] > 0
    decode = results["scaling"]["decode"]
    assert decode["images"] == 200 and all(
        decode[f"{k}_images_per_second"] > 0 for k in ("in_process", "one_worker", "all_cores")
    )


def test_app_numbers(quick_bench):
    """The app part: every action timed at every size, in one process, with its first run apart."""
    from oga_core.bench.app import ACTIONS

    out, results = quick_bench
    part = results["app"]
    assert [s["n"] for s in part["sizes"]] == [1_797, 20_000] and part["settings"]["repeats"] == 2
    for size in part["sizes"]:
        assert "error" not in size, size
        assert set(size["actions"]) == set(ACTIONS)
        for action, timing in size["actions"].items():
            # each action once, then `repeats` times; paging goes to page 2 and back each time
            runs = (2 if action == "next_page" else 1) * (part["settings"]["repeats"] + 1)
            assert timing["first"] > 0 and timing["median"] > 0 and timing["runs"] == runs, (size["n"], action)
        assert size["explore_charts_kib"] > 0
    assert "| open Review (first page) |" in out.read_text() and "× at 20,000" in out.read_text()


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


def test_render_remakes_the_page_byte_for_byte(quick_bench, tmp_path):
    """--render from an unchanged JSON writes the same markdown the run wrote, and leaves the JSON be."""
    from oga_core.cli import main

    out, _ = quick_bench
    target = tmp_path / out.name
    shutil.copyfile(out.with_suffix(".json"), target.with_suffix(".json"))
    assert main(["bench", "--render", "--out", str(target)]) == 0
    assert target.read_text() == out.read_text()
    assert target.with_suffix(".json").read_bytes() == out.with_suffix(".json").read_bytes()


def test_the_committed_report_is_its_json_rendered(tmp_path):
    """docs/benchmarks.md is exactly what the renderer makes of docs/benchmarks.json: after a change
    of the renderer, `oga bench --render --out docs/benchmarks.md` must be run (and committed)."""
    pytest.importorskip("matplotlib")  # without it the page has no figure line
    from oga_core.cli import main

    target = tmp_path / "benchmarks.md"
    shutil.copyfile(REPO / "docs" / "benchmarks.json", target.with_suffix(".json"))
    assert main(["bench", "--render", "--out", str(target)]) == 0
    assert target.read_text() == (REPO / "docs" / "benchmarks.md").read_text()


def test_render_into_docs_refreshes_readme(tmp_path):
    """A render of full results into a docs/ folder rewrites README's block beside it, nothing else."""
    from oga_core.bench.report import README_END, README_START, headline
    from oga_core.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copyfile(REPO / "docs" / "benchmarks.json", docs / "benchmarks.json")
    (tmp_path / "README.md").write_text(f"intro\n{README_START}\nold numbers\n{README_END}\noutro\n")
    assert main(["bench", "--render", "--out", str(docs / "benchmarks.md")]) == 0
    results = json.loads((docs / "benchmarks.json").read_text())
    block = headline(results, "docs/benchmarks.md")
    assert (tmp_path / "README.md").read_text() == f"intro\n{README_START}\n{block}\n{README_END}\noutro\n"
    assert (docs / "benchmarks.json").read_bytes() == (REPO / "docs" / "benchmarks.json").read_bytes()


def test_quick_results_never_go_to_docs(quick_bench, tmp_path, capsys):
    """A quick run, or a merge of quick results, aimed at docs/ is refused before anything is written."""
    from oga_core.cli import main

    _, results = quick_bench
    docs_out = tmp_path / "docs" / "benchmarks.md"
    assert main(["bench", "--quick", "--out", str(docs_out)]) == 2
    assert "docs" in capsys.readouterr().err
    quick_json = tmp_path / "quick.json"
    quick_json.write_text(json.dumps(results))
    assert main(["bench", "--merge", str(quick_json), "--out", str(docs_out)]) == 2
    assert "docs" in capsys.readouterr().err
    assert not (tmp_path / "docs").exists()


def test_render_without_json_is_one_line_error(tmp_path, capsys):
    from oga_core.cli import main

    assert main(["bench", "--render", "--out", str(tmp_path / "none.md")]) == 2
    assert "none.json" in capsys.readouterr().err


def test_modes_are_exclusive(capsys):
    from oga_core.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--quick", "--render"])
    assert exc.value.code == 2 and "not allowed" in capsys.readouterr().err


def test_bad_part_is_one_line_error(capsys):
    from oga_core.cli import main

    assert main(["bench", "--parts", "quality,nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err


def test_columns_are_declared_once():
    """Every quality column names where its scores come from; the grids are what they say."""
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
        grid = QualitySettings.for_run(quick=quick).grid()
        assert grid and len(set(grid)) == len(grid)
    full = QualitySettings.for_run(quick=False)
    assert {r for _, r, *_ in full.grid()} == {"usual", "memorise"}  # the memorising regime is in the full run
    assert {k for d, _, k, *_ in full.grid() if d == "demo:shapes"} == {"lookalike"}


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

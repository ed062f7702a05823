"""oga_core/distributed.py: `oga analyze` across processes with torchrun (gloo on CPU): the same
scores as one process, one set of results written by rank 0, and a failure ends every rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from oga_core.cli import main

TIMEOUT = 600


def _torchrun(tmp_path, home: str, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OGA_HOME": str(tmp_path / home), "OGA_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "oga_core.cli", "analyze", "--data", "demo:digits", "--quiet", *argv]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """A 1-process analysis (2 epochs) and its checkpoint."""
    base = tmp_path_factory.mktemp("one")
    out = base / "one"
    assert main(["analyze", "--data", "demo:digits", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    return base, out


def _float_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if frame[c].dtype.kind == "f"]


def test_two_processes_score_a_checkpoint_exactly_as_one(tmp_path, one_process):
    _, out = one_process
    checkpoint = str(out / "model.pt")
    assert (
        main(["analyze", "--data", "demo:digits", "--checkpoint", checkpoint, "--out", str(tmp_path / "c1"), "--quiet"])
        == 0
    )
    done = _torchrun(tmp_path, "home2", "--checkpoint", checkpoint, "--epochs", "0", "--out", str(tmp_path / "c2"))
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = pd.read_csv(tmp_path / "c1" / "scores.csv"), pd.read_csv(tmp_path / "c2" / "scores.csv")
    assert a["sample_id"].tolist() == b["sample_id"].tolist() and (a["flagged"] == b["flagged"]).all()
    for col in _float_columns(a):
        np.testing.assert_allclose(b[col], a[col], rtol=1e-6, atol=1e-6, err_msg=col)
    run = json.loads((tmp_path / "c2" / "run.json").read_text())
    assert run["world_size"] == 2 and len(run["timings_per_rank"]) == 2
    assert "on 2 processes" in done.stdout and done.stdout.count("samples, 10 classes") == 1  # rank 0 speaks


def test_two_processes_train_like_one(tmp_path, one_process):
    _, out = one_process
    single = json.loads((out / "run.json").read_text())
    done = _torchrun(tmp_path, "home", "--epochs", "2", "--out", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["model.pt", "run.json", "scores.csv"]
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["world_size"] == 2 and run["epochs"] == single["epochs"]
    assert abs(run["train_accuracy"] - single["train_accuracy"]) <= 0.02, (
        run["train_accuracy"],
        single["train_accuracy"],
    )
    scores = pd.read_csv(tmp_path / "two" / "scores.csv")
    assert len(scores) == 1797 and scores["sample_id"].is_unique
    # one workspace, recorded once, by rank 0
    assert len(list((tmp_path / "home").glob("workspaces/*/latest_run.json"))) == 1


def test_a_failure_ends_every_rank_and_records_nothing(tmp_path):
    done = _torchrun(tmp_path, "home", "--epochs", "2", "--lr", "1e12", "--out", str(tmp_path / "bad"))
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("oga: error:")]
    assert errors and all("training diverged" in e for e in errors) and len(errors) <= 2
    assert "Traceback" not in "\n".join(line for line in done.stderr.splitlines() if "oga" in line)
    assert not (tmp_path / "bad" / "scores.csv").exists()
    assert not list((tmp_path / "home").glob("cache/model/*/.complete"))  # no model recorded as complete

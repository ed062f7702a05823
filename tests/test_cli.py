"""oga_core/cli.py: analyze / decide / undo / export headless, and one clear error line for bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from oga_core import options
from oga_core.cli import main
from oga_core.models import build_model, read_state_dict

from helpers import PROGRESS
from helpers import cli_fails as _fails


def _analyze(data: str, out: Path, *extra: str) -> list[str]:
    return ["analyze", "--data", data, "--out", str(out), "--quiet", *extra]


# -- analyze ---------------------------------------------------------------------------------
def test_analyze_digits_writes_scores_and_run(tmp_path, capsys, digits_analysis):
    out = tmp_path / "run"
    assert main(["analyze", "--data", "demo:digits", "--noise", "0.2", "--seed", "0", "--out", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    assert (
        "1797 samples, 10 classes" in stdout
        and f"flagged 90 by {options.DEFAULT_DETECTOR}" in stdout
        and "AUROC vs injected noise" in stdout
    )
    assert [line for line in stderr.splitlines() if not PROGRESS.match(line)] == []

    scores = pd.read_csv(out / "scores.csv")
    required = [
        "sample_id",
        "label",
        "pred",
        "loss",
        "el2n",
        "margin",
        "oga_l1",
        "oga_l2",
        "oga_iforest",
        "flagged",
        "noisy",
        "clean_label",
    ]
    assert set(required) <= set(scores.columns)
    assert len(scores) == 1797 and scores["sample_id"].is_unique
    assert int(scores["flagged"].sum()) == round(0.05 * 1797)
    assert int(scores["noisy"].sum()) == round(0.2 * 1797)
    assert (scores.loc[scores["noisy"], "label"] != scores.loc[scores["noisy"], "clean_label"]).all()
    auroc = roc_auc_score(scores["noisy"], scores["oga_l1"])
    assert auroc >= 0.9, auroc
    # flagged = the top 5% by the ranking score (the default detector's, held-out samples on the trained scale)
    assert scores.loc[scores["flagged"], "score"].min() >= scores.loc[~scores["flagged"], "score"].max()

    run = json.loads((out / "run.json").read_text())
    assert run["config"]["data"] == "demo:digits" and run["config"]["noise"] == 0.2 and run["config"]["seed"] == 0
    assert {"data", "decode", "train", "gradients", "scores", "total"} <= set(run["timings"])
    assert 0.5 < run["train_accuracy"] <= 1.0
    assert run["data_fingerprint"] == digits_analysis.run["data_fingerprint"]
    assert run["detection"]["oga_l1"]["auroc"] == pytest.approx(auroc)
    assert run["num_flagged"] == 90
    state = read_state_dict(out / "model.pt")  # the analysed model, loadable as a checkpoint
    assert state["head.weight"].shape == (10, 128)


def test_skip_unreadable_leaves_the_file_out(tmp_path, capsys, make_images):
    root = make_images(tmp_path / "d", {"a": 4, "b": 4})
    (root / "b" / "broken.png").write_bytes(b"not an image at all")
    small = ["--image-size", "8", "--epochs", "1", "--batch-size", "4"]
    line = _fails(capsys, _analyze(f"folder:{root}", tmp_path / "o1", *small), "broken.png", "unreadable")
    assert str(root / "b" / "broken.png") in line
    assert main(_analyze(f"folder:{root}", tmp_path / "o2", *small, "--skip-unreadable")) == 0
    capsys.readouterr()
    scores = pd.read_csv(tmp_path / "o2" / "scores.csv")
    assert len(scores) == 8 and "b/broken.png" not in set(scores["sample_id"])
    assert "noisy" not in scores.columns  # no noise injected, no truth to report


# -- bad input: one line, exit status 2 --------------------------------------------------------
def test_bad_data_sources(tmp_path, capsys, make_images):
    _fails(capsys, _analyze(f"folder:{tmp_path / 'missing'}", tmp_path / "o"), "does not exist", "missing")
    (tmp_path / "empty").mkdir()
    _fails(capsys, _analyze(f"folder:{tmp_path / 'empty'}", tmp_path / "o"), "no images found")
    one = make_images(tmp_path / "one", {"only": 2})
    _fails(capsys, _analyze(f"folder:{one}", tmp_path / "o"), "found 1 class (only)", "at least 2 classes")
    _fails(capsys, _analyze("s3:bucket/x", tmp_path / "o"), "unknown data source 's3:bucket/x'")
    _fails(capsys, _analyze(f"torchvision:MNIST:{tmp_path}", tmp_path / "o"), "not found under")


def _csv(folder: Path, rows: list[tuple[str, str]], classes: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m.csv").write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    if classes:
        (folder / "classes.txt").write_text("\n".join(classes))
    return folder / "m.csv"


def test_bad_csv_manifests(tmp_path, capsys, make_images):
    make_images(tmp_path / "imgs", {"x": 2})
    ok = ("imgs/x/x_0.png", "cat")
    m = _csv(tmp_path / "a", [("../imgs/x/x_0.png", "cat"), ok], ["cat", "dog"])
    _fails(capsys, _analyze(f"csv:{m}", tmp_path / "o"), "line 2", "leaves the manifest's folder")
    m = _csv(tmp_path / "b", [ok, ("/etc/passwd", "dog")])
    _fails(capsys, _analyze(f"csv:{m}", tmp_path / "o"), "line 3", "must be relative")
    m = _csv(tmp_path, [ok, ("imgs/x/x_1.png", "horse")], ["cat", "dog"])
    _fails(capsys, _analyze(f"csv:{m}", tmp_path / "o"), "label 'horse' is not in the class list")
    m = _csv(tmp_path, [ok, ("imgs/x/x_1.png", "2")], ["cat", "dog"])
    _fails(capsys, _analyze(f"csv:{m}", tmp_path / "o"), "label 2 is out of range 0..1")


def test_bad_checkpoints(tmp_path, capsys):
    torch.save(build_model("small_cnn", num_classes=3, in_channels=1, image_size=8).state_dict(), tmp_path / "three.pt")
    _fails(
        capsys,
        _analyze("demo:digits", tmp_path / "o", "--checkpoint", str(tmp_path / "three.pt")),
        "does not fit this model",
        "head.weight is [3, 128] in the file but [10, 128]",
    )
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    _fails(
        capsys,
        _analyze("demo:digits", tmp_path / "o", "--checkpoint", str(tmp_path / "list.pt")),
        "is not a state dict",
    )
    torch.save({"opt": torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)}, tmp_path / "obj.pt")
    _fails(
        capsys,
        _analyze("demo:digits", tmp_path / "o", "--checkpoint", str(tmp_path / "obj.pt")),
        "holds Python objects beyond tensors (torch.optim.sgd.SGD)",
    )
    _fails(capsys, _analyze("demo:digits", tmp_path / "o", "--checkpoint", str(tmp_path / "nope.pt")), "does not exist")


def test_bad_settings(tmp_path, capsys, monkeypatch):
    _fails(capsys, _analyze("demo:digits", tmp_path / "o", "--model", "vgg_eleven"), "unknown model 'vgg_eleven'")
    # a torchvision architecture by name, on grey digits: it reads RGB, said in one line
    _fails(capsys, _analyze("demo:digits", tmp_path / "o", "--model", "vgg11"), "reads 3-channel")
    _fails(capsys, _analyze("demo:digits", tmp_path / "o", "--budget", "2"), "budget must be a fraction")
    _fails(capsys, _analyze("demo:digits", tmp_path / "o", "--noise", "1.5"), "noise rate")
    _fails(capsys, _analyze("demo:digits", tmp_path / "o", "--device", "tpu"), "unknown device 'tpu'")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _fails(capsys, _analyze("demo:digits", tmp_path / "o", "--device", "cuda"), "no CUDA GPU")
    (tmp_path / "file").write_text("x")
    _fails(capsys, _analyze("demo:digits", tmp_path / "file"), "exists and is not a folder")


def test_more_bad_input_found_in_review(tmp_path, capsys, monkeypatch, make_images):
    """Inputs a first review found escaping as tracebacks, or silently accepted."""
    from PIL import Image

    _fails(capsys, _analyze("demo:digits", tmp_path / "o", "--lr", "-1"), "learning rate must be a positive number")
    _fails(capsys, _analyze("demo:digits", tmp_path / "o", "--lr", "nan"), "learning rate")
    _fails(capsys, _analyze("demo:digits", tmp_path / "o", "--seed", "-1"), "seed must be between")
    _fails(capsys, _analyze("demo:digits", tmp_path / "o", "--batch-size", "1"), "batch size must be at least 2")
    # a mistyped checkpoint is an error even when an analysis without it is in the cache
    _fails(
        capsys,
        _analyze("demo:digits", tmp_path / "o", "--checkpoint", str(tmp_path)),
        "does not exist or is not a file",
    )
    # a tiny file that decodes to 225 megapixels is an unreadable image, named, not a crash
    root = make_images(tmp_path / "bomb", {"a": 2, "b": 2})
    Image.new("1", (15000, 15000)).save(root / "a" / "big.png")
    _fails(capsys, _analyze(f"folder:{root}", tmp_path / "o"), "unreadable image", "big.png")
    # classes.txt written by Notepad: UTF-16 is refused clearly, a UTF-8 BOM is not part of a name
    make_images(tmp_path / "c", {"x": 2})
    m = _csv(tmp_path / "c", [("x/x_0.png", "cat"), ("x/x_1.png", "dog")])
    (tmp_path / "c" / "classes.txt").write_text("cat\ndog\n", encoding="utf-16")
    _fails(capsys, _analyze(f"csv:{m}", tmp_path / "o"), "cannot read", "classes.txt as UTF-8")
    (tmp_path / "c" / "classes.txt").write_text("cat\ndog\n", encoding="utf-8-sig")
    assert main(["decide", "--data", f"csv:{m}", "--sample", "x/x_0.png", "--keep"]) == 0
    (tmp_path / "c" / "classes.txt").write_text("cat\ndog\ncat\n")
    _fails(capsys, _analyze(f"csv:{m}", tmp_path / "o"), "lists cat more than once")
    # the environment
    monkeypatch.setenv("OGA_THREADS", "abc")
    _fails(capsys, _analyze("demo:digits", tmp_path / "o"), "OGA_THREADS must be a whole number")
    monkeypatch.setenv("OGA_THREADS", "1")
    (tmp_path / "home_is_a_file").write_text("x")
    monkeypatch.setenv("OGA_HOME", str(tmp_path / "home_is_a_file"))
    _fails(capsys, ["decide", "--data", "demo:digits", "--sample", "00000", "--keep"], "home_is_a_file")


def test_console_script_prints_one_line_and_no_traceback(tmp_path):
    script = shutil.which("oga") or str(Path(sys.executable).parent / "oga")
    env = {**os.environ, "OGA_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [script, "analyze", "--data", f"folder:{tmp_path / 'nowhere'}", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if not PROGRESS.match(line)]
    assert errors == [f"oga: error: image folder {tmp_path / 'nowhere'} does not exist"], proc.stderr


def test_progress_bars_on_a_terminal(tmp_path, digits_analysis):
    """On a terminal (a pty that reports no size, as under ssh -T or CI) every stage draws a bar."""
    import pty

    script = shutil.which("oga") or str(Path(sys.executable).parent / "oga")
    config = digits_analysis.config  # cached: the command only loads and ranks
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec the console script with the pty as its terminal
        os.environ.update(OGA_THREADS="1", OMP_NUM_THREADS="1")
        os.execv(
            script,
            [
                script,
                "analyze",
                "--data",
                config.data,
                "--noise",
                str(config.noise),
                "--seed",
                str(config.seed),
                "--out",
                str(tmp_path / "o"),
            ],
        )
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the pty
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace").replace("\r", "\n")
    assert os.waitstatus_to_exitcode(status) == 0, text
    for stage in ("data", "decode", "train", "gradients", "scores"):
        assert re.search(rf"{stage}: 100%\|", text), (stage, text)


# -- decide / undo / export ----------------------------------------------------------------------
def test_decide_undo_export_round_trip(tmp_path, capsys, make_images):
    root = make_images(tmp_path / "src", {"cat": 3, "dog": 3})
    data = ["--data", f"folder:{root}"]
    assert main(["decide", *data, "--sample", "cat/cat_0.png", "--sample", "cat/cat_1.png", "--drop"]) == 0
    assert "drop 2 sample(s)" in capsys.readouterr().out
    assert main(["decide", *data, "--sample", "dog/dog_0.png", "--relabel", "cat"]) == 0
    assert main(["decide", *data, "--sample", "dog/dog_1.png", "--relabel", "0"]) == 0  # by index
    assert main(["undo", *data]) == 0
    assert "undid the last decision on dog/dog_1.png" in capsys.readouterr().out

    out = tmp_path / "clean.csv"
    assert main(["export", *data, "--out", str(out), "--folder", str(tmp_path / "clean")]) == 0
    printed = capsys.readouterr().out
    assert "wrote 4 rows" in printed and "copied 4 images in 2 classes" in printed
    manifest = pd.read_csv(out)
    assert manifest["sample_id"].tolist() == ["cat/cat_2.png", "dog/dog_0.png", "dog/dog_1.png", "dog/dog_2.png"]
    assert manifest.set_index("sample_id").loc["dog/dog_0.png", "label"] == "cat"
    assert manifest.set_index("sample_id").loc["dog/dog_1.png", "action"] == "undecided"
    assert sorted(p.name for p in (tmp_path / "clean" / "cat").iterdir()) == ["cat_2.png", "dog_0.png"]

    assert main(["export", *data, "--out", str(tmp_path / "marked.csv"), "--dropped", "mark"]) == 0
    marked = pd.read_csv(tmp_path / "marked.csv")
    assert len(marked) == 6 and (marked["action"] == "drop").sum() == 2
    assert main(["undo", *data]) == 0 and main(["undo", *data]) == 0 and main(["undo", *data]) == 0
    assert "nothing to undo" in capsys.readouterr().out


def test_bad_decisions_and_exports(tmp_path, capsys, make_images):
    root = make_images(tmp_path / "src", {"cat": 2, "dog": 2})
    data = ["--data", f"folder:{root}"]
    _fails(capsys, ["decide", *data, "--sample", "cat/nope.png", "--keep"], "no sample 'cat/nope.png'")
    _fails(capsys, ["decide", *data, "--sample", "cat/cat_0.png", "--relabel", "horse"], "unknown class 'horse'")
    _fails(capsys, ["decide", *data, "--sample", "cat/cat_0.png", "--relabel", "7"], "unknown class '7'")
    out = ["--out", str(tmp_path / "m.csv")]
    _fails(capsys, ["export", *data, *out, "--folder", str(root / "cleaned")], "overlaps the source")
    _fails(capsys, ["export", *data, *out, "--folder", str(tmp_path)], "overlaps the source")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("x")
    _fails(capsys, ["export", *data, *out, "--folder", str(busy)], "is not empty")
    assert not (tmp_path / "m.csv").exists()  # refused before anything was written
    _fails(capsys, ["export", *data, "--out", str(tmp_path)], "is a folder")
    _fails(capsys, ["export", *data, *out, "--folder", str(busy), "--overwrite"], "no record of an earlier oga export")
    assert (busy / "x.txt").exists()  # a folder oga did not make is never replaced
    _fails(capsys, ["export", *data, "--out", str(root / "cat" / "cat_0.png")], "inside the source data")
    assert main(["export", *data, *out, "--folder", str(tmp_path / "clean")]) == 0
    assert main(["decide", *data, "--sample", "cat/cat_0.png", "--drop"]) == 0
    assert main(["export", *data, *out, "--folder", str(tmp_path / "clean"), "--overwrite"]) == 0
    assert not (tmp_path / "clean" / "cat" / "cat_0.png").exists()  # the earlier export's files were replaced
    assert main(["decide", *data, "--sample", "cat/cat_0.png", "--clear"]) == 0
    assert (
        main(
            [
                "export",
                *data,
                "--out",
                str(tmp_path / "clean" / "m.csv"),
                "--folder",
                str(tmp_path / "clean"),
                "--overwrite",
            ]
        )
        == 0
    )
    assert (tmp_path / "clean" / "m.csv").is_file()  # the manifest may live in the exported folder
    counts = np.unique([p.parent.name for p in (tmp_path / "clean").rglob("*.png")], return_counts=True)
    assert dict(zip(*counts)) == {"cat": 2, "dog": 2}


# -- more like this, the noise left ----------------------------------------------------------
def test_similar_lists_the_nearest_samples_with_their_decisions(tmp_path, capsys, digits_analysis):
    data = ["--data", "demo:digits", "--noise", "0.2", "--seed", "0"]
    assert main(["analyze", *data, "--out", str(tmp_path / "run"), "--quiet"]) == 0
    target = digits_analysis.scores["sample_id"].iloc[0]
    features = digits_analysis.stats.features
    nearest = np.argsort(((features - features[0]) ** 2).sum(1))[1:4]
    neighbour = digits_analysis.dataset.ids[nearest[0]]
    assert main(["decide", *data, "--sample", neighbour, "--drop"]) == 0
    capsys.readouterr()
    assert main(["similar", *data, "--sample", target, "--k", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[:2] == ["sample_id", "distance"] and len(printed) == 4
    assert [line.split()[0] for line in printed[1:]] == [digits_analysis.dataset.ids[i] for i in nearest]
    assert "drop" in printed[1] and "drop" not in "".join(printed[2:])
    out = tmp_path / "near.csv"
    assert main(["similar", *data, "--sample", target, "--space", "gradients", "--csv", str(out)]) == 0
    table = pd.read_csv(out, dtype={"sample_id": str})
    assert len(table) == 12 and target not in set(table["sample_id"]) and table["distance"].is_monotonic_increasing
    _fails(capsys, ["similar", *data, "--sample", target, "--csv", str(out)], "already exists")
    _fails(capsys, ["similar", *data, "--sample", "nope"], "no sample 'nope'")
    _fails(capsys, ["similar", *data, "--sample", target, "--k", "0"], "--k must be at least 1")
    _fails(capsys, ["similar", "--data", "demo:digits", "--noise", "0.3", "--sample", target], "no analysis on record")


def test_noise_left_says_it_cannot_tell_then_estimates_after_a_spot_check(tmp_path, capsys, digits_analysis):
    data = ["--data", "demo:digits", "--noise", "0.2", "--seed", "0"]
    assert main(["analyze", *data, "--out", str(tmp_path / "run"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["noise-left", *data, "--spot-check", "60"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("noise left below the cut: no estimate")
    ids = lines[2:]
    s = digits_analysis.scores.set_index("sample_id")
    assert len(ids) == 60 and not s.loc[ids, "flagged"].any()
    # the truth plays the person: wrong labels dropped, right ones kept
    wrong = [i for i in ids if s.loc[i, "noisy"]]
    right = [i for i in ids if not s.loc[i, "noisy"]]
    assert len(wrong) >= 5 and len(right) >= 5
    assert main(["decide", *data, *[a for i in wrong for a in ("--sample", i)], "--drop"]) == 0
    assert main(["decide", *data, *[a for i in right for a in ("--sample", i)], "--keep"]) == 0
    capsys.readouterr()
    assert main(["noise-left", *data]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("noise left below the cut: about") and "interval" in line
    truth = int(s.loc[~s["flagged"], "noisy"].sum()) - len(wrong)
    low, high = (int(x) for x in re.search(r"interval (\d+)-(\d+)", line).groups())
    assert low <= truth <= high
    _fails(capsys, ["noise-left", *data, "--spot-check", "-1"], "--spot-check must be 0 or more")


def test_every_command_has_a_help_page(capsys):
    """``oga COMMAND --help`` prints its options for every command (help texts are shared with
    the app and may hold a literal "%", which argparse would otherwise read as a placeholder)."""
    from oga_core.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"analyze", "export", "retrain", "similar", "noise-left", "bench"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: oga {name}"), name


# -- starting from pretrained weights (--weights, --backbone, --pretrained) ----------------------
@pytest.fixture
def pretrained_file(tmp_path, make_images):
    """A "pretrained" photo_resnet: oga's model trained on one colour set (3 classes), saved as
    its state dict, to be reused on another set."""
    first = make_images(tmp_path / "first", {"a": 10, "b": 10, "c": 10}, size=16, seed=1)
    out = tmp_path / "first_run"
    assert main(_analyze(f"folder:{first}", out, "--epochs", "2", "--holdout", "0")) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["model"] == "photo_resnet"  # auto, colour
    assert any("efficientnet_lite0 --pretrained" in n for n in run["notices"])  # the ImageNet backbone is offered
    return out / "model.pt"


def test_weights_frozen_backbone_round_trip(tmp_path, make_images, pretrained_file):
    """--weights FILE --backbone frozen: the features are the file's backbone's (computed here by
    hand from the same file), a new 4-class head is trained on them, and the analysis ranks."""
    from oga_core.config import AnalysisConfig
    from oga_core.gradients import forward_pass
    from oga_core.models import load_checkpoint
    from oga_core.pipeline import analyze, load_data
    from oga_core.store import Cache

    second = make_images(tmp_path / "second", {"w": 8, "x": 8, "y": 8, "z": 8}, size=16, seed=2)
    out = tmp_path / "second_run"
    argv = _analyze(f"folder:{second}", out, "--weights", str(pretrained_file), "--model", "photo_resnet")
    assert main(argv) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["weights"] == str(pretrained_file) and run["config"]["backbone"] == "frozen"
    assert run["epochs"] >= 10  # the head's recipe: many cheap epochs
    head = read_state_dict(out / "model.pt")
    assert head["head.weight"].shape == (4, 128)  # a new head for the 4 classes
    # One epoch of the head cannot fit the labels: the health check says what helps a frozen head.
    one = tmp_path / "one_epoch"
    assert (
        main(
            _analyze(
                f"folder:{second}", one, "--weights", str(pretrained_file), "--model", "photo_resnet", "--epochs", "1"
            )
        )
        == 0
    )
    checkup = json.loads((one / "run.json").read_text())["health"]
    assert checkup["verdict"] == "underfit" and "--backbone finetune" in checkup["advice"], checkup

    config = AnalysisConfig(data=f"folder:{second}", model="photo_resnet", weights=str(pretrained_file))
    analysis = analyze(config)
    loaded = load_data(config, Cache())
    backbone = build_model("photo_resnet", num_classes=4, in_channels=3, image_size=16)
    load_checkpoint(backbone, pretrained_file, new_head=True)
    by_hand = forward_pass(backbone, loaded.pixels).features
    trained = ~analysis.scores["heldout"].to_numpy(dtype=bool)
    standardised = (by_hand - by_hand[trained].mean(0)) / np.maximum(by_hand[trained].std(0, ddof=1), 1e-3)
    np.testing.assert_allclose(analysis.stats.features, standardised, rtol=1e-3, atol=1e-3)


def test_weights_checkpoint_fine_tuned(tmp_path, make_images, pretrained_file):
    """A checkpoint holding the state dict (``{"state_dict": ..., "epoch": ...}``) fine-tunes every layer."""
    state = torch.load(pretrained_file, weights_only=True)
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": state, "epoch": 7, "note": "from another set"}, checkpoint)
    second = make_images(tmp_path / "second", {"w": 8, "x": 8, "y": 8}, size=16, seed=3)
    out = tmp_path / "tuned"
    argv = _analyze(f"folder:{second}", out, "--weights", str(checkpoint), "--backbone", "finetune", "--epochs", "1")
    assert main(argv) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["backbone"] == "finetune" and run["epochs"] == 1
    tuned = read_state_dict(out / "model.pt")
    assert tuned["head.weight"].shape == state["head.weight"].shape  # 3 classes both: the head fits and is kept
    assert not torch.equal(tuned["body.layers.1.weight"], state["body.layers.1.weight"])  # every layer trained


def test_weights_for_the_wrong_architecture_is_one_line(tmp_path, capsys, make_images, pretrained_file):
    capsys.readouterr()  # what making the weights printed
    second = make_images(tmp_path / "second", {"w": 4, "x": 4}, size=16, seed=4)
    argv = _analyze(
        f"folder:{second}", tmp_path / "o", "--weights", str(pretrained_file), "--model", "mobilenet_v3_small"
    )
    _fails(capsys, argv, "weights file", "does not fit this model")
    argv = _analyze(f"folder:{second}", tmp_path / "o", "--weights", str(tmp_path / "missing.pt"))
    _fails(capsys, argv, "does not exist")


def test_checkpoint_of_the_wrong_class_count_is_one_line(tmp_path, capsys, make_images, pretrained_file):
    """Scored as it is (no training), a 3-class checkpoint cannot rank a 2-class set."""
    capsys.readouterr()
    second = make_images(tmp_path / "second", {"w": 4, "x": 4}, size=16, seed=5)
    argv = _analyze(f"folder:{second}", tmp_path / "o", "--checkpoint", str(pretrained_file), "--model", "photo_resnet")
    _fails(capsys, argv, "does not fit this model", "head.weight")


class _Payload:
    """Unpickling this would run ``Path.touch(marker)``: code, not tensors."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_weights_with_code_are_refused_and_not_run(tmp_path, capsys, make_images):
    marker = tmp_path / "the_code_ran"
    evil = tmp_path / "evil.pt"
    torch.save({"head.weight": torch.zeros(2, 2), "payload": _Payload(marker)}, evil)
    data = make_images(tmp_path / "d", {"w": 4, "x": 4}, size=16, seed=6)
    _fails(capsys, _analyze(f"folder:{data}", tmp_path / "o", "--weights", str(evil)), "will not execute")
    assert not marker.exists()


def test_a_zip_that_is_not_a_torch_file_is_said_in_plain_words(tmp_path, capsys, make_images):
    import zipfile

    fake = tmp_path / "model.pt"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("weights/readme.txt", "not a checkpoint")
    data = make_images(tmp_path / "d", {"w": 4, "x": 4}, size=16, seed=7)
    line = _fails(capsys, _analyze(f"folder:{data}", tmp_path / "o", "--weights", str(fake)), "zip archive")
    assert "enforce" not in line and "inline_container" not in line and "data.pkl" in line


def test_pretrained_offline_says_which_file_to_pass(tmp_path, capsys, make_images, monkeypatch):
    """--pretrained downloads only because it was asked; offline (here: a proxy that refuses) it is
    one line naming the file to pass with --weights instead."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached weights
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    data = make_images(tmp_path / "d", {"w": 4, "x": 4}, size=16, seed=8)
    argv = _analyze(f"folder:{data}", tmp_path / "o", "--pretrained", "--model", "mobilenet_v3_small")
    assert main(argv) == 2
    said = [line for line in capsys.readouterr().err.splitlines() if not PROGRESS.match(line)]
    assert len(said) == 2 and "Traceback" not in "".join(said)
    assert said[0].startswith("oga: note: downloading torchvision's mobilenet_v3_small weights")  # says so first
    assert said[1].startswith("oga: error: could not download") and "--weights" in said[1]
    assert "https://download.pytorch.org/" in said[1]
    _fails(
        capsys,
        _analyze(f"folder:{data}", tmp_path / "o", "--pretrained", "--model", "cnn"),
        "no published weights",
        "efficientnet_lite0",
    )

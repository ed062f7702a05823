"""oga_core/pipeline.py: analyze() end to end on digits, its cache, rescoring, validation."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from pandas.testing import assert_frame_equal

from oga_core import health
from oga_core.config import AnalysisConfig
from oga_core.data import load_source
from oga_core.detectors import DETECTORS, SCORE_COLUMNS, detector_column, on_trained_scale, rank_within_class
from oga_core.errors import DataError, OgaError
from oga_core.noise import flip_labels
from oga_core.options import DEFAULT_DETECTOR, STAGES, names
from oga_core.pipeline import analyze, load_data
from oga_core.store import Cache, read_json
from oga_core.workspace import Workspace

ALL_CACHED = ["decode", "train", "gradients", "scores"]


def _model_file(analysis):
    return analysis.cache.get("model", analysis.keys["model"]) / "model.pt"


def test_the_digits_analysis(digits_analysis):
    a = digits_analysis
    n = 1797
    assert len(a.dataset) == n and a.pixels.shape == (n, 1, 8, 8) and a.stats.scope == "last"
    # the given labels are the clean ones with exactly 20% flipped by the seeded noise
    clean = load_source("demo:digits")
    expected = flip_labels(clean.labels, 10, rate=0.2, seed=0)
    np.testing.assert_array_equal(a.dataset.labels, expected.given)
    np.testing.assert_array_equal(a.noise.noisy, expected.noisy)

    s = a.scores
    assert s["sample_id"].tolist() == clean.ids
    np.testing.assert_array_equal(s["label"], expected.given)
    np.testing.assert_array_equal(s["clean_label"], clean.labels)
    np.testing.assert_array_equal(s["noisy"], expected.noisy)
    np.testing.assert_array_equal(s["pred"], a.stats.logits.argmax(1))
    assert s["label_name"].tolist() == [str(k) for k in expected.given]
    probs = torch.softmax(torch.from_numpy(a.stats.logits).double(), 1).numpy()
    np.testing.assert_allclose(s["confidence"], probs.max(1))
    held = s["heldout"].to_numpy()
    assert 150 < held.sum() < 210  # about 10% held out of training, chosen by sample id
    np.testing.assert_array_equal(held, health.holdout_mask(clean.ids, 0.1))
    column = s[detector_column(DEFAULT_DETECTOR)].to_numpy()
    np.testing.assert_array_equal(s["score"][~held], column[~held])  # the default detector, global ranking
    # held-out samples: on the trained samples' scale, in the same order as their own scores
    assert np.all(np.diff(s["score"][held].to_numpy()[np.argsort(column[held])]) >= 0)
    assert column[~held].min() <= s["score"][held].min() and s["score"][held].max() <= column[~held].max()
    assert s.loc[s["rank"] == 1, "score"].item() == s["score"].max()
    assert sorted(s["rank"]) == list(range(1, n + 1))
    assert int(s["flagged"].sum()) == round(0.05 * n) == 90
    assert s.loc[s["flagged"], "score"].min() >= s.loc[~s["flagged"], "score"].max()
    for col in SCORE_COLUMNS:
        assert np.isfinite(s[col]).all(), col

    run = a.run
    assert set(names(STAGES)) | {"total"} == set(run["timings"]) and all(t >= 0 for t in run["timings"].values())
    assert run["data_fingerprint"] == clean.fingerprint() != run["data_id"] == a.data_id
    assert run["num_samples"] == n and run["num_classes"] == 10 and run["device"] == "cpu"
    epochs = a.config.resolved_epochs(int((~s["heldout"]).sum()))
    assert run["epochs"] == epochs == 23 and len(run["train_history"]) == epochs
    assert run["train_history"][-1]["loss"] < run["train_history"][0]["loss"]
    correct = (s["pred"] == s["label"]).to_numpy()
    assert run["train_accuracy"] == pytest.approx(float(correct[~held].mean()))
    assert run["holdout_accuracy"] == pytest.approx(float(correct[held].mean()))
    assert run["health"]["verdict"] == "ok" and run["health"]["holdout_size"] == held.sum()
    # a model that learned the digits rather than the noise: it mostly predicts the clean label
    assert run["train_accuracy_clean_labels"] > 0.9 and run["noisy_samples"] == 359
    assert run["config"] == dataclasses.asdict(a.config) and run["num_flagged"] == 90


def test_second_identical_analyze_reuses_every_step(digits_analysis):
    model_file = _model_file(digits_analysis)
    stamp = model_file.stat().st_mtime_ns
    stages = []
    again = analyze(digits_analysis.config, progress=lambda stage, done, total: stages.append(stage))
    assert again.run["cache_hits"] == ALL_CACHED
    assert model_file.stat().st_mtime_ns == stamp  # the trained model was not written again
    assert set(stages) == set(names(STAGES))
    assert_frame_equal(again.scores, digits_analysis.scores)
    np.testing.assert_array_equal(again.stats.features, digits_analysis.stats.features)
    assert again.keys == digits_analysis.keys and again.data_id == digits_analysis.data_id
    # the noise estimate is kept with the scores, not recomputed from the trajectory
    kept = digits_analysis.cache.get("scores", digits_analysis.keys["scores"]) / "noise_estimate.json"
    assert json.loads(kept.read_text()) == again.run["noise_estimate"] == digits_analysis.run["noise_estimate"]


@pytest.mark.parametrize(
    "change", [{"detector": "iforest"}, {"budget": 0.1}, {"detector": "margin", "per_class": True}]
)
def test_changing_only_the_ranking_recomputes_no_gradient(digits_analysis, change):
    grads = digits_analysis.cache.get("gradients", digits_analysis.keys["gradients"])
    stamp = (grads / "l1.npy").stat().st_mtime_ns
    other = analyze(dataclasses.replace(digits_analysis.config, **change))
    assert {"train", "gradients"} <= set(other.run["cache_hits"])
    assert other.run["cache_hits"] == ALL_CACHED  # the raw scores do not depend on the ranking either
    assert (grads / "l1.npy").stat().st_mtime_ns == stamp
    for col in SCORE_COLUMNS:
        np.testing.assert_array_equal(other.scores[col], digits_analysis.scores[col])
    budget = change.get("budget", 0.05)
    assert int(other.scores["flagged"].sum()) == round(budget * 1797) == other.run["num_flagged"]
    # and rescore() of the first analysis gives exactly what the fresh analyze gave
    rescored = digits_analysis.rescore(**change)
    assert_frame_equal(rescored.scores, other.scores)
    assert rescored.config == other.config
    assert rescored.run["num_flagged"] == other.run["num_flagged"]
    assert rescored.run["config"] == other.run["config"]


def test_per_class_ranking_spreads_the_budget(digits_analysis):
    per = digits_analysis.rescore(per_class=True)
    labels = digits_analysis.dataset.labels
    trained = ~per.scores["heldout"].to_numpy()
    column = per.scores[detector_column(DEFAULT_DETECTOR)].to_numpy()
    expected = rank_within_class(on_trained_scale(column, trained), labels)
    np.testing.assert_allclose(per.scores["score"], expected)
    counts = np.bincount(labels[per.scores["flagged"].to_numpy()], minlength=10)
    assert counts.sum() == 90 and counts.min() >= 6 and counts.max() <= 12
    assert not digits_analysis.scores.equals(per.scores)  # the original is untouched
    with pytest.raises(OgaError, match="unknown detector"):
        digits_analysis.rescore(detector="nope")


def test_all_layer_scope_reuses_the_trained_model(digits_analysis):
    config = dataclasses.replace(digits_analysis.config, scope="all", detector="l2")
    full = analyze(config)
    assert "train" in full.run["cache_hits"]  # the same trained model, scored over all its layers
    assert full.keys["model"] == digits_analysis.keys["model"]
    assert full.keys["gradients"] != digits_analysis.keys["gradients"]
    assert full.stats.scope == "all" and full.stats.sketch.shape == (1797, 1024)
    # the default CNN: 2 convolutions, 2 BatchNorms, the dense layer and the head
    assert len(full.stats.layer_names) == 6 and full.stats.layer_l2.shape == (1797, 6)
    # the head is one of the layers: all-layer norms are larger, and the head's part is the closed form
    assert (full.scores["oga_l2"] > digits_analysis.scores["oga_l2"]).all()
    head = full.stats.layer_names.index("head")
    np.testing.assert_allclose(full.stats.layer_l2[:, head], digits_analysis.scores["oga_l2"], rtol=1e-4)
    np.testing.assert_allclose(full.scores["loss"], digits_analysis.scores["loss"], rtol=1e-4, atol=1e-6)
    assert full.noise is not None and full.scores["noisy"].equals(digits_analysis.scores["noisy"])
    from oga_core.evaluate import detection_metrics

    m = detection_metrics(full.scores, full.noise.noisy).set_index("score")
    assert m.loc["oga_l2", "auroc"] > 0.9 and m.loc["oga_iforest", "auroc"] > 0.9  # iForest on the sketch
    again = analyze(config)
    assert again.run["cache_hits"] == ALL_CACHED
    assert again.stats.layer_names == full.stats.layer_names
    per_layer = full.layer_norms(full.dataset.ids[7])
    assert list(per_layer.index) == full.stats.layer_names
    np.testing.assert_allclose(np.sqrt((per_layer**2).sum()), full.scores["oga_l2"].iloc[7], rtol=1e-6)
    assert digits_analysis.layer_norms(digits_analysis.dataset.ids[7]) is None  # last layer only
    with pytest.raises(OgaError, match="no sample 'nope'"):
        full.layer_norms("nope")
    np.testing.assert_array_equal(again.stats.sketch, full.stats.sketch)


def test_scoring_a_saved_checkpoint_reproduces_the_analysis(digits_analysis):
    config = dataclasses.replace(digits_analysis.config, checkpoint=str(_model_file(digits_analysis)))
    assert config.resolved_epochs(1797) == 0
    scored = analyze(config)
    assert "train" not in scored.run["cache_hits"] and scored.run["epochs"] == 0
    assert scored.keys["model"] != digits_analysis.keys["model"]  # the checkpoint's bytes are in the key
    np.testing.assert_allclose(scored.stats.logits, digits_analysis.stats.logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scored.scores["oga_l2"], digits_analysis.scores["oga_l2"], rtol=1e-4)
    # nothing trained, nothing held out: the ranking is the raw score of every sample
    assert not scored.scores["heldout"].any() and scored.run["health"]["verdict"] == "unchecked"
    column = detector_column(DEFAULT_DETECTOR)
    np.testing.assert_array_equal(scored.scores["score"], scored.scores[column])
    # The default reads the training trajectory: without training it scores the loaded model's
    # probabilities alone, and the run says so.
    assert DETECTORS[DEFAULT_DETECTOR].trajectory
    from oga_core.lastlayer import softmax
    from oga_core.transition import noise_aware_scores

    alone, _ = noise_aware_scores(softmax(scored.stats.logits), scored.dataset.labels)
    np.testing.assert_allclose(scored.scores[column], alone, rtol=1e-5, atol=1e-6)
    assert any("loaded, not trained" in n for n in scored.run["notices"])


def test_analyze_records_nothing_until_asked(digits_analysis):
    ws = digits_analysis.workspace
    for name in ("latest_scores.parquet", "latest_run.json", "source.json"):
        (ws.folder / name).unlink(missing_ok=True)
    again = analyze(digits_analysis.config)
    assert not (ws.folder / "latest_run.json").exists()  # an analysis returns results; callers record them
    ws.record(again)
    assert_frame_equal(pd.read_parquet(ws.folder / "latest_scores.parquet"), digits_analysis.scores)
    assert read_json(ws.folder / "latest_run.json")["data_id"] == digits_analysis.data_id
    assert read_json(ws.folder / "source.json") == {
        "data": "demo:digits",
        "data_id": digits_analysis.data_id,
        "classes": [str(k) for k in range(10)],
        "noise": 0.2,
        "noise_kind": "symmetric",
        "noise_seed": 0,
        "skip_unreadable": False,
    }


def test_map_coords_are_cached(digits_analysis):
    coords = digits_analysis.map_coords(method="pca")
    assert coords.shape == (1797, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    again = digits_analysis.map_coords(method="pca")
    np.testing.assert_array_equal(again, coords)
    grads = digits_analysis.map_coords(method="pca", space="gradients")
    assert not np.allclose(grads, coords)
    with pytest.raises(OgaError, match="unknown map space"):
        digits_analysis.map_coords(method="pca", space="pixels")


def test_unreadable_files_stop_the_analysis_or_are_skipped(tmp_path, make_images):
    root = make_images(tmp_path / "d", {"a": 3, "b": 3})
    (root / "b" / "corrupt.png").write_bytes(b"garbage")
    config = AnalysisConfig(data=f"folder:{root}", image_size=8)
    cache = Cache(tmp_path / "cache")
    with pytest.raises(DataError, match=r"1 unreadable image\(s\): .*corrupt.png"):
        load_data(config, cache)
    skipped = load_data(dataclasses.replace(config, skip_unreadable=True), cache)
    assert "b/corrupt.png" not in skipped.dataset.ids and len(skipped.dataset) == 6
    assert skipped.pixels.shape == (6, 3, 8, 8) and skipped.pixels.any(axis=(1, 2, 3)).all()
    assert skipped.fingerprint == load_source(f"folder:{root}").fingerprint()  # the source as found
    assert skipped.data_id != skipped.fingerprint  # the analysed data lacks a file
    (root / "a" / "a_0.png").write_bytes(b"x")
    (root / "a" / "a_1.png").write_bytes(b"x")
    (root / "a" / "a_2.png").write_bytes(b"x")
    with pytest.raises(DataError, match=r"4 unreadable .*\(\+1 more\)"):
        load_data(config, cache)


def test_a_tiny_folder_analysis_end_to_end(tmp_path, make_images):
    root = make_images(tmp_path / "d", {"cat": 6, "dog": 6}, size=8)
    config = AnalysisConfig(
        data=f"folder:{root}", image_size=8, epochs=2, batch_size=4, budget=0.25, detector="iforest"
    )
    a = analyze(config, cache=Cache(tmp_path / "cache"))
    assert a.scores["sample_id"].tolist() == a.dataset.ids and int(a.scores["flagged"].sum()) == 3
    assert a.noise is None and "noisy" not in a.scores and a.run["epochs"] == 2
    assert a.data_id == a.run["data_fingerprint"]  # no noise: the data is the source as it is
    assert a.cache.root == tmp_path / "cache" and (tmp_path / "cache" / "model").is_dir()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"scope": "middle"}, "unknown scope"),
        ({"detector": "l3"}, "unknown detector"),
        ({"budget": 1.5}, "budget"),
        ({"noise": 1.0}, "noise rate"),
        ({"noise_kind": "asym"}, "unknown noise kind"),
        ({"epochs": -1}, "epochs"),
        ({"batch_size": 0}, "batch size"),
        ({"image_size": 2}, "image size"),
    ],
)
def test_config_validation(change, message):
    with pytest.raises(OgaError, match=message):
        analyze(AnalysisConfig(**change))


def test_resolved_epochs_follow_the_recipe():
    # the default CNN aims at ~600 optimiser steps of 64 samples: small sets get more epochs
    assert AnalysisConfig().resolved_epochs(1617) == 23  # digits less its held-out part: 26 steps an epoch
    assert AnalysisConfig().resolved_epochs(4500) == 8  # 71 steps an epoch
    assert AnalysisConfig().resolved_epochs(100_000) == 6 and AnalysisConfig().resolved_epochs(200) == 30
    assert AnalysisConfig(batch_size=128).resolved_epochs(1617) == 30  # 13 steps an epoch: 46, capped at 30
    assert AnalysisConfig(model="small_cnn").resolved_epochs(5000) == 12
    assert AnalysisConfig(model="resnet18").resolved_epochs(5000) == 8
    assert AnalysisConfig(checkpoint="x.pt").resolved_epochs(5000) == 0
    assert AnalysisConfig(checkpoint="x.pt", epochs=3).resolved_epochs(5000) == 3


def test_decisions_follow_the_data_when_a_file_is_added(tmp_path, make_images, capsys):
    """One more image changes the data id; the person's decisions must not be left behind."""
    from oga_core.cli import main

    root = make_images(tmp_path / "src", {"cat": 3, "dog": 3})
    data = ["--data", f"folder:{root}"]
    assert main(["decide", *data, "--sample", "cat/cat_0.png", "--drop"]) == 0
    assert main(["decide", *data, "--sample", "dog/dog_0.png", "--relabel", "cat"]) == 0
    before = load_data(AnalysisConfig(data=f"folder:{root}"), Cache()).data_id
    make_images(tmp_path / "more", {"dog": 1}, seed=5)
    (tmp_path / "more" / "dog" / "dog_0.png").rename(root / "dog" / "dog_new.png")
    (root / "cat" / "cat_0.png").rename(root / "dog" / "cat_0.png")  # moved: another label now
    assert main(["undo", *data]) == 0  # opening the changed data carries the decisions over first
    out = capsys.readouterr().out
    assert "carried 1 decision(s) over" in out  # dog_0's relabel; cat_0 changed label, so not carried
    assert "undid the last decision on dog/dog_0.png" in out  # the carry-over is one undo step
    after = load_data(AnalysisConfig(data=f"folder:{root}"), Cache()).data_id
    assert after != before
    assert Workspace(after).decisions().table().empty
    assert len(Workspace(before).decisions().table()) == 2  # the earlier workspace is untouched


def test_default_follows_the_final_model_after_one_epoch():
    """Issue 16's case: one epoch of digits with 10% flips. The trajectory of a first epoch is a
    half-trained model's guesses (margin_tracin ~0.97 AUROC); the default must stay within 0.005
    of the best of the final model's margin, EL2N and loss (~0.997): its probabilities weigh each
    epoch by its held-out accuracy, so the final model outweighs the first epoch's records."""
    from sklearn.metrics import roc_auc_score

    analysis = analyze(AnalysisConfig(noise=0.1, epochs=1))
    s, truth = analysis.scores, analysis.noise.noisy
    auroc = {c: roc_auc_score(truth, s[c]) for c in ("margin", "el2n", "loss", "margin_tracin", "score")}
    final = max(auroc["margin"], auroc["el2n"], auroc["loss"])
    assert analysis.config.detector == DEFAULT_DETECTOR == "noise_aware"
    assert auroc["score"] >= final - 0.005, auroc
    assert auroc["margin_tracin"] < final - 0.01, auroc  # the case is real: the trajectory alone loses


def test_blend_weight_moves_to_the_trajectory_with_memorisation():
    """The blend is the final margin for a model that fits training as it fits unseen data, the
    trajectory for one that fits every training label, linear between."""
    from oga_core import detectors
    from oga_core.gradients import GradientStats
    from oga_core.lastlayer import TRAJECTORY_FIELDS, Trajectory

    n, k = 200, 4
    labels = np.arange(n) % k
    trained = np.arange(n) >= 40

    def inputs(train_correct: float, held_correct: float) -> detectors.ScoreInputs:
        logits = np.zeros((n, k), dtype=np.float32)
        right = np.zeros(n, dtype=bool)
        for part, share in ((np.flatnonzero(trained), train_correct), (np.flatnonzero(~trained), held_correct)):
            right[part[: int(round(len(part) * share))]] = True
        logits[np.arange(n), np.where(right, labels, (labels + 1) % k)] = 5.0
        stats = GradientStats("last", np.ones((n, 3), np.float32), logits, np.ones(n), np.ones(n))
        traj = Trajectory(np.zeros((2, n, len(TRAJECTORY_FIELDS)), np.float32), np.array([1.0, 0.5]), trained)
        return detectors.ScoreInputs(stats, labels, 0, traj)

    assert detectors.blend_weight(inputs(0.7, 0.7)) == 0.0  # no memorisation: the final model
    assert detectors.blend_weight(inputs(1.0, 0.5)) == 1.0  # fits every training label: the trajectory
    half = detectors.memorisation(inputs(0.75, 0.5))
    assert abs(half - 0.5) < 0.02 and 0.4 < detectors.blend_weight(inputs(0.75, 0.5)) < 0.6
    no_holdout = dataclasses.replace(
        inputs(0.7, 0.7),
        trajectory=Trajectory(
            np.zeros((2, n, len(TRAJECTORY_FIELDS)), np.float32), np.array([1.0, 0.5]), np.ones(n, bool)
        ),
    )
    assert detectors.memorisation(no_holdout) is None and detectors.blend_weight(no_holdout) == 1.0

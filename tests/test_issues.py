"""oga_core/issues.py: one issue type per sample, on the trained digits model with constructed
cases added (an exact duplicate with another label, a uniform-noise image, a confidently wrong
label, a 50/50 sample), and in the score table, scores.csv and the review queue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from oga_core import issues
from oga_core.errors import OgaError
from oga_core.gradients import forward_pass
from oga_core.issues import duplicate_pairs, filter_issue, issue_columns
from oga_core.pipeline import fit_model, write_results
from oga_core.summaries import review_queue, with_decisions
from oga_core.train import resolve_device


@pytest.fixture(scope="module")
def constructed(digits_analysis):
    """The digits analysis' arrays plus: row N a copy of sample 0 with another label, rows N+1, N+2
    uniform-noise images through the trained model; sample ``wrong`` given a label the model is
    confident against, sample ``even`` given 50/50 logits."""
    a = digits_analysis
    model = fit_model(a.config, a.dataset, a.pixels, a.data_id, a.cache, resolve_device("cpu")).model
    noise = np.random.default_rng(1).integers(0, 256, (2, 1, 8, 8), dtype=np.uint8)
    out = forward_pass(model, noise, device=torch.device("cpu"))
    features = np.concatenate([a.stats.features, a.stats.features[:1], out.features])
    logits = np.concatenate([a.stats.logits, a.stats.logits[:1], out.logits]).astype(np.float64)
    labels = np.concatenate([a.dataset.labels, [(a.dataset.labels[0] + 1) % 10], [0, 0]])
    pixels = np.concatenate([a.pixels, a.pixels[:1], noise])
    ids = [*a.dataset.ids, "copy_of_00000", "noise_a", "noise_b"]
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    confident = np.flatnonzero((probs.max(1) > 0.8) & (probs.argmax(1) == labels))
    wrong, even = int(confident[1]), int(confident[2])
    labels[wrong] = (probs[wrong].argmax() + 3) % 10  # the model is sure of another class
    logits[even] = np.where(np.arange(10) < 2, 5.0, 0.0)  # 50/50 between classes 0 and 1
    labels[even] = 1
    table = issue_columns(features, logits, labels, ids, pixels, seed=0)
    return ids, table, wrong, even


def test_each_constructed_case_gets_its_issue(constructed):
    ids, table, wrong, even = constructed
    n = len(ids) - 3
    by_id = table.set_index(pd.Index(ids))
    # an exact copy with another label: both near duplicates, each naming the other
    assert by_id.loc["00000", "issue"] == by_id.loc["copy_of_00000", "issue"] == "near_duplicate"
    assert by_id.loc["00000", "duplicate_of"] == "copy_of_00000"
    assert by_id.loc["copy_of_00000", "duplicate_of"] == "00000"
    # uniform noise is far from every digit in the model's features
    assert (by_id.loc[["noise_a", "noise_b"], "issue"] == "outlier").all()
    assert table["issue"][wrong] == "mislabeled" and table["issue"][even] == "ambiguous"
    # the real digits hold no other duplicate and (almost) no outlier
    assert (table["issue"][:n] == "near_duplicate").sum() == 1
    assert (table["issue"][:n] == "outlier").sum() <= n // 100
    assert set(table["issue"]) <= set(issues.ISSUES)
    assert (table["duplicate_of"][table["issue"] != "near_duplicate"] == "").all()


def test_duplicates_by_features_alone_and_by_pixels_alone():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (3, 16))
    labels = np.repeat([0, 1, 2], 40)
    features = (centres[labels] + rng.normal(0, 1, (120, 16))).astype(np.float32)
    logits = np.eye(3)[labels] * 6.0
    ids = [f"s{i}" for i in range(120)]
    # sample 5 nearly repeated as sample 60 with label 1: found in the features (no pixels given)
    features[60] = features[5] + 1e-4
    table = issue_columns(features, logits, labels, ids)
    assert table["issue"][5] == table["issue"][60] == "near_duplicate"
    assert (table["duplicate_of"][5], table["duplicate_of"][60]) == ("s60", "s5")
    assert (table["issue"] == "near_duplicate").sum() == 2
    # the same pixels under different features (another model might see them apart): found by content
    pixels = rng.integers(0, 256, (120, 1, 4, 4), dtype=np.uint8)
    pixels[100] = pixels[10]
    features[60] = features[5] + 3.0
    table = issue_columns(features, logits, labels, ids, pixels)
    assert table["issue"][60] != "near_duplicate"
    assert table.loc[[10, 100], "issue"].tolist() == ["near_duplicate"] * 2
    assert table.loc[[10, 100], "duplicate_of"].tolist() == ["s100", "s10"]
    # a copy with the SAME label is no issue
    pixels[101] = pixels[11]
    features[101], logits[101] = features[11], logits[11]
    labels[101] = labels[11]
    table = issue_columns(features, logits, labels, ids, pixels)
    assert table.loc[[11, 101], "issue"].tolist() == ["none", "none"]
    assert (table["issue"] == "near_duplicate").sum() == 2


def test_the_score_table_and_the_review_queue_carry_the_issue(digits_analysis, tmp_path):
    s = digits_analysis.scores
    assert {"issue", "duplicate_of"} <= set(s.columns)
    mislabeled = s["issue"] == "mislabeled"
    # where the model is sure of another class, the label is almost always one of the flipped ones
    assert mislabeled.sum() > 100 and s.loc[mislabeled, "noisy"].mean() > 0.9
    assert s.loc[s["issue"] == "none", "noisy"].mean() < 0.02
    assert set(s["issue"]) <= set(issues.ISSUES)
    # re-ranking keeps the issue; scores.csv has it
    rescored = digits_analysis.rescore(detector="loss")
    assert rescored.scores["issue"].tolist() == s["issue"].tolist()
    write_results(digits_analysis, tmp_path)
    assert "issue" in pd.read_csv(tmp_path / "scores.csv").columns
    table = with_decisions(s, pd.DataFrame(columns=["sample_id", "action", "label"]), digits_analysis.dataset.classes)
    queue = review_queue(table, issue="mislabeled")
    assert len(queue) == int((s["flagged"] & mislabeled).sum()) and (queue["issue"] == "mislabeled").all()
    everything = review_queue(table, include_unflagged=True, issue="ambiguous")
    assert len(everything) == int((s["issue"] == "ambiguous").sum())
    assert everything["score"].is_monotonic_decreasing
    assert len(filter_issue(s, "mislabeled")) == int(mislabeled.sum()) and len(filter_issue(s, None)) == len(s)
    with pytest.raises(OgaError, match="unknown issue type 'typo'"):
        review_queue(table, issue="typo")
    assert duplicate_pairs(s).empty


def test_duplicate_pairs_lists_each_pair_once(constructed):
    ids, table, _, _ = constructed
    scores = table.assign(sample_id=ids, label_name=[str(i % 10) for i in range(len(ids))])
    pairs = duplicate_pairs(scores)
    assert len(pairs) == 1
    assert {pairs["sample_id"][0], pairs["duplicate_of"][0]} == {"00000", "copy_of_00000"}


def test_degenerate_features_give_types_without_failing():
    """A model whose features are all equal (dead units, an untrained checkpoint) still gets types."""
    features = np.zeros((50, 8), np.float32)
    logits = np.zeros((50, 3))
    table = issue_columns(features, logits, np.arange(50) % 3, [f"s{i}" for i in range(50)])
    # every sample has the same features as samples of other labels: all conflicting duplicates
    assert (table["issue"] == "near_duplicate").all()
    assert issue_columns(features[:2], logits[:2], np.array([0, 1]), ["a", "b"])["issue"].tolist() == ["none", "none"]


def test_an_old_score_table_without_issues_says_so(digits_analysis):
    with pytest.raises(OgaError, match="no issue types"):
        filter_issue(digits_analysis.scores.drop(columns=["issue"]), "outlier")


def test_exact_duplicates_are_found_in_streamed_pixels_too(tmp_path):
    """A large data set's pixels are a PixelFile read in batches, never one array in memory."""
    from oga_core.pixels import PixelFile, RowWriter

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(30, 1, 4, 4), dtype=np.uint8)
    pixels[17] = pixels[3]
    pixels[29] = pixels[3]
    path = tmp_path / "pixels.npy"
    writer = RowWriter(path, len(pixels), pixels.shape[1:])
    for i, row in enumerate(pixels):
        writer.write(i, row)
    writer.close()
    streamed = PixelFile(path)
    groups, thumbs = issues._pixel_pass(pixels)
    for rows in (1, 7, 4096):  # blocks of that many 16-byte rows
        streamed_groups, streamed_thumbs = issues._pixel_pass(streamed, block_bytes=16 * rows)
        np.testing.assert_array_equal(streamed_groups, groups)
        np.testing.assert_array_equal(streamed_thumbs, thumbs)
    assert groups[3] == groups[17] == groups[29] and len(set(groups)) == 28
    assert thumbs.shape == (30, 16) and (thumbs[17] == thumbs[3]).all()

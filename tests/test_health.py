"""oga_core/health.py: the fixed held-out split and the health check's verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from oga_core import health
from oga_core.config import AnalysisConfig
from oga_core.pipeline import analyze


def test_the_holdout_is_fixed_by_sample_id():
    ids = [f"img/{i:05d}.png" for i in range(3000)]
    mask = health.holdout_mask(ids, 0.1)
    assert mask.dtype == bool and mask.sum() == 300
    np.testing.assert_array_equal(mask, health.holdout_mask(ids, 0.1))  # the same every time
    # reordering or adding samples does not move a sample between the parts
    perm = np.random.default_rng(0).permutation(3000)
    np.testing.assert_array_equal(health.holdout_mask([ids[i] for i in perm], 0.1), mask[perm])
    grown = health.holdout_mask([*ids, *(f"new/{i}" for i in range(30))], 0.1)
    assert (grown[:3000] & ~mask).sum() <= 3 and (mask & ~grown[:3000]).sum() <= 30
    assert health.holdout_mask(ids, 0.0).sum() == 0
    assert health.holdout_mask(ids[:150], 0.1).sum() == 0  # too few samples to hold any out
    assert health.holdout_mask([f"{i}" for i in range(100_000)], 0.1).sum() == health.MAX_HOLDOUT


@pytest.mark.parametrize(
    "train, held, noise, curve, verdict",
    [
        (0.62, 0.60, 0.15, (), "underfit"),  # the shape set of the issue: far below 1 - noise
        (0.62, 0.60, None, (0.3, 0.45, 0.52, 0.60), "underfit"),  # unknown noise, but still learning
        (0.62, 0.60, None, (0.58, 0.60, 0.60, 0.60), "ok"),  # unknown noise, flat: maybe noisy labels
        (0.45, 0.44, None, (), "underfit"),  # fewer than half of the given labels
        (0.60, 0.75, None, (), "underfit"),  # better on data it never saw than on its own
        (0.99, 0.70, 0.2, (), "memorise"),  # fits the flipped labels too
        (0.99, None, 0.2, (), "memorise"),  # above 1 - noise: wrong labels learnt
        (0.80, 0.78, 0.2, (0.7, 0.75, 0.78, 0.78), "ok"),
        (0.995, 0.93, None, (), "ok"),
    ],
)
def test_verdicts(train, held, noise, curve, verdict):
    found = health.check(
        train_accuracy=train,
        holdout_accuracy=held,
        holdout_size=200,
        epochs=10,
        expected_noise=noise,
        holdout_curve=curve,
    )
    assert found.verdict == verdict, found
    assert bool(found.advice) == (verdict != "ok")


def test_an_underfit_frozen_head_is_told_to_fine_tune():
    """More epochs or a larger model cannot help a linear head on frozen features: the advice for
    the same numbers names fine-tuning instead."""
    numbers = dict(train_accuracy=0.65, holdout_accuracy=0.64, holdout_size=900, epochs=11, expected_noise=0.2)
    trained = health.check(**numbers)
    head = health.check(**numbers, frozen_backbone=True)
    assert trained.verdict == head.verdict == "underfit"
    assert "larger model" in trained.advice and "--backbone finetune" not in trained.advice
    assert "--backbone finetune" in head.advice and "larger model" not in head.advice


def test_a_scored_checkpoint_is_not_judged():
    found = health.check(train_accuracy=0.5, holdout_accuracy=None, holdout_size=0, epochs=0)
    assert found.verdict == "unchecked" and "as it is" in found.advice


def test_one_epoch_underfits_and_says_so():
    analysis = analyze(AnalysisConfig(data="demo:digits", noise=0.2, epochs=1, lr=1e-4, seed=4))
    checkup = analysis.run["health"]
    assert checkup["verdict"] == "underfit", checkup
    assert checkup["train_accuracy"] < 0.8 and checkup["holdout_size"] == round(0.1 * 1797)
    assert any("health:" in note and "more epochs" in note for note in analysis.run["notices"])

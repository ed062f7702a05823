"""oga_core/detectors.py: flagging, within-class ranks, baseline formulas, the Isolation Forest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from oga_core.detectors import (
    DETECTORS,
    SCORE_COLUMNS,
    GradientIsolationForest,
    ScoreInputs,
    detector_column,
    flag_top,
    iforest_input,
    rank_within_class,
    ranking_score,
    score_columns,
)
from oga_core.errors import OgaError
from oga_core.gradients import GradientStats
from oga_core.lastlayer import last_layer_gradients, last_layer_norms


def baseline_scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The baseline detectors' scores of ``logits`` for the given ``labels``."""
    n = len(labels)
    stats = GradientStats("last", np.zeros((n, 1)), logits, np.zeros(n), np.zeros(n))
    return {name: DETECTORS[name].score(ScoreInputs(stats, labels)) for name in ("loss", "el2n", "margin")}


@pytest.mark.parametrize(
    "n, budget", [(1797, 0.05), (100, 0.05), (1000, 0.2), (7, 0.5), (10, 1.0), (10, 0.0), (10, 0.01)]
)
def test_flag_top_exact_count(n, budget):
    scores = np.random.default_rng(n).normal(size=n)
    flagged = flag_top(scores, budget)
    expected = min(n, max(1 if budget > 0 else 0, int(round(budget * n))))
    assert flagged.dtype == bool and int(flagged.sum()) == expected
    if 0 < expected < n:  # exactly the highest scores
        assert scores[flagged].min() > scores[~flagged].max()


def test_flag_top_ties_break_by_sample_order():
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0, 3.0, 0.0])
    assert np.flatnonzero(flag_top(scores, 2 / 7)).tolist() == [1, 2]
    assert np.flatnonzero(flag_top(scores, 3 / 7)).tolist() == [1, 2, 4]
    assert np.flatnonzero(flag_top(np.zeros(10), 0.3)).tolist() == [0, 1, 2]
    for bad in (-0.1, 1.5):
        with pytest.raises(OgaError, match="budget"):
            flag_top(scores, bad)


def test_rank_within_class():
    scores = np.array([5.0, 1.0, 3.0, 100.0, 200.0, 3.0])
    labels = np.array([0, 0, 0, 1, 1, 0])
    ranks = rank_within_class(scores, labels)
    # class 0: 1 < 3 = 3 < 5 -> ranks 1, 2.5, 2.5, 4 of 4; class 1: 100 < 200 -> 1, 2 of 2
    np.testing.assert_allclose(ranks, [4 / 4, 1 / 4, 2.5 / 4, 1 / 2, 2 / 2, 2.5 / 4])
    # per class, the top score of every class reaches 1.0 however small its raw scale
    table = pd.DataFrame({"oga_l1": scores})
    np.testing.assert_allclose(ranking_score(table, labels, detector="l1", per_class=True), ranks)
    np.testing.assert_allclose(ranking_score(table, labels, detector="l1", per_class=False), scores)


def test_baselines_against_torch():
    gen = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(50, 6, generator=gen, dtype=torch.float64)
    logits[0] = torch.tensor([200.0, -200.0, 0, 0, 0, 0], dtype=torch.float64)  # saturated softmax
    labels = torch.randint(0, 6, (50,), generator=gen)
    labels[0] = 1
    out = baseline_scores(logits.numpy(), labels.numpy())
    np.testing.assert_allclose(out["loss"], F.cross_entropy(logits, labels, reduction="none").numpy(), rtol=1e-12)
    assert out["loss"][0] == pytest.approx(400.0)  # -log p_y without overflow or log(0)
    p = torch.softmax(logits, 1)
    onehot = F.one_hot(labels, 6).double()
    np.testing.assert_allclose(out["el2n"], (p - onehot).norm(dim=1).numpy(), rtol=1e-12)
    p_y = p.gather(1, labels[:, None])[:, 0]
    best_other = p.masked_fill(onehot.bool(), -1).max(1).values
    np.testing.assert_allclose(out["margin"], (best_other - p_y).numpy(), rtol=1e-12, atol=1e-15)
    assert set(out) == {"loss", "el2n", "margin"}


def test_isolation_forest_scores_an_obvious_outlier_highest():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    x[17] = 12.0
    forest = GradientIsolationForest(random_state=0).fit(x)
    s = forest.score_samples(x)
    assert s.argmax() == 17 and s[17] > np.quantile(s, 0.99)
    np.testing.assert_array_equal(s, GradientIsolationForest(random_state=0).fit(x).score_samples(x))  # seeded
    assert GradientIsolationForest(max_samples=256).fit(x[:20]).forest_.max_samples == 20  # small data
    with pytest.raises(RuntimeError, match="fit first"):
        GradientIsolationForest().score_samples(x)


def _stats(n: int = 120, d: int = 6, k: int = 3, seed: int = 0) -> tuple[GradientStats, np.ndarray]:
    rng = np.random.default_rng(seed)
    feats = np.abs(rng.normal(size=(n, d))).astype(np.float32)
    labels = rng.integers(0, k, n)
    logits = (np.eye(k)[labels] * 4 + rng.normal(size=(n, k))).astype(np.float32)
    logits[:5] = np.roll(logits[:5], 1, axis=1)  # five confidently wrong samples
    l1, l2 = last_layer_norms(feats, logits, labels)
    return GradientStats(scope="last", features=feats, logits=logits, l1=l1, l2=l2), labels


def test_score_columns_and_iforest_input():
    stats, labels = _stats()
    table = score_columns(stats, labels, seed=0)
    assert list(table.columns) == list(SCORE_COLUMNS) and len(table) == 120
    np.testing.assert_array_equal(table["oga_l1"], stats.l1)
    np.testing.assert_array_equal(table["oga_l2"], stats.l2)
    np.testing.assert_allclose(table["loss"], baseline_scores(stats.logits, labels)["loss"])
    grads = iforest_input(stats, labels)
    np.testing.assert_array_equal(grads, last_layer_gradients(stats.features, stats.logits, labels))
    for col in SCORE_COLUMNS:  # every detector ranks the wrong samples on top
        top = set(np.argsort(-table[col].to_numpy())[:10])
        assert len(top & set(range(5))) >= 4, col

    sketched = GradientStats(**{**stats.__dict__, "scope": "all", "sketch": np.ones((120, 4), np.float32)})
    np.testing.assert_array_equal(iforest_input(sketched, labels), sketched.sketch)  # all layers: the pass's sketch
    np.testing.assert_array_equal(iforest_input(stats, labels, rows=slice(7, 19)), grads[7:19])  # a batch of rows


def test_detector_columns():
    assert [detector_column(d) for d in DETECTORS] == [
        "oga_l1",
        "oga_l2",
        "oga_iforest",
        "loss",
        "el2n",
        "margin",
        "oga_l2_traj",
        "oga_l1_traj",
        "loss_traj",
        "el2n_traj",
        "margin_traj",
        "oga_l2n_tracin",
        "margin_tracin",
        "margin_adaptive",
        "noise_aware",
        "aum",
    ]
    with pytest.raises(OgaError, match="unknown detector 'l3'"):
        detector_column("l3")


def test_every_detector_is_declared_once_with_a_label_and_help():
    columns = [d.column for d in DETECTORS.values()]
    assert len(set(columns)) == len(columns) and tuple(columns) == SCORE_COLUMNS
    for name, d in DETECTORS.items():
        assert d.name == name and d.label and d.help and d.family in ("oga", "baseline")


def test_a_nan_score_is_refused():
    stats, labels = _stats()
    stats.l2[3] = np.nan
    with pytest.raises(OgaError, match="oga_l2 is not finite for 1 of 120"):
        score_columns(stats, labels)


def test_the_isolation_forest_scores_in_batches_with_bounded_memory(monkeypatch):
    """Beyond IFOREST_FIT_ROWS it is fitted on a sample and scores every row batch by batch; the
    scores of the batches are those of one call on everything."""
    import oga_core.detectors as det

    stats, labels = _stats(n=300)
    whole = det._iforest(det.ScoreInputs(stats, labels, 0))
    monkeypatch.setattr(det, "IFOREST_BATCH", 70)  # several batches, the last a short one
    np.testing.assert_allclose(det._iforest(det.ScoreInputs(stats, labels, 0)), whole)
    monkeypatch.setattr(det, "IFOREST_FIT_ROWS", 100)  # fitted on a sample: still finds the wrong ones
    sampled = det._iforest(det.ScoreInputs(stats, labels, 0))
    assert len(set(np.argsort(-sampled)[:10]) & set(range(5))) >= 4


def test_adaptive_probs_weigh_epochs_by_quality_and_turn_to_tracin_once_memorised():
    """The noise-aware score's probabilities: the final model's without a trajectory; while the
    model has not memorised, the records and the final model averaged with their quality weights;
    once it has (training accuracy far above held-out), the TracIn-weighted average."""
    from oga_core.detectors import ScoreInputs, adaptive_probs
    from oga_core.lastlayer import TRAJECTORY_FIELDS, Trajectory, softmax

    stats, labels = _stats(n=40)
    final = softmax(stats.logits)
    np.testing.assert_allclose(adaptive_probs(ScoreInputs(stats, labels)), final)
    trained = np.ones(40, dtype=bool)
    trained[:5] = False  # the five wrong ones are held out: held-out accuracy 0, training accuracy 1
    k = final.shape[1]
    tracin = np.full((40, k), 1.0 / k)
    early = np.roll(final, 1, axis=1)  # what a record said: another class
    values = np.zeros((2, 40, len(TRAJECTORY_FIELDS)), np.float32)
    trajectory = Trajectory(values, np.array([1.0, 0.5]), trained, tracin, early, np.array([0.1, 0.3, 0.6]))
    memorised = ScoreInputs(stats, labels, 0, trajectory)
    np.testing.assert_allclose(adaptive_probs(memorised), tracin)
    trained[:5] = True
    trained[5:10] = False  # five right ones held out: it generalises as it fits, nothing memorised
    settled = adaptive_probs(ScoreInputs(stats, labels, 0, trajectory))
    np.testing.assert_allclose(settled, (0.4 * early + 0.6 * final) / 1.0)

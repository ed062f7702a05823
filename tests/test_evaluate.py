"""oga_core/evaluate.py: detection metrics and decision quality on examples worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from oga_core.evaluate import decision_quality, detection_metrics, precision_recall_at_k

TRUTH = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 0], dtype=bool)  # 3 bad samples of 10
TABLE = pd.DataFrame(
    {
        # descending: 0 (bad), 1, 2 (bad), 5 (bad), 9, 6, 4, 3, 7, 8
        "a": [0.9, 0.8, 0.7, 0.1, 0.2, 0.6, 0.3, 0.05, 0.0, 0.4],
        # the three bad samples first
        "b": [5.0, 1.0, 4.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0],
        # a NaN score counts as the least suspicious
        "c": [np.nan, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3],
    }
)


def test_precision_recall_at_k_by_hand():
    s = TABLE["a"].to_numpy()
    assert precision_recall_at_k(s, TRUTH, 1) == (1.0, pytest.approx(1 / 3))
    assert precision_recall_at_k(s, TRUTH, 2) == (0.5, pytest.approx(1 / 3))
    assert precision_recall_at_k(s, TRUTH, 4) == (0.75, 1.0)
    assert precision_recall_at_k(s, TRUTH, 50) == (0.3, 1.0)  # k capped at N
    p, r = precision_recall_at_k(s, TRUTH, 0)
    assert math.isnan(p) and r == 0.0
    p, r = precision_recall_at_k(np.ones(4), np.array([1, 1, 0, 0], bool), 1)  # ties: sample order
    assert (p, r) == (1.0, 0.5)


def test_detection_metrics_by_hand():
    m = detection_metrics(TABLE, TRUTH, columns=["a", "b", "c", "missing"], budget=0.2).set_index("score")
    assert list(m.index) == ["b", "a", "c"]  # sorted by AUROC; a column not in the table is skipped
    assert list(m.columns) == ["auroc", "ap", "precision@2", "recall@2", "precision@3", "recall@3"]
    # a: bad scores 0.9, 0.7, 0.6 beat 7, 6 and 6 of the 7 clean ones
    assert m.loc["a", "auroc"] == pytest.approx(19 / 21)
    # a: bad samples at ranks 1, 3, 4 -> AP = (1/1 + 2/3 + 3/4) / 3
    assert m.loc["a", "ap"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert m.loc["a", "precision@2"] == 0.5 and m.loc["a", "recall@2"] == pytest.approx(1 / 3)
    assert m.loc["a", "precision@3"] == pytest.approx(2 / 3) == m.loc["a", "recall@3"]
    assert m.loc["b", "auroc"] == 1.0 and m.loc["b", "ap"] == 1.0
    assert m.loc["b", "precision@2"] == 1.0 and m.loc["b", "recall@2"] == pytest.approx(2 / 3)
    assert m.loc["b", "precision@3"] == 1.0
    # c: the NaN (a bad sample) ranks last; the others at ranks 2 and 5
    assert m.loc["c", "auroc"] == pytest.approx((6 + 4 + 0) / 21)
    assert m.loc["c", "precision@3"] == pytest.approx(1 / 3)


def test_detection_metrics_without_both_classes():
    m = detection_metrics(TABLE, np.zeros(10, bool), columns=["a"], budget=0.1)
    assert math.isnan(m.loc[0, "auroc"]) and math.isnan(m.loc[0, "ap"])
    assert m.loc[0, "precision@1"] == 0.0
    assert m["score"].tolist() == ["a"]


def test_decision_quality_by_hand():
    table = pd.DataFrame(
        {
            "sample_id": ["s0", "s1", "s2", "s3", "s4", "s5"],
            "noisy": [True, False, True, False, True, True],
            "clean_label": [0, 1, 2, 0, 1, 2],
        }
    )
    decisions = pd.DataFrame(
        {
            "sample_id": ["s0", "s1", "s2", "s3", "s5", "gone"],
            "action": ["drop", "keep", "relabel", "relabel", "relabel", "drop"],
            "label": [0, 1, 2, 1, 0, 0],
        }
    )
    q = decision_quality(decisions, table)
    assert q == {
        "decided": 5,  # 'gone' is not in the analysis
        "marked_bad": 4,  # s0, s2, s3, s5
        "precision_of_bad_calls": 0.75,  # s3 was clean
        "kept": 1,
        "kept_clean_rate": 1.0,
        "relabeled": 3,
        "relabel_accuracy": pytest.approx(1 / 3),  # only s2 got its true class back
    }
    only_keep = decision_quality(decisions.iloc[[1]], table)
    assert math.isnan(only_keep["precision_of_bad_calls"]) and math.isnan(only_keep["relabel_accuracy"])
    assert decision_quality(decisions, table.drop(columns=["noisy"])) == {"decided": 6}
    assert decision_quality(decisions.iloc[:0], table) == {"decided": 0}


def test_metrics_on_the_shared_digits_analysis(digits_analysis):
    scores, truth = digits_analysis.scores, digits_analysis.noise.noisy
    m = detection_metrics(scores, truth, budget=0.05).set_index("score")
    k, n_bad = round(0.05 * len(truth)), int(truth.sum())
    assert n_bad == round(0.2 * 1797) and f"precision@{k}" in m.columns and f"recall@{n_bad}" in m.columns
    for col in ("oga_l1", "oga_l2", "oga_iforest", "loss"):
        assert m.loc[col, "auroc"] >= 0.9, (col, m.loc[col, "auroc"])
        assert m.loc[col, f"precision@{k}"] >= 0.9
    # a person who relabels every flagged sample to the model's prediction
    flagged = scores[scores["flagged"]]
    decisions = pd.DataFrame({"sample_id": flagged["sample_id"], "action": "relabel", "label": flagged["pred"]})
    q = decision_quality(decisions, scores)
    assert q["decided"] == k and q["precision_of_bad_calls"] >= 0.9
    assert q["relabel_accuracy"] == pytest.approx((flagged["pred"] == flagged["clean_label"]).mean())

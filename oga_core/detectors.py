"""Outlier scores of per-sample gradients, and the loss-based baselines; higher = more suspicious.

OGA (arXiv 2405.03869) scores a sample by how much of an outlier its loss gradient is:

* ``oga_l1`` / ``oga_l2``: the gradient's L1 / L2 norm (``oga_l2`` squared is self-TracIn);
* ``oga_iforest``: ``-IsolationForest.score_samples`` on the gradient vectors (the last layer's
  gradient, randomly projected when wide; for all layers, a count sketch of the whole gradient).

Baselines from the same forward pass: ``loss`` (cross-entropy on the given label), ``el2n``
(``||p - e_y||_2``, Paul et al. 2021) and ``margin`` (``max_{k != y} p_k - p_y``, the negated
normalised margin of cleanlab's rank module). All are computed, the chosen ``detector`` decides
``flagged``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from oga_core.errors import OgaError
from oga_core.gradients import GradientStats, last_layer_gradients, softmax_residual

DETECTORS = ("l1", "l2", "iforest", "loss", "el2n", "margin")
OGA_COLUMNS = ("oga_l1", "oga_l2", "oga_iforest")
BASELINE_COLUMNS = ("loss", "el2n", "margin")
SCORE_COLUMNS = OGA_COLUMNS + BASELINE_COLUMNS
DEFAULT_BUDGET = 0.05
# The L2 norm: in every one of the first 20 runs of `oga bench` (digits and mnist5k, symmetric and
# pair noise, 10-40%) it found flipped labels at least as well as the L1 norm (AUROC and AP). The
# L1 norm is 2 (1 - p_y) (||h||_1 + 1), which saturates for confidently wrong samples; the L2 norm
# is EL2N times ||[h, 1]||_2, and EL2N was the strongest of the baselines.
DEFAULT_DETECTOR = "l2"


def detector_column(detector: str) -> str:
    """``l1`` -> ``oga_l1``; baselines are their own column names."""
    if detector not in DETECTORS:
        raise OgaError(f"unknown detector '{detector}': choose one of {', '.join(DETECTORS)}")
    return f"oga_{detector}" if detector in ("l1", "l2", "iforest") else detector


class GradientIsolationForest:
    """Isolation Forest over gradient vectors, in scikit-learn's fit / score_samples shape.

    ``score_samples`` returns the NEGATED sklearn score, so that higher = more anomalous like
    every other score here. ``max_samples=256`` is the original paper's sub-sample size: fitting
    costs the same for 2 k or 2 M samples.
    """

    def __init__(self, *, n_estimators: int = 200, max_samples: int = 256, random_state: int = 0) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state
        self.forest_ = None

    def fit(self, gradients: np.ndarray) -> GradientIsolationForest:
        """gradients: ``(N, d)``."""
        from sklearn.ensemble import IsolationForest  # sklearn.ensemble costs ~1.5 s to import

        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(gradients)),
            random_state=self.random_state,
        ).fit(gradients)
        return self

    def score_samples(self, gradients: np.ndarray) -> np.ndarray:
        """``(N,)`` anomaly scores, higher = more of an outlier."""
        if self.forest_ is None:
            raise RuntimeError("call fit first")
        return -self.forest_.score_samples(gradients)


def iforest_input(stats: GradientStats, labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """The vectors the Isolation Forest sees, ``(N, d)``.

    ``last``: the head's per-sample gradients (randomly projected to 1,024 dims beyond 4,096).
    ``all``: a 1,024-wide count sketch of the whole per-sample gradient, made during the pass.
    """
    if stats.sketch is not None:
        return stats.sketch
    return last_layer_gradients(stats.features, stats.logits, labels, seed=seed)


def baseline_scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """``loss``, ``el2n`` and ``margin`` ``(N,)`` from the logits and the GIVEN labels."""
    r = softmax_residual(logits, labels)
    rows = np.arange(len(labels))
    p_given = r[rows, labels] + 1.0
    probs = r.copy()
    probs[rows, labels] = p_given
    others = probs.copy()
    others[rows, labels] = -np.inf
    z = logits.astype(np.float64)
    log_p = z - z.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    return {
        "loss": -log_p[rows, labels],
        "el2n": np.sqrt((r**2).sum(1)),
        "margin": others.max(1) - p_given,
    }


def score_columns(stats: GradientStats, labels: np.ndarray, *, seed: int = 0) -> pd.DataFrame:
    """Every score column (``SCORE_COLUMNS``) for one set of gradient stats, ``N`` rows."""
    forest = GradientIsolationForest(random_state=seed)
    grads = iforest_input(stats, labels, seed=seed)
    columns = {
        "oga_l1": stats.l1,
        "oga_l2": stats.l2,
        "oga_iforest": forest.fit(grads).score_samples(grads),
        **baseline_scores(stats.logits, labels),
    }
    table = pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in columns.items()})
    for name in table.columns:
        bad = int((~np.isfinite(table[name].to_numpy())).sum())
        if bad:
            raise OgaError(f"score {name} is not finite for {bad} of {len(table)} samples: no ranking can be made")
    return table


def rank_within_class(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each score's percentile ``(0, 1]`` among samples of the same given label.

    Gradient and feature norms differ by class (a '1' has fewer ink pixels than an '8'), so a
    global top-k can fill up with one class; ranking within classes spreads the budget evenly.
    """
    out = np.empty(len(scores), dtype=np.float64)
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        ranks = pd.Series(scores[idx]).rank(method="average").to_numpy()
        out[idx] = ranks / len(idx)
    return out


def flag_top(scores: np.ndarray, budget: float) -> np.ndarray:
    """Boolean ``(N,)``: the ``round(budget * N)`` highest scores (at least one if budget > 0).

    Ties are broken by sample order, so the count is exact and the result reproducible.
    """
    if not 0.0 <= budget <= 1.0:
        raise OgaError(f"budget must be a fraction in [0, 1], got {budget}")
    n = len(scores)
    k = min(n, max(1 if budget > 0 else 0, int(round(budget * n))))
    flagged = np.zeros(n, dtype=bool)
    flagged[np.argsort(-np.asarray(scores), kind="stable")[:k]] = True
    return flagged


def ranking_score(table: pd.DataFrame, labels: np.ndarray, *, detector: str, per_class: bool) -> np.ndarray:
    """The score that orders samples for review: the detector's column, within-class if asked."""
    raw = table[detector_column(detector)].to_numpy()
    return rank_within_class(raw, labels) if per_class else raw

"""Rankings from outside the product that the quality part compares OGA with (the ``"peer"``
columns of :mod:`oga_core.bench.columns`): cleanlab's confident learning and seeded random.

Each peer maps :class:`PeerInputs` to ``(N,)`` float scores, higher = more suspicious; adding a
peer is one entry in :data:`PEERS` plus its column.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PeerInputs:
    """The GIVEN (noisy) labels ``(N,)``, out-of-sample probabilities ``(N, K)`` from K-fold
    cross-validation, and the run's seed."""

    given: np.ndarray
    cv_probs: np.ndarray
    seed: int


def _quality(inputs: PeerInputs, method: str) -> np.ndarray:
    from cleanlab.rank import get_label_quality_scores  # lazy: cleanlab is optional (the bench extra)

    return get_label_quality_scores(labels=inputs.given, pred_probs=inputs.cv_probs, method=method)


def cleanlab_self_confidence(inputs: PeerInputs) -> np.ndarray:
    """1 - cleanlab's self-confidence label quality (out-of-sample loss's rank)."""
    return 1.0 - _quality(inputs, "self_confidence")


def cleanlab_normalized_margin(inputs: PeerInputs) -> np.ndarray:
    """1 - cleanlab's normalized-margin label quality (its stronger ranking)."""
    return 1.0 - _quality(inputs, "normalized_margin")


def cleanlab_find_label_issues(inputs: PeerInputs) -> np.ndarray:
    """cleanlab's ``find_label_issues`` as a ranking: its issues first, each part by normalized margin."""
    flagged = np.zeros(len(inputs.given))
    flagged[cleanlab_issues(inputs)] = 1.0
    return flagged + cleanlab_normalized_margin(inputs)  # margins lie in [0, 1]: issues stay on top


def random_score(inputs: PeerInputs) -> np.ndarray:
    """Uniform random scores, seeded apart from the noise and model seeds."""
    return np.random.default_rng(10_000 + inputs.seed).random(len(inputs.given))


PEERS: dict[str, Callable[[PeerInputs], np.ndarray]] = {
    "cleanlab_sc": cleanlab_self_confidence,
    "cleanlab_nm": cleanlab_normalized_margin,
    "cleanlab_fli": cleanlab_find_label_issues,
    "random": random_score,
}


def cleanlab_issues(inputs: PeerInputs) -> np.ndarray:
    """The indices cleanlab's ``find_label_issues`` reports (its own count, not a top-k), ranked
    by self-confidence."""
    from cleanlab.filter import find_label_issues  # lazy: cleanlab is optional (the bench extra)

    with warnings.catch_warnings():
        # "may not flag all label issues in class k": cleanlab's caution for small classes; the
        # report shows what it did flag, and repeating the warning per class and run adds nothing.
        warnings.filterwarnings("ignore", message="May not flag all label issues", category=UserWarning)
        issues = find_label_issues(
            labels=inputs.given, pred_probs=inputs.cv_probs, return_indices_ranked_by="self_confidence", n_jobs=1
        )
    return np.asarray(issues, dtype=np.int64)

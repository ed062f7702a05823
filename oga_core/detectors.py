"""Outlier scores of per-sample gradients, and the loss-based baselines; higher = more suspicious.

Every detector is declared once, in :data:`DETECTORS`: its name (``--detector``), its score
column (in ``scores.csv``), its label and help (the app's select box, ``oga analyze --help``) and
the function that computes it. Adding a detector is one entry there plus its test.

OGA (arXiv 2405.03869) scores a sample by how much of an outlier its loss gradient is:

* ``oga_l1`` / ``oga_l2``: the gradient's L1 / L2 norm (``oga_l2`` squared is self-TracIn);
* ``oga_iforest``: ``-IsolationForest.score_samples`` on the gradient vectors (the last layer's
  gradient, randomly projected when wide; for all layers, a count sketch of the whole gradient).

Baselines from the same forward pass: ``loss`` (cross-entropy on the given label), ``el2n``
(``||p - e_y||_2``, Paul et al. 2021) and ``margin`` (``max_{k != y} p_k - p_y``, the negated
normalised margin of cleanlab's rank module). All are computed; the chosen detector decides
``flagged``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from oga_core import options
from oga_core.errors import OgaError
from oga_core.lastlayer import (
    TRAJECTORY_FIELDS,
    Trajectory,
    last_layer_gradients,
    log_softmax,
    primitives,
    softmax,
)
from oga_core.transition import noise_aware_scores

if TYPE_CHECKING:  # the gradient module imports torch; scoring needs only its arrays
    from oga_core.gradients import GradientStats


@dataclass(frozen=True)
class ScoreInputs:
    """What a score function may read: the gradient stats of the final model, the GIVEN labels
    ``(N,)``, the seed of any randomised step, and the training trajectory (None when the model
    was loaded, not trained: trajectory scores then fall back to the final model's values)."""

    stats: GradientStats
    labels: np.ndarray
    seed: int = 0
    trajectory: Trajectory | None = None

    def fields(self) -> dict[str, np.ndarray]:
        """The closed-form factors of every epoch, ``{name: (E, N)}`` (``E = 1``: the final model
        when there is no trajectory)."""
        if self.trajectory is not None:
            return {name: self.trajectory.field(name).astype(np.float64) for name in TRAJECTORY_FIELDS}
        final = primitives(self.stats.features, self.stats.logits, self.labels, dtype=np.float64)
        return {name: final[None, :, j] for j, name in enumerate(TRAJECTORY_FIELDS)}


@dataclass(frozen=True)
class Detector:
    """One way to rank samples. ``score(inputs) -> (N,)`` float, higher = more suspicious."""

    name: str
    column: str
    label: str
    help: str
    family: str  # "oga" (a gradient outlier score) or "baseline"
    score: Callable[[ScoreInputs], np.ndarray]
    trajectory: bool = False  # averaged over the training run; needs training to mean that


def _averaged(per_epoch: Callable[[dict[str, np.ndarray]], np.ndarray]) -> Callable[[ScoreInputs], np.ndarray]:
    """A trajectory score: ``per_epoch(fields)`` (each field ``(E, N)``) averaged over epochs."""
    return lambda inputs: per_epoch(inputs.fields()).mean(0)


def _lr_weighted(per_epoch: Callable[[dict[str, np.ndarray]], np.ndarray]) -> Callable[[ScoreInputs], np.ndarray]:
    """A trajectory score in TracIn's form: ``per_epoch(fields)`` summed over epochs weighted by
    each epoch's learning rate (normalised to sum to one). With a decaying schedule the early
    epochs count most, before the model has had the steps to memorise a wrong label."""

    def score(inputs: ScoreInputs) -> np.ndarray:
        values = per_epoch(inputs.fields())
        if inputs.trajectory is None:
            return values.mean(0)
        weights = inputs.trajectory.lr / inputs.trajectory.lr.sum()
        return (weights[:, None] * values).sum(0)

    return score


def _class_normalised_l2(f: dict[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Per epoch, OGA-L2 with the feature norm divided by its median over the sample's given
    class: ``||p - e_y|| sqrt((||h|| / median_class ||h||)^2 + 1)``. Feature norms differ by class
    (a '1' has less ink than an '8') more than they track label errors."""
    h = f["h_l2"]
    median = np.ones_like(h)
    for k in np.unique(labels):
        rows = labels == k
        median[:, rows] = np.median(h[:, rows], axis=1, keepdims=True)
    return f["el2n"] * np.sqrt((h / np.maximum(median, 1e-12)) ** 2 + 1.0)


def memorisation(inputs: ScoreInputs) -> float | None:
    """How far the final model has memorised its training labels, in [0, 1]: its accuracy on the
    GIVEN labels of the trained samples above that of the held-out ones, as a share of what the
    held-out part leaves (0: fits training as it fits unseen data; 1: fits every training label).
    None without a trajectory or a held-out part (nothing to compare with)."""
    if inputs.trajectory is None:
        return None
    trained = np.asarray(inputs.trajectory.trained, dtype=bool)
    if trained.all() or not trained.any():
        return None
    correct = np.asarray(inputs.stats.logits).argmax(1) == inputs.labels
    train_acc, held_acc = float(correct[trained].mean()), float(correct[~trained].mean())
    return float(np.clip((train_acc - held_acc) / max(1.0 - held_acc, 1e-9), 0.0, 1.0))


# The blend of :func:`_adaptive_margin` moves from the final model to the trajectory as
# memorisation goes from the first to the second of these (docs/architecture.md, "Formulas").
BLEND_FROM, BLEND_TO = 0.35, 0.65


def blend_weight(inputs: ScoreInputs) -> float:
    """The trajectory's share in :func:`_adaptive_margin`: 0 (the final model's margin) while the
    model has not memorised, 1 (TracIn's margin) once it has, linear between; 1 when memorisation
    cannot be measured (no held-out part) and 0 without a trajectory."""
    if inputs.trajectory is None:
        return 0.0
    m = memorisation(inputs)
    if m is None:
        return 1.0
    return float(np.clip((m - BLEND_FROM) / (BLEND_TO - BLEND_FROM), 0.0, 1.0))


def _probability_margin(f: dict[str, np.ndarray]) -> np.ndarray:
    return f["p_other"] - np.exp(f["log_p_given"])


def _adaptive_margin(inputs: ScoreInputs) -> np.ndarray:
    """The final model's probability margin while it has not memorised its training labels, the
    TracIn-weighted margin once it has, a blend between (:func:`blend_weight`).

    Why: a short run's early epochs are a half-trained model's guesses (1 epoch of digits: TracIn
    0.948 AUROC, the final margin 0.993), while a model that has memorised the flips gives them
    the same final margin as clean samples (3x the epochs, pair 30%: final 0.77, TracIn 0.90).
    Memorisation is read off the held-out part the health check keeps anyway."""
    final = _margin(inputs)
    w = blend_weight(inputs)
    if w == 0.0:
        return final
    tracin = _lr_weighted(_probability_margin)(inputs)
    return (1.0 - w) * final + w * tracin


def adaptive_probs(inputs: ScoreInputs) -> np.ndarray:
    """float64 ``(N, K)`` class probabilities the noise-aware score reads. While the model has not
    memorised: every epoch's records and the final model averaged, each weighted by its squared
    held-out accuracy above chance (``Trajectory.quality_probs``: a short run's half-trained
    epochs weigh little, and an underfit model trained on shifted and mirrored views is averaged
    over many); once it has, the TracIn-weighted average (early epochs, before the flips were
    learnt); blended by :func:`blend_weight`, as :func:`_adaptive_margin` blends margins. The
    final model's alone without a trajectory."""
    final = softmax(inputs.stats.logits)
    trajectory = inputs.trajectory
    if trajectory is None or trajectory.probs is None:
        return final
    w = blend_weight(inputs)
    settled = trajectory.quality_probs(final)
    if w == 0.0:
        return settled
    return (1.0 - w) * settled + w * np.asarray(trajectory.probs, dtype=np.float64)


def _noise_aware(inputs: ScoreInputs) -> np.ndarray:
    """:func:`oga_core.transition.noise_aware_scores` of :func:`adaptive_probs`."""
    return noise_aware_scores(adaptive_probs(inputs), inputs.labels)[0]


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
        from sklearn.ensemble import IsolationForest  # lazy: sklearn.ensemble costs ~1.5 s to import

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


# The Isolation Forest is fitted on at most this many rows (each tree sees 256 of them anyway)
# and scores the rest in batches, so its memory does not grow with the data set: its input is
# K (D + 1) floats a row (5 KB for 10 classes of 128 features), 62 MB for 12,000 rows at once.
IFOREST_FIT_ROWS = 4_096
IFOREST_BATCH = 4_096


def iforest_input(
    stats: GradientStats, labels: np.ndarray, *, seed: int = 0, rows: np.ndarray | slice = slice(None)
) -> np.ndarray:
    """The vectors the Isolation Forest sees, ``(len(rows), d)``.

    ``last``: the head's per-sample gradients (randomly projected to 1,024 dims beyond 4,096; the
    same projection for every call with this ``seed``). ``all``: a 1,024-wide count sketch of the
    whole per-sample gradient, made during the pass.
    """
    if stats.sketch is not None:
        return stats.sketch[rows]
    return last_layer_gradients(stats.features[rows], stats.logits[rows], np.asarray(labels)[rows], seed=seed)


def _iforest(inputs: ScoreInputs) -> np.ndarray:
    n = len(inputs.labels)
    rng = np.random.default_rng(inputs.seed)
    fit_rows = np.sort(rng.choice(n, size=IFOREST_FIT_ROWS, replace=False)) if n > IFOREST_FIT_ROWS else slice(None)
    forest = GradientIsolationForest(random_state=inputs.seed)
    forest.fit(iforest_input(inputs.stats, inputs.labels, seed=inputs.seed, rows=fit_rows))
    out = np.empty(n, dtype=np.float64)
    for lo in range(0, n, IFOREST_BATCH):
        batch = slice(lo, min(n, lo + IFOREST_BATCH))
        out[batch] = forest.score_samples(iforest_input(inputs.stats, inputs.labels, seed=inputs.seed, rows=batch))
    return out


def _given(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return probs[np.arange(len(labels)), labels]


def _loss(inputs: ScoreInputs) -> np.ndarray:
    return -_given(log_softmax(inputs.stats.logits), inputs.labels)


def _el2n(inputs: ScoreInputs) -> np.ndarray:
    p = softmax(inputs.stats.logits)
    p[np.arange(len(inputs.labels)), inputs.labels] -= 1.0
    return np.sqrt((p**2).sum(1))


def _margin(inputs: ScoreInputs) -> np.ndarray:
    p = softmax(inputs.stats.logits)
    given = _given(p, inputs.labels).copy()
    p[np.arange(len(inputs.labels)), inputs.labels] = -np.inf
    return p.max(1) - given


DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector(
            "l1",
            "oga_l1",
            "OGA L1 · gradient norm",
            "L1 norm of the sample's loss gradient (the paper's OGA-L1)",
            "oga",
            lambda inputs: inputs.stats.l1,
        ),
        Detector(
            "l2",
            "oga_l2",
            "OGA L2 · gradient norm",
            "L2 norm of the sample's loss gradient (the paper's OGA-L2; squared, self-TracIn)",
            "oga",
            lambda inputs: inputs.stats.l2,
        ),
        Detector(
            "iforest",
            "oga_iforest",
            "OGA Isolation Forest",
            "Isolation Forest outlier score of the sample's loss gradient vector",
            "oga",
            _iforest,
        ),
        Detector("loss", "loss", "Loss (baseline)", "cross-entropy on the given label", "baseline", _loss),
        Detector(
            "el2n", "el2n", "EL2N (baseline)", "||softmax - one-hot(given)||_2 (Paul et al. 2021)", "baseline", _el2n
        ),
        Detector(
            "margin",
            "margin",
            "Margin (baseline)",
            "best other class's probability minus the given class's (cleanlab's normalised margin, negated)",
            "baseline",
            _margin,
        ),
        # -- averaged over the training trajectory, from training's own forward passes ------------
        Detector(
            "l2_traj",
            "oga_l2_traj",
            "OGA L2 · over training",
            "the last layer's gradient L2 norm averaged over every epoch of training (TracIn's self-influence view)",
            "oga",
            _averaged(lambda f: f["el2n"] * np.sqrt(f["h_l2"] ** 2 + 1.0)),
            trajectory=True,
        ),
        Detector(
            "l1_traj",
            "oga_l1_traj",
            "OGA L1 · over training",
            "the last layer's gradient L1 norm averaged over every epoch of training",
            "oga",
            _averaged(lambda f: -2.0 * np.expm1(f["log_p_given"]) * (f["h_l1"] + 1.0)),
            trajectory=True,
        ),
        Detector(
            "loss_traj",
            "loss_traj",
            "Loss · over training (baseline)",
            "cross-entropy on the given label averaged over training",
            "baseline",
            _averaged(lambda f: -f["log_p_given"]),
            trajectory=True,
        ),
        Detector(
            "el2n_traj",
            "el2n_traj",
            "EL2N · over training (baseline)",
            "||softmax - one-hot(given)||_2 averaged over training",
            "baseline",
            _averaged(lambda f: f["el2n"]),
            trajectory=True,
        ),
        Detector(
            "margin_traj",
            "margin_traj",
            "Margin · over training (baseline)",
            "probability margin averaged over training (a probability version of AUM)",
            "baseline",
            _averaged(_probability_margin),
            trajectory=True,
        ),
        Detector(
            "l2n_tracin",
            "oga_l2n_tracin",
            "OGA L2 · class-normalised, TracIn-weighted",
            "the last layer's gradient L2 norm with the feature norm taken relative to its class's median, "
            "summed over training weighted by the learning rate",
            "oga",
            lambda inputs: _lr_weighted(lambda f: _class_normalised_l2(f, inputs.labels))(inputs),
            trajectory=True,
        ),
        Detector(
            "margin_tracin",
            "margin_tracin",
            "Margin · TracIn-weighted",
            "the probability margin (best other class minus the given one) summed over training weighted by the "
            "learning rate; ranks as the logit gradient's component toward the runner-up class",
            "oga",
            _lr_weighted(_probability_margin),
            trajectory=True,
        ),
        Detector(
            "adaptive",
            "margin_adaptive",
            "Margin · final or over training, by memorisation",
            "the final model's probability margin while it has not memorised its training labels (judged on the "
            "held-out part), the TracIn-weighted margin once it has, blended between",
            "oga",
            _adaptive_margin,
            trajectory=True,
        ),
        Detector(
            "noise_aware",
            "noise_aware",
            "Noise-aware · toward the classes flips come from (default)",
            "estimates from the data which classes the wrong labels come from (cleanlab's confident joint of the "
            "model's probabilities): where they concentrate (look-alike classes), ranks by the probability of the "
            "likeliest source class against the given one; where they spread, by EL2N. Probabilities of the final "
            "model, or averaged over training once it memorises",
            "oga",
            _noise_aware,
            trajectory=True,
        ),
        Detector(
            "aum",
            "aum",
            "AUM (baseline)",
            "area under the margin (Pleiss et al. 2020): the logit margin averaged over training, negated",
            "baseline",
            _averaged(lambda f: -f["logit_margin"]),
            trajectory=True,
        ),
    )
}
SCORE_COLUMNS = tuple(d.column for d in DETECTORS.values())
OGA_COLUMNS = tuple(d.column for d in DETECTORS.values() if d.family == "oga")
if options.DEFAULT_DETECTOR not in DETECTORS:  # a typo in options.py would otherwise surface at run time
    raise AssertionError(f"options.DEFAULT_DETECTOR '{options.DEFAULT_DETECTOR}' is not a detector")


def get(name: str) -> Detector:
    """The detector called ``name``; OgaError listing the choices otherwise."""
    if name not in DETECTORS:
        raise OgaError(f"unknown detector '{name}': choose one of {', '.join(DETECTORS)}")
    return DETECTORS[name]


def detector_column(name: str) -> str:
    """``l1`` -> ``oga_l1``: the score column a detector ranks by."""
    return get(name).column


def check_budget(budget: float) -> float:
    """``budget`` if it is a fraction in [0, 1], else OgaError."""
    if not 0.0 <= budget <= 1.0:
        raise OgaError(f"budget must be a fraction in [0, 1], got {budget}")
    return budget


def score_columns(
    stats: GradientStats, labels: np.ndarray, *, seed: int = 0, trajectory: Trajectory | None = None
) -> pd.DataFrame:
    """Every score column (``SCORE_COLUMNS``) for one set of gradient stats, ``N`` rows; OgaError
    if any is not finite (no ranking can be made of NaN)."""
    inputs = ScoreInputs(stats, np.asarray(labels, dtype=np.int64), seed, trajectory)
    table = pd.DataFrame({d.column: np.asarray(d.score(inputs), dtype=np.float64) for d in DETECTORS.values()})
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
    check_budget(budget)
    n = len(scores)
    k = min(n, max(1 if budget > 0 else 0, int(round(budget * n))))
    flagged = np.zeros(n, dtype=bool)
    flagged[np.argsort(-np.asarray(scores), kind="stable")[:k]] = True
    return flagged


def on_trained_scale(scores: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """``scores`` with the held-out samples' (``~trained``) mapped onto the trained samples' scale
    by quantile: a held-out sample at the q-th quantile of the held-out part gets the q-th quantile
    of the trained part. Held-out samples were never fitted, so their raw scores run higher; on a
    common scale each part is flagged in proportion."""
    out = np.asarray(scores, dtype=np.float64).copy()
    held = ~np.asarray(trained, dtype=bool)
    if not held.any() or held.all():
        return out
    q = (pd.Series(out[held]).rank(method="average").to_numpy() - 0.5) / held.sum()
    out[held] = np.quantile(out[~held], q)
    return out


def ranking_score(
    table: pd.DataFrame,
    labels: np.ndarray,
    *,
    detector: str,
    per_class: bool,
    trained: np.ndarray | None = None,
) -> np.ndarray:
    """The score that orders samples for review: the detector's column (held-out samples put on
    the trained samples' scale, see :func:`on_trained_scale`), within-class if asked."""
    raw = table[detector_column(detector)].to_numpy()
    if trained is not None:
        raw = on_trained_scale(raw, trained)
    return rank_within_class(raw, labels) if per_class else raw

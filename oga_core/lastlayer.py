"""The last layer's per-sample loss gradient in closed form (numpy only, no autograd).

For a head ``z = W h + b`` and cross-entropy on the GIVEN label ``y``, the gradient of sample i
with respect to ``[W, b]`` is ``g_i = (p_i - e_y) [h_i, 1]^T`` (``p`` = softmax of the logits), so

    ||g||_2 = ||p - e_y||_2 * sqrt(||h||_2^2 + 1)
    ||g||_1 = ||p - e_y||_1 * (||h||_1 + 1) = 2 (1 - p_y) (||h||_1 + 1)

and every last-layer OGA score costs one forward pass (docs/architecture.md, "Formulas").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float64 ``(N, K)`` log-probabilities, computed stably."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """float64 ``(N, K)`` probabilities."""
    return np.exp(log_softmax(logits))


def softmax_residual(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``p - e_y``, float64 ``(N, K)``: the loss gradient with respect to the logits."""
    r = softmax(logits)
    r[np.arange(len(labels)), labels] -= 1.0
    return r


def last_layer_norms(features: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form L1 and L2 norms ``(N,)`` of the head's per-sample gradient (weight and bias)."""
    r = softmax_residual(logits, labels)
    h_l1, h_l2 = feature_norms(features)
    l1 = np.abs(r).sum(1) * (h_l1 + 1.0)
    l2 = np.sqrt((r**2).sum(1) * (h_l2**2 + 1.0))
    return l1, l2


def feature_norms(features: np.ndarray, *, block: int = 4_096) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``(N,)`` L1 and L2 norms of each row, a block of rows at a time (a float64 copy of
    every feature at once made a scoring pass's peak grow with N)."""
    n = len(features)
    l1, l2 = np.empty(n), np.empty(n)
    for lo in range(0, n, block):
        part = np.asarray(features[lo : lo + block], dtype=np.float64)
        l1[lo : lo + len(part)] = np.abs(part).sum(1)
        l2[lo : lo + len(part)] = np.sqrt((part**2).sum(1))
    return l1, l2


def last_layer_gradients(
    features: np.ndarray,
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    max_dims: int = 4096,
    projected_dims: int = 1024,
    seed: int = 0,
    batch_size: int = 4096,
) -> np.ndarray:
    """The head's per-sample gradients flattened, float32 ``(N, K * (D + 1))`` (class-major).

    When ``K * (D + 1) > max_dims`` a Gaussian random projection to ``projected_dims`` is returned
    instead (Johnson-Lindenstrauss: distances kept within a few percent), computed batch by batch
    from the factors so that the full ``(N, K * (D + 1))`` matrix never exists.
    """
    r = softmax_residual(logits, labels).astype(np.float32)
    h = np.concatenate([np.asarray(features, np.float32), np.ones((len(features), 1), np.float32)], axis=1)
    n, k, d = len(r), r.shape[1], h.shape[1]
    if k * d <= max_dims:
        return (r[:, :, None] * h[:, None, :]).reshape(n, k * d)
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((d, k, projected_dims), dtype=np.float32) / np.float32(np.sqrt(projected_dims))
    proj_flat = proj.reshape(d, k * projected_dims)
    out = np.empty((n, projected_dims), np.float32)
    for lo in range(0, n, batch_size):
        hb, rb = h[lo : lo + batch_size], r[lo : lo + batch_size]
        # g.R = sum_c r_c (h^T R_c): one (B, D) x (D, K*k) product instead of forming g
        hr = (hb @ proj_flat).reshape(len(hb), k, projected_dims)
        out[lo : lo + batch_size] = np.einsum("bc,bck->bk", rb, hr)
    return out


# What training records for every sample and epoch, from its own forward pass (trained samples:
# the mini-batch pass before that batch's optimiser step; held-out samples: an eval-mode pass at
# the end of the epoch). Every trajectory score is a function of these (docs/architecture.md,
# "Formulas"): log_p_given = log p_y (kept as a log: in float32, both 1 - p_y of a confident
# sample and p_y of a hopeless one stay precise), p_other = max_{k != y} p_k, el2n = ||p - e_y||_2,
# logit_margin = z_y - max_{k != y} z_k, h_l2 = ||h||_2, h_l1 = ||h||_1.
TRAJECTORY_FIELDS = ("log_p_given", "p_other", "el2n", "logit_margin", "h_l2", "h_l1")


@dataclass
class Trajectory:
    """Per-sample quantities of every epoch: ``values`` float32 ``(E, N, F)`` with fields
    ``TRAJECTORY_FIELDS``; ``lr`` ``(E,)`` the mean learning rate of each epoch; ``trained`` bool
    ``(N,)``: False for held-out samples (recorded, never trained on); ``probs`` float32 ``(N, K)``
    each sample's class probabilities averaged over the epochs with TracIn's learning-rate weights
    (``lr`` normalised to sum to one), or None where it was not recorded; ``probs_quality`` the same
    averaged with the weights ``quality[:E]`` (each record's squared held-out accuracy above
    chance), and ``quality[E]`` the final model's weight, for :meth:`quality_probs` (None without
    a held-out part)."""

    values: np.ndarray
    lr: np.ndarray
    trained: np.ndarray
    probs: np.ndarray | None = None
    probs_quality: np.ndarray | None = None
    quality: np.ndarray | None = None

    def quality_probs(self, final: np.ndarray) -> np.ndarray:
        """float64 ``(N, K)``: the records' and the final model's probabilities ``final`` averaged
        with the quality weights; ``final`` itself when there are none (no held-out part)."""
        if self.probs_quality is None or self.quality is None:
            return final
        records, last = float(self.quality[:-1].sum()), float(self.quality[-1])
        if records + last <= 0:
            return final
        return (records * np.asarray(self.probs_quality, dtype=np.float64) + last * final) / (records + last)

    def field(self, name: str) -> np.ndarray:
        """``(E, N)`` values of one field."""
        return self.values[:, :, TRAJECTORY_FIELDS.index(name)]

    @property
    def epochs(self) -> int:
        return int(self.values.shape[0])


def primitives(features: np.ndarray, logits: np.ndarray, labels: np.ndarray, *, dtype: type = np.float32) -> np.ndarray:
    """``(N, F)`` of the ``TRAJECTORY_FIELDS`` of one set of features and logits (the final
    model's, when there is no training to record), computed in float64 and returned as ``dtype``."""
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(labels))
    log_p = log_softmax(logits)
    p = np.exp(log_p)
    z = np.asarray(logits, dtype=np.float64)
    h_l1, h_l2 = feature_norms(features)
    log_p_given = log_p[rows, labels].copy()
    p[rows, labels] = -1.0
    z_other = z.copy()
    z_other[rows, labels] = -np.inf
    return np.stack(
        [
            log_p_given,
            p.max(1),
            np.linalg.norm(softmax_residual(logits, labels), axis=1),
            z[rows, labels] - z_other.max(1),
            h_l2,
            h_l1,
        ],
        1,
    ).astype(dtype)

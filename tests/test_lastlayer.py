"""oga_core/lastlayer.py: the closed-form last-layer gradient, its norms and its projection.

(That the closed form equals torch.func's per-sample gradient of a real model is checked in
tests/test_gradients.py, with the other fast paths.)"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.distance import pdist

from oga_core.lastlayer import last_layer_gradients, last_layer_norms, log_softmax, softmax, softmax_residual


def test_softmax_is_stable_and_matches_torch():
    gen = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(50, 6, generator=gen, dtype=torch.float64)
    logits[0] = torch.tensor([800.0, -800.0, 0, 0, 0, 0], dtype=torch.float64)  # overflows a naive exp
    np.testing.assert_allclose(log_softmax(logits.numpy()), F.log_softmax(logits, 1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(softmax(logits.numpy()), torch.softmax(logits, 1).numpy(), rtol=1e-12, atol=1e-300)
    assert np.isfinite(log_softmax(logits.numpy())).all()


def test_closed_form_norms_are_the_factor_identities():
    rng = np.random.default_rng(0)
    feats, logits, y = rng.normal(size=(20, 7)), rng.normal(size=(20, 4)) * 3, rng.integers(0, 4, 20)
    r = softmax_residual(logits, y)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(r, p - np.eye(4)[y], atol=1e-12)
    l1, l2 = last_layer_norms(feats, logits, y)
    p_y = p[np.arange(20), y]
    # ||g||_1 = 2 (1 - p_y) (||h||_1 + 1) and ||g||_2 = ||p - e_y||_2 ||[h, 1]||_2 (docs/architecture.md)
    np.testing.assert_allclose(l1, 2 * (1 - p_y) * (np.abs(feats).sum(1) + 1), rtol=1e-10)
    np.testing.assert_allclose(l2, np.linalg.norm(r, axis=1) * np.sqrt((feats**2).sum(1) + 1), rtol=1e-10)
    g = last_layer_gradients(feats.astype(np.float32), logits.astype(np.float32), y)
    np.testing.assert_allclose(np.abs(g).sum(1), l1, rtol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), l2, rtol=1e-4)


def test_random_projection_keeps_pairwise_distances():
    rng = np.random.default_rng(0)
    n, d = 40, 512  # K * (D + 1) = 5,130 > 4,096: projected to 1,024 dims
    feats = np.abs(rng.normal(size=(n, d))).astype(np.float32)
    logits = (3 * rng.normal(size=(n, 10))).astype(np.float32)
    labels = rng.integers(0, 10, n)
    exact = last_layer_gradients(feats, logits, labels, max_dims=10**9)
    projected = last_layer_gradients(feats, logits, labels, batch_size=7)  # several batches
    assert exact.shape == (n, 5130) and projected.shape == (n, 1024)
    ratio = pdist(projected) / pdist(exact)
    assert ratio.min() > 0.85 and ratio.max() < 1.15, (ratio.min(), ratio.max())  # JL, eps ~ 3/sqrt(1024)
    assert abs(ratio.mean() - 1) < 0.03
    norms = np.linalg.norm(projected, axis=1) / np.linalg.norm(exact, axis=1)
    assert norms.min() > 0.85 and norms.max() < 1.15
    # seeded: the same projection every time (batches change only the float32 summation order)
    np.testing.assert_array_equal(projected, last_layer_gradients(feats, logits, labels, batch_size=7))
    again = last_layer_gradients(feats, logits, labels)
    np.testing.assert_allclose(projected, again, rtol=1e-4, atol=1e-5)
    other = last_layer_gradients(feats, logits, labels, seed=1)
    assert not np.allclose(projected, other)

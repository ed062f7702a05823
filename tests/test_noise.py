"""oga_core/noise.py: exact flip counts, the two noise kinds, seeded reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from oga_core.errors import OgaError
from oga_core.noise import flip_labels


@pytest.mark.parametrize("n, rate", [(1000, 0.2), (1797, 0.2), (101, 0.05), (7, 0.5), (50, 0.0)])
def test_exact_flip_count(n, rate):
    labels = np.arange(n) % 10
    out = flip_labels(labels, 10, rate=rate, seed=3)
    assert int(out.noisy.sum()) == int(round(rate * n))
    np.testing.assert_array_equal(out.clean, labels)
    np.testing.assert_array_equal(out.noisy, out.given != out.clean)
    np.testing.assert_array_equal(out.given[~out.noisy], labels[~out.noisy])  # the rest untouched
    assert out.given.dtype == np.int64


def test_symmetric_never_keeps_the_class_and_reaches_every_other():
    labels = np.zeros(4000, dtype=np.int64)
    out = flip_labels(labels, 5, rate=0.5, kind="symmetric", seed=0)
    flipped = out.given[out.noisy]
    assert len(flipped) == 2000 and (flipped != 0).all()
    counts = np.bincount(flipped, minlength=5)
    assert counts[0] == 0
    # uniform among the 4 other classes: each gets ~500 (binomial sd ~19)
    assert np.all(np.abs(counts[1:] - 500) < 100), counts


def test_pair_maps_k_to_k_plus_one():
    labels = np.arange(300) % 3
    out = flip_labels(labels, 3, rate=0.3, kind="pair", seed=1)
    idx = np.flatnonzero(out.noisy)
    assert len(idx) == 90
    np.testing.assert_array_equal(out.given[idx], (labels[idx] + 1) % 3)


def test_seeded_reproducibility():
    labels = np.arange(500) % 10
    a = flip_labels(labels, 10, rate=0.2, seed=7)
    b = flip_labels(labels, 10, rate=0.2, seed=7)
    c = flip_labels(labels, 10, rate=0.2, seed=8)
    np.testing.assert_array_equal(a.given, b.given)
    assert not np.array_equal(a.noisy, c.noisy)


def test_bad_arguments():
    with pytest.raises(OgaError, match="noise rate"):
        flip_labels(np.zeros(5), 2, rate=1.0)
    with pytest.raises(OgaError, match="noise rate"):
        flip_labels(np.zeros(5), 2, rate=-0.1)
    with pytest.raises(OgaError, match="unknown noise kind"):
        flip_labels(np.zeros(5), 2, rate=0.1, kind="asymmetric")
    with pytest.raises(OgaError, match="at least 2 classes"):
        flip_labels(np.zeros(5), 1, rate=0.1)

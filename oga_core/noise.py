"""Label noise with the truth kept: for demos, tests and benchmarks.

``symmetric``: a flipped sample gets a uniformly random OTHER class. ``pair``: class k becomes
k + 1 (mod K), the structured noise of co-teaching papers that fools loss-based detectors more.
Exactly ``round(rate * N)`` samples are flipped, chosen uniformly with the given seed, so a
benchmark at 20% has exactly 20% wrong labels rather than 20% in expectation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oga_core import options
from oga_core.errors import OgaError


@dataclass(frozen=True)
class NoisyLabels:
    """given: int64 ``(N,)`` labels after flipping; clean: the originals; noisy: bool mask."""

    given: np.ndarray
    clean: np.ndarray
    noisy: np.ndarray


def check_noise(rate: float, kind: str) -> None:
    """OgaError unless ``rate`` is in [0, 1) and ``kind`` is one of ``options.NOISE_KINDS``."""
    if not 0.0 <= rate < 1.0:
        raise OgaError(f"noise rate must be in [0, 1), got {rate}")
    options.check_choice(kind, options.NOISE_KINDS, "noise kind")


def flip_labels(
    labels: np.ndarray,
    num_classes: int,
    *,
    rate: float,
    kind: str = "symmetric",
    seed: int = 0,
    mapping: np.ndarray | None = None,
) -> NoisyLabels:
    """Flip exactly ``round(rate * len(labels))`` labels; the rest are untouched. ``mapping``
    (with ``kind="pair"``): class k becomes ``mapping[k]`` instead of k + 1."""
    check_noise(rate, kind)
    if num_classes < 2:
        raise OgaError("label noise needs at least 2 classes")
    clean = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(clean), size=int(round(rate * len(clean))), replace=False)
    given = clean.copy()
    if kind == "symmetric":
        # an offset in 1..K-1 guarantees a different class, uniformly among the others
        given[chosen] = (clean[chosen] + rng.integers(1, num_classes, size=len(chosen))) % num_classes
    elif mapping is not None:  # structured noise of the caller's making (e.g. to a look-alike class)
        given[chosen] = np.asarray(mapping, dtype=np.int64)[clean[chosen]]
    else:
        given[chosen] = (clean[chosen] + 1) % num_classes
    return NoisyLabels(given=given, clean=clean, noisy=given != clean)

"""A synthetic analysis of any size, made without training: for measuring the app at 100 k and
1 M samples (``benchmarks/app_scale.py``, ``oga bench --parts app``) and for tests of it.

Every array is real and of the shape an analysis of that many 8x8 grey images would have:
class clusters in a 16-dim feature space, a linear head that mostly predicts the true class,
10% of the labels flipped (the truth kept, so Evaluate works), pixels drawn from one pattern per
class, and every score column computed by the real detectors from those features and logits —
except the Isolation Forest, whose column is the L2 norm plus noise: scoring 1 M rows with 200
trees would take minutes and says nothing about the app. The result is an
:class:`~oga_core.pipeline.Analysis` that the app's registry can hold (``AnalysisRegistry.hold``);
its data source ``synthetic:N`` cannot be analysed again, so nothing ever retrains it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from oga_core import detectors
from oga_core.config import AnalysisConfig
from oga_core.data import LabeledImages
from oga_core.gradients import GradientStats
from oga_core.lastlayer import softmax
from oga_core.noise import flip_labels
from oga_core.pipeline import Analysis, score_table
from oga_core.store import Cache, cache_key

PREFIX = "synthetic:"
FEATURES = 16
SIDE = 8
CHUNK = 100_000  # rows generated at a time: the temporaries stay small at 1 M


def synthetic_config(n: int, *, classes: int = 10, seed: int = 0, noise: float = 0.1) -> AnalysisConfig:
    """The settings that name a synthetic analysis of ``n`` samples."""
    return AnalysisConfig(data=f"{PREFIX}{n}x{classes}", noise=noise, seed=seed, epochs=1)


def synthetic_analysis(n: int, *, classes: int = 10, seed: int = 0, noise: float = 0.1) -> Analysis:
    """An analysis of ``n`` synthetic samples in ``classes`` classes (see the module docstring);
    the same arguments give the same arrays. Its cache (for the map) is ``$OGA_HOME/cache``."""
    if n < classes * 2:
        raise ValueError(f"a synthetic analysis needs at least {classes * 2} samples, got {n}")
    config = synthetic_config(n, classes=classes, seed=seed, noise=noise)
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, (classes, FEATURES)).astype(np.float32)
    patterns = rng.integers(0, 256, (classes, 1, SIDE, SIDE)).astype(np.int16)
    clean = rng.integers(0, classes, n).astype(np.int64)
    features = np.empty((n, FEATURES), np.float32)
    pixels = np.empty((n, 1, SIDE, SIDE), np.uint8)
    for lo in range(0, n, CHUNK):
        part = clean[lo : lo + CHUNK]
        features[lo : lo + len(part)] = centres[part] + rng.normal(0.0, 2.4, (len(part), FEATURES))
        grain = rng.integers(-40, 41, (len(part), 1, SIDE, SIDE))
        pixels[lo : lo + len(part)] = np.clip(patterns[part] + grain, 0, 255).astype(np.uint8)
    # A head that scores each class by closeness to its centre: mostly right, unsure near borders.
    logits = (features @ centres.T - 0.5 * (centres**2).sum(1)) / 8.0
    flipped = flip_labels(clean, classes, rate=noise, seed=seed)
    given = flipped.given
    p = softmax(logits.astype(np.float64))
    residual = p.copy()
    residual[np.arange(n), given] -= 1.0
    h_norm = np.sqrt((features.astype(np.float64) ** 2).sum(1) + 1.0)
    l2 = np.sqrt((residual**2).sum(1)) * h_norm
    l1 = 2.0 * (1.0 - p[np.arange(n), given]) * (np.abs(features).sum(1) + 1.0)
    stats = GradientStats(scope="last", features=features, logits=logits.astype(np.float32), l1=l1, l2=l2)
    inputs = detectors.ScoreInputs(stats, given, seed)
    raw = {}
    for d in detectors.DETECTORS.values():
        if d.name == "iforest":  # see the module docstring
            raw[d.column] = l2 + rng.normal(0.0, 0.05, n)
        else:
            raw[d.column] = np.asarray(d.score(inputs), dtype=np.float64)
    dataset = LabeledImages(
        source=config.data,
        ids=[f"syn-{i:07d}" for i in range(n)],
        labels=given,
        classes=[f"class {k}" for k in range(classes)],
        pixels=pixels,
    )
    scores = score_table(dataset, stats, pd.DataFrame(raw), config, flipped)
    data_id = "synthetic-" + cache_key(n=n, classes=classes, seed=seed, noise=noise)
    run = {
        "config": config.to_dict(),
        "num_samples": n,
        "num_flagged": int(scores["flagged"].sum()),
        "train_accuracy": float((p.argmax(1) == given).mean()),
        "timings": {"total": 0.0},
        "cache_hits": [],
        "device": "none (synthetic)",
        "epochs": 0,
        "image_shape": [1, SIDE, SIDE],
        "data_id": data_id,
    }
    return Analysis(
        config=config,
        dataset=dataset,
        pixels=pixels,
        stats=stats,
        scores=scores,
        run=run,
        data_id=data_id,
        noise=flipped,
        cache=Cache(),
        keys={"gradients": data_id},
    )

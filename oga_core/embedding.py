"""2-D maps of per-sample vectors (model features or gradients) for the Explore view.

UMAP gives the map people expect (clusters = classes, mislabeled samples sitting inside the
cluster of their true class); PCA is the instant fallback. Both run PCA to 50 dims first. For
large sets UMAP is fitted on a random sample and the rest is placed with ``transform``, which
keeps 1 M points to minutes instead of a quarter of an hour (docs/architecture.md, "The map").
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from oga_core import options
from oga_core.progress import Progress


def embed_2d(
    vectors: np.ndarray,
    *,
    method: str = "umap",
    random_state: int = 0,
    max_fit: int = 20_000,
    progress: Progress | None = None,
) -> np.ndarray:
    """float32 ``(N, 2)`` coordinates of ``vectors (N, d)``; the same inputs give the same map."""
    options.check_choice(method, options.MAP_METHODS, "map method")
    x = np.nan_to_num(np.asarray(vectors, dtype=np.float32))
    n = len(x)
    if n < 3:
        return np.zeros((n, 2), np.float32)
    x = (x - x.mean(0)) / (x.std(0).mean() + 1e-8)  # one global scale: keeps relative variances
    dims = min(50, x.shape[1], n - 1)
    reduced = PCA(n_components=dims, random_state=random_state).fit_transform(x) if x.shape[1] > dims else x
    if method == "pca" or n < 10:
        out = reduced[:, :2] if reduced.shape[1] >= 2 else np.pad(reduced, ((0, 0), (0, 2 - reduced.shape[1])))
        if progress:
            progress(1, 1)
        return np.ascontiguousarray(out, dtype=np.float32)

    import umap  # imported late: its first import compiles numba code (~15 s)

    reducer = umap.UMAP(
        n_components=2, n_neighbors=min(15, n - 1), min_dist=0.1, random_state=random_state, low_memory=True
    )
    if n <= max_fit:
        out = reducer.fit_transform(reduced)
    else:
        rng = np.random.default_rng(random_state)
        fit_idx = np.sort(rng.choice(n, size=max_fit, replace=False))
        reducer.fit(reduced[fit_idx])
        out = np.empty((n, 2), np.float32)
        rest = np.setdiff1d(np.arange(n), fit_idx)
        out[fit_idx] = reducer.embedding_
        step = 50_000
        for lo in range(0, len(rest), step):
            part = rest[lo : lo + step]
            out[part] = reducer.transform(reduced[part])
            if progress:
                progress(min(lo + step, len(rest)), len(rest))
    if progress:
        progress(1, 1)
    return np.ascontiguousarray(out, dtype=np.float32)

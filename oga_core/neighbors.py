"""More like this: the nearest samples of one sample, in the model's features or in the last
layer's gradients, and the k-nearest-neighbour graph the issue types use.

Which index, by the numbers of ``benchmarks/neighbors.py`` (docs/architecture.md, "Neighbours";
128-d synthetic data, this project's shared 2-core machine): one query for k = 20 is answered by
exact brute force (:class:`ExactIndex`: float32 blocks, ``||x||^2 - 2 x.q + ||q||^2``, a partial
sort, the k found re-measured) in 12-20 ms at 100 k rows and 0.10-0.14 s at 1 M, with no build;
scikit-learn's brute ``NearestNeighbors`` computes the same in 16-168 ms and 0.17-0.32 s (thread
start-up dominates a single query); pynndescent answers in 0.1 ms but first compiles for about a
minute in every new process and builds for 15-20 s (100 k) or 4-5 minutes (1 M), and then finds
97% / 81% of the true 20 neighbours. A person asks for one sample at a time, so exact wins.

The whole graph (every sample's neighbours, :func:`knn_graph`) is scikit-learn's exact
``kneighbors`` (k-d tree in few dimensions) up to ``EXACT_GRAPH_MAX`` rows, pynndescent beyond.

Spaces: ``features`` are the head's inputs ``h`` as the model sees them; ``gradients`` are the
vectors the Isolation Forest sees (:func:`oga_core.detectors.iforest_input`: the last layer's
per-sample gradient, randomly projected when wide, or the all-layer sketch), computed once per
gradients key and cached (``neighbors`` step) as a memory-mappable array.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from oga_core import options
from oga_core.data import index_of
from oga_core.errors import OgaError
from oga_core.store import cache_key, load_array, save_arrays

if TYPE_CHECKING:
    from oga_core.analysis import Analysis

EXACT_GRAPH_MAX = 200_000  # rows: the exact k-NN graph up to here, pynndescent beyond
_BLOCK_FLOATS = 1 << 24  # cap on one block of the distance matrix (queries x rows), 64 MiB in float32
VERSION = 1
SIMILAR_COLUMNS = ("sample_id", "distance", "label", "label_name", "pred", "pred_name", "score", "rank", "flagged")


class ExactIndex:
    """Exact Euclidean nearest neighbours of ``vectors (N, d)`` by brute force; no build step.

    ``vectors`` may be a memory-mapped array: it is read block by block, never copied whole.
    """

    def __init__(self, vectors: np.ndarray) -> None:
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ValueError(f"vectors must be a non-empty (N, d) array, got shape {vectors.shape}")
        self.vectors = vectors
        rows = max(1, _BLOCK_FLOATS // max(1, vectors.shape[1]))
        self.norms = np.concatenate(
            [np.einsum("ij,ij->i", b, b) for b in (_f32(vectors[i : i + rows]) for i in range(0, len(vectors), rows))]
        )

    def __len__(self) -> int:
        return len(self.vectors)

    def query(self, queries: np.ndarray, k: int, *, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, distances)``, each ``(m, k)``, nearest first, for ``queries (m, d)``.

        ``exclude``: ``(m,)`` row of each query to leave out (itself), or None. Ties are broken
        by row order; fewer than ``k`` rows: ``k`` is clipped.
        """
        q = _f32(np.atleast_2d(queries))
        n = len(self)
        k = min(k, n - (1 if exclude is not None else 0))
        if k <= 0:
            return np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
        qn = np.einsum("ij,ij->i", q, q)
        # Bounds both the rows read and the distance block; 4 x the queries because a block's
        # distances come with temporaries and int64 indices of the same shape.
        rows = max(1, _BLOCK_FLOATS // max(4 * len(q), q.shape[1]))
        best_i = np.zeros((len(q), 0), np.int64)
        best_d = np.zeros((len(q), 0), np.float32)
        for lo in range(0, n, rows):
            block = _f32(self.vectors[lo : lo + rows])
            d2 = self.norms[None, lo : lo + len(block)] - 2.0 * (q @ block.T) + qn[:, None]
            if exclude is not None:
                inside = (exclude >= lo) & (exclude < lo + len(block))
                d2[np.flatnonzero(inside), exclude[inside] - lo] = np.inf
            # the block's own k best first: only those are merged with the best so far
            if d2.shape[1] > k:
                part = np.argpartition(d2, k - 1, axis=1)[:, :k].copy()  # a copy: a view pins the whole block
                block_i, block_d = part + lo, np.take_along_axis(d2, part, 1)
            else:
                block_i, block_d = np.broadcast_to(np.arange(lo, lo + len(block)), d2.shape), d2
            cand_i = np.concatenate([best_i, block_i], axis=1)
            cand_d = np.concatenate([best_d, block_d.astype(np.float32)], axis=1)
            # dropped before the next block is computed: otherwise two blocks' distances and
            # partitions are alive at once, and only a data set of one block escapes that
            del d2, block_i, block_d
            best_i, best_d = _smallest(cand_i, cand_d, k)
        # the expansion above loses digits to cancellation for close pairs: the chosen k exactly
        rows = np.unique(best_i)
        exact = ((_f32(self.vectors[rows])[np.searchsorted(rows, best_i)] - q[:, None, :]) ** 2).sum(-1)
        best_i, exact = _smallest(best_i, exact, k)
        return best_i, np.sqrt(exact)


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _smallest(idx: np.ndarray, d2: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest of each row, sorted (ties: the lower index first)."""
    if d2.shape[1] > k:
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        idx, d2 = np.take_along_axis(idx, part, 1), np.take_along_axis(d2, part, 1)
    order = np.lexsort((idx, d2), axis=1)
    return np.take_along_axis(idx, order, 1), np.take_along_axis(d2, order, 1)


def knn_graph(vectors: np.ndarray, k: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Every sample's ``k`` nearest other samples: ``(indices, distances)``, each ``(N, k)``.

    Exact up to ``EXACT_GRAPH_MAX`` rows (scikit-learn's ``NearestNeighbors``: a k-d tree in few
    dimensions, brute force in many; its own sample left out, an exact duplicate kept), beyond
    that pynndescent's approximate graph (seeded)."""
    n = len(vectors)
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
    if n > EXACT_GRAPH_MAX:
        return _nndescent_graph(vectors, k, seed=seed)
    from sklearn import config_context
    from sklearn.neighbors import NearestNeighbors  # lazy: sklearn.neighbors is slow to import

    # Brute force computes distances in chunks of scikit-learn's working memory (1 GB by default):
    # 64 MB keeps the peak from growing with the data.
    with config_context(working_memory=64):
        dist, idx = NearestNeighbors(n_neighbors=k).fit(_f32(vectors)).kneighbors()
    return idx.astype(np.int64), dist.astype(np.float32)


def _nndescent_graph(vectors: np.ndarray, k: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from pynndescent import NNDescent  # lazy: numba compiles on first use (minutes)

    graph_i, graph_d = NNDescent(_f32(vectors), n_neighbors=k + 1, random_state=seed).neighbor_graph
    rows = np.arange(len(vectors))[:, None]
    # drop each sample itself (usually first; an exact duplicate may take its place)
    keep = graph_i != rows
    out_i = np.array([r[m][:k] for r, m in zip(graph_i, keep)], dtype=np.int64)
    out_d = np.array([r[m][:k] for r, m in zip(graph_d, keep)], dtype=np.float32)
    return out_i, out_d


# -- an analysis' spaces ---------------------------------------------------------------------
def space_vectors(analysis: Analysis, space: str) -> np.ndarray:
    """``(N, d)`` vectors of ``space`` (``options.MAP_SPACES``): the features as they are, or the
    gradient vectors, computed once per gradients key and cached (memory-mapped on reading)."""
    options.check_choice(space, options.MAP_SPACES, "space")
    if space == "features":
        return analysis.stats.features
    from oga_core.detectors import iforest_input

    key = cache_key(stats=analysis.keys["gradients"], space=space, seed=analysis.config.seed, version=VERSION)
    n = len(analysis.dataset)

    def read(folder: Path) -> np.ndarray:
        vectors = load_array(folder, "vectors", mmap=True)
        if vectors is None or len(vectors) != n:
            raise ValueError("vectors.npy is missing or has the wrong number of rows")
        return vectors

    hit = analysis.cache.load("neighbors", key, read)
    if hit is not None:
        return hit
    vectors = _f32(iforest_input(analysis.stats, analysis.dataset.labels, seed=analysis.config.seed))
    with analysis.cache.entry("neighbors", key) as folder:
        save_arrays(folder, vectors=vectors)
    return vectors


_INDEXES: dict[tuple[str, str], ExactIndex] = {}


def index_for(analysis: Analysis, space: str = "features") -> ExactIndex:
    """The index of one analysis' space, kept for the process (the last few)."""
    key = (analysis.keys["gradients"], space)
    if key not in _INDEXES:
        if len(_INDEXES) >= 4:
            _INDEXES.pop(next(iter(_INDEXES)))
        _INDEXES[key] = ExactIndex(space_vectors(analysis, space))
    return _INDEXES[key]


def similar(analysis: Analysis, sample_id: str, *, k: int = 10, space: str = "features") -> pd.DataFrame:
    """The ``k`` samples nearest to ``sample_id`` in ``space``, nearest first (itself left out).

    Columns: ``SIMILAR_COLUMNS`` (distance: Euclidean in that space; the rest from the score
    table). The caller joins decisions (:func:`oga_core.summaries.with_decisions`). OgaError for an
    unknown sample, space or k."""
    if not isinstance(k, int) or k < 1:
        raise OgaError(f"k must be a whole number of at least 1, got {k}")
    row = index_of(analysis.dataset.ids).get(sample_id)
    if row is None:
        raise OgaError(f"no sample '{sample_id}' in {analysis.config.data}")
    index = index_for(analysis, space)
    idx, dist = index.query(index.vectors[row : row + 1], k, exclude=np.array([row]))
    table = analysis.scores.iloc[idx[0]]
    out = table[[c for c in SIMILAR_COLUMNS if c in table and c != "distance"]].reset_index(drop=True)
    out.insert(1, "distance", dist[0].astype(np.float64))
    return out

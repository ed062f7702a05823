"""Nearest-neighbour indexes for "more like this" (:mod:`oga_core.neighbors`), measured.

On synthetic 128-dimensional data (50 Gaussian clusters, float32) of each size: build time, the
time of one query for k = 20 (median over ``queries`` single queries), and pynndescent's recall of
the exact 20 neighbours, for

* ``oga exact``: :class:`oga_core.neighbors.ExactIndex` (numpy brute force, no build);
* ``sklearn brute``: ``NearestNeighbors(algorithm="brute")`` with its default threads, and with
  one thread (``threadpoolctl``): on a small shared machine its thread start-up dominates a query;
* ``pynndescent``: ``NNDescent`` (its defaults, 30 neighbours per node), the numba compilation of
  a fresh process measured apart (a warm-up on 2,000 rows), ``prepare()`` (the search graph) apart.

And the whole k-NN graph (k = 10) that the issue types use: :func:`oga_core.neighbors.knn_graph`'s
exact path up to its limit, against pynndescent's graph (its build) and that graph's recall.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np

from oga_core.bench.markdown import table


@dataclass(frozen=True)
class NeighborSettings:
    sizes: tuple[int, ...] = (100_000, 1_000_000)
    dims: int = 128
    k: int = 20
    queries: int = 20
    recall_queries: int = 200
    graph_k: int = 10
    graph_sizes: tuple[int, ...] = (20_000, 100_000)  # the whole graph timed at these sizes
    graph_dims: tuple[int, ...] = (10, 128)  # 10: the issue types' whitened space
    pynndescent: bool = True

    @classmethod
    def for_run(cls, *, quick: bool) -> NeighborSettings:
        """Quick: 5,000 rows, no pynndescent (its compilation alone takes minutes)."""
        return cls(sizes=(5_000,), graph_sizes=(5_000,), recall_queries=50, pynndescent=False) if quick else cls()


def synthetic(n: int, dims: int, *, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (50, dims)).astype(np.float32)
    return centres[rng.integers(0, 50, n)] + rng.normal(0, 1, (n, dims)).astype(np.float32)


def _median_ms(fn, queries: np.ndarray) -> float:
    fn(queries[:1])  # warm
    times = []
    for q in queries:
        t = time.perf_counter()
        fn(q[None])
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def run_neighbors(settings: NeighborSettings) -> dict[str, Any]:
    """Every measurement of ``settings``; ``{"settings", "sizes": [row per size], "graph": [...]}``."""
    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_limits

    from oga_core.neighbors import ExactIndex, knn_graph

    out: dict[str, Any] = {"settings": asdict(settings), "sizes": [], "graph": []}
    warm = None
    if settings.pynndescent:
        from pynndescent import NNDescent

        t = time.perf_counter()
        NNDescent(synthetic(2_000, settings.dims, seed=9), n_neighbors=30, random_state=0).prepare()
        warm = time.perf_counter() - t
    out["pynndescent_compile_s"] = warm
    for n in settings.sizes:
        x = synthetic(n, settings.dims)
        rng = np.random.default_rng(1)
        q = x[rng.choice(n, settings.recall_queries, replace=False)] + 0.01
        row: dict[str, Any] = {"n": n}
        t = time.perf_counter()
        index = ExactIndex(x)
        row["exact_build_s"] = time.perf_counter() - t
        row["exact_query_ms"] = _median_ms(partial(index.query, k=settings.k), q[: settings.queries])
        exact = index.query(q, settings.k)[0]
        t = time.perf_counter()
        nn = NearestNeighbors(n_neighbors=settings.k, algorithm="brute").fit(x)
        row["sklearn_build_s"] = time.perf_counter() - t
        row["sklearn_query_ms"] = _median_ms(nn.kneighbors, q[: settings.queries])
        with threadpool_limits(1):
            row["sklearn_1thread_query_ms"] = _median_ms(nn.kneighbors, q[: settings.queries])
        if settings.pynndescent:
            from pynndescent import NNDescent

            t = time.perf_counter()
            approx = NNDescent(x, n_neighbors=30, random_state=0)
            row["pynndescent_build_s"] = time.perf_counter() - t
            t = time.perf_counter()
            approx.prepare()
            row["pynndescent_prepare_s"] = time.perf_counter() - t
            row["pynndescent_query_ms"] = _median_ms(partial(approx.query, k=settings.k), q[: settings.queries])
            row["pynndescent_recall"] = _recall(approx.query(q, k=settings.k)[0], exact)
        out["sizes"].append(row)
    for n, dims in [(n, d) for d in settings.graph_dims for n in settings.graph_sizes]:
        x = synthetic(n, dims, seed=2)
        t = time.perf_counter()
        graph = knn_graph(x, settings.graph_k)[0]
        row = {"n": n, "dims": dims, "exact_s": time.perf_counter() - t}
        if settings.pynndescent:
            from pynndescent import NNDescent

            t = time.perf_counter()
            approx_graph = NNDescent(x, n_neighbors=settings.graph_k + 1, random_state=0).neighbor_graph[0]
            row["pynndescent_s"] = time.perf_counter() - t
            row["pynndescent_recall"] = _recall(
                [r[r != i][: settings.graph_k] for i, r in enumerate(approx_graph)], graph
            )
        out["graph"].append(row)
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    return f"{value:.3g} {unit}"


def render(part: dict[str, Any]) -> str:
    """The markdown of one measured part."""
    s = part["settings"]
    lines = [
        f"Synthetic {s['dims']}-d data (50 Gaussian clusters, float32); one query = the {s['k']} nearest of one "
        f"sample, median of {s['queries']} single queries. pynndescent's numba compilation in a fresh process: "
        f"{_fmt(part.get('pynndescent_compile_s'), 's')}.",
        "",
    ]
    rows = []
    for r in part["sizes"]:
        rows.append(
            [
                f"{r['n']:,}",
                f"{r['exact_build_s']:.2g} s · {r['exact_query_ms']:.3g} ms",
                f"{r['sklearn_build_s']:.2g} s · {r['sklearn_query_ms']:.3g} ms ({r['sklearn_1thread_query_ms']:.3g} ms on 1 thread)",
                (
                    f"{r['pynndescent_build_s']:.3g} s + prepare {r['pynndescent_prepare_s']:.3g} s · "
                    f"{r['pynndescent_query_ms']:.3g} ms · recall {r['pynndescent_recall']:.3f}"
                )
                if "pynndescent_build_s" in r
                else "not measured",
            ]
        )
    lines.append(
        table(
            [
                "rows",
                "oga exact: build · query",
                "sklearn brute: build · query",
                "pynndescent: build · query · recall@k",
            ],
            rows,
        )
    )
    lines += [
        "",
        f"The whole {s['graph_k']}-NN graph (every sample's neighbours; oga: scikit-learn's exact kneighbors):",
        "",
    ]
    graph_rows = [
        [
            f"{g['n']:,} × {g.get('dims', s['dims'])}",
            f"{g['exact_s']:.3g} s",
            f"{g['pynndescent_s']:.3g} s · recall {g['pynndescent_recall']:.3f}"
            if "pynndescent_s" in g
            else "not measured",
        ]
        for g in part["graph"]
    ]
    lines.append(table(["rows × dims", "oga exact", "pynndescent (build) · recall"], graph_rows))
    return "\n".join(lines)

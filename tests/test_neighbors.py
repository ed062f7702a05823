"""oga_core/neighbors.py: the exact index against scikit-learn, the k-NN graph, and "more like
this" on a small image folder with exact copies."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from oga_core import neighbors
from oga_core.config import AnalysisConfig
from oga_core.errors import OgaError
from oga_core.neighbors import ExactIndex, knn_graph, similar, space_vectors


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (5, 12))
    return (centres[rng.integers(0, 5, 600)] + rng.normal(0, 1, (600, 12))).astype(np.float32)


def test_the_exact_index_matches_scikit_learn(points, monkeypatch):
    queries = points[:40] + 0.01
    dist, idx = NearestNeighbors(n_neighbors=7, algorithm="brute").fit(points).kneighbors(queries)
    index = ExactIndex(points)
    got_i, got_d = index.query(queries, 7)
    np.testing.assert_array_equal(got_i, idx)
    np.testing.assert_allclose(got_d, dist, rtol=1e-4, atol=1e-4)
    monkeypatch.setattr(neighbors, "_BLOCK_FLOATS", 100)  # many small blocks: the same answer
    small_i, small_d = ExactIndex(points).query(queries, 7)
    np.testing.assert_array_equal(small_i, idx)
    np.testing.assert_allclose(small_d, got_d, rtol=1e-5, atol=1e-5)
    # k beyond the data is clipped; excluding a row leaves it out
    assert index.query(points[:1], 1000)[0].shape == (1, 600)
    assert 0 not in index.query(points[:1], 5, exclude=np.array([0]))[0]


def test_the_knn_graph_leaves_each_sample_out_and_matches_scikit_learn(points):
    dist, idx = NearestNeighbors(n_neighbors=5, algorithm="brute").fit(points).kneighbors()
    graph_i, graph_d = knn_graph(points, 5)
    np.testing.assert_array_equal(graph_i, idx)
    np.testing.assert_allclose(graph_d, dist, rtol=1e-4, atol=1e-4)
    assert not (graph_i == np.arange(len(points))[:, None]).any()


def test_the_approximate_graph_beyond_the_exact_limit_leaves_each_sample_out(points, monkeypatch):
    """Beyond EXACT_GRAPH_MAX rows pynndescent builds the graph (its numba compilation takes minutes,
    so a stand-in answers here with what NNDescent returns: each sample usually first, an exact
    duplicate sometimes before it)."""
    calls = {}

    class FakeNNDescent:
        def __init__(self, data, n_neighbors, random_state):
            calls.update(n=n_neighbors, seed=random_state)
            d, i = NearestNeighbors(n_neighbors=n_neighbors).fit(data).kneighbors(data)
            i[1], d[1] = np.r_[i[1][1], i[1][0], i[1][2:]], np.r_[0.0, d[1][1:]]  # self second
            self.neighbor_graph = (i, d)

    import pynndescent

    monkeypatch.setattr(pynndescent, "NNDescent", FakeNNDescent)
    monkeypatch.setattr(neighbors, "EXACT_GRAPH_MAX", 10)
    graph_i, graph_d = knn_graph(points, 4, seed=3)
    assert calls == {"n": 5, "seed": 3} and graph_i.shape == graph_d.shape == (600, 4)
    assert not (graph_i == np.arange(600)[:, None]).any()
    _, idx = NearestNeighbors(n_neighbors=4).fit(points).kneighbors()
    np.testing.assert_array_equal(graph_i[2:], idx[2:])


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """A small image folder where a.png is copied once into its own class and once into another:
    an analysis of it (one epoch, 33 images)."""
    from conftest import write_image

    from oga_core.pipeline import analyze

    root = tmp_path_factory.mktemp("copies")
    rng = np.random.default_rng(7)
    for name in ("cat", "dog", "owl"):
        for i in range(10):
            write_image(root / name / f"{name}_{i}.png", rng)
    shutil.copyfile(root / "cat" / "cat_0.png", root / "cat" / "cat_copy.png")
    shutil.copyfile(root / "cat" / "cat_0.png", root / "dog" / "cat_0_as_dog.png")
    return analyze(AnalysisConfig(data=f"folder:{root}", epochs=1, image_size=8))


def test_more_like_this_puts_exact_copies_first(copies):
    near = similar(copies, "cat/cat_0.png", k=5)
    assert list(near.columns) == list(neighbors.SIMILAR_COLUMNS)
    assert set(near["sample_id"][:2]) == {"cat/cat_copy.png", "dog/cat_0_as_dog.png"}
    assert near["distance"][:2].max() < 1e-3 < near["distance"][2]
    assert "cat/cat_0.png" not in set(near["sample_id"]) and near["distance"].is_monotonic_increasing
    row = copies.scores.set_index("sample_id").loc["dog/cat_0_as_dog.png"]
    assert near.set_index("sample_id").loc["dog/cat_0_as_dog.png", "label_name"] == "dog" == row["label_name"]
    assert near.set_index("sample_id").loc["dog/cat_0_as_dog.png", "score"] == row["score"]
    # in gradient space the copy with the same label is the same vector; the relabelled copy is not
    grad = similar(copies, "cat/cat_0.png", k=3, space="gradients")
    assert grad["sample_id"][0] == "cat/cat_copy.png" and grad["distance"][0] < 1e-3 < grad["distance"][1]


def test_gradient_vectors_are_cached(copies):
    first = space_vectors(copies, "gradients")
    again = space_vectors(copies, "gradients")
    assert isinstance(again, np.memmap) and np.array_equal(first, again)
    assert len(list((copies.cache.root / "neighbors").iterdir())) >= 1


def test_bad_requests_are_one_line_errors(copies):
    with pytest.raises(OgaError, match="no sample 'nope'"):
        similar(copies, "nope")
    with pytest.raises(OgaError, match="unknown space 'pixels'"):
        similar(copies, "cat/cat_0.png", space="pixels")
    with pytest.raises(OgaError, match="k must be a whole number"):
        similar(copies, "cat/cat_0.png", k=0)

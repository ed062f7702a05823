"""What the page-by-page tests in tests/test_app.py leave out: the default UMAP map (every other
AppTest asks for PCA, which is instant) and one sample's gradient norm per layer on Review."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest

from oga_app.state import DEFAULT_CONFIG
from oga_core import options
from oga_core.pipeline import analyze

from helpers import array, assert_clean, open_page


def _drawn_map(at) -> tuple[list[str], np.ndarray]:
    (chart,) = [c for c in at.get("plotly_chart") if c.key == "map"]
    traces = [t for t in json.loads(chart.proto.spec)["data"] if t.get("customdata")]
    ids = [sid for t in traces for sid in array(t["customdata"])]
    xy = np.array([(x, y) for t in traces for x, y in zip(array(t["x"]), array(t["y"]))])
    return ids, xy


def test_explore_draws_pca_at_once_then_the_default_umap_map(home, demo):
    """Explore's first open draws the instant PCA map while the default UMAP map is computed in the
    background (fitting it took ~30 s on the demo in a new process), then the UMAP map, one point
    per sample, the same the engine caches."""
    at = open_page("explore")  # no map chosen: the engine's default, UMAP
    assert at.button_group(key="map_method").value == options.MAP_METHODS[0].name == "umap"
    ids, xy = _drawn_map(at)
    assert sorted(ids) == sorted(demo.dataset.ids)  # every sample once
    position = {sid: i for i, sid in enumerate(demo.dataset.ids)}
    pca = demo.map_coords(method="pca", space="features")
    drawn = dict(zip(ids, map(tuple, xy)))
    assert np.allclose([drawn[sid] for sid in demo.dataset.ids[:50]], pca[[position[s] for s in demo.dataset.ids[:50]]])
    assert any("computed in the background" in i.value for i in at.info)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # the page answers meanwhile; UMAP arrives later
        time.sleep(1)
        at.run()
        if not any("computed in the background" in i.value for i in at.info):
            break
    ids, xy = _drawn_map(at)
    assert xy.shape == (len(demo.dataset), 2) and np.isfinite(xy).all()
    assert len(np.unique(xy.round(4), axis=0)) > len(xy) // 2  # a spread-out map, not a point
    umap = demo.map_coords(method="umap", space="features")  # the engine cached what the page drew
    drawn = dict(zip(ids, map(tuple, xy)))
    assert np.allclose(
        [drawn[sid] for sid in demo.dataset.ids[:50]], umap[[position[s] for s in demo.dataset.ids[:50]]]
    )
    assert_clean(at)


@pytest.fixture
def all_layers(home):
    """The demo analysed with the all-layers scope (same trained model: only the gradients differ)."""
    return analyze(dataclasses.replace(DEFAULT_CONFIG, scope="all"))


def test_one_at_a_time_review_shows_the_samples_gradient_norm_per_layer(home, all_layers):
    at = open_page("review", oga_config=all_layers.config)
    at.toggle(key="review_focus").set_value(True).run()
    assert_clean(at)
    queue = all_layers.scores[all_layers.scores["flagged"]].sort_values("score", ascending=False, kind="stable")
    first = queue["sample_id"].iloc[0]
    (chart,) = [c for c in at.get("plotly_chart") if c.key == "layer-norms"]
    (bars,) = json.loads(chart.proto.spec)["data"]
    expected = all_layers.layer_norms(first)
    assert bars["y"] == list(expected.index) and len(bars["y"]) > 1
    assert np.allclose(array(bars["x"]), expected.to_numpy())
    # The next sample brings its own norms.
    at.button(key="focus-next").click().run()
    (chart,) = [c for c in at.get("plotly_chart") if c.key == "layer-norms"]
    second = queue["sample_id"].iloc[1]
    assert np.allclose(array(json.loads(chart.proto.spec)["data"][0]["x"]), all_layers.layer_norms(second).to_numpy())


def test_last_layer_scope_says_where_the_per_layer_norms_are(home, demo):
    at = open_page("review")
    at.toggle(key="review_focus").set_value(True).run()
    assert_clean(at)
    assert not [c for c in at.get("plotly_chart") if c.key == "layer-norms"]
    label = options.labels(options.SCOPES)["all"]
    assert any("Gradient norm per layer" in c.value and label in c.value for c in at.caption)

"""The app on large data (issue 10.4) and the map's click-to-card (issue 12.4), through AppTest.

Analyses here are synthetic (``oga_core.synthetic``: real arrays, no training) and put in the
app's registry with ``AnalysisRegistry.hold``. The thresholds past which the map turns into a
density image and UMAP moves to the background are lowered so that a few thousand samples take
those paths; ``benchmarks/app_scale.py`` drives the same code at a million.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from oga_app import figures, maps, resources
from oga_app.views import AnalysisViews
from oga_core.decisions import DecisionStore
from oga_core.synthetic import synthetic_analysis
from oga_core.workspace import Workspace

from helpers import array, assert_clean, open_page, select_on_chart


def held(n: int, *, seed: int = 0):
    """A synthetic analysis of ``n`` samples in the registry, as if it had been analysed here."""
    return resources.registry().hold(synthetic_analysis(n, seed=seed))


def open_held(page: str, analysis, **state):
    return open_page(page, oga_config=analysis.config, **state)


def chart(at, key: str) -> dict:
    (found,) = [c for c in at.get("plotly_chart") if c.key == key]
    return json.loads(found.proto.spec)


def drawn_ids(spec: dict) -> list[str]:
    return [sid for t in spec["data"] if t.get("customdata") for sid in array(t["customdata"])]


def points_of(spec: dict) -> dict[str, tuple[float, float]]:
    """``{sample id: (x, y)}`` of every point drawn on a map."""
    return {
        sid: (x, y)
        for t in spec["data"]
        if t.get("customdata")
        for sid, x, y in zip(array(t["customdata"]), array(t["x"]), array(t["y"]))
    }


def card_ids(at) -> list[str]:
    return [b.key.removeprefix("drop-") for b in at.button if b.key and b.key.startswith("drop-")]


def decisions(analysis):
    return Workspace(analysis.data_id).decisions().table().set_index("sample_id")


# -- the decisions view ----------------------------------------------------------------------
def test_views_read_the_decisions_again_only_after_a_change(tmp_path):
    analysis = synthetic_analysis(400)
    store = DecisionStore(tmp_path / "decisions.sqlite")
    views = AnalysisViews(analysis)
    first = views.decided(store)
    assert views.decided(store) is first  # nothing changed: the same table, not joined again
    sid = analysis.dataset.ids[7]
    store.decide(sid, "drop", original_label=int(analysis.dataset.labels[7]))
    dropped = views.decided(store)
    assert dropped is not first and dropped.loc[7, "decision"] == "drop"
    assert views.progress(store)[2] == {"keep": 0, "drop": 1, "relabel": 0}
    store.undo()  # an undo is a change too
    assert views.decided(store).loc[7, "decision"] == "undecided"
    assert views.row_of(sid) == 7 and views.row_of("no such id") is None


# -- the map at scale ------------------------------------------------------------------------
def test_a_large_map_is_a_density_image_and_a_box_opens_its_region(home, monkeypatch):
    monkeypatch.setattr(figures, "MAX_POINTS", 1_000)
    monkeypatch.setattr(figures, "MARKERS", 40)
    monkeypatch.setattr(figures, "REGION_POINTS", 100)
    analysis = held(3_000)
    at = open_held("explore", analysis, map_method="pca")
    spec = chart(at, "map")
    assert spec["data"][0]["type"] == "heatmap"  # every sample, counted on the server
    scores = analysis.scores.set_index("sample_id")["score"]
    marked = drawn_ids(spec)
    top = analysis.scores[analysis.scores["flagged"]].nlargest(40, "score")["sample_id"]
    assert sorted(marked) == sorted(top)  # only the most suspicious flagged samples are points

    coords = analysis.map_coords(method="pca")
    box = tuple(np.quantile(coords[:, 0], [0.2, 0.6])) + tuple(np.quantile(coords[:, 1], [0.3, 0.9]))
    inside = (coords[:, 0] >= box[0]) & (coords[:, 0] <= box[1]) & (coords[:, 1] >= box[2]) & (coords[:, 1] <= box[3])
    at = select_on_chart(at, "map", box=box)
    assert_clean(at)
    expected = analysis.scores[inside].sort_values("score", ascending=False, kind="stable")["sample_id"]
    assert any(s.value == f"Selection · {inside.sum():,} samples" for s in at.subheader)
    assert card_ids(at) == expected.head(20).tolist()  # the region's samples, most suspicious first
    assert any(f"Region · {inside.sum():,} samples" in m.value for m in at.markdown)
    region = drawn_ids(chart(at, "map-region"))
    assert sorted(region) == sorted(expected.head(100))  # drawn as points, capped

    # A box on the region's own chart narrows the selection to the region's samples inside it.
    narrow = (box[0], (box[0] + box[1]) / 2, box[2], box[3])
    at = select_on_chart(at, "map-region", box=narrow)
    within = inside & (coords[:, 0] <= narrow[1])
    shown = card_ids(at)
    assert any(s.value == f"Selection · {within.sum():,} samples" for s in at.subheader)
    assert set(shown) <= set(analysis.scores["sample_id"][within])
    assert [scores[s] for s in shown] == sorted((scores[s] for s in shown), reverse=True)

    at.button(key="clear-region").click().run()
    assert not [c for c in at.get("plotly_chart") if c.key == "map-region"] and card_ids(at) == []
    assert_clean(at)


def test_a_large_umap_map_is_computed_in_the_background_with_pca_meanwhile(home, monkeypatch):
    monkeypatch.setattr(maps, "BACKGROUND_FROM", 1_000)
    analysis = held(2_500, seed=7)  # its own data: no UMAP map of it is cached yet
    at = open_held("explore", analysis)  # the default map: UMAP
    assert_clean(at)
    (note,) = [i.value for i in at.info if "background" in i.value]
    assert "PCA (instant)" in note
    rows = {sid: i for i, sid in enumerate(analysis.dataset.ids)}
    pca = analysis.map_coords(method="pca")
    shown = points_of(chart(at, "map"))
    assert len(shown) == 2_500
    assert all(np.allclose(xy, pca[rows[sid]]) for sid, xy in shown.items())  # the PCA map stands in

    umap = resources.maps().get(analysis, "umap", "features")  # the job the page started, waited for
    assert not np.allclose(umap, pca)
    at.run()
    assert not [i for i in at.info if "background" in i.value]
    shown = points_of(chart(at, "map"))
    assert all(np.allclose(xy, umap[rows[sid]]) for sid, xy in shown.items())  # redrawn with UMAP
    assert_clean(at)


# -- a click on the map ----------------------------------------------------------------------
def test_clicking_a_point_shows_its_card_beside_the_map(home, demo):
    at = open_page("explore", map_method="pca")
    assert not at.get("image")
    spec = chart(at, "map")
    trace = next(t for t in spec["data"] if t.get("customdata"))
    i = 3
    sid = array(trace["customdata"])[i]
    point = {
        "curve_number": 0,
        "point_number": i,
        "point_index": i,
        "x": array(trace["x"])[i],
        "y": array(trace["y"])[i],
        "customdata": sid,
    }
    at = select_on_chart(at, "map", [point])
    assert_clean(at)
    row = demo.scores.set_index("sample_id").loc[sid]
    # Its card beside the map at once: image, given → predicted, rank and score, the decisions of Review.
    assert at.button(key=f"map-keep-{sid}") and at.button(key=f"map-drop-{sid}")
    assert any(f"#{int(row['rank'])} · score" in c.value and sid in c.value for c in at.caption)
    assert at.selectbox(key=f"map-relabel-{sid}").options[0].startswith("→ ")
    assert len(at.get("image")) == 1  # the sample's image
    assert any(s.value == "Selection · 0 samples" for s in at.subheader)  # a click selects nothing below

    at.button(key=f"map-drop-{sid}").click().run()
    assert decisions(demo).loc[sid, "action"] == "drop"
    assert at.button(key=f"map-drop-{sid}").proto.type == "primary"
    new = (int(row["label"]) + 1) % 10
    at.selectbox(key=f"map-relabel-{sid}").set_value(new).run()
    assert decisions(demo).loc[sid, "action"] == "relabel" and decisions(demo).loc[sid, "label"] == new
    at.button(key="close-clicked").click().run()
    assert not [b for b in at.button if b.key == f"map-drop-{sid}"]
    assert_clean(at)


@pytest.mark.parametrize("bad", [{"x": [1.0], "y": [2.0]}, {"x": [], "y": []}])
def test_a_malformed_box_selects_by_points(bad):
    assert figures.selected_region({"box": [bad], "points": []}) is None

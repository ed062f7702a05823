"""The Streamlit app, page by page, through Streamlit's AppTest (no browser).

One digits analysis (10% flipped labels, the app's default) is trained once per module into the
session's cache; each test gets its own app home (fresh decisions, fresh saved settings) whose
``cache`` folder links to that shared cache, so no test trains the model again.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from oga_app import resources
from oga_app.messages import escape_md
from oga_app.state import DEFAULT_CONFIG, save_last_config
from oga_core import options
from oga_core.config import AnalysisConfig
from oga_core.detectors import SCORE_COLUMNS, detector_column
from oga_core.pipeline import analyze
from oga_core.store import oga_home
from oga_core.workspace import Workspace

from helpers import APP, TIMEOUT, array, assert_clean, open_app, open_page, select_on_chart


def card_ids(at: AppTest) -> list[str]:
    """Sample ids of the editable cards, in the order the page shows them."""
    return [b.key.removeprefix("drop-") for b in at.button if b.key and b.key.startswith("drop-")]


def card_state(at: AppTest, sample_id: str) -> str | None:
    """keep / drop as the card shows it (that button drawn as primary), else None."""
    shown = [a for a in ("keep", "drop") if at.button(key=f"{a}-{sample_id}").proto.type == "primary"]
    return shown[0] if shown else None


def preview_ids(at: AppTest) -> list[str]:
    """Sample ids of the set-up page's read-only preview, in order (each caption's tooltip names it)."""
    return [c.proto.help.split(":")[0] for c in at.caption if c.value.startswith("#") and c.proto.help]


def decisions(analysis) -> pd.DataFrame:
    return Workspace(analysis.data_id).decisions().table().set_index("sample_id")


# -- Set-up ----------------------------------------------------------------------------------
def test_first_open_runs_the_demo_and_shows_flagged_samples(home, demo):
    at = open_app()
    assert any("Results · demo:digits" in s.value for s in at.subheader)
    note = " ".join(i.value for i in at.info)
    assert "180 of 1,797 labels (10%) were flipped on purpose" in note
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Samples"] == "1,797"
    assert metrics["Flagged"] == "90"
    reviewed = next(m for m in at.metric if m.label == "Reviewed")
    assert reviewed.value == "0" and reviewed.delta == "of 90 flagged"
    # The health check: accuracy on the trained part and on the held-out part, and its verdict.
    checkup = demo.run["health"]
    assert metrics["Training accuracy"] == f"{demo.run['train_accuracy']:.1%}"
    assert checkup["holdout_size"] == 180 and metrics["Held-out accuracy"] == f"{checkup['holdout_accuracy']:.1%}"
    if checkup["verdict"] == "ok":
        assert any("can be trusted" in c.value for c in at.caption)
    else:
        assert any(escape_md(checkup["advice"]) in w.value for w in at.warning)
    # The first look: the 12 most suspicious samples, as thumbnails.
    assert len(at.get("image")) == 12
    top = demo.scores.sort_values("score", ascending=False, kind="stable")["sample_id"].head(12).tolist()
    assert preview_ids(at) == top
    # Every stage reported progress and the status box closed as complete.
    (status,) = at.status
    assert status.state == "complete"
    assert len(status.get("progress")) == 5


def test_analyze_same_settings_is_instant_and_saved(home, demo):
    at = open_app()
    at.button(key="analyze").click().run(timeout=TIMEOUT)
    assert_clean(at)
    (status,) = at.status
    assert status.label.startswith("Analyzed demo:digits") and "from the cache" in status.label
    saved = json.loads((home / "app" / "last_config.json").read_text())
    assert saved["data"] == "demo:digits" and saved["noise"] == 0.1


def test_ranking_in_the_sidebar_rescores_without_recomputing(home, demo):
    at = open_app()
    at.sidebar.selectbox(key="rank_detector").set_value("loss")
    at.sidebar.slider(key="rank_budget").set_value(10.0)
    at.run()
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Flagged"] == "180"
    ranked_scores = demo.rescore(detector="loss", budget=0.1).scores
    top = ranked_scores.sort_values("score", ascending=False, kind="stable")["sample_id"].head(12).tolist()
    assert preview_ids(at) == top
    # The registry re-ranked the one analysis it holds: same data, same trained model.
    ranked = resources.registry().peek(dataclasses.replace(DEFAULT_CONFIG, detector="loss", budget=0.1))
    assert ranked is not None and ranked.keys == demo.keys and int(ranked.scores["flagged"].sum()) == 180


def test_bad_folder_path_is_a_message_not_a_traceback(home, tmp_path):
    at = open_app()
    at.radio(key="setup_source").set_value("folder").run()
    at.text_input(key="setup_folder").input(str(tmp_path / "no-such-folder")).run()
    at.button(key="analyze").click().run(timeout=TIMEOUT)
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)
    # The previous analysis stays loaded and shown; nothing was lost.
    assert any("Results · demo:digits" in s.value for s in at.subheader)
    assert not (home / "app" / "last_config.json").exists()


def _image_folder(root: Path, classes: dict[str, int], *, corrupt: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    for k, (name, n) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = np.full((12, 12, 3), 40 + 150 * k, np.uint8) + rng.integers(0, 40, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    if corrupt:
        (root / corrupt).write_bytes(b"not a png at all")
    return root


def test_corrupt_image_is_named_in_a_message(home, tmp_path):
    folder = _image_folder(tmp_path / "imgs", {"cat": 4, "dog": 4}, corrupt="dog/broken.png")
    at = open_app()
    at.radio(key="setup_source").set_value("folder").run()
    at.text_input(key="setup_folder").input(str(folder)).run()
    at.button(key="analyze").click().run(timeout=TIMEOUT)
    assert not at.exception
    (message,) = [e.value for e in at.error]
    assert "unreadable image" in message and "broken.png" in message and "skip them" in message


def test_imagenet_weights_installed_with_oga_analyse_photos_offline(home, tmp_path, monkeypatch, make_images):
    """Set-up's "Start from ImageNet weights installed with oga": a frozen EfficientNet-Lite0 from
    the weights in the installed package (nothing is downloaded: the download function fails if
    called), a linear head on its features, photos decoded at its 128 px, and where the wrong
    labels seem to come from on the results."""
    import torch.hub

    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded weights"))
    folder = make_images(tmp_path / "photos", {"red": 8, "green": 8, "blue": 8}, size=16, seed=0)
    at = open_app()
    at.radio(key="setup_source").set_value("folder").run()
    at.text_input(key="setup_folder").input(str(folder)).run()
    at.radio(key="setup_model_mode").set_value("imagenet").run()
    assert at.radio(key="setup_backbone").value == options.DEFAULT_BACKBONE == "frozen"
    at.button(key="analyze").click().run(timeout=TIMEOUT)
    assert_clean(at)
    config = json.loads((home / "app" / "last_config.json").read_text())
    assert config["model"] == "efficientnet_lite0" and config["pretrained"] and config["backbone"] == "frozen"
    assert any("Results · folder:" in s.value for s in at.subheader)
    run = resources.registry().peek(AnalysisConfig.from_dict(config)).run
    assert run["image_shape"] == [3, 128, 128] and run["health"]["verdict"] != "unchecked"
    assert run["noise_estimate"]["concentration"] >= 0.0
    assert any("confident disagreements with the given labels" in c.value for c in at.caption)


@pytest.mark.parametrize("content", ["wrong-shapes", "not-torch"])
def test_checkpoint_that_does_not_fit_is_a_message(home, tmp_path, content):
    path = tmp_path / "model.pt"
    if content == "wrong-shapes":
        torch.save({"head.weight": torch.zeros(3, 7), "head.bias": torch.zeros(3)}, path)
    else:
        path.write_bytes(b"\x00 definitely not a checkpoint")
    at = open_app()
    at.radio(key="setup_model_mode").set_value("checkpoint").run()
    at.text_input(key="setup_ckpt_path").input(str(path)).run()
    at.button(key="analyze").click().run(timeout=TIMEOUT)
    assert not at.exception
    (message,) = [e.value for e in at.error]
    expected = "does not fit this model" if content == "wrong-shapes" else "is not a PyTorch"
    assert expected in message and str(path) in message


# -- Review ----------------------------------------------------------------------------------
def test_review_shows_flagged_by_score_and_records_each_decision_kind(home, demo):
    at = open_page("review")
    assert "Reviewed 0 of 90 flagged" in at.get("progress")[0].proto.text
    flagged = demo.scores[demo.scores["flagged"]].sort_values("score", ascending=False, kind="stable")
    ids = card_ids(at)
    assert ids == flagged["sample_id"].head(20).tolist()  # largest score first, 20 per page

    keep_id, drop_id, relabel_id = ids[0], ids[1], ids[2]
    row = flagged.set_index("sample_id").loc[relabel_id]
    relabel_box = at.selectbox(key=f"relabel-{relabel_id}")
    # The prediction is offered first, and the given label not at all.
    assert relabel_box.options[0].startswith(f"→ {row['pred_name']}") and "(predicted)" in relabel_box.options[0]
    assert all(
        not o.startswith(f"→ {row['label_name']} ") and o != f"→ {row['label_name']}" for o in relabel_box.options
    )
    new_label = int(row["pred"]) if row["pred"] != row["label"] else next(k for k in range(10) if k != row["label"])

    at.button(key=f"keep-{keep_id}").click().run()
    at.button(key=f"drop-{drop_id}").click().run()
    at.selectbox(key=f"relabel-{relabel_id}").set_value(new_label).run()
    assert_clean(at)

    stored = decisions(demo)
    assert stored.loc[keep_id, "action"] == "keep"
    assert stored.loc[drop_id, "action"] == "drop"
    assert stored.loc[relabel_id, "action"] == "relabel" and stored.loc[relabel_id, "label"] == new_label
    assert stored.loc[relabel_id, "original_label"] == row["label"]
    assert "Reviewed 3 of 90 flagged" in at.get("progress")[0].proto.text
    # The cards show what SQLite holds.
    assert card_state(at, drop_id) == "drop" and card_state(at, keep_id) == "keep"
    assert at.selectbox(key=f"relabel-{relabel_id}").value == new_label

    # Clicking the current decision again takes it back.
    at.button(key=f"keep-{keep_id}").click().run()
    assert keep_id not in decisions(demo).index

    # Undo reverts the latest decision (the clear), then the relabel.
    at.button(key="undo").click().run()
    assert decisions(demo).loc[keep_id, "action"] == "keep"
    at.button(key="undo").click().run()
    assert relabel_id not in decisions(demo).index
    assert at.selectbox(key=f"relabel-{relabel_id}").value is None
    assert_clean(at)


def test_decisions_survive_a_new_session(home, demo):
    at = open_page("review")
    first = card_ids(at)[0]
    at.button(key=f"drop-{first}").click().run()
    # A reload is a new session: nothing carried over but SQLite.
    again = open_page("review")
    assert card_state(again, first) == "drop"
    assert "Reviewed 1 of 90 flagged" in again.get("progress")[0].proto.text


def test_bulk_actions_filters_and_paging(home, demo):
    at = open_page("review")
    page_one = card_ids(at)
    at.button(key="bulk-drop").click().run()
    assert_clean(at)
    stored = decisions(demo)
    assert set(stored.index) == set(page_one) and set(stored["action"]) == {"drop"}
    # A bulk action is one undo step.
    at.button(key="undo").click().run()
    assert decisions(demo).empty

    at.button(key=f"keep-{page_one[0]}").click().run()
    at.selectbox(key="review_state").set_value("undecided").run()
    assert card_ids(at) == [sid for sid in _flagged_ids(demo) if sid != page_one[0]][:20]
    at.selectbox(key="review_state").set_value("keep").run()
    assert card_ids(at) == [page_one[0]]

    at.selectbox(key="review_state").set_value("all").run()
    at.get("pagination")[0].set_value(2).run()
    assert card_ids(at) == _flagged_ids(demo)[20:40]

    label = int(demo.scores.loc[demo.scores["flagged"], "label"].mode()[0])
    at.multiselect(key="review_given").set_value([label]).run()
    shown = card_ids(at)
    expected = demo.scores[demo.scores["flagged"] & (demo.scores["label"] == label)]
    assert shown == expected.sort_values("score", ascending=False, kind="stable")["sample_id"].head(20).tolist()

    at.button(key="bulk-keep").click().run()  # keeps the undecided on this page
    assert set(decisions(demo).index) >= set(shown)
    assert_clean(at)


def _flagged_ids(analysis) -> list[str]:
    flagged = analysis.scores[analysis.scores["flagged"]]
    return flagged.sort_values("score", ascending=False, kind="stable")["sample_id"].tolist()


# -- Explore ---------------------------------------------------------------------------------
def test_explore_selection_opens_exactly_the_selected_ids(home, demo):
    at = open_page("explore", map_method="pca", map_color="given label")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    traces = [t for t in spec["data"] if t.get("customdata")]
    assert len(traces) == 10 and all(t["type"] == "scattergl" for t in traces)
    assert spec["layout"]["dragmode"] == "pan"  # a click selects a point; box and lasso are in the toolbar
    # Two points from different traces; their per-trace indices would name other samples.
    chosen = [(1, 3), (7, 0), (4, 5)]
    points = [
        {
            "curve_number": c,
            "point_number": i,
            "point_index": i,
            "x": array(traces[c]["x"])[i],
            "y": array(traces[c]["y"])[i],
            "customdata": array(traces[c]["customdata"])[i],
        }
        for c, i in chosen
    ]
    at = select_on_chart(at, "map", points)
    assert_clean(at)
    event = at.session_state["map"]
    ids = [p["customdata"] for p in event["selection"]["points"]]
    assert len(ids) == 3
    shown = card_ids(at)
    assert sorted(shown) == sorted(ids)
    assert any(s.value == "Selection · 3 samples" for s in at.subheader)
    # Shown highest score first.
    scores = demo.scores.set_index("sample_id")["score"]
    assert shown == sorted(ids, key=lambda s: -scores[s])

    # The selection survives a redraw with another colouring, and bulk actions act on it.
    at.selectbox(key="map_color").set_value("decision").run()
    assert sorted(card_ids(at)) == sorted(ids)
    at.button(key="selection-drop").click().run()
    stored = decisions(demo)
    assert set(stored.index) == set(ids) and set(stored["action"]) == {"drop"}
    at.button(key="clear-selection").click().run()
    assert card_ids(at) == []
    assert_clean(at)


def test_explore_draws_histogram_and_confusion_of_flagged(home, demo):
    at = open_page("explore", map_method="pca")
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    hist = charts["histogram"]
    assert [t["name"] for t in hist["data"]] == ["not flagged", "flagged"]
    # Counted on the server: bars, not the scores, go to the browser.
    assert all(t["type"] == "bar" and len(array(t["y"])) == 60 for t in hist["data"])
    assert sum(array(hist["data"][1]["y"])) == 90 and sum(array(hist["data"][0]["y"])) == 1797 - 90
    cut = float(demo.scores.loc[demo.scores["flagged"], "score"].min())
    assert any(abs(s.get("x0", -1) - cut) < 1e-9 for s in hist["layout"]["shapes"])
    (table,) = at.dataframe
    confusion = table.value
    assert confusion.loc["total", "total"] == 90
    flagged = demo.scores[demo.scores["flagged"]]
    assert confusion.loc["1", "4"] == int(((flagged["label"] == 1) & (flagged["pred"] == 4)).sum())


# -- Export ----------------------------------------------------------------------------------
def _decide_three(demo) -> tuple[str, str, str]:
    ids = _flagged_ids(demo)
    store = Workspace(demo.data_id).decisions()
    labels = demo.scores.set_index("sample_id")["label"]
    store.decide(ids[0], "drop", original_label=int(labels[ids[0]]))
    store.decide(ids[1], "relabel", original_label=int(labels[ids[1]]), label=(int(labels[ids[1]]) + 1) % 10)
    store.decide(ids[2], "keep", original_label=int(labels[ids[2]]))
    return ids[0], ids[1], ids[2]


def _read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_export_writes_the_cleaned_manifest(home, demo, tmp_path):
    dropped, relabelled, kept = _decide_three(demo)
    at = open_page("export")
    assert {m.label: m.value for m in at.metric} == {
        "Kept": "1",
        "Dropped": "1",
        "Relabelled": "1",
        "Undecided": "1,794",
    }
    assert at.get("download_button")[0].proto.label == "Download cleaned CSV"

    out = tmp_path / "out" / "cleaned.csv"
    at.text_input(key="export_csv_path").input(str(out)).run()
    at.button(key="write-csv").click().run()
    assert_clean(at)
    assert any(str(out) in s.value for s in at.success)
    rows = _read_csv(out)
    assert list(rows[0]) == ["sample_id", "path", "original_label", "label", "action", "score"]
    by_id = {r["sample_id"]: r for r in rows}
    assert len(rows) == 1796 and dropped not in by_id
    given = demo.scores.set_index("sample_id")["label"]
    assert by_id[relabelled]["action"] == "relabel"
    assert by_id[relabelled]["original_label"] == str(given[relabelled])
    assert by_id[relabelled]["label"] == str((given[relabelled] + 1) % 10)
    assert by_id[kept]["action"] == "keep" and by_id[kept]["label"] == str(given[kept])
    assert float(by_id[kept]["score"]) == pytest.approx(float(demo.scores.set_index("sample_id").loc[kept, "score"]))

    # Marked instead of excluded.
    at.radio(key="export_dropped").set_value("mark").run()
    at.button(key="write-csv").click().run()
    by_id = {r["sample_id"]: r for r in _read_csv(out)}
    assert len(by_id) == 1797 and by_id[dropped]["action"] == "drop"


def test_export_writes_an_image_folder_copy(home, demo, tmp_path):
    dropped, relabelled, _ = _decide_three(demo)
    dest = tmp_path / "cleaned"
    at = open_page("export")
    at.text_input(key="export_folder").input(str(dest)).run()
    at.button(key="write-folder").click().run(timeout=TIMEOUT)
    assert_clean(at)
    assert any("Copied 1,796 images in 10 classes" in s.value for s in at.success)
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.png"))
    assert len(files) == 1796
    new = str((int(demo.scores.set_index("sample_id").loc[relabelled, "label"]) + 1) % 10)
    assert f"{new}/{relabelled}.png" in files
    assert not any(f.endswith(f"/{dropped}.png") for f in files)
    # Writing again into the now non-empty folder is refused with a message.
    at.button(key="write-folder").click().run()
    assert any("not empty" in e.value for e in at.error) and not at.exception


# -- Evaluate --------------------------------------------------------------------------------
def test_evaluate_scores_every_detector_and_the_persons_calls(home, demo):
    noisy = demo.scores.set_index("sample_id")["noisy"]
    labels = demo.scores.set_index("sample_id")["label"]
    clean_labels = demo.scores.set_index("sample_id")["clean_label"]
    flipped = noisy[noisy].index[:3]
    clean = noisy[~noisy].index[0]
    store = Workspace(demo.data_id).decisions()
    store.decide(flipped[0], "drop", original_label=int(labels[flipped[0]]))
    store.decide(flipped[1], "relabel", original_label=int(labels[flipped[1]]), label=int(clean_labels[flipped[1]]))
    store.decide(clean, "drop", original_label=int(labels[clean]))
    store.decide(flipped[2], "keep", original_label=int(labels[flipped[2]]))

    at = open_page("evaluate")
    (table,) = at.dataframe
    metrics = table.value
    assert set(metrics["score"]) == set(SCORE_COLUMNS)
    for col in ("auroc", "ap", "precision@90", "recall@90", "precision@180", "recall@180"):
        assert col in metrics.columns
    in_use = metrics.set_index("score")["in use"]
    assert in_use[detector_column(options.DEFAULT_DETECTOR)].startswith("◀")  # the default detector
    assert (in_use.str.startswith("◀")).sum() == 1
    assert (metrics["auroc"] > 0.9).all()  # on digits every detector finds the flips
    shown = {m.label: m.value for m in at.metric}
    assert shown["Precision of your drop / relabel calls"] == "67%"  # 2 of 3 bad calls right
    assert shown["Kept samples that were clean"] == "0%"
    assert shown["Relabels that restored the true class"] == "100%"
    assert shown["Flipped labels caught"] == "2 of 180"
    assert_clean(at)


def analyze_folder(folder: Path) -> AppTest:
    """The app opened, set to ``folder:FOLDER`` with a 1-epoch small CNN, analysed without error."""
    at = open_app()
    at.radio(key="setup_source").set_value("folder").run()
    at.text_input(key="setup_folder").input(str(folder)).run()
    at.number_input(key="setup_epochs_auto").set_value(1).run()
    at.button(key="analyze").click().run(timeout=TIMEOUT)
    assert_clean(at)
    return at


# -- a user's own folder, start to finish ----------------------------------------------------
def test_folder_source_from_setup_to_export_with_a_guarded_csv(home, tmp_path):
    folder = _image_folder(tmp_path / "imgs", {"=HYPERLINK(1)": 6, "plain": 6})
    at = analyze_folder(folder)
    assert any(f"Results · folder:{folder}" in s.value for s in at.subheader)
    assert json.loads((home / "app" / "last_config.json").read_text())["data"] == f"folder:{folder}"

    at.switch_page("pages/review.py").run()
    assert_clean(at)
    (first,) = card_ids(at)  # 5% of 12 samples: one flagged
    at.button(key=f"drop-{first}").click().run()

    at.switch_page("pages/evaluate.py").run()
    assert any("needs known truth" in i.value for i in at.info) and not at.exception

    at.switch_page("pages/export.py").run()
    out = tmp_path / "cleaned.csv"
    at.text_input(key="export_csv_path").input(str(out)).run()
    at.button(key="write-csv").click().run()
    assert_clean(at)
    rows = _read_csv(out)
    assert len(rows) == 11 and first not in {r["sample_id"].removeprefix("'") for r in rows}
    formula_rows = [r for r in rows if "HYPERLINK" in r["label"]]
    assert formula_rows and all(r["label"] == "'=HYPERLINK(1)" for r in formula_rows)
    assert all(r["sample_id"].startswith("'=HYPERLINK(1)/") for r in formula_rows)  # ids are guarded too
    assert all(r["path"] == str(folder / r["sample_id"].removeprefix("'")) for r in rows)
    assert os.environ["OGA_HOME"] == str(home) and oga_home() == home


def test_analyze_again_sees_files_changed_on_disk(home, tmp_path):
    folder = _image_folder(tmp_path / "imgs", {"a": 6, "b": 6})
    at = analyze_folder(folder)
    assert {m.label: m.value for m in at.metric}["Samples"] == "12"
    for name in ("06.png", "07.png"):  # two more images of class b, same settings
        shutil.copyfile(folder / "b" / "00.png", folder / "b" / name)
    at.button(key="analyze").click().run(timeout=TIMEOUT)
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Samples"] == "14"  # not the copy held in memory


# -- extras a curator expects ------------------------------------------------------------------
def test_one_at_a_time_review_moves_on_after_each_decision(home, demo):
    at = open_page("review")
    at.toggle(key="review_focus").set_value(True).run()
    assert_clean(at)
    ids = _flagged_ids(demo)
    assert card_ids_focus(at) == ids[0]
    at.button(key="focus-drop").click().run()
    assert decisions(demo).loc[ids[0], "action"] == "drop"
    assert card_ids_focus(at) == ids[1]
    row = demo.scores.set_index("sample_id").loc[ids[1]]
    if row["pred"] != row["label"]:
        at.button(key="focus-predicted").click().run()
        assert decisions(demo).loc[ids[1], "label"] == row["pred"]
    else:
        at.button(key="focus-keep").click().run()
    assert card_ids_focus(at) == ids[2]
    other = next(
        k for k in range(10) if k not in (demo.scores.set_index("sample_id").loc[ids[2], ["label", "pred"]].tolist())
    )
    at.selectbox(key="focus-relabel").set_value(other).run()
    assert decisions(demo).loc[ids[2], "label"] == other and card_ids_focus(at) == ids[3]
    at.button(key="focus-prev").click().run()
    assert card_ids_focus(at) == ids[2]
    # Under the "undecided" filter the decided ones leave the queue.
    at.selectbox(key="review_state").set_value("undecided").run()
    assert card_ids_focus(at) == ids[3]
    assert "Reviewed 3 of 90 flagged" in at.get("progress")[0].proto.text
    assert_clean(at)


def card_ids_focus(at: AppTest) -> str:
    """The sample the one-at-a-time view shows (named in its heading)."""
    (caption,) = [m.value for m in at.markdown if m.value.startswith("#### ")]
    return caption.split("`")[1].replace("\\", "")


def test_reopen_recent_work_reattaches_its_decisions(home, demo, tmp_path):
    folder = _image_folder(tmp_path / "imgs", {"cat": 5, "dog": 5})
    from oga_core.config import AnalysisConfig

    other = analyze(AnalysisConfig(data=f"folder:{folder}", epochs=1))
    other.workspace.record(other)  # as the CLI and the app do after an analysis
    first = other.scores.sort_values("score", ascending=False)["sample_id"].iloc[0]
    Workspace(other.data_id).decisions().decide(first, "drop", original_label=0)
    demo.workspace.record(demo)  # the demo analysed after it: the app opens on the demo
    save_last_config(DEFAULT_CONFIG)
    at = open_app()
    (expander,) = [e for e in at.expander if "Recent work" in e.label]
    assert escape_md(f"folder:{folder}") in expander.markdown[0].value and "1 decided" in expander.markdown[0].value
    at.button(key=f"reopen-{other.data_id}").click().run(timeout=TIMEOUT)
    assert_clean(at)
    assert any(f"Results · folder:{folder}" in s.value for s in at.subheader)
    # The form now shows the reopened settings (fresh widgets, not the kept demo values).
    assert at.radio(key="setup_source~1").value == "folder"
    assert at.text_input(key="setup_folder~1").value == str(folder)
    at.switch_page("pages/review.py").run()
    assert card_state(at, first) == "drop"


def test_zip_upload_in_and_zip_download_out(home, tmp_path):
    import zipfile

    folder = _image_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path in sorted(folder.rglob("*.png")):
            archive.write(path, Path("pets") / path.relative_to(folder))
    at = open_app()
    at.radio(key="setup_source").set_value("folder").run()
    at.file_uploader(key="setup_zip").upload("pets.zip", buf.getvalue(), "application/zip").run()
    at.number_input(key="setup_epochs_auto").set_value(1).run()
    at.button(key="analyze").click().run(timeout=TIMEOUT)
    assert_clean(at)
    (result,) = [s.value for s in at.subheader if s.value.startswith("Results · folder:")]
    assert result.endswith("/pets") and str(home / "uploads") in result

    at.switch_page("pages/review.py").run()
    (first,) = card_ids(at)
    at.button(key=f"drop-{first}").click().run()
    at.switch_page("pages/export.py").run()
    at.button(key="zip-folder").click().run(timeout=TIMEOUT)
    assert_clean(at)
    (button,) = [b for b in at.get("download_button") if b.key == "download-zip"]
    (built,) = list((home / "exports").rglob("*.zip"))
    with zipfile.ZipFile(built) as archive:
        names = archive.namelist()
    assert len([n for n in names if n.endswith(".png")]) == 11
    assert not any(n.endswith(first.split("/")[-1]) and first.split("/")[0] in n for n in names)
    assert any(n.endswith("/manifest.csv") for n in names)
    # A decision after building marks the .zip as stale instead of offering it.
    at.switch_page("pages/review.py").run()
    at.button(key=f"keep-{first}").click().run()
    at.switch_page("pages/export.py").run()
    assert not [b for b in at.get("download_button") if b.key == "download-zip"]
    assert any("build it again" in c.value for c in at.caption)


def test_checkpoint_mode_without_a_file_is_a_message(home):
    at = open_app()
    at.radio(key="setup_model_mode").set_value("checkpoint").run()
    at.button(key="analyze").click().run()
    assert not at.exception
    assert any("Load a checkpoint" in e.value for e in at.error)


def test_saved_settings_whose_data_is_gone_leave_every_page_usable(home, tmp_path):
    gone = tmp_path / "moved-away"
    (home / "app").mkdir()
    (home / "app" / "last_config.json").write_text(json.dumps({"data": f"folder:{gone}"}))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)
    assert at.button(key="analyze")  # the form is there to choose other data
    for page in ("review", "explore", "export", "evaluate"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception and any("does not exist" in e.value for e in at.error)
        assert [link.proto.label for link in at.get("page_link")][-1] == "Change the data or the model on Set-up"
    # Choosing the demo on Set-up makes everything work again.
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert at.radio(key="setup_source").value == "folder"
    at.radio(key="setup_source").set_value("demo").run()
    at.button(key="analyze").click().run(timeout=TIMEOUT)
    assert_clean(at)
    assert any("Results · demo:digits" in s.value for s in at.subheader)

"""The app's pure helpers: oga_core.summaries, oga_core.uploads, oga_app.registry and the map's
selection parsing (oga_app.figures). Small synthetic inputs; no Streamlit session, no training."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import threading
import time
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from oga_app.figures import ids_from_points
from oga_app.registry import AnalysisRegistry
from oga_core import options, summaries
from oga_core.config import AnalysisConfig
from oga_core.data import LabeledImages
from oga_core.errors import DataError, OgaError
from oga_core.evaluate import precision_recall_at_k
from oga_core.uploads import export_image_zip, extract_image_archive, zip_folder

CLASSES = ["cat", "dog", "fox"]


def score_table(n: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.7, label, (label + 1) % 3)
    score = rng.random(n)
    flagged = np.zeros(n, bool)
    flagged[np.argsort(-score)[: n // 3]] = True
    rank = np.empty(n, int)
    rank[np.argsort(-score)] = np.arange(1, n + 1)
    return pd.DataFrame(
        {
            "sample_id": [f"s{i:02d}" for i in range(n)],
            "label": label,
            "label_name": np.array(CLASSES, dtype=object)[label],
            "pred": pred,
            "pred_name": np.array(CLASSES, dtype=object)[pred],
            "score": score,
            "rank": rank,
            "flagged": flagged,
            "noisy": pred != label,
        }
    )


def decisions_frame(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["sample_id", "action", "label"])


# -- summaries -------------------------------------------------------------------------------
def test_with_decisions_joins_by_id_and_ignores_unknown_ids():
    table = score_table()
    joined = summaries.with_decisions(
        table,
        decisions_frame([("s01", "drop", int(table.label[1])), ("s02", "relabel", 2), ("gone", "keep", 0)]),
        CLASSES,
    )
    assert joined.loc[1, "decision"] == "drop" and joined.loc[1, "new_label"] == table.label[1]
    assert joined.loc[2, "decision"] == "relabel" and joined.loc[2, "new_label"] == 2
    assert joined.loc[2, "new_label_name"] == "fox"
    assert (joined.loc[3:, "decision"] == "undecided").all() and joined.loc[0, "decision"] == "undecided"
    assert len(joined) == len(table) and "decision" not in table  # the input is not modified


def test_review_queue_filters_and_sorts_by_score():
    table = summaries.with_decisions(score_table(30), decisions_frame([]), CLASSES)
    queue = summaries.review_queue(table)
    assert queue["flagged"].all() and len(queue) == 10
    assert queue["score"].is_monotonic_decreasing
    everything = summaries.review_queue(table, include_unflagged=True)
    assert len(everything) == 30 and everything["score"].is_monotonic_decreasing
    only = summaries.review_queue(table, include_unflagged=True, given=[1], predicted=[2])
    assert ((only["label"] == 1) & (only["pred"] == 2)).all()
    assert len(only) == int(((table["label"] == 1) & (table["pred"] == 2)).sum())

    first, second = queue["sample_id"][:2]
    decided = summaries.with_decisions(table, decisions_frame([(first, "keep", 0), (second, "drop", 0)]), CLASSES)
    assert summaries.review_queue(decided, state="keep")["sample_id"].tolist() == [first]
    assert summaries.review_queue(decided, state="decided")["sample_id"].tolist() == [first, second]
    assert first not in set(summaries.review_queue(decided, state="undecided")["sample_id"])
    assert summaries.review_progress(decided) == (2, 10)
    with pytest.raises(ValueError):
        summaries.review_queue(decided, state="maybe")


@pytest.mark.parametrize(
    ("n", "page", "size", "expected"),
    [
        (0, 1, 24, (0, 0, 1)),
        (50, 1, 24, (0, 24, 3)),
        (50, 3, 24, (48, 50, 3)),
        (50, 9, 24, (48, 50, 3)),
        (50, 0, 24, (0, 24, 3)),
    ],
)
def test_page_bounds(n, page, size, expected):
    assert summaries.page_bounds(n, page, size) == expected


def test_relabel_choices_offer_the_prediction_first_and_never_the_given_label():
    assert summaries.relabel_choices(5, given=2, predicted=4) == [4, 0, 1, 3]
    assert summaries.relabel_choices(5, given=2, predicted=2) == [0, 1, 3, 4]


def test_flagged_confusion_counts_given_against_predicted():
    table = score_table(40)
    confusion = summaries.flagged_confusion(table, CLASSES)
    assert list(confusion.index) == CLASSES + ["total"] and list(confusion.columns) == CLASSES + ["total"]
    flagged = table[table["flagged"]]
    for g in range(3):
        for p in range(3):
            assert confusion.iloc[g, p] == int(((flagged.label == g) & (flagged.pred == p)).sum())
    assert confusion.loc["total", "total"] == len(flagged)


def test_budget_cut_and_flagged_truth():
    table = score_table(30)
    assert summaries.budget_cut(table) == pytest.approx(table.loc[table.flagged, "score"].min())
    assert summaries.budget_cut(table.assign(flagged=False)) is None
    truth = summaries.flagged_truth(table)
    assert truth == {
        "noisy": int(table.noisy.sum()),
        "flagged": 10,
        "flagged_noisy": int((table.noisy & table.flagged).sum()),
    }
    assert summaries.flagged_truth(table.drop(columns="noisy")) is None


def test_precision_curve_agrees_with_precision_at_k():
    table = score_table(60, seed=3)
    table["other"] = -table["score"]
    curve = summaries.precision_curve(table, table["noisy"].to_numpy(), columns=["score", "other"], k_max=20)
    assert len(curve) == 40
    for col in ("score", "other"):
        for k in (1, 7, 20):
            p, r = precision_recall_at_k(table[col].to_numpy(), table["noisy"].to_numpy(), k)
            row = curve[(curve.score == col) & (curve.k == k)].iloc[0]
            assert row.precision == pytest.approx(p) and row.recall == pytest.approx(r)


def test_decisions_vs_truth_counts_caught_flips():
    table = score_table(30)
    noisy_ids = table.loc[table.noisy, "sample_id"].tolist()
    clean_id = table.loc[~table.noisy, "sample_id"].iloc[0]
    joined = summaries.with_decisions(
        table, decisions_frame([(noisy_ids[0], "drop", 0), (noisy_ids[1], "keep", 0), (clean_id, "drop", 0)]), CLASSES
    )
    assert summaries.decisions_vs_truth(joined) == {
        "noisy": len(noisy_ids),
        "caught": 1,
        "noisy_undecided": len(noisy_ids) - 2,
    }


def test_map_frame_and_density_grid():
    table = summaries.with_decisions(score_table(10), decisions_frame([("s03", "drop", 0)]), CLASSES)
    coords = np.arange(20, dtype=np.float32).reshape(10, 2)
    frame = summaries.map_frame(table, coords)
    assert frame[["x", "y"]].to_numpy().tolist() == coords.tolist()
    assert frame.loc[3, "decision"] == "drop" and frame["sample_id"].tolist() == table["sample_id"].tolist()
    with pytest.raises(ValueError):
        summaries.map_frame(table, coords[:5])
    grid, xc, yc = summaries.density_grid(np.random.default_rng(0).normal(size=(5000, 2)), bins=50)
    assert grid.shape == (50, 50) and xc.shape == yc.shape == (50,)
    assert np.nansum(grid) == 5000 and np.isnan(grid).any()


def test_thumbnails_enlarge_small_images_sharply_and_shrink_large_ones(tmp_path):
    small = LabeledImages(
        source="t",
        ids=["a", "b"],
        labels=np.array([0, 1]),
        classes=["x", "y"],
        pixels=np.array([[[[0, 255], [255, 0]]], [[[9, 9], [9, 9]]]], dtype=np.uint8),
    )
    im = summaries.thumbnail(small, 0, side=128)
    assert im.size == (128, 128)
    assert set(np.unique(np.asarray(im))) == {0, 255}  # no smoothing between pixels
    (tmp_path / "x").mkdir()
    Image.new("RGB", (1000, 500), (200, 10, 10)).save(tmp_path / "x" / "big.jpg")
    Image.new("RGB", (10, 10)).save(tmp_path / "x" / "tiny.png")
    files = LabeledImages(
        source="f",
        ids=["x/big.jpg", "x/tiny.png"],
        labels=np.array([0, 1]),
        classes=["x", "y"],
        root=tmp_path,
        paths=["x/big.jpg", "x/tiny.png"],
    )
    assert summaries.thumbnail(files, 0, side=128).size == (128, 64)
    png = summaries.thumbnail_png(files, 1, side=128)
    assert Image.open(io.BytesIO(png)).size == (120, 120)
    (tmp_path / "x" / "tiny.png").unlink()
    with pytest.raises(DataError):
        summaries.thumbnail(files, 1)


# -- uploads ---------------------------------------------------------------------------------
def zip_bytes(entries: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            archive.writestr(info, target)
    return buf.getvalue()


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    return buf.getvalue()


def test_extract_image_archive_finds_the_class_folders_once(tmp_path):
    data = zip_bytes(
        {"pets/cat/1.png": png(), "pets/dog/2.png": png(), "__MACOSX/pets/._1.png": b"x", "pets/.DS_Store": b"x"}
    )
    root = extract_image_archive(data, tmp_path)
    assert root.name == "pets" and sorted(p.name for p in root.iterdir()) == ["cat", "dog"]
    assert not list(tmp_path.rglob("__MACOSX")) and not list(tmp_path.rglob(".DS_Store"))
    stamp = (root / "cat" / "1.png").stat().st_mtime_ns
    assert extract_image_archive(data, tmp_path) == root  # same content: unpacked once
    assert (root / "cat" / "1.png").stat().st_mtime_ns == stamp
    flat = extract_image_archive(zip_bytes({"cat/1.png": png(), "dog/2.png": png()}), tmp_path)
    assert sorted(p.name for p in flat.iterdir() if not p.name.startswith(".")) == ["cat", "dog"]


@pytest.mark.parametrize(
    ("entries", "links", "message"),
    [
        ({"../evil.png": b"x"}, None, "unsafe entry"),
        ({"/etc/evil.png": b"x"}, None, "unsafe entry"),
        ({"cat/1.png": b"x"}, {"cat/link.png": "/etc/passwd"}, "link"),
        ({}, None, "no files"),
    ],
)
def test_extract_image_archive_refuses_unsafe_archives(tmp_path, entries, links, message):
    with pytest.raises(DataError, match=message):
        extract_image_archive(zip_bytes(entries, links=links), tmp_path / "up")
    assert not (tmp_path / "evil.png").exists() and not list((tmp_path).rglob("evil.png"))


def test_extract_image_archive_refuses_non_zips_and_bombs(tmp_path):
    with pytest.raises(DataError, match="not a .zip"):
        extract_image_archive(b"PK? no", tmp_path)
    with pytest.raises(DataError, match="more than"):
        extract_image_archive(zip_bytes({"cat/1.png": b"\0" * 5000}), tmp_path, max_bytes=1000)
    assert not list(tmp_path.iterdir())  # nothing half unpacked


def test_zip_folder_and_export_image_zip(tmp_path):
    folder = tmp_path / "out"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "x.txt").write_text("hi")
    path = zip_folder(folder, tmp_path / "z" / "out.zip")
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["out/a/x.txt"]
    with pytest.raises(OgaError):
        zip_folder(tmp_path / "missing", tmp_path / "m.zip")

    ds = LabeledImages(
        source="t",
        ids=["0", "1", "2"],
        labels=np.array([0, 1, 1]),
        classes=["a", "b"],
        pixels=np.zeros((3, 1, 4, 4), np.uint8),
    )
    manifest = pd.DataFrame({"sample_id": ["0", "2"], "label": ["a", "a"], "action": ["keep", "relabel"]})
    built, counts = export_image_zip(ds, manifest, tmp_path / "e" / "clean.zip", name="clean")
    with zipfile.ZipFile(built) as archive:
        names = sorted(archive.namelist())
    assert counts == {"a": 2} and names == ["clean/a/0.png", "clean/a/2.png", "clean/manifest.csv"]


# -- oga_app: pure parts ---------------------------------------------------------------------
def test_ids_from_points_reads_customdata_not_indices():
    points = [
        {"curve_number": 0, "point_index": 3, "customdata": "s07"},
        {"curve_number": 2, "point_index": 3, "customdata": ["s11"]},
        {"curve_number": 1, "point_index": 0, "customdata": "s07"},  # drawn twice: once in the list
        {"curve_number": 1, "point_index": 5},  # a density cell carries no id
    ]
    assert ids_from_points(points) == ["s07", "s11"]
    assert ids_from_points([]) == []


def test_the_registry_keys_analyses_by_their_unranked_config():
    config = AnalysisConfig(data="demo:digits", noise=0.1, detector="loss", budget=0.2, per_class=True, scope="all")
    base = config.unranked()
    assert base == dataclasses.replace(config, detector=options.DEFAULT_DETECTOR, budget=0.05, per_class=False)
    assert dataclasses.replace(config, detector="margin").unranked() == base


class FakeAnalysis:
    def __init__(self, config):
        self.config = config
        self.data_id = "d"

    def rescore(self, *, detector, budget, per_class):
        return FakeAnalysis(dataclasses.replace(self.config, detector=detector, budget=budget, per_class=per_class))


def test_registry_runs_one_job_per_config_and_keeps_it_past_a_stopped_page():
    calls = []
    release = threading.Event()

    def fake_analyze(config, progress=None):
        calls.append(config)
        progress("train", 1, 2)
        release.wait(5)
        progress("train", 2, 2)
        return FakeAnalysis(config)

    recorded = []
    registry = AnalysisRegistry(record=recorded.append, analyze=fake_analyze)
    config = AnalysisConfig(data="demo:digits")
    seen: list[tuple[str, int, int]] = []
    results = []

    def stopped_page(stage, done, total):
        raise KeyboardInterrupt  # what a page's script gets when the person navigates away

    def second_session() -> None:
        results.append(registry.get(dataclasses.replace(config, detector="loss"), lambda *a: seen.append(a)))

    waiter = threading.Thread(target=second_session)
    with pytest.raises(KeyboardInterrupt):
        registry.get(config, stopped_page)
    assert registry.running(config)  # the job outlives the page that started it
    waiter.start()
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:  # the second session is waiting on the job
        time.sleep(0.01)
    release.set()
    waiter.join(5)
    assert len(calls) == 1
    assert results[0].config.detector == "loss"  # ranked as the second caller asked
    assert recorded[1:] == [results[0]]  # the finished job, then its re-ranked scores, became the latest
    assert ("train", 2, 2) in seen
    assert registry.peek(config) is not None and not registry.running(config)


def test_registry_hands_errors_to_waiters_and_retries_afterwards():
    outcomes = iter([OgaError("no such folder"), None])

    def fake_analyze(config, progress=None):
        error = next(outcomes)
        if error:
            raise error
        return FakeAnalysis(config)

    registry = AnalysisRegistry(record=lambda analysis: None, analyze=fake_analyze)
    config = AnalysisConfig(data="folder:/nope")
    with pytest.raises(OgaError, match="no such folder"):
        registry.get(config)
    assert registry.peek(config) is None
    assert registry.get(config).config == config


def test_extract_image_archive_explains_encrypted_entries(tmp_path):
    data = bytearray(zip_bytes({"cat/1.png": png(), "dog/2.png": png()}))
    # set the "encrypted" flag bit in every local and central header, as a password-protected zip has
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at != -1:
            data[at + offset] |= 0x1
            at = data.find(signature, at + 4)
    with pytest.raises(DataError, match="cannot unpack the archive.*encrypted"):
        extract_image_archive(bytes(data), tmp_path / "up")


# -- large data: regions, top-k, bins, bulk lists, background maps ---------------------------
def test_rows_in_region_box_and_lasso():
    coords = np.array([[0, 0], [1, 1], [2, 2], [0.5, 0.2], [3, 0]], dtype=np.float32)
    assert summaries.rows_in_region(coords, box=(1.5, 0, 0, 1.5)).tolist() == [0, 1, 3]  # either order
    triangle = np.array([[0, -1], [4, -1], [4, 3]])
    assert summaries.rows_in_region(coords, lasso=triangle).tolist() == [4]  # below the line y = x - 1
    assert summaries.rows_in_region(coords, lasso=triangle[:2]).tolist() == []  # not a polygon
    with pytest.raises(ValueError):
        summaries.rows_in_region(coords)


def test_top_rows_score_order_and_bins():
    table = score_table(30)
    best = table.sort_values("score", ascending=False, kind="stable").index
    assert summaries.top_rows(table, np.arange(30), 5).tolist() == best[:5].tolist()
    some = np.array([2, 9, 17, 25])
    assert summaries.top_rows(table, some, 10).tolist() == [i for i in best if i in set(some)]
    assert summaries.score_order(table).tolist() == best.tolist()
    bins = summaries.score_bins(table, bins=7)
    assert len(bins) == 7 and bins["flagged"].sum() == 10 and bins["not_flagged"].sum() == 20
    cut = summaries.budget_cut(table)
    assert bins.loc[bins["flagged"] > 0, "right"].min() >= cut  # flagged counts sit at or above the cut


def test_review_order_is_the_queue_as_positions():
    table = summaries.with_decisions(score_table(30), decisions_frame([("s03", "keep", 0)]), CLASSES)
    order = summaries.score_order(table)
    for kwargs in ({}, {"include_unflagged": True}, {"given": [1]}, {"state": "undecided", "include_unflagged": True}):
        rows = summaries.review_order(table, order=order, **kwargs)
        assert table.iloc[rows]["sample_id"].tolist() == summaries.review_queue(table, **kwargs)["sample_id"].tolist()


def test_bulk_items_and_counts():
    table = summaries.with_decisions(score_table(12), decisions_frame([("s01", "drop", 0)]), CLASSES)
    counts = summaries.bulk_counts(table)
    for action in summaries.BULK_ACTIONS:
        items = summaries.bulk_items(table, action)
        assert len(items) == counts[action] and {i[1] for i in items} <= {action}
    assert [i[0] for i in summaries.bulk_items(table, "clear")] == ["s01"]
    relabel = summaries.bulk_items(table, "relabel")
    assert all(new == int(table.set_index("sample_id").loc[sid, "pred"]) for sid, _, _, new in relabel)
    with pytest.raises(ValueError):
        summaries.bulk_items(table, "burn")


class SlowMap:
    """What MapJobs reads of an analysis, with a map that waits for the test."""

    def __init__(self, release: threading.Event, fail: bool = False):
        self.keys, self.data_id, self.config = {"gradients": "g"}, "d", AnalysisConfig()
        self.release, self.fail, self.calls = release, fail, 0

    def map_coords(self, *, method, space, progress=None):
        self.calls += 1
        progress(0, 0)
        self.release.wait(5)
        if self.fail:
            raise OgaError("no map today")
        progress(10, 10)
        return np.zeros((10, 2), np.float32)


def test_map_jobs_run_in_the_background_once_and_report_progress():
    from oga_app.maps import MapJobs

    release = threading.Event()
    analysis, jobs = SlowMap(release), MapJobs()
    first = jobs.poll(analysis, "umap", "features")
    assert first.coords is None and first.error is None  # the page goes on drawing meanwhile
    assert jobs.poll(analysis, "umap", "features").coords is None
    release.set()
    assert jobs.get(analysis, "umap", "features").shape == (10, 2)
    assert analysis.calls == 1  # one job however many polls
    assert jobs.ready(analysis, "umap", "features") is not None and jobs.ready(analysis, "pca", "features") is None


def test_a_failed_map_job_says_so_until_forgotten():
    from oga_app.maps import MapJobs

    release = threading.Event()
    release.set()
    analysis, jobs = SlowMap(release, fail=True), MapJobs()
    state = jobs.poll(analysis, "umap", "features", wait=5)
    assert isinstance(state.error, OgaError)
    assert isinstance(jobs.poll(analysis, "umap", "features").error, OgaError)  # not started again and again
    assert analysis.calls == 1
    jobs.forget(analysis, "umap", "features")
    jobs.poll(analysis, "umap", "features", wait=5)
    assert analysis.calls == 2


def test_the_registry_lists_running_analyses_newest_first():
    release = threading.Event()

    def fake_analyze(config, progress=None):
        release.wait(5)
        return FakeAnalysis(config)

    registry = AnalysisRegistry(record=lambda analysis: None, analyze=fake_analyze)
    older, newer = AnalysisConfig(data="demo:digits"), AnalysisConfig(data="demo:shapes", detector="loss")
    waiters = []
    for config in (older, newer):
        waiters.append(threading.Thread(target=registry.get, args=(config,)))
        waiters[-1].start()
        while not registry.running(config):
            time.sleep(0.01)
    assert registry.running_configs() == [newer, older]  # ranked as asked
    release.set()
    for w in waiters:
        w.join(5)
    assert registry.running_configs() == []


def test_resume_prefers_a_link_then_running_work_then_the_newest_work(tmp_path):
    from oga_app.resume import choose
    from oga_core.workspace import Workspace

    def workspace(data_id: str, config: dict, when: float) -> None:
        folder = tmp_path / "workspaces" / data_id
        folder.mkdir(parents=True)
        (folder / "latest_run.json").write_text(json.dumps({"config": config, "num_samples": 3}))
        os.utime(folder / "latest_run.json", (when, when))

    now = time.time()
    workspace("aaa", {"data": "folder:/a"}, now - 100)
    workspace("bbb", {"data": "folder:/b", "budget": 7.0}, now - 10)  # newest, but its settings are invalid
    demo, saved = AnalysisConfig(data="demo:digits"), AnalysisConfig(data="folder:/saved")
    ask = dict(running=[], saved=None, saved_at=None, default=demo, home=tmp_path)
    assert choose(linked=None, **ask) == (AnalysisConfig(data="folder:/a"), None)  # the newest valid one
    assert choose(linked=None, **{**ask, "saved": saved, "saved_at": now - 50}) == (saved, None)
    assert choose(linked=None, **{**ask, "saved": saved, "saved_at": now - 500})[0].data == "folder:/a"
    assert choose(linked="aaa", **{**ask, "saved": saved, "saved_at": now})[0].data == "folder:/a"
    running = AnalysisConfig(data="folder:/training")
    assert choose(linked=None, **{**ask, "running": [running]}) == (running, None)
    config, warning = choose(linked="../aaa", **{**ask, "running": [running]})
    assert config == running and "not a workspace name" in warning
    assert choose(linked=None, **{**ask, "home": tmp_path / "empty"}) == (demo, None)
    assert Workspace.lookup("aaa", tmp_path).data == "folder:/a"

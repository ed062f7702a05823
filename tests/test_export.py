"""oga_core/export.py: the cleaned manifest, the CSV formula guard, the image-folder copy."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from oga_core.data import LabeledImages, load_source
from oga_core.decisions import Decision, DecisionStore
from oga_core.errors import OgaError
from oga_core.export import (
    MANIFEST_COLUMNS,
    check_destination,
    cleaned_manifest,
    export_image_folder,
    manifest_csv_bytes,
    safe_csv_frame,
    safe_name,
    write_manifest,
)


@pytest.fixture
def folder_set(tmp_path, make_images):
    """cat: cat_0..2, dog: dog_0..2; decisions: drop cat_0, relabel cat_1 -> dog, keep dog_0."""
    root = make_images(tmp_path / "src", {"cat": 3, "dog": 3}, size=8)
    ds = load_source(f"folder:{root}", image_size=8)
    store = DecisionStore(tmp_path / "decisions.sqlite")
    store.decide_many(
        [
            Decision("cat/cat_0.png", "drop", 0),
            Decision("cat/cat_1.png", "relabel", 0, 1),
            Decision("dog/dog_0.png", "keep", 1),
            Decision("gone/elsewhere.png", "drop", 0),  # no longer in the data: not exported
        ]
    )
    scores = pd.DataFrame({"sample_id": ds.ids[::-1], "score": np.arange(6, dtype=float)[::-1] - 2.5})
    return ds, store.table(), scores


def _read_csv(data: bytes | str) -> list[list[str]]:
    text = data.decode() if isinstance(data, bytes) else data
    return list(csv.reader(io.StringIO(text)))


def test_manifest_columns_and_content(folder_set):
    ds, decisions, scores = folder_set
    table = cleaned_manifest(ds, decisions, scores=scores)
    assert tuple(table.columns) == MANIFEST_COLUMNS
    assert table["sample_id"].tolist() == [
        "cat/cat_1.png",
        "cat/cat_2.png",
        "dog/dog_0.png",
        "dog/dog_1.png",
        "dog/dog_2.png",
    ]
    row = table.set_index("sample_id")
    assert row.loc["cat/cat_1.png", ["original_label", "label", "action"]].tolist() == ["cat", "dog", "relabel"]
    assert row.loc["dog/dog_0.png", ["original_label", "label", "action"]].tolist() == ["dog", "dog", "keep"]
    assert row.loc["cat/cat_2.png", ["label", "action"]].tolist() == ["cat", "undecided"]
    assert row.loc["dog/dog_1.png", "path"] == str(ds.root / "dog" / "dog_1.png")
    # score matched by sample id (the score frame is in another order)
    expected = dict(zip(scores["sample_id"], scores["score"]))
    assert row["score"].to_dict() == {sid: expected[sid] for sid in row.index}

    marked = cleaned_manifest(ds, decisions, scores=scores, dropped="mark")
    assert len(marked) == 6 and marked.loc[0, "sample_id"] == "cat/cat_0.png"
    assert marked.loc[0, ["label", "action"]].tolist() == ["cat", "drop"]
    no_scores = cleaned_manifest(ds, decisions.iloc[:0])
    assert len(no_scores) == 6 and set(no_scores["action"]) == {"undecided"} and no_scores["score"].isna().all()
    with pytest.raises(OgaError, match="'exclude' or 'mark'"):
        cleaned_manifest(ds, decisions, dropped="delete")
    bad = pd.DataFrame({"sample_id": ["cat/cat_2.png"], "action": ["relabel"], "label": [7]})
    with pytest.raises(OgaError, match="relabels to class 7"):
        cleaned_manifest(ds, bad)


def test_formula_injection_guard():
    table = pd.DataFrame(
        {
            "sample_id": ['=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)", "plain", "\tTab"],
            "label": ["=cmd|' /C calc'!A0", "ok", "a-b", "x@y", "-", "mid=dle"],
            "score": [-1.5, 2.0, -0.25, 0.0, 1e-9, -3.0],
            "count": [1, -2, 3, -4, 5, 6],
        }
    )
    rows = _read_csv(manifest_csv_bytes(table))
    assert rows[0] == ["sample_id", "label", "score", "count"]
    assert [r[0] for r in rows[1:]] == ['\'=HYPERLINK("http://x")', "'+1+2", "'-2+3", "'@SUM(A1)", "plain", "'\tTab"]
    assert [r[1] for r in rows[1:]] == ["'=cmd|' /C calc'!A0", "ok", "a-b", "x@y", "'-", "mid=dle"]
    assert [float(r[2]) for r in rows[1:]] == [-1.5, 2.0, -0.25, 0.0, 1e-9, -3.0]  # numbers untouched
    assert [r[2] for r in rows[1:]][0] == "-1.5" and [r[3] for r in rows[1:]] == ["1", "-2", "3", "-4", "5", "6"]
    guarded = safe_csv_frame(pd.DataFrame({"=bad": ["x"]}))
    assert list(guarded.columns) == ["'=bad"]
    assert table.loc[0, "sample_id"].startswith("=")  # the input frame is not modified


def test_formula_guard_on_class_and_file_names(tmp_path, make_images):
    root = make_images(tmp_path / "src", {"=cmd": 1, "+x": 1, "-1": 1, "@y": 1, "fine": 1})
    (root / "fine" / "fine_0.png").rename(root / "fine" / "=f.png")
    ds = load_source(f"folder:{root}")
    path = write_manifest(
        cleaned_manifest(ds, pd.DataFrame(columns=["sample_id", "action", "label"])), tmp_path / "m.csv"
    )
    rows = _read_csv(path.read_text())
    by_label = {r[3]: r for r in rows[1:]}
    assert set(by_label) == {"'+x", "'-1", "'=cmd", "'@y", "fine"}
    assert by_label["'=cmd"][0] == "'=cmd/=cmd_0.png" and by_label["fine"][0] == "fine/=f.png"
    assert by_label["'-1"][2] == "'-1"  # original_label too


def test_image_folder_copy_of_a_folder_source(tmp_path, folder_set):
    ds, decisions, scores = folder_set
    manifest = cleaned_manifest(ds, decisions, scores=scores)
    dest = tmp_path / "out" / "clean"
    counts = export_image_folder(ds, manifest, dest)
    assert counts == {"cat": 1, "dog": 4}
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == [
        ".oga-export.json",
        "cat/cat_2.png",
        "dog/cat_1.png",
        "dog/dog_0.png",
        "dog/dog_1.png",
        "dog/dog_2.png",
        "manifest.csv",
    ]
    for rel, src in [("dog/cat_1.png", "cat/cat_1.png"), ("dog/dog_2.png", "dog/dog_2.png")]:
        assert (dest / rel).read_bytes() == (ds.root / src).read_bytes()  # copied byte for byte
    assert not list((tmp_path / "out").glob(".*"))  # no temporary folder left beside it

    back = load_source(f"csv:{dest / 'manifest.csv'}", image_size=8)
    assert back.classes == ["cat", "dog"]
    assert dict(zip(back.ids, back.labels.tolist())) == {
        "cat/cat_2.png": 0,
        "dog/cat_1.png": 1,
        "dog/dog_0.png": 1,
        "dog/dog_1.png": 1,
        "dog/dog_2.png": 1,
    }
    assert back.decode().unreadable == {}
    folder = load_source(f"folder:{dest}", image_size=8)
    assert folder.classes == back.classes
    assert dict(zip(folder.ids, folder.labels.tolist())) == dict(zip(back.ids, back.labels.tolist()))
    inner = pd.read_csv(dest / "manifest.csv")
    assert inner.set_index("sample_id").loc[
        "cat/cat_1.png", ["path", "original_label", "label", "action"]
    ].tolist() == [
        "dog/cat_1.png",
        "cat",
        "dog",
        "relabel",
    ]


def test_image_folder_copy_of_an_array_source(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (4, 1, 5, 5), dtype=np.uint8)
    ds = LabeledImages(
        source="t",
        ids=["train/0", "train/1", "train/2", "train/3"],
        labels=np.array([0, 1, 1, 0]),
        classes=["zero", "one"],
        pixels=pixels,
    )
    manifest = cleaned_manifest(ds, pd.DataFrame({"sample_id": ["train/2"], "action": ["relabel"], "label": [0]}))
    assert (manifest["path"] == "").all()
    counts = export_image_folder(ds, manifest, tmp_path / "png")
    assert counts == {"zero": 3, "one": 1}
    written = np.asarray(Image.open(tmp_path / "png" / "zero" / "train_2.png"))
    np.testing.assert_array_equal(written, pixels[2, 0])  # lossless PNG of the array
    back = load_source(f"csv:{tmp_path / 'png' / 'manifest.csv'}", image_size=5, grayscale=True)
    assert back.classes == ["one", "zero"]
    order = [back.ids.index(f"zero/train_{i}.png") for i in (0, 2, 3)]
    np.testing.assert_array_equal(back.decode().pixels[order], pixels[[0, 2, 3]])


def test_name_collisions_are_renamed(tmp_path):
    root = tmp_path / "src"
    for cls, value in (("a", 10), ("b", 200), ("c", 90)):
        (root / cls).mkdir(parents=True)
        Image.fromarray(np.full((4, 4), value, np.uint8)).save(root / cls / "1.png")
    ds = load_source(f"folder:{root}", image_size=4)
    decisions = pd.DataFrame({"sample_id": ["b/1.png"], "action": ["relabel"], "label": [0]})
    manifest = cleaned_manifest(ds, decisions)
    counts = export_image_folder(ds, manifest, tmp_path / "out")
    assert counts == {"a": 2, "c": 1}
    assert sorted(p.name for p in (tmp_path / "out" / "a").iterdir()) == ["1.png", "1__1.png"]
    assert (tmp_path / "out" / "a" / "1.png").read_bytes() == (root / "a" / "1.png").read_bytes()
    assert (tmp_path / "out" / "a" / "1__1.png").read_bytes() == (root / "b" / "1.png").read_bytes()
    back = load_source(f"csv:{tmp_path / 'out' / 'manifest.csv'}")
    assert back.ids == ["a/1.png", "a/1__1.png", "c/1.png"] and back.labels.tolist() == [0, 0, 1]


def test_formula_named_classes_survive_the_round_trip(tmp_path, make_images):
    root = make_images(tmp_path / "src", {"-1": 2, "=x": 2, "+1": 1})
    ds = load_source(f"folder:{root}", image_size=8)
    dest = tmp_path / "out"
    export_image_folder(ds, cleaned_manifest(ds, pd.DataFrame(columns=["sample_id", "action", "label"])), dest)
    assert "'-1" in (dest / "manifest.csv").read_text()  # guarded on disk
    back = load_source(f"csv:{dest / 'manifest.csv'}", image_size=8)
    assert back.classes == ["+1", "-1", "=x"] and back.ids == ds.ids
    assert back.decode().unreadable == {}
    assert back.labels.tolist() == ds.labels.tolist()


def test_unsafe_destinations_are_refused(tmp_path, folder_set, monkeypatch):
    ds, decisions, _ = folder_set
    manifest = cleaned_manifest(ds, decisions)
    for dest in (ds.root, ds.root / "cat", ds.root / "new" / "deeper", tmp_path):
        with pytest.raises(OgaError, match="overlaps the source"):
            export_image_folder(ds, manifest, dest)
    with pytest.raises(OgaError, match="overlaps the source"):
        check_destination(Path(str(ds.root) + "/../src/x"), ds)  # resolved before comparing
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(OgaError, match="is not empty"):
        export_image_folder(ds, manifest, busy)
    with pytest.raises(OgaError, match="no record of an earlier oga export"):  # never deletes a folder it did not make
        export_image_folder(ds, manifest, busy, overwrite=True)
    assert (busy / "keep.txt").read_text() == "mine"
    # overwriting an earlier export replaces its files: a sample dropped since does not come back
    earlier = tmp_path / "earlier"
    export_image_folder(ds, cleaned_manifest(ds, decisions.iloc[:0]), earlier)
    assert len(load_source(f"folder:{earlier}")) == len(ds)
    counts = export_image_folder(ds, manifest, earlier, overwrite=True)
    assert counts == {"cat": 1, "dog": 4}
    assert (earlier / "dog" / "cat_1.png").is_file()
    assert len(load_source(f"folder:{earlier}")) == 5 == len(pd.read_csv(earlier / "manifest.csv"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".earlier")]  # no temporary folder left
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OgaError, match="is not a folder"):
        export_image_folder(ds, manifest, tmp_path / "a_file")
    with pytest.raises(OgaError, match="refusing to export into /"):
        check_destination(Path("/"), ds)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    with pytest.raises(OgaError, match="choose a dedicated folder"):
        check_destination(Path("~"), ds)
    assert check_destination(tmp_path / "fresh", ds) == (tmp_path / "fresh").resolve()


def test_write_manifest(tmp_path):
    table = pd.DataFrame({"sample_id": ["a"], "label": ["x"]})
    path = write_manifest(table, tmp_path / "deep" / "m.csv")
    assert path.read_text().splitlines() == ["sample_id,label", "a,x"]
    assert [p.name for p in path.parent.iterdir()] == ["m.csv"]
    with pytest.raises(OgaError, match="is a folder"):
        write_manifest(table, tmp_path)


def test_safe_name():
    assert safe_name("../../etc") == "_.._etc"
    assert safe_name(".hidden") == "hidden"
    assert safe_name('a/b\\c:d*e?f"g<h>i|j\x00k') == "a_b_c_d_e_f_g_h_i_j_k"
    assert safe_name("") == "_" and safe_name("...") == "_"
    assert len(safe_name("x" * 500)) == 200
